"""Grafana dashboards: five, built with grafana-foundation-sdk; every query parses and reads catalogue metrics only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from monitoring_support import lab_spec, run
from pgfleet.monitoring import dashboards, metrics, promql, rules

_concrete = dashboards.concrete


def test_five_dashboards_are_written_as_grafana_json(tmp_path: Path) -> None:
    paths = dashboards.write(tmp_path)
    assert [p.stem for p in paths] == ["pgfleet-overview", "pgfleet-postgresql", "pgfleet-pooling", "pgfleet-backups", "pgfleet-vector"]
    for p in paths:
        doc = json.loads(p.read_text())
        assert doc["uid"] == p.stem and doc["panels"] and {v["name"] for v in doc["templating"]["list"]} == {"datasource", "cluster"}
        ids = [panel["id"] for panel in doc["panels"]]
        assert len(ids) == len(set(ids)) and all(panel["targets"] and panel["datasource"]["uid"] == "${datasource}" for panel in doc["panels"])
        assert all(t["refId"] for panel in doc["panels"] for t in panel["targets"])


def test_every_panel_query_reads_catalogue_metrics_only() -> None:
    for uid, title, expr in dashboards.queries():
        unknown = promql.metric_names(_concrete(expr)) - set(metrics.BY_NAME)
        assert not unknown, f"{uid} / {title}: {unknown} not in pgfleet/monitoring/metrics.py"
    variable_metric = re.fullmatch(r"label_values\((\w+), \w+\)", dashboards.CLUSTER_VARIABLE)
    assert variable_metric and variable_metric.group(1) in metrics.BY_NAME


def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool checks each query wrapped as a recording rule, Grafana's variables replaced by fixed values."""
    recorded = [{"record": f"pgfleet:panel_{i}", "expr": _concrete(expr)} for i, (_, _, expr) in enumerate(dashboards.queries())]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": recorded}]}))
    p = run("promtool", "check", "rules", tmp_path / "panels.yml")
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_catalogue_metric_is_used_by_a_rule_or_a_panel() -> None:
    """The catalogue lists what is used, nothing more: a lab test checks each name against a live Prometheus."""
    used = {n for a in rules.alerts(lab_spec()) for n in promql.metric_names(a.expr)}
    used |= {n for _, _, expr in dashboards.queries() for n in promql.metric_names(_concrete(expr))}
    assert set(metrics.BY_NAME) - used == set()
