"""The drill workload: N writers inserting unique ids through one DSN.

Each writer runs autocommit INSERTs of ``(run_id, writer, seq)`` and records an
:class:`Ack` only after the server acknowledged the commit. Every attempt gets
a fresh ``seq``, so an insert whose outcome is unknown (the connection broke
after COMMIT was sent) is never retried under the same id: it may show up on
the new primary as "unacknowledged but present", which is allowed, while an
acknowledged id that is missing is a lost write.

Writers reconnect after every error with a short backoff and record each
error with its time, so the analysis sees exactly what an application saw.
The run is bounded by a duration and an optional per-writer count and stops
by itself.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgfleet.errors import PgfleetError

TABLE = "pgfleet_drill"

_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    run_id    text        NOT NULL,
    writer    integer     NOT NULL,
    seq       bigint      NOT NULL,
    client_ts timestamptz NOT NULL,
    server_ts timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, writer, seq)
)"""
_INSERT = f"INSERT INTO {TABLE} (run_id, writer, seq, client_ts) VALUES (%s, %s, %s, %s)"

#: Who answered: a member name the deploy may publish as the custom setting
#: ``pgfleet.member``, else the server address (NULL over a Unix socket, as
#: behind PgBouncer), and the primary's current timeline. Fails on a standby
#: (``pg_current_wal_lsn()`` during recovery), which is what we want: a
#: read-write endpoint that lands on a replica is an error the client sees.
_IDENTITY = """
SELECT coalesce(nullif(current_setting('pgfleet.member', true), ''),
                host(inet_server_addr()) || ':' || inet_server_port(),
                'local'),
       ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
"""

