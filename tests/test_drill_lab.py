"""End-to-end drills in the lab: ``pgfleet drill lab all`` passes, and the check can fail.

The first test runs every scenario through the CLI, as CI and users do, and
reads its JSON: no acknowledged write lost, no split brain, every timeline rule
held, the cluster back to one leader and two streaming replicas (one
synchronous). The second breaks the cluster on purpose (synchronous
replication off, WAL to the standbys blocked, then the primary's host killed)
and proves the same drill then reports lost writes and fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgfleet import cluster as cluster_mod
from pgfleet.drill import report, runner, scenarios
from pgfleet.drill.control import ClusterControl, PatroniControl
from pgfleet.drill.scenarios import DrillContext

pytestmark = pytest.mark.lab
PGFLEET = str(Path(sys.executable).with_name("pgfleet"))
SCENARIOS = ["switchover", "postgres-crash", "patroni-crash", "node-loss", "primary-partition", "replica-loss",
             "replica-partition", "entry-loss", "entry-partition", "etcd-member-loss"]


def _assert_healthy_topology(lab, lab_spec, lab_secrets) -> None:  # type: ignore[no-untyped-def]
    members = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets, timeout=180)
    assert sorted(m.role for m in members) == ["leader", "replica", "sync_standby"], members
    assert all(m.state == "streaming" for m in members if m.role != "leader"), members
    assert len({m.timeline for m in members}) == 1, members


def test_drill_all_passes_with_no_lost_write_and_no_split_brain(deployed, lab, lab_spec, lab_secrets, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _assert_healthy_topology(lab, lab_spec, lab_secrets)  # a cluster broken before the drill is not the drill's failure
    out = tmp_path / "drill.json"
    p = subprocess.run([PGFLEET, "drill", "lab", "all", "--writers", "4", "--json", str(out)],
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["ok"] is True and doc["stack"] == "lab"
    assert [d["scenario"] for d in doc["drills"]] == SCENARIOS
    for d in doc["drills"]:
        name = d["scenario"]
        assert d["failures"] == [], (name, d["failures"])
        assert d["aborted"] is None, name
        assert d["acknowledged"] > 0 and d["lost_count"] == 0 and d["lost"] == [], name
        assert d["unexpected"] == [], name
        assert d["split_brain"] == [] and d["timeline"] == [] and d["health"] == [], name
        assert d["writes_resumed"] is True and d["rto_s"] is not None, name
        # every client committed again during the hold: the RTO is the worst single client's gap
        assert d["writers_down"] == [] and d["hold_s"] >= 30, name
        assert sorted(d["client_gaps_s"]) == ["0", "1", "2", "3"] and d["rto_s"] == pytest.approx(max(d["client_gaps_s"].values()), abs=0.01), name
        changed = d["old_leader"] != d["new_leader"]
        assert d["timeline_after"] == d["timeline_before"] + (1 if changed else 0), name
    by = {d["scenario"]: d for d in doc["drills"]}
    for name in ("switchover", "node-loss", "primary-partition"):
        assert by[name]["new_leader"] != by[name]["old_leader"], name
        assert by[name]["time_to_new_leader_s"] is not None, name
    for name in ("replica-loss", "replica-partition", "entry-loss", "entry-partition", "etcd-member-loss"):
        assert by[name]["new_leader"] == by[name]["old_leader"], name
    for name in ("entry-loss", "entry-partition"):  # the fault hit a node at least one writer had entered through
        target = next(n for n in by[name]["notes"] if "entered through" in n)
        assert "writer(s) [" in target and "[]" not in target, by[name]["notes"]
    # the isolated old primary was checked directly, not only through HAProxy
    assert any("probe of old primary" in n for n in by["primary-partition"]["notes"]), by["primary-partition"]["notes"]
    assert "pass" in p.stdout and "FAIL" not in p.stdout
    _assert_healthy_topology(lab, lab_spec, lab_secrets)


def block_wal_to_standbys(control: ClusterControl, ctx: DrillContext) -> None:
    """On the primary, drop every packet PostgreSQL sends to the standbys: WAL stops reaching them."""
    standbys = ", ".join(control.hosts[m.name] for m in ctx.before.members if not m.is_leader)  # type: ignore[attr-defined]
    control.run(ctx.target, ["nft", "add table inet pgfleet_drill_lag; "
                                   "add chain inet pgfleet_drill_lag out { type filter hook output priority 0; }; "
                                   f"add rule inet pgfleet_drill_lag out ip daddr {{ {standbys} }} tcp sport 5432 drop"])


class LaggingNodeLoss(scenarios.NodeLoss):
    """node-loss after the standbys stopped receiving WAL: with asynchronous
    replication the writes acknowledged meanwhile exist only on the dead primary."""

    name = "node-loss-lagging-standbys"

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        block_wal_to_standbys(control, ctx)
        time.sleep(2.0)  # a few hundred acknowledged writes, well under maximum_lag_on_failover
        control.power_off(ctx.target)


def test_drill_fails_and_reports_lost_writes_without_synchronous_replication(deployed, lab, lab_spec, lab_secrets) -> None:  # type: ignore[no-untyped-def]
    control = PatroniControl.from_stack("lab")
    _assert_healthy_topology(lab, lab_spec, lab_secrets)
    control.patch_config({"synchronous_mode": False})
    try:
        control.synchronous = False
        assert runner.wait_for(lambda: not control.state().sync_standbys, 60, 1) is not None, control.state()
        r = runner.run_drill(control, LaggingNodeLoss(), runner.DrillOptions(writers=4, duration=180))
    finally:
        control.patch_config({"synchronous_mode": True})
        control.synchronous = True
    assert r.aborted is None, r.aborted
    assert r.new_leader != r.old_leader, r
    assert len(r.lost) > 0, f"no write lost: {r.acknowledged} acknowledged, notes {r.notes}"
    assert not r.ok
    assert any("acknowledged write(s) lost" in f for f in r.failures()), r.failures()
    assert report.exit_code([r]) == 1
    assert report.to_dict("lab", [r])["ok"] is False
    # the old primary, diverged by the lost writes, came back through pg_rewind; synchronous again
    _assert_healthy_topology(lab, lab_spec, lab_secrets)


def test_entry_partition_without_dead_peer_keywords_reports_the_hung_writer_as_down(deployed, lab, lab_spec, lab_secrets, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The check can fail: the same drill through the printed DSN minus its dead-peer detection
    (keepalives, tcp_user_timeout). A writer that entered through the partitioned node hangs on
    its dead connection; it is reported down for the whole hold, and the drill fails."""
    _assert_healthy_topology(lab, lab_spec, lab_secrets)
    printed = subprocess.run([PGFLEET, "dsn", "lab"], capture_output=True, text=True, check=True).stdout.strip()
    stripped = " ".join(p for p in printed.split() if not p.startswith(("keepalives", "tcp_user_timeout")))
    assert "load_balance_hosts=random" in stripped and "tcp_user_timeout" not in stripped
    out = tmp_path / "drill.json"
    p = subprocess.run([PGFLEET, "drill", "lab", "entry-partition", "--dsn", stripped, "--json", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    [d] = json.loads(out.read_text())["drills"]
    assert d["aborted"] is None and d["lost_count"] == 0, d
    assert d["writers_down"], d["client_gaps_s"]
    assert d["rto_s"] >= d["hold_s"] >= 30, d
    assert any("never committed again" in f for f in d["failures"]), d["failures"]
    _assert_healthy_topology(lab, lab_spec, lab_secrets)
