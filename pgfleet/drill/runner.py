"""One drill end to end: healthy → write → fault → measure → recover → check.

The order matters: the workload is running before the fault (so the baseline
is known), the old primary is probed while it could still do harm, and the
set check reads the ids from the leader at the end, directly (no pooler, no
HAProxy), so a routing mistake cannot hide a lost write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg

from pgfleet.drill import workload as wl
from pgfleet.drill.analysis import DrillResult, apply_workload, timeline_problems
from pgfleet.drill.control import ClusterControl, ClusterState, DrillNotWired
from pgfleet.drill.scenarios import DrillContext, Scenario
from pgfleet.errors import PgfleetError

Log = Callable[[str], None]


@dataclass(frozen=True)
class DrillOptions:
    writers: int = 4
    #: upper bound on one scenario's workload; the runner stops it earlier
    #: once the cluster is healthy again and ``after`` seconds have passed
    duration: float = 180.0
    #: writes before the fault: the baseline
    warmup: float = 5.0
    #: writes after full health returned
    after: float = 3.0
    new_leader_timeout: float = 120.0
    healthy_timeout: float = 180.0
    poll: float = 0.5
    interval: float = 0.005
    #: how long the fault is held before it is undone; a client with no commit by then is down for all of it
    #: (the CLI and the benchmark never go below :data:`MIN_HOLD`: recovery is not "the first writer committed")
    hold: float = 30.0
    #: how long to look for a writer that entered through the target (scenarios that need one)
    entry_timeout: float = 30.0


#: The shortest hold a drill reported to users may use (s).
MIN_HOLD = 30.0


def wait_for(cond: Callable[[], bool], timeout: float, poll: float) -> float | None:
    """Seconds until ``cond()`` held, or None after ``timeout``. Errors count as "not yet"."""
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except PgfleetError:
            pass
        if time.monotonic() - t0 >= timeout:
            return None
        time.sleep(poll)


# --------------------------------------------------------------------------- split-brain probe

PROBE_STANDBY, PROBE_REFUSED, PROBE_BLOCKED, PROBE_ACCEPTED, PROBE_UNREACHABLE = (
    "standby", "refused", "blocked", "accepted", "unreachable")


def probe_writes(dsn: str, run_id: str, timeout: float = 5.0) -> tuple[str, str]:
    """Does this server accept a write right now? ``accepted`` on a member that
    is not the leader is split brain.

    A commit that waits for a synchronous standby that is gone is ``blocked``:
    no normal client would get an ack. The statement timeout that ends the wait
    makes PostgreSQL commit locally with a WARNING; that is recognised and not
    counted as accepted (pg_rewind discards it when the member rejoins).
    """
    notices: list[str] = []
    try:
        conn = wl.tool_connect(dsn)
    except psycopg.Error as e:
        return PROBE_UNREACHABLE, str(e).strip().splitlines()[0]
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    try:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
            return PROBE_STANDBY, "pg_is_in_recovery() is true"
        conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
        conn.execute(f"INSERT INTO {wl.TABLE} (run_id, writer, seq, client_ts) VALUES (%s, -1, %s, now())",
                     (run_id + "-probe", time.time_ns()))
    except psycopg.errors.ReadOnlySqlTransaction as e:
        return PROBE_REFUSED, str(e).strip().splitlines()[0]
    except psycopg.errors.QueryCanceled:
        return PROBE_BLOCKED, f"the write did not commit within {timeout:.0f}s"
    except psycopg.Error as e:
        return PROBE_REFUSED, str(e).strip().splitlines()[0]
    finally:
        conn.close()
    if any("synchronous replication" in n for n in notices):
        return PROBE_BLOCKED, "the commit waited for a synchronous standby until cancelled"
    return PROBE_ACCEPTED, "a write was acknowledged"


def probe_isolated(control: ClusterControl, member: str, run_id: str) -> tuple[str, str]:
    """The probe through the provider's own channel, for a partitioned member.

    A server that refuses the connection (Patroni is demoting it: "shutting
    down", "starting up") cannot accept a write either: ``unreachable``.
    """
    try:
        out = control.sql_isolated(member, "SELECT pg_is_in_recovery()").strip()
    except PgfleetError as e:
        return PROBE_UNREACHABLE, _last_line(str(e))
    if out == "t":
        return PROBE_STANDBY, "pg_is_in_recovery() is true"
    try:
        control.sql_isolated(member, f"SET statement_timeout = 5000; INSERT INTO {wl.TABLE} "
                                     f"(run_id, writer, seq, client_ts) VALUES ('{run_id}-probe', -1, {time.time_ns()}, now())")
    except PgfleetError as e:
        text = str(e)
        return (PROBE_BLOCKED if "statement timeout" in text else PROBE_REFUSED), _last_line(text)
    return PROBE_ACCEPTED, "a write was acknowledged"


def _last_line(text: str) -> str:
    """psql puts the server's reason last (``FATAL: …``)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text


def _probe(r: DrillResult, control: ClusterControl, member: str, run_id: str, isolated: bool) -> None:
    outcome, detail = probe_isolated(control, member, run_id) if isolated else probe_writes(control.direct_dsn(member), run_id)
    r.notes.append(f"probe of old primary {member}: {outcome} ({detail})")
    if outcome == PROBE_ACCEPTED:
        r.split_brain.append(f"old primary {member} accepted a write while {r.new_leader or 'another member'} led")


# --------------------------------------------------------------------------- the drill


def run_drill(control: ClusterControl, scenario: Scenario, opts: DrillOptions = DrillOptions(),
              log: Log = lambda _: None) -> DrillResult:
    r = DrillResult(scenario=scenario.name, stack=control.stack, leader_change=scenario.leader_change, writers=opts.writers)
    log(f"{scenario.name}: waiting for a healthy cluster")
    if wait_for(lambda: not control.health(), opts.healthy_timeout, opts.poll) is None:
        r.health = control.health()
        r.aborted = UNHEALTHY_BEFORE
        return r
    before = control.state()
    assert before.leader is not None  # healthy means exactly one leader
    r.old_leader, r.timeline_before = before.leader.name, before.timeline

    try:
        dsn = control.rw_dsn()
        wl.prepare(dsn)
    except PgfleetError as e:  # includes DrillNotWired: say which piece is missing, per scenario
        r.aborted = str(e)
        return r
    work = wl.Workload(dsn, wl.WorkloadConfig(writers=opts.writers, duration=opts.duration, interval=opts.interval))
    present: set[tuple[int, int]] = set()
    fault_at = None
    hold_end: float | None = None
    target: str | None = None
    ctx: DrillContext | None = None
    work.start()
    try:
        if wait_for(lambda: work.ack_count() > 0, opts.warmup + 10, 0.05) is None:
            raise PgfleetError("no write was acknowledged through the read-write endpoint before the fault")
        time.sleep(opts.warmup)
        target = scenario.target(before, control)
        if scenario.needs_entry:
            _ensure_entry(work, control.entry_address(target), target, opts, log)
        # from here on a failure undoes the fault (nothing to undo before it is injected)
        ctx = DrillContext(before=before, leader=before.leader.name, target=target, run_id=work.run_id)
        log(f"{scenario.name}: fault on {ctx.target}")
        fault_at = time.monotonic()
        r.fault_wall = time.time()
        scenario.inject(control, ctx)

        if scenario.leader_change != "must-not":
            r.time_to_new_leader_s = _wait_new_leader(control, scenario, ctx, work, fault_at, opts)
        if scenario.probe in ("after-fault", "isolated") and r.time_to_new_leader_s is not None:
            r.new_leader = _leader_name(control)
            _probe(r, control, ctx.leader, work.run_id, isolated=scenario.probe == "isolated")
        # hold the fault: recovery is every client committing again, or the hold running out
        hold_end = fault_at + opts.hold
        every = set(range(opts.writers))
        if wait_for(lambda: work.writers_acked_since(fault_at) >= every, max(0.0, hold_end - time.monotonic()), 0.05) is None:
            log(f"{scenario.name}: writer(s) {sorted(every - work.writers_acked_since(fault_at))} did not commit again "
                f"within the {opts.hold:.0f} s hold")
        time.sleep(max(0.0, hold_end - time.monotonic()))

        log(f"{scenario.name}: recovering {ctx.target}")
        recover, ctx = ctx, None
        scenario.recover(control, recover)
        recovered = time.monotonic()
        healthy = wait_for(lambda: not control.health(), opts.healthy_timeout, opts.poll)
        r.rejoin_s = None if healthy is None else time.monotonic() - recovered
        after_state = control.state()
        r.new_leader = after_state.leader.name if after_state.leader else None
        if scenario.probe == "after-recover" and r.new_leader != r.old_leader and r.old_leader:
            _probe(r, control, r.old_leader, work.run_id, isolated=False)
        time.sleep(opts.after)
    except DrillNotWired as e:
        r.aborted = str(e)
    except PgfleetError as e:
        r.aborted = f"{type(e).__name__}: {e}"
    finally:
        result = work.stop()
        if ctx is not None:  # a step after the fault failed: still undo the fault, so the next drill finds the member
            log(f"{scenario.name}: recovering {ctx.target} after the abort")
            try:
                scenario.recover(control, ctx)
                wait_for(lambda: not control.health(), opts.healthy_timeout, opts.poll)
            except PgfleetError as e:
                r.notes.append(f"recovering {ctx.target} after the abort failed: {e}")

    final = _final_state(control, r)
    checked = False
    if final is not None and final.leader is not None:
        r.new_leader, r.timeline_after = final.leader.name, final.timeline
        try:
            present = _read_ids(control, final.leader.name, work.run_id, opts)
            checked = True
        except psycopg.Error as e:
            r.aborted = r.aborted or f"set check impossible: cannot read the leader {final.leader.name}: {e}"
    if fault_at is None:
        return r
    if not checked:  # no verdict on lost writes without the leader's ids: the drill fails as aborted instead
        r.aborted = r.aborted or "set check impossible: the cluster has no leader to read the acknowledged ids from"
        present = {a.id for a in result.acks}
    at_fault = {w: result.entry_at(w, fault_at) for w in result.attempted}
    apply_workload(r, result.acks, result.errors, result.attempted, present, result.started, result.stopped, fault_at,
                   hold_end=hold_end, entries=at_fault, ended=result.ended_writers)
    if scenario.needs_entry and target:
        through = [w for w, e in at_fault.items() if e == control.entry_address(target)]
        r.notes.append(f"writer(s) {through} entered through {target} when the fault hit")
    r.blocked_writers = len(result.blocked_writers)
    r.timeline = timeline_problems(scenario.leader_change, r.old_leader, r.new_leader, r.timeline_before, r.timeline_after)
    if result.errors_dropped:
        r.notes.append(f"{result.errors_dropped} client errors beyond the first {wl.MAX_ERRORS} not recorded")
    return r


def _ensure_entry(work: wl.Workload, address: str, target: str, opts: DrillOptions, log: Log) -> None:
    """Make sure at least one writer entered through ``target`` (the node the fault will hit).

    The DSN spreads clients at random (``load_balance_hosts``); writers that
    entered elsewhere are asked to reconnect, one at a time, until one lands on
    the target: each reconnect goes through the DSN exactly as a client's would.
    """
    deadline = time.monotonic() + opts.entry_timeout
    turn = 0
    while address not in work.entries().values():
        if time.monotonic() > deadline:
            raise PgfleetError(f"no writer entered through {target} ({address}) within {opts.entry_timeout:.0f} s of "
                               f"reconnecting: the DSN does not spread clients over the nodes (entries: {work.entries()})")
        work.reconnect(turn % opts.writers)
        turn += 1
        time.sleep(0.3)
    work.cancel_reconnects()  # none may fire after the fault: a late one would count a needless reconnect in a gap
    log(f"writers entered through {target}: {sorted(w for w, a in work.entries().items() if a == address)}")


def _read_ids(control: ClusterControl, leader: str, run_id: str, opts: DrillOptions) -> set[tuple[int, int]]:
    """The run's ids on the leader; retried for a while (a member may still be restarting)."""
    deadline = time.monotonic() + opts.healthy_timeout / 3
    while True:
        try:
            return wl.present_ids(control.direct_dsn(leader), run_id)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(opts.poll * 2)


def _leader_name(control: ClusterControl) -> str | None:
    try:
        leader = control.state().leader
    except PgfleetError:
        return None
    return leader.name if leader else None


def _wait_new_leader(control: ClusterControl, scenario: Scenario, ctx: DrillContext, work: wl.Workload,
                     fault_at: float, opts: DrillOptions) -> float | None:
    """Fault → a leader other than the old one is visible in Patroni. For a
    fault that may be healed in place, also stop once writes resume on the old one."""

    def done() -> bool:
        leader = _leader_name(control)
        if leader is not None and leader != ctx.leader:
            return True
        return scenario.leader_change == "may" and leader == ctx.leader and work.acks_since(fault_at + opts.poll) > 0

    waited = wait_for(done, opts.new_leader_timeout, opts.poll)
    if waited is None or _leader_name(control) == ctx.leader:
        return None
    return time.monotonic() - fault_at


def _final_state(control: ClusterControl, r: DrillResult) -> ClusterState | None:
    try:
        state = control.state()
    except PgfleetError as e:
        r.health = [str(e)]
        return None
    r.health = control.health()
    return state


def run_all(control: ClusterControl, scenarios: Iterable[Scenario], opts: DrillOptions = DrillOptions(),
            log: Log = lambda _: None) -> list[DrillResult]:
    """Each scenario in turn; each waits for full health before its fault, so
    the cluster is back to all members between them. Once the cluster did not
    get healthy, the rest are reported as not run instead of each waiting again."""
    results: list[DrillResult] = []
    unhealthy: str | None = None
    for s in scenarios:
        if unhealthy:
            r = DrillResult(scenario=s.name, stack=control.stack, leader_change=s.leader_change, writers=opts.writers)
            r.aborted = f"not run: {unhealthy} found the cluster unhealthy"
            results.append(r)
            continue
        results.append(run_drill(control, s, opts, log))
        if results[-1].aborted == UNHEALTHY_BEFORE:
            unhealthy = s.name
    return results


UNHEALTHY_BEFORE = "the cluster was not healthy before the drill"