#: Cap on recorded errors: a writer hammering a dead endpoint must not eat memory.
MAX_ERRORS = 20_000


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged commit: who wrote it, when the ack arrived, who answered."""

    writer: int
    seq: int
    mono: float  # time.monotonic() when the ack arrived
    wall: float  # time.time() at the same moment
    server: str | None
    timeline: int | None

    @property
    def id(self) -> tuple[int, int]:
        return (self.writer, self.seq)


@dataclass(frozen=True, slots=True)
class ClientError:
    """One error a writer saw: while connecting or while writing."""

    writer: int
    mono: float
    wall: float
    phase: str  # "connect" | "write"
    message: str


@dataclass
class WorkloadResult:
    """Everything the writers observed; times are ``time.monotonic()`` values."""

    run_id: str
    writers: int
    started: float
    stopped: float  # when the writers were told to stop (or ran out of time)
    started_wall: float
    acks: list[Ack]
    errors: list[ClientError]
    #: writer -> highest seq attempted (acknowledged or not)
    attempted: dict[int, int]
    errors_dropped: int = 0
    #: writers still inside a statement when the run ended (e.g. a commit
    #: waiting for a synchronous standby that never came back)
    blocked_writers: list[int] = field(default_factory=list)

    def acked_ids(self) -> set[tuple[int, int]]:
        return {a.id for a in self.acks}


@dataclass(frozen=True)
class WorkloadConfig:
    """How hard and how long to write. Defaults suit a drill of a minute or two."""

    writers: int = 4
    duration: float = 60.0
    #: per writer; None = until the duration ends
    max_writes: int | None = None
    #: pause between one writer's inserts: ~200 writes/s per writer resolves
    #: the RTO to a few ms while keeping the recorded acks small
    interval: float = 0.005
    backoff: float = 0.1
    connect_timeout: int = 2
    #: libpq tcp_user_timeout: a write to a host that vanished without a RST
    #: (partition, power-off) fails after this instead of hanging for minutes
    tcp_user_timeout_ms: int = 5000


def connect(dsn: str, connect_timeout: int = 2, tcp_user_timeout_ms: int = 5000) -> psycopg.Connection[Any]:
    """A drill connection: autocommit, no server-side prepares (PgBouncer
    transaction pooling), keepalives and a TCP timeout so dead peers fail fast."""
    return psycopg.connect(
        dsn, autocommit=True, prepare_threshold=None, connect_timeout=connect_timeout,
        keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=3,
        tcp_user_timeout=tcp_user_timeout_ms,
    )


def prepare(dsn: str, connect_timeout: int = 5) -> None:
    """Create the drill table once, before any writer starts (concurrent
    ``CREATE TABLE IF NOT EXISTS`` can race)."""
    try:
        with connect(dsn, connect_timeout) as conn:
            conn.execute(_DDL)
    except psycopg.Error as e:
        raise PgfleetError(f"cannot prepare the drill table through the read-write endpoint: {_first_line(e)}") from None


def present_ids(dsn: str, run_id: str, connect_timeout: int = 5) -> set[tuple[int, int]]:
    """Every id of one run that the server at ``dsn`` holds (the set check's other side)."""
    with connect(dsn, connect_timeout) as conn:
        rows = conn.execute(f"SELECT writer, seq FROM {TABLE} WHERE run_id = %s", (run_id,)).fetchall()
    return {(int(w), int(s)) for w, s in rows}


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


class Workload:
    """Runs the writers in threads; :meth:`start`, then :meth:`stop` or :meth:`wait`."""

    def __init__(self, dsn: str, config: WorkloadConfig = WorkloadConfig(), run_id: str | None = None):
        if config.writers < 1:
            raise PgfleetError(f"--writers must be at least 1 (got {config.writers})")
        if config.duration <= 0:
            raise PgfleetError(f"--duration must be positive (got {config.duration})")
        self.dsn = dsn
        self.config = config
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._acks: list[Ack] = []
        self._errors: list[ClientError] = []
        self._errors_dropped = 0
        self._attempted: dict[int, int] = {}
        self._in_statement: dict[int, bool] = {}
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._started_wall = 0.0
        self._stopped: float | None = None
        self._deadline = 0.0

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._started = time.monotonic()
        self._started_wall = time.time()
        self._deadline = self._started + self.config.duration
        for w in range(self.config.writers):
            self._attempted[w] = 0
            self._in_statement[w] = False
            t = threading.Thread(target=self._writer, args=(w,), name=f"drill-writer-{w}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, grace: float = 10.0) -> WorkloadResult:
        """Ask the writers to stop; wait up to ``grace`` s for statements in flight."""
        if self._stopped is None:
            self._stopped = min(time.monotonic(), self._deadline)
        self._stop.set()
        end = time.monotonic() + grace
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        return self.result()

    def wait(self, grace: float = 10.0) -> WorkloadResult:
        """Run to the end of the duration (or count), then stop."""
        while not self._stop.is_set() and time.monotonic() < self._deadline and any(t.is_alive() for t in self._threads):
            self._stop.wait(0.05)
        return self.stop(grace)

    def acks_since(self, mono: float) -> int:
        """How many commits were acknowledged at or after ``mono`` (for waiting on recovery)."""
        n = 0
        with self._lock:
            for a in reversed(self._acks):  # appended in time order per writer, near enough overall
                if a.mono < mono:
                    break
                n += 1
        return n

    def ack_count(self) -> int:
        with self._lock:
            return len(self._acks)

    def result(self) -> WorkloadResult:
        with self._lock:
            blocked = [w for w, t in enumerate(self._threads) if t.is_alive() and self._in_statement.get(w)]
            return WorkloadResult(
                run_id=self.run_id, writers=self.config.writers, started=self._started,
                stopped=self._stopped if self._stopped is not None else time.monotonic(),
                started_wall=self._started_wall, acks=sorted(self._acks, key=lambda a: a.mono),
                errors=list(self._errors), attempted=dict(self._attempted),
                errors_dropped=self._errors_dropped, blocked_writers=blocked,
            )

    # ------------------------------------------------------------------ writers

    def _running(self, w: int) -> bool:
        if self._stop.is_set() or time.monotonic() >= self._deadline:
            return False
        return self.config.max_writes is None or self._attempted[w] < self.config.max_writes

    def _error(self, w: int, phase: str, e: BaseException) -> None:
        with self._lock:
            if len(self._errors) < MAX_ERRORS:
                self._errors.append(ClientError(w, time.monotonic(), time.time(), phase, _first_line(e)))
            else:
                self._errors_dropped += 1

    def _writer(self, w: int) -> None:
        cfg = self.config
        conn: psycopg.Connection[Any] | None = None
        server: str | None = None
        timeline: int | None = None
        try:
            while self._running(w):
                if conn is None:
                    try:
                        conn = connect(self.dsn, cfg.connect_timeout, cfg.tcp_user_timeout_ms)
                        row = conn.execute(_IDENTITY).fetchone()
                        server, timeline = (str(row[0]), int(row[1])) if row else (None, None)
                    except psycopg.Error as e:
                        self._error(w, "connect", e)
                        conn = _close(conn)
                        self._stop.wait(cfg.backoff)
                        continue
                seq = self._attempted[w] + 1
                self._attempted[w] = seq
                client_ts = dt.datetime.now(dt.timezone.utc)
                self._in_statement[w] = True
                try:
                    conn.execute(_INSERT, (self.run_id, w, seq, client_ts))
                except psycopg.Error as e:
                    self._in_statement[w] = False
                    self._error(w, "write", e)
                    conn = _close(conn)
                    self._stop.wait(cfg.backoff)
                    continue
                self._in_statement[w] = False
                ack = Ack(w, seq, time.monotonic(), time.time(), server, timeline)
                with self._lock:
                    self._acks.append(ack)
                if cfg.interval:
                    self._stop.wait(cfg.interval)
        finally:
            _close(conn)
            if self._stopped is None and not any(
                    t.is_alive() for t in self._threads if t is not threading.current_thread()):
                self._stopped = min(time.monotonic(), self._deadline)


def _close(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone either way
            pass
    return None
