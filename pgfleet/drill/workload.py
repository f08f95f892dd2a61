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
import os
import socket
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
    #: writers whose connection the workload shut down at the end because they were still blocked
    ended_writers: list[int] = field(default_factory=list)
    #: writer -> the addresses it connected to, in order, with when (``conn.info.hostaddr``: the entry node)
    entries: dict[int, list[tuple[float, str]]] = field(default_factory=dict)

    def entry_at(self, writer: int, mono: float) -> str | None:
        """The node ``writer`` had entered through at time ``mono``."""
        seen = [addr for t, addr in self.entries.get(writer, []) if t <= mono]
        return seen[-1] if seen else None

    def acked_ids(self) -> set[tuple[int, int]]:
        return {a.id for a in self.acks}


@dataclass(frozen=True)
class WorkloadConfig:
    """How hard and how long to write. Defaults suit a drill of a minute or two.

    No connection setting lives here: writers connect with the DSN exactly as
    given (``pgfleet dsn`` prints the timeouts and keepalives a client needs);
    what a drill reports is what an application with that DSN gets.
    """

    writers: int = 4
    duration: float = 60.0
    #: per writer; None = until the duration ends
    max_writes: int | None = None
    #: pause between one writer's inserts: ~200 writes/s per writer resolves
    #: the RTO to a few ms while keeping the recorded acks small
    interval: float = 0.005
    backoff: float = 0.1


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A writer's connection: the DSN as given, nothing added. Autocommit (every insert is
    its own transaction) and no server-side prepares (PgBouncer's transaction pooling) are
    how the workload uses a connection, not how it detects a dead peer."""
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=None)


def tool_connect(dsn: str, connect_timeout: int = 3, tcp_user_timeout_ms: int = 5000) -> psycopg.Connection[Any]:
    """pgfleet's own connections (table setup, set check, split-brain probes): bounded so a
    dead peer cannot stall the drill itself. Never used for the writers that are measured."""
    return psycopg.connect(
        dsn, autocommit=True, prepare_threshold=None, connect_timeout=connect_timeout,
        keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=3,
        tcp_user_timeout=tcp_user_timeout_ms,
    )


def shutdown_socket(conn: psycopg.Connection[Any]) -> None:
    """End a connection from another thread: shut its socket down, so a writer blocked
    on a peer that never answers gets an error now instead of hanging on."""
    if conn.pgconn.status != psycopg.pq.ConnStatus.OK:  # libpq closed it already; its fd number may be reused
        return
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.close()


def prepare(dsn: str) -> None:
    """Create the drill table once, before any writer starts (concurrent
    ``CREATE TABLE IF NOT EXISTS`` can race)."""
    try:
        with tool_connect(dsn) as conn:
            conn.execute(_DDL)
    except psycopg.Error as e:
        raise PgfleetError(f"cannot prepare the drill table through the read-write endpoint: {_first_line(e)}") from None


def present_ids(dsn: str, run_id: str) -> set[tuple[int, int]]:
    """Every id of one run that the server at ``dsn`` holds (the set check's other side)."""
    with tool_connect(dsn) as conn:
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
        self._conns: dict[int, psycopg.Connection[Any] | None] = {}
        self._entries: dict[int, list[tuple[float, str]]] = {}
        self._reconnect: set[int] = set()
        self._ended: list[int] = []
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
            self._conns[w] = None
            self._entries[w] = []
            t = threading.Thread(target=self._writer, args=(w,), name=f"drill-writer-{w}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, grace: float = 5.0) -> WorkloadResult:
        """Ask the writers to stop; wait up to ``grace`` s for statements in flight, then shut the
        sockets of writers still blocked (a client waiting on a peer that never answers) and
        wait for them too: no writer outlives the run."""
        if self._stopped is None:
            self._stopped = min(time.monotonic(), self._deadline)
        self._stop.set()
        end = time.monotonic() + grace
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        blocked = self._blocked()
        for w in blocked:
            with self._lock:  # a writer drops its connection from _conns (under the lock) before closing it
                conn = self._conns.get(w)
                if conn is not None:
                    shutdown_socket(conn)
                    self._ended.append(w)
        for t in self._threads:
            t.join(10.0)
        return self.result(blocked)

    def wait(self, grace: float = 5.0) -> WorkloadResult:
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

    def writers_acked_since(self, mono: float) -> set[int]:
        """Writers with at least one commit acknowledged at or after ``mono``."""
        with self._lock:
            return {a.writer for a in self._acks if a.mono >= mono}

    def ack_count(self) -> int:
        with self._lock:
            return len(self._acks)

    def entries(self) -> dict[int, str | None]:
        """The node each writer is connected through right now (None while it has no connection)."""
        with self._lock:
            return {w: (e[-1][1] if e and self._conns.get(w) is not None else None) for w, e in self._entries.items()}

    def reconnect(self, writer: int) -> None:
        """Ask ``writer`` to close its connection and connect again (the DSN picks the node anew)."""
        with self._lock:
            self._reconnect.add(writer)

    def cancel_reconnects(self) -> None:
        """Forget reconnect requests no writer has acted on yet."""
        with self._lock:
            self._reconnect.clear()

    def _blocked(self) -> list[int]:
        return [w for w, t in enumerate(self._threads) if t.is_alive() and self._in_statement.get(w)]

    def result(self, blocked: list[int] | None = None) -> WorkloadResult:
        with self._lock:
            return WorkloadResult(
                run_id=self.run_id, writers=self.config.writers, started=self._started,
                stopped=self._stopped if self._stopped is not None else time.monotonic(),
                started_wall=self._started_wall, acks=sorted(self._acks, key=lambda a: a.mono),
                errors=list(self._errors), attempted=dict(self._attempted),
                errors_dropped=self._errors_dropped, blocked_writers=self._blocked() if blocked is None else blocked,
                ended_writers=list(self._ended), entries={w: list(e) for w, e in self._entries.items()},
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

    def _set_conn(self, w: int, conn: psycopg.Connection[Any] | None) -> None:
        with self._lock:
            self._conns[w] = conn
            if conn is not None:
                self._entries[w].append((time.monotonic(), conn.info.hostaddr))

    def _writer(self, w: int) -> None:
        cfg = self.config
        conn: psycopg.Connection[Any] | None = None
        server: str | None = None
        timeline: int | None = None
        try:
            while self._running(w):
                with self._lock:
                    again = w in self._reconnect
                    self._reconnect.discard(w)
                if again and conn is not None:
                    self._set_conn(w, None)
                    conn = _close(conn)
                if conn is None:
                    try:
                        conn = connect(self.dsn)
                        # registered before the first query, so a writer blocked in it can be ended too
                        self._set_conn(w, conn)
                        self._in_statement[w] = True
                        row = conn.execute(_IDENTITY).fetchone()
                        server, timeline = (str(row[0]), int(row[1])) if row else (None, None)
                    except psycopg.Error as e:
                        self._in_statement[w] = False
                        self._error(w, "connect", e)
                        self._set_conn(w, None)
                        conn = _close(conn)
                        self._stop.wait(cfg.backoff)
                        continue
                    self._in_statement[w] = False
                seq = self._attempted[w] + 1
                self._attempted[w] = seq
                client_ts = dt.datetime.now(dt.timezone.utc)
                self._in_statement[w] = True
                try:
                    conn.execute(_INSERT, (self.run_id, w, seq, client_ts))
                except psycopg.Error as e:
                    self._in_statement[w] = False
                    self._error(w, "write", e)
                    self._set_conn(w, None)
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
            self._set_conn(w, None)
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
