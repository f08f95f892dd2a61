"""The drill engine against a real PostgreSQL on loopback, killed mid-workload.

Each test initdb's a throwaway cluster in a temporary directory, runs
``postgres`` on 127.0.0.1 with a free port (as the ``postgres`` OS user when
run as root), SIGKILLs the postmaster by PID while writers are inserting,
restarts it, and checks what the workload and the analysis make of it. A
second pass deletes acknowledged rows behind the workload's back: the set
check must call them lost and the verdict must be failure.

Only coarse timing is asserted (an outage > 0 and within the run); the rest
follows from what happened (no ack can arrive while the server is down).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from pgfleet.drill import analysis, report, runner, workload
from pgfleet.drill.control import ClusterControl, ClusterState, DrillNotWired, Member
from pgfleet.drill.scenarios import DrillContext, PostgresCrash, Scenario


def _bindir() -> Path:
    """The newest Debian PostgreSQL server binaries (``./bootstrap`` installs them)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.fail("no PostgreSQL server under /usr/lib/postgresql: run ./bootstrap setup (it installs the 'postgresql' package)")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1, controlled by PID."""

    def __init__(self) -> None:
        self.bin = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="pgfleet-drill-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.as_postgres = os.geteuid() == 0  # initdb and postgres refuse to run as root
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + list(argv)

    def initdb(self) -> None:
        subprocess.run(self._argv([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                   "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it accepts connections. After a SIGKILL the old
        backends may still hold the shared memory for a moment: retry."""
        deadline = time.monotonic() + timeout
        while True:
            log = open(self.root / "postgres.log", "ab")
            self._proc = subprocess.Popen(self._argv([
                str(self.bin / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=50",
            ]), stdout=log, stderr=subprocess.STDOUT)
            log.close()
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    psycopg.connect(self.dsn, connect_timeout=1).close()
                    self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    return
                except (psycopg.OperationalError, FileNotFoundError, ValueError):
                    time.sleep(0.1)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"postgres did not start: {(self.root / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.2)  # exited (shared memory still in use): try again

    def kill9(self) -> None:
        """SIGKILL the postmaster (by PID), like a crash; its backends exit on their own."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=10)
        self.pid = None

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)  # fast shutdown
            except ProcessLookupError:
                pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                if self.pid is not None:
                    os.kill(self.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        self.pid = None

    def up(self) -> bool:
        try:
            psycopg.connect(self.dsn, connect_timeout=1).close()
            return True
        except psycopg.OperationalError:
            return False

    def timeline(self) -> int:
        with psycopg.connect(self.dsn, connect_timeout=2) as c:
            row = c.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def pg() -> Iterator[LocalPostgres]:
    p = LocalPostgres()
    try:
        p.initdb()
        p.start()
        yield p
    finally:
        try:
            p.stop()
        finally:
            shutil.rmtree(p.root, ignore_errors=True)


# --------------------------------------------------------------------------- the workload alone


def test_workload_survives_a_postmaster_kill_with_no_lost_writes(pg: LocalPostgres) -> None:
    workload.prepare(pg.dsn)
    # the timeouts a client uses live in its DSN: the workload adds nothing
    work = workload.Workload(pg.dsn + " connect_timeout=2", workload.WorkloadConfig(writers=4, duration=15.0, backoff=0.1))
    work.start()
    try:
        assert runner.wait_for(lambda: work.ack_count() > 50, 10, 0.05) is not None, "no writes before the fault"
        fault_at = time.monotonic()
        pg.kill9()
        killed = time.monotonic()
        time.sleep(1.5)
        restarting = time.monotonic()
        pg.start()
        # every writer reconnects and is acknowledged again after the restart
        assert runner.wait_for(lambda: {a.writer for a in work.result().acks if a.mono > restarting} == {0, 1, 2, 3},
                               20, 0.05) is not None, "not every writer resumed"
    finally:
        result = work.stop()

    assert result.errors, "the writers saw no error while the server was down"
    assert {e.phase for e in result.errors} >= {"connect"}  # they tried to reconnect while it was down
    assert all(fault_at <= e.mono for e in result.errors if e.phase == "write")
    # Backends outlive a SIGKILLed postmaster for a moment and may still commit
    # the INSERT in flight: such late acks are real and must survive (set check).
    late = [a for a in result.acks if killed < a.mono < restarting]

    o = analysis.outage([a.mono for a in result.acks], fault_at, result.stopped)
    assert o.resumed
    assert o.gap.start < restarting <= o.gap.end  # the longest outage is the one where the server was down
    assert 0 < o.rto <= result.stopped - result.started
    assert o.baseline_gap is not None and o.baseline_gap < o.rto

    sc = analysis.set_check(result.acked_ids(), workload.present_ids(pg.dsn, work.run_id), result.attempted)
    assert sc.acknowledged == len(result.acks) > 50  # the test waited for 50 before the fault
    assert sc.lost == [] and sc.unexpected == []
    assert {a.id for a in late} <= result.acked_ids()
    assert {(a.server, a.timeline) for a in result.acks} == {(f"127.0.0.1:{pg.port}", 1)}


def test_workload_is_bounded_by_count_and_stops_by_itself(pg: LocalPostgres) -> None:
    workload.prepare(pg.dsn)
    work = workload.Workload(pg.dsn, workload.WorkloadConfig(writers=2, duration=30.0, max_writes=25, interval=0.0))
    work.start()
    result = work.wait()
    assert result.attempted == {0: 25, 1: 25}
    assert len(result.acks) == 50 and not result.errors and not result.blocked_writers
    assert result.stopped - result.started < 30.0


class FreezingProxy:
    """A TCP proxy on loopback in front of the local PostgreSQL that can go silent: it keeps every
    connection open but stops forwarding, like an entry node whose network vanished. Clients
    blocked on it never get an answer or an error by themselves."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = threading.Event()
        self.closing = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self.closing.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
                if not data:
                    return
                while self.frozen.is_set() and not self.closing.is_set():
                    time.sleep(0.05)  # hold what arrived: nothing more goes through
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.closing.set()
        self.server.close()
        for sock in self.sockets:
            sock.close()


def test_writers_blocked_on_a_silent_peer_are_ended_by_the_workload(pg: LocalPostgres) -> None:
    workload.prepare(pg.dsn)
    proxy = FreezingProxy(pg.port)
    try:
        # no dead-peer keywords in this DSN: a write through the silent proxy blocks indefinitely
        dsn = f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres connect_timeout=2"
        work = workload.Workload(dsn, workload.WorkloadConfig(writers=2, duration=60.0))
        work.start()
        assert runner.wait_for(lambda: work.ack_count() > 20, 10, 0.05) is not None
        assert set(work.entries().values()) == {"127.0.0.1"}
        proxy.frozen.set()
        frozen_at = time.monotonic()
        time.sleep(2.0)
        assert work.writers_acked_since(frozen_at + 0.5) == set()  # nothing gets through
        started_stop = time.monotonic()
        result = work.stop(grace=1.0)
        assert time.monotonic() - started_stop < 15, "stop() must not wait for the hung writers by themselves"
        assert sorted(result.blocked_writers) == [0, 1] and sorted(result.ended_writers) == [0, 1]
        assert not any(t.is_alive() for t in work._threads), "a writer outlived the run"
    finally:
        proxy.close()


# --------------------------------------------------------------------------- the split-brain probe


def test_probe_tells_accepting_from_refusing_servers(pg: LocalPostgres) -> None:
    workload.prepare(pg.dsn)
    assert runner.probe_writes(pg.dsn, "probe")[0] == runner.PROBE_ACCEPTED  # so the check can fail
    read_only = pg.dsn + " options='-c default_transaction_read_only=on'"
    assert runner.probe_writes(read_only, "probe")[0] == runner.PROBE_REFUSED
    assert runner.probe_writes(f"host=127.0.0.1 port={_free_port()} user=postgres", "probe")[0] == runner.PROBE_UNREACHABLE


# --------------------------------------------------------------------------- the whole drill, one local member


class LocalControl(ClusterControl):
    """One local PostgreSQL as a one-member "cluster". Killing the postmaster
    restarts it a second later, as Patroni would; everything that needs a real
    cluster says so."""

    def __init__(self, pg: LocalPostgres):
        self.pg = pg
        self.stack = "local"
        self.expected_members = 1
        self.synchronous = False
        self.restarts: list[threading.Thread] = []

    def state(self) -> ClusterState:
        up = self.pg.up()
        return ClusterState((Member("local", "leader", "running" if up else "stopped", "127.0.0.1", self.pg.port,
                                    self.pg.timeline() if up else None, None),))

    def rw_dsn(self) -> str:
        return self.pg.dsn

    def direct_dsn(self, member: str) -> str:
        return self.pg.dsn

    def kill_postgres(self, member: str) -> None:
        self.pg.kill9()
        t = threading.Thread(target=lambda: (time.sleep(1.0), self.pg.start()))
        self.restarts.append(t)
        t.start()

    def _no(self, *_: object) -> None:
        raise DrillNotWired("a single local PostgreSQL has no second member")

    run = switchover = power_off = power_on = partition = heal = sql_isolated = _no  # type: ignore[assignment]


FAST = runner.DrillOptions(writers=4, duration=40.0, warmup=1.0, after=1.0, new_leader_timeout=20.0,
                           healthy_timeout=20.0, poll=0.2, hold=4.0)


def test_postgres_crash_drill_end_to_end_passes(pg: LocalPostgres) -> None:
    control = LocalControl(pg)
    r = runner.run_drill(control, PostgresCrash(), FAST)
    for t in control.restarts:
        t.join(30)
    assert r.ok, r.failures()
    assert (r.old_leader, r.new_leader) == ("local", "local")
    assert r.timeline_before == r.timeline_after == 1  # restarted in place: no promotion
    assert r.writes_resumed and r.rto_s is not None and 0 < r.rto_s <= r.duration_s
    assert r.client_errors > 0 and r.lost == [] and r.acknowledged > 0
    assert r.rejoin_s is not None and r.time_to_new_leader_s is None
    assert report.exit_code([r]) == 0


class DeleteAckedRows(Scenario):
    """A deliberately broken "cluster": acknowledged rows vanish behind the workload's back."""

    name = "delete-acked"
    summary = "delete acknowledged rows (the check must catch it)"
    leader_change = "must-not"
    probe = "none"

    def __init__(self) -> None:
        self.deleted: set[str] = set()

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        with psycopg.connect(control.direct_dsn(ctx.target), autocommit=True) as c:
            rows = c.execute(f"DELETE FROM {workload.TABLE} WHERE run_id = %s AND writer = 0 AND seq <= 10 RETURNING seq",
                             (ctx.run_id,)).fetchall()
        self.deleted = {f"0:{s}" for (s,) in rows}


def test_deleted_acknowledged_rows_are_reported_lost_and_fail_the_drill(pg: LocalPostgres) -> None:
    scenario = DeleteAckedRows()
    r = runner.run_drill(LocalControl(pg), scenario, FAST)
    assert len(scenario.deleted) == 10
    assert set(r.lost) == scenario.deleted
    assert not r.ok and "10 acknowledged write(s) lost" in r.failures()
    assert report.exit_code([r]) == 1
    assert report.to_dict("local", [r])["ok"] is False
