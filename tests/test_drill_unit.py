"""Drill verdicts from constructed timelines: RTO, lost writes, split brain, timelines, JSON.

No database and no cluster: every rule that decides pass/fail is a pure
function, and each test here would fail if that rule were wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rich.console import Console

from pgfleet.drill import analysis, report, scenarios
from pgfleet.drill.control import ClusterState, health_problems, parse_patroni_cluster
from pgfleet.drill.workload import Ack, ClientError
from pgfleet.errors import PgfleetError


def acks_every(step: float, start: float, end: float, writer: int = 0, server: str = "n1", timeline: int = 1,
               first_seq: int = 1) -> list[Ack]:
    out, t, seq = [], start, first_seq
    while t < end - 1e-9:
        out.append(Ack(writer, seq, t, 1_700_000_000 + t, server, timeline))
        t += step
        seq += 1
    return out


# --------------------------------------------------------------------------- RTO


def test_longest_gap_counts_window_edges() -> None:
    assert analysis.longest_gap([], 2.0, 5.0) == analysis.Gap(2.0, 5.0)
    assert analysis.longest_gap([2.5, 3.0], 2.0, 10.0) == analysis.Gap(3.0, 10.0)
    assert analysis.longest_gap([1.0, 4.0, 4.5, 9.9], 0.0, 10.0) == analysis.Gap(4.5, 9.9)
    assert analysis.longest_gap([1.0, 4.0, 4.5, 6.0], 0.0, 6.5) == analysis.Gap(1.0, 4.0)
    with pytest.raises(ValueError):
        analysis.longest_gap([], 5.0, 1.0)


def test_rto_is_the_outage_after_the_fault_not_before() -> None:
    # a 2 s hiccup before the fault must not count; the 7.3 s outage after it must
    times = [a.mono for a in acks_every(0.1, 0.0, 3.0) + acks_every(0.1, 5.0, 10.0) + acks_every(0.1, 17.3, 20.0)]
    o = analysis.outage(times, fault_at=10.0, end_at=20.0)
    assert o.resumed
    assert o.rto == pytest.approx(7.3, abs=0.11)
    assert o.gap.start == pytest.approx(10.0, abs=0.11) and o.gap.end == pytest.approx(17.3, abs=1e-6)
    assert o.first_ack_after == pytest.approx(7.3, abs=1e-6)
    assert o.baseline_gap == pytest.approx(2.1, abs=0.11)


def test_rto_takes_a_later_second_outage_when_longer() -> None:
    # writes resume after 1 s, then stop again for 4 s (e.g. while the old primary rejoins)
    times = [a.mono for a in acks_every(0.1, 0.0, 5.0) + acks_every(0.1, 6.0, 8.0) + acks_every(0.1, 12.0, 15.0)]
    o = analysis.outage(times, fault_at=5.0, end_at=15.0)
    assert o.first_ack_after == pytest.approx(1.0, abs=1e-6)
    assert o.rto == pytest.approx(4.1, abs=0.11)


def test_writes_never_resumed_fails_the_drill() -> None:
    acks = acks_every(0.1, 0.0, 5.0)
    o = analysis.outage([a.mono for a in acks], fault_at=5.0, end_at=30.0)
    assert not o.resumed and o.first_ack_after is None
    assert o.rto == pytest.approx(25.0)
    r = analysis.DrillResult("node-loss", "lab", "must", old_leader="n1", new_leader="n2", timeline_before=1, timeline_after=2)
    analysis.apply_workload(r, acks, [], {0: len(acks)}, {a.id for a in acks}, 0.0, 30.0, 5.0)
    assert any("never resumed" in f for f in r.failures())
    assert not r.ok


# --------------------------------------------------------------------------- set check


def test_set_check_finds_lost_acknowledged_writes() -> None:
    acked = {(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)}
    present = {(0, 1), (0, 3), (1, 1), (1, 2), (1, 3)}  # 0:2 lost; 1:3 attempted, never acked: fine
    sc = analysis.set_check(acked, present, attempted={0: 3, 1: 3})
    assert sc.lost == ["0:2"]
    assert sc.unacked_present == 1
    assert sc.unexpected == []
    assert (sc.acknowledged, sc.present) == (5, 5)


def test_set_check_flags_rows_never_attempted() -> None:
    sc = analysis.set_check({(0, 1)}, {(0, 1), (0, 9), (7, 1)}, attempted={0: 2})
    assert sc.lost == []
    assert sc.unexpected == ["0:9", "7:1"]
    assert sc.unacked_present == 0


def test_no_loss_when_everything_acked_is_present() -> None:
    acks = acks_every(0.01, 0.0, 2.0, writer=0) + acks_every(0.01, 0.0, 2.0, writer=1)
    sc = analysis.set_check((a.id for a in acks), {a.id for a in acks}, {0: 200, 1: 200})
    assert sc.lost == [] and sc.acknowledged == 400


# --------------------------------------------------------------------------- split brain and timelines


def test_clean_failover_is_not_split_brain() -> None:
    acks = acks_every(0.1, 0.0, 5.0, server="n1", timeline=3) + acks_every(0.1, 12.0, 15.0, server="n2", timeline=4, first_seq=100)
    assert analysis.concurrent_writers(acks) == []


def test_two_primaries_acknowledging_at_once_is_split_brain() -> None:
    old = acks_every(0.1, 0.0, 10.0, writer=0, server="n1", timeline=3)  # old primary keeps acking until 10 s
    new = acks_every(0.1, 6.0, 12.0, writer=1, server="n2", timeline=4)  # new one acks from 6 s
    evidence = analysis.concurrent_writers(old + new)
    assert len(evidence) == 1 and "n1" in evidence[0] and "n2" in evidence[0]


def test_a_late_ack_within_tolerance_is_not_split_brain() -> None:
    old = acks_every(0.1, 0.0, 5.0, server="n1", timeline=3)
    new = acks_every(0.1, 4.85, 8.0, writer=1, server="n2", timeline=4)  # overlaps 0.05 s
    assert analysis.concurrent_writers(old + new) == []
    assert analysis.concurrent_writers(old + new, tolerance=0.0) != []


@pytest.mark.parametrize(("change", "old", "new", "tl0", "tl1", "ok"), [
    ("must", "n1", "n2", 3, 4, True),
    ("must", "n1", "n2", 3, 5, False),  # two promotions
    ("must", "n1", "n1", 3, 3, False),  # nothing happened
    ("must-not", "n1", "n1", 3, 3, True),
    ("must-not", "n1", "n2", 3, 4, False),
    ("may", "n1", "n1", 3, 3, True),  # restarted in place
    ("may", "n1", "n1", 3, 4, False),  # same leader but a new timeline
    ("may", "n1", "n2", 3, 4, True),
    ("may", "n1", "n2", 3, None, False),
])
def test_timeline_increments_exactly_once_per_promotion(change, old, new, tl0, tl1, ok) -> None:
    assert (analysis.timeline_problems(change, old, new, tl0, tl1) == []) is ok


# --------------------------------------------------------------------------- result, JSON, exit code


def _result(lost: int = 0) -> analysis.DrillResult:
    # both writers on n1 until the fault at 5.0, both on n2 from 9.0 (writer 1 from 9.5)
    acks = (acks_every(0.1, 0.0, 5.0, server="n1", timeline=1) + acks_every(0.1, 9.0, 12.0, server="n2", timeline=2, first_seq=51)
            + acks_every(0.1, 0.0, 5.0, writer=1, server="n1", timeline=1)
            + acks_every(0.1, 9.5, 12.0, writer=1, server="n2", timeline=2, first_seq=51))
    present = {a.id for a in acks[lost:]}
    errors = [ClientError(0, 5.5, 1_700_000_005.5, "write", "server closed the connection unexpectedly"),
              ClientError(1, 6.0, 1_700_000_006.0, "connect", "connection refused")]
    r = analysis.DrillResult("node-loss", "lab", "must", old_leader="n1", new_leader="n2", timeline_before=1, timeline_after=2,
                             writers=2, time_to_new_leader_s=3.2, rejoin_s=14.0)
    analysis.apply_workload(r, acks, errors, {0: 80, 1: 75}, present, started=0.0, stopped=12.0, fault_at=5.0,
                            hold_end=11.0, entries={0: "198.18.0.11", 1: "198.18.0.12"})
    return r


def test_result_passes_without_loss_and_carries_the_figures() -> None:
    r = _result()
    assert r.ok, r.failures()
    assert r.rto_s == pytest.approx(4.5, abs=0.01)  # writer 1's gap: any one client, not all of them together
    assert r.rto_all_writers_s == pytest.approx(4.0, abs=0.01)
    assert r.client_gaps_s == {"0": pytest.approx(4.0, abs=0.01), "1": pytest.approx(4.5, abs=0.01)}
    assert r.writes_resumed and r.writers_down == [] and r.hold_s == pytest.approx(6.0)
    assert r.time_to_routing_s == pytest.approx(4.0, abs=1e-6)  # first ack on timeline 2
    assert r.client_errors == 2 and "connect: connection refused" in r.error_kinds
    assert report.exit_code([r]) == 0


def test_lost_writes_fail_the_result_and_the_exit_code() -> None:
    r = _result(lost=3)
    assert sorted(r.lost) == ["0:1", "0:2", "0:3"]
    assert not r.ok and "3 acknowledged write(s) lost" in r.failures()
    assert report.exit_code([_result(), r]) == 1
    assert report.exit_code([]) == 1  # nothing ran is not a pass


def test_a_client_that_hangs_is_down_for_the_whole_hold_and_fails_the_drill() -> None:
    """Writer 1 entered through the node that vanished and never commits again: the others
    resuming within 0.5 s must not hide it, and its gap runs to the end of the run."""
    acks = (acks_every(0.1, 0.0, 20.0) + acks_every(0.1, 0.0, 5.0, writer=1, first_seq=500)
            + acks_every(0.1, 0.0, 5.0, writer=2, first_seq=900) + acks_every(0.1, 5.5, 20.0, writer=2, first_seq=951))
    r = analysis.DrillResult("entry-partition", "lab", "must-not", old_leader="n1", new_leader="n1", writers=3)
    analysis.apply_workload(r, acks, [], {0: 200, 1: 549, 2: 1096}, {a.id for a in acks}, started=0.0, stopped=20.0,
                            fault_at=5.0, hold_end=15.0, entries={0: "a", 1: "b", 2: "a"}, ended=[1])
    assert r.writers_down == [1] and r.writers_ended == [1] and not r.writes_resumed
    assert r.rto_s == pytest.approx(15.0) and r.rto_all_writers_s < 0.2
    assert r.client_gaps_s["2"] == pytest.approx(0.5, abs=0.01)
    assert not r.ok and any("writer(s) 1 (entered through b) never committed again during the 10 s hold" in f
                            for f in r.failures()), r.failures()
    # a writer that commits only after the hold (the fault undone) is still down for the hold
    late = acks + acks_every(0.1, 16.0, 20.0, writer=1, first_seq=1000)
    r2 = analysis.DrillResult("entry-partition", "lab", "must-not", old_leader="n1", new_leader="n1", writers=3)
    analysis.apply_workload(r2, late, [], {0: 200, 1: 1040, 2: 1096}, {a.id for a in late}, started=0.0, stopped=20.0,
                            fault_at=5.0, hold_end=15.0)
    assert r2.writers_down == [1] and r2.client_gaps_s["1"] == pytest.approx(11.0, abs=0.01) and not r2.ok
    # a commit in flight when the fault hit, acknowledged a moment later, is not recovery: the hang after it is
    inflight = acks + [Ack(1, 550, 5.01, 1_700_000_005.01, "n1", 1)] + acks_every(0.1, 16.0, 20.0, writer=1, first_seq=1000)
    r3 = analysis.DrillResult("entry-partition", "lab", "must-not", old_leader="n1", new_leader="n1", writers=3)
    analysis.apply_workload(r3, inflight, [], {0: 200, 1: 1040, 2: 1096}, {a.id for a in inflight}, started=0.0,
                            stopped=20.0, fault_at=5.0, hold_end=15.0)
    assert r3.writers_down == [1] and r3.client_gaps_s["1"] == pytest.approx(10.99, abs=0.01) and not r3.ok


def test_json_shape_is_stable_and_serialisable() -> None:
    doc = json.loads(report.to_json("lab", [_result(), _result(lost=1)]))
    assert doc["version"] == report.JSON_VERSION and doc["stack"] == "lab" and doc["ok"] is False
    d = doc["drills"][1]
    for key in ("scenario", "old_leader", "new_leader", "rto_s", "acknowledged", "lost", "lost_count", "client_errors",
                "time_to_new_leader_s", "time_to_routing_s", "rejoin_s", "split_brain", "ok", "failures"):
        assert key in d, key
    assert d["lost_count"] == 1 and d["lost"] == ["0:1"] and d["ok"] is False
    assert doc["drills"][0]["ok"] is True


def test_table_names_each_scenario_and_verdict() -> None:
    console = Console(record=True, width=200)
    console.print(report.table([_result(), _result(lost=2)]))
    text = console.export_text()
    assert "node-loss" in text and "n1 → n2" in text and "pass" in text and "FAIL" in text


# --------------------------------------------------------------------------- Patroni state and scenarios

CLUSTER = {
    "scope": "main",
    "members": [
        {"name": "lab-main-1", "role": "leader", "state": "running", "host": "198.18.0.11", "port": 5432, "timeline": 4},
        {"name": "lab-main-2", "role": "sync_standby", "state": "streaming", "host": "198.18.0.12", "port": 5432, "timeline": 4, "lag": 0},
        {"name": "lab-main-3", "role": "replica", "state": "streaming", "host": "198.18.0.13", "port": 5432, "timeline": 4, "lag": 120},
    ],
}


def _with(**changes: dict) -> ClusterState:
    doc = json.loads(json.dumps(CLUSTER))
    for i, m in enumerate(doc["members"]):
        m.update(changes.get(f"m{i + 1}", {}))
    return parse_patroni_cluster(doc)


def test_patroni_cluster_document_parses() -> None:
    s = parse_patroni_cluster(CLUSTER)
    assert s.leader is not None and s.leader.name == "lab-main-1" and s.timeline == 4
    assert [m.name for m in s.sync_standbys] == ["lab-main-2"]
    assert s.member("lab-main-3").lag == 120  # type: ignore[union-attr]


def test_health_needs_one_leader_streaming_replicas_and_a_sync_standby() -> None:
    assert health_problems(parse_patroni_cluster(CLUSTER), 3, synchronous=True) == []
    assert any("not streaming" in p for p in health_problems(_with(m3={"state": "stopped"}), 3, True))
    assert any("2 leaders" in p for p in health_problems(_with(m2={"role": "leader", "state": "running"}), 3, True))
    assert any("no synchronous standby" in p for p in health_problems(_with(m2={"role": "replica"}), 3, True))
    assert health_problems(_with(m2={"role": "replica"}), 3, False) == []
    assert any("lag unknown" in p for p in health_problems(_with(m3={"lag": "unknown"}), 3, True))
    assert any("timeline 3" in p for p in health_problems(_with(m3={"timeline": 3}), 3, True))
    assert any("2 members, expected 3" in p for p in health_problems(
        ClusterState(parse_patroni_cluster(CLUSTER).members[:2]), 3, True))


class _Etcd:
    def __init__(self, members: list[str]):
        self._m = members

    def etcd_members(self) -> list[str]:
        return self._m


def test_scenarios_table_and_targets() -> None:
    names = [s.name for s in scenarios.resolve("all")]
    assert names == ["switchover", "postgres-crash", "patroni-crash", "node-loss", "primary-partition", "replica-loss",
                     "replica-partition", "entry-loss", "entry-partition", "etcd-member-loss"]
    with pytest.raises(PgfleetError, match="unknown scenario 'reboot'"):
        scenarios.resolve("reboot")
    s = parse_patroni_cluster(CLUSTER)
    assert scenarios.NodeLoss().target(s, _Etcd([])) == "lab-main-1"  # type: ignore[arg-type]
    assert scenarios.ReplicaLoss().target(s, _Etcd([])) == "lab-main-2"  # type: ignore[arg-type]
    assert scenarios.EtcdMemberLoss().target(s, _Etcd(["lab-main-1", "lab-main-2"])) == "lab-main-1"  # type: ignore[arg-type]
    assert scenarios.EtcdMemberLoss().target(s, _Etcd(["lab-main-3"])) == "lab-main-3"  # type: ignore[arg-type]
    # non-primary faults: the synchronous standby, and the asynchronous replica clients entered through
    assert scenarios.ReplicaPartition().target(s, _Etcd([])) == "lab-main-2"  # type: ignore[arg-type]
    assert scenarios.EntryLoss().target(s, _Etcd([])) == "lab-main-3"  # type: ignore[arg-type]
    assert scenarios.EntryPartition().target(s, _Etcd([])) == "lab-main-3"  # type: ignore[arg-type]
    assert scenarios.EntryLoss.needs_entry and scenarios.EntryPartition.needs_entry and not scenarios.ReplicaPartition.needs_entry
    no_async = _with(m3={"role": "sync_standby"})
    with pytest.raises(PgfleetError, match="needs an asynchronous replica"):
        scenarios.EntryLoss().target(no_async, _Etcd([]))  # type: ignore[arg-type]
    # the leader-change rule each scenario declares is what the timeline check uses
    assert {c.name: c.leader_change for c in scenarios.SCENARIOS.values()} == {
        "switchover": "must", "postgres-crash": "may", "patroni-crash": "may", "node-loss": "must",
        "primary-partition": "must", "replica-loss": "must-not", "replica-partition": "must-not", "entry-loss": "must-not",
        "entry-partition": "must-not", "etcd-member-loss": "must-not"}


# --------------------------------------------------------------------------- the command refuses before touching anything


def _pgfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgfleet.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli_rejects_unknown_scenario() -> None:
    p = _pgfleet("drill", "lab", "reboot")
    assert p.returncode == 1 and "unknown scenario 'reboot'" in p.stderr and "switchover" in p.stderr


def test_cli_never_drills_a_production_stack() -> None:
    p = _pgfleet("drill", "prod", "switchover", "--yes")
    assert p.returncode == 1 and "production" in p.stderr


def test_a_step_not_wired_aborts_the_drill_with_its_reason() -> None:
    from pgfleet.drill import runner
    from pgfleet.drill.control import ClusterControl, DrillNotWired

    class Unwired(ClusterControl):
        stack, expected_members, synchronous = "lab", 3, True

        def state(self) -> ClusterState:
            return parse_patroni_cluster(CLUSTER)

        def rw_dsn(self) -> str:
            raise DrillNotWired("'pgfleet dsn' does not exist yet")

        def _no(self, *_: object) -> None:
            raise AssertionError("must not be reached")

        direct_dsn = run = switchover = power_off = power_on = partition = heal = sql_isolated = _no  # type: ignore[assignment]

    r = runner.run_drill(Unwired(), scenarios.NodeLoss(), runner.DrillOptions(healthy_timeout=1, poll=0.1))
    assert r.aborted == "'pgfleet dsn' does not exist yet"
    assert not r.ok and report.exit_code([r]) == 1


def test_an_unhealthy_cluster_stops_all_after_the_first_wait() -> None:
    """One health wait, not one per scenario: the rest say why they did not run."""
    from pgfleet.drill import runner
    from pgfleet.drill.control import ClusterControl

    class Broken(ClusterControl):
        stack, expected_members, synchronous = "lab", 3, True

        def state(self) -> ClusterState:
            doc = {"members": [m for m in CLUSTER["members"] if m["role"] != "sync_standby"]}
            return parse_patroni_cluster(doc)

        def _no(self, *_: object) -> None:
            raise AssertionError("must not be reached")

        rw_dsn = direct_dsn = run = switchover = power_off = power_on = partition = heal = sql_isolated = _no  # type: ignore[assignment]

    results = runner.run_all(Broken(), scenarios.resolve("all"), runner.DrillOptions(healthy_timeout=0.3, poll=0.1))
    assert [r.scenario for r in results] == list(scenarios.SCENARIOS)
    assert results[0].aborted == runner.UNHEALTHY_BEFORE and results[0].health
    assert all(r.aborted == "not run: switchover found the cluster unhealthy" for r in results[1:])
    assert report.exit_code(results) == 1


def test_a_returning_member_with_a_stale_view_is_outvoted() -> None:
    """After a partition heals, the old primary still calls itself leader for a moment; the majority decides."""
    from pgfleet.drill.control import majority_view
    from pgfleet.errors import ClusterError

    current = parse_patroni_cluster(CLUSTER)
    stale = _with(m1={"role": "replica"}, m2={"role": "leader"})
    assert majority_view([stale, current, current], 3) is current
    assert majority_view([current, current], 3) is current  # one member unreachable
    with pytest.raises(ClusterError, match="disagree"):
        majority_view([stale, current], 3)


def test_each_fault_is_the_one_its_scenario_names() -> None:
    """Power losses power off and back on; network cuts partition and heal (entry-partition included)."""
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return lambda *_: self.calls.append(name)

    ctx = scenarios.DrillContext(before=parse_patroni_cluster(CLUSTER), leader="lab-main-1", target="lab-main-3", run_id="r")
    expected = {"node-loss": ["power_off", "power_on"], "replica-loss": ["power_off", "power_on"],
                "entry-loss": ["power_off", "power_on"], "primary-partition": ["partition", "heal"],
                "replica-partition": ["partition", "heal"], "entry-partition": ["partition", "heal"]}
    for name, calls in expected.items():
        rec = Recorder()
        s = scenarios.SCENARIOS[name]()
        s.inject(rec, ctx)  # type: ignore[arg-type]
        s.recover(rec, ctx)  # type: ignore[arg-type]
        assert rec.calls == calls, name


def test_etcd_status_problems_catch_a_member_still_catching_up() -> None:
    from pgfleet.drill.control import etcd_status_problems

    eps = ["https://198.18.0.11:2379", "https://198.18.0.12:2379", "https://198.18.0.13:2379"]

    def st(ep: str, leader: int, term: int, errors: list[str] | None = None) -> dict:
        return {"Endpoint": ep, "Status": {"leader": leader, "raftTerm": term, **({"errors": errors} if errors else {})}}

    whole = [st(eps[0], 7, 22), st(eps[1], 7, 22), st(eps[2], 7, 22)]
    assert etcd_status_problems(whole, eps) == []
    # the state found right after a healed partition: the returning member has no leader, an older term
    catching_up = [st(eps[0], 7, 22), st(eps[1], 7, 22), st(eps[2], 0, 20, ["etcdserver: no leader"])]
    problems = etcd_status_problems(catching_up, eps)
    assert any("198.18.0.13" in p and "no leader" in p for p in problems), problems
    assert etcd_status_problems(whole[:2], eps) == ["etcd member https://198.18.0.13:2379 does not answer"]
    assert "etcd members disagree on their leader" in etcd_status_problems([st(eps[0], 7, 22), st(eps[1], 9, 22), st(eps[2], 7, 22)], eps)
