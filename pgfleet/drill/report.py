"""Drill results for people (a rich table) and machines (JSON), and the exit code."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.table import Table

from pgfleet.drill.analysis import DrillResult

#: Bump when a field changes meaning or goes away (adding one is compatible).
JSON_VERSION = 1


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}s"


def table(results: Sequence[DrillResult]) -> Table:
    t = Table(title="pgfleet drill", show_lines=False)
    for col in ("scenario", "leader", "RTO", "acked", "lost", "client errors", "new leader", "routed", "rejoin", "verdict"):
        t.add_column(col, justify="right" if col in ("RTO", "acked", "lost", "client errors", "new leader", "routed", "rejoin") else "left")
    for r in results:
        leader = r.old_leader or "?"
        if r.new_leader != r.old_leader:
            leader += f" → {r.new_leader or '?'}"
        rto = _s(r.rto_s) + ("" if r.writes_resumed or r.rto_s is None else " (never resumed)")
        verdict = "[green]pass[/green]" if r.ok else "[red]FAIL[/red]"
        t.add_row(r.scenario, leader, rto, str(r.acknowledged), str(len(r.lost)), str(r.client_errors),
                  _s(r.time_to_new_leader_s), _s(r.time_to_routing_s), _s(r.rejoin_s), verdict)
    return t


def failure_lines(results: Sequence[DrillResult]) -> list[str]:
    return [f"{r.scenario}: {f}" for r in results for f in r.failures()]


def to_dict(stack: str, results: Sequence[DrillResult]) -> dict[str, object]:
    return {"version": JSON_VERSION, "stack": stack, "ok": all(r.ok for r in results),
            "drills": [r.to_dict() for r in results]}


def to_json(stack: str, results: Sequence[DrillResult]) -> str:
    return json.dumps(to_dict(stack, results), indent=2, sort_keys=True)


def exit_code(results: Sequence[DrillResult]) -> int:
    """0 only if every drill passed: no lost write, no split brain, healthy again."""
    return 0 if results and all(r.ok for r in results) else 1
