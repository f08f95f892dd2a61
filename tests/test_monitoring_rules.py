"""Alert rules: promtool proves each alert fires on its fault and stays quiet otherwise; names, timing, runbooks checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from monitoring_cases import CASES
from monitoring_support import lab_spec, run
from pgfleet import ROOT, sizing
from pgfleet import spec as spec_mod
from pgfleet.monitoring import metrics, promql, rules

STACKS = ["dev", "staging", "prod", "lab"]


def _expected_annotations(alert: rules.Alert, labels: dict[str, str]) -> dict[str, str]:
    def fill(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
    return {k: fill(v) for k, v in alert.rule()["annotations"].items()}


def _eval_time(alert: rules.Alert) -> str:
    return f"{max(10, alert.for_s // 60 + 6)}m"


def promtool_tests(alerts: list[rules.Alert]) -> dict:
    """One promtool test per case: the firing series must raise exactly the expected alert, the quiet ones nothing."""
    tests = []
    for a in alerts:
        case = CASES[a.name]
        exp = {"exp_labels": {**case.labels, "severity": a.severity}, "exp_annotations": _expected_annotations(a, case.labels)}
        for series, expected in ((case.firing, [exp]), (case.quiet, [])):
            tests.append({"name": f"{a.name} {'fires' if expected else 'stays quiet'}", "interval": "1m", "input_series": series,
                          "alert_rule_test": [{"eval_time": case.eval_time or _eval_time(a), "alertname": a.name, "exp_alerts": expected}]})
    return {"rule_files": ["rules.yml"], "evaluation_interval": f"{rules.EVALUATION_INTERVAL}s", "tests": tests}


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    names = [a.name for a in rules.alerts(lab_spec())]
    assert len(names) == len(set(names)), "an alert name is used twice in one cluster"
    assert set(names) == set(CASES), f"alerts without cases: {set(names) - set(CASES)}; cases without alerts: {set(CASES) - set(names)}"
    assert all(CASES[n].firing and CASES[n].quiet for n in names)


def test_promtool_runs_each_alerts_firing_and_quiet_case(tmp_path: Path) -> None:
    alerts = rules.alerts(lab_spec())
    (tmp_path / "rules.yml").write_text(rules.rules_yaml(lab_spec()))
    doc = promtool_tests(alerts)
    assert len(doc["tests"]) == 2 * len(alerts)
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    p = run("promtool", "test", "rules", tmp_path / "tests.yml")
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]


def test_a_wrong_case_fails_promtool(tmp_path: Path) -> None:
    """The harness can fail: a quiet case expected to fire is reported."""
    spec = lab_spec()
    alert = next(a for a in rules.alerts(spec) if a.name == "PostgresNoPrimary")
    doc = promtool_tests([alert])
    doc["tests"][1]["alert_rule_test"][0]["exp_alerts"] = doc["tests"][0]["alert_rule_test"][0]["exp_alerts"]
    (tmp_path / "rules.yml").write_text(rules.rules_yaml(spec))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    p = run("promtool", "test", "rules", tmp_path / "tests.yml")
    assert p.returncode != 0 and "PostgresNoPrimary" in p.stdout + p.stderr


@pytest.mark.parametrize("stack", STACKS)
def test_promtool_checks_every_stacks_rules(stack: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(rules.rules_yaml(spec_mod.load(stack)))
    p = run("promtool", "check", "rules", path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_at_least_twenty_alerts_each_complete() -> None:
    alerts = rules.alerts(lab_spec())
    assert len(alerts) >= 20
    for a in alerts:
        r = a.rule()
        assert r["labels"]["severity"] in ("critical", "warning")
        assert set(r["annotations"]) == {"summary", "description", "runbook_url"} and all(r["annotations"].values())


def test_availability_alerts_fire_within_thirty_seconds() -> None:
    alerts = rules.alerts(lab_spec())
    slow = [(a.name, a.for_s) for a in alerts if a.availability and a.for_s > rules.AVAILABILITY_MAX_FOR]
    assert not slow
    assert rules.AVAILABILITY_MAX_FOR <= 30 and rules.EVALUATION_INTERVAL <= 10
    assert {"PostgresNoPrimary", "PostgresFailover", "PatroniMemberDown", "ExporterDown", "EtcdNoLeader"} <= {a.name for a in alerts if a.availability}
    groups = rules.rule_groups(lab_spec())["groups"]
    assert all(g["interval"] == f"{rules.EVALUATION_INTERVAL}s" for g in groups)


def test_rules_use_catalogue_metrics_only() -> None:
    for stack in STACKS:
        for a in rules.alerts(spec_mod.load(stack)) + rules.alerts(lab_spec()):
            unknown = promql.metric_names(a.expr) - set(metrics.BY_NAME)
            assert not unknown, f"{a.name} uses metrics outside pgfleet/monitoring/metrics.py: {unknown}"


def test_the_name_check_can_fail() -> None:
    assert promql.metric_names('sum by (scope) (patroni_master{scope="main"}) < 1') == {"patroni_master"}
    assert "patroni_master" not in metrics.BY_NAME


def test_every_alert_has_its_runbook_page() -> None:
    index = (ROOT / rules.RUNBOOKS / "README.md").read_text()
    for a in rules.alerts(lab_spec()):
        page = ROOT / a.runbook
        assert page.is_file(), f"{a.name}: no runbook {a.runbook}"
        assert a.name in page.read_text() and f"({a.slug}.md)" in index, a.name


def test_runbooks_name_only_commands_that_exist() -> None:
    from pgfleet.cli import app  # noqa: PLC0415  (the CLI is what the runbooks point at)
    import typer.main
    commands = {c.name for c in typer.main.get_command(app).commands.values()}  # type: ignore[attr-defined]
    for page in (ROOT / rules.RUNBOOKS).glob("*.md"):
        for cmd in re.findall(r"(?:^|`)pgfleet ([a-z-]+)", page.read_text(), re.M):
            assert cmd in commands, f"{page.name} names 'pgfleet {cmd}', which does not exist"


def test_thresholds_come_from_the_spec() -> None:
    spec = lab_spec()
    by = {a.name: a for a in rules.alerts(spec)}
    ages = sizing.backup_ages(spec)
    assert f"> {sizing.MAXIMUM_LAG_ON_FAILOVER}" in by["ReplicaLagBytes"].expr
    assert ages.any_max_age == 24 * 3600 + sizing.BACKUP_AGE_GRACE and f"> {ages.any_max_age}" in by["BackupTooOld"].expr
    assert ages.full_max_age == 7 * 86400 + sizing.BACKUP_AGE_GRACE and f"> {ages.full_max_age}" in by["BackupFullTooOld"].expr
    assert ages.restorable_window == 7 * 86400 - sizing.BACKUP_AGE_GRACE
    assert f"> {sizing.shared_buffers_bytes(spec, spec.clusters[0])}" in by["VectorIndexExceedsSharedBuffers"].expr
    assert "< 0.95" in by["VectorRecallBelowTarget"].expr


def test_alerts_follow_the_spec() -> None:
    dev = spec_mod.load("dev")
    names = {a.name for a in rules.alerts(dev)}
    assert "SyncStandbyMissing" not in names and "HAProxyReplicaBackendDown" not in names and "VectorRecallBelowTarget" not in names
    assert ("BackupTooOld" in names) == dev.backups.enabled
    off = lab_spec(enabled=False)
    assert rules.alerts(off) == [] and rules.rule_groups(off) == {"groups": []}
