"""The golden snapshot guard: host data, rendered files and Pulumi resources of every stack, unchanged.

A difference fails with the diff; when it is intended, regenerate with
``PGFLEET_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and commit the new
files together with the change (see tests/golden.py for what is in a snapshot).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import jinja2
import pytest

import golden
from roles import _common
from roles._common import TEMPLATES

UPDATE = os.environ.get("PGFLEET_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("stack", golden.STACKS)
def test_stack_matches_its_golden_file(stack: str) -> None:
    snap = golden.snapshot(stack)
    path = golden.golden_path(stack)
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(golden.dumps(snap))
    assert path.exists(), f"no golden file {path.name}: create it with {golden.REGENERATE}"
    expected = path.read_text()
    lines = golden.diff(expected, snap, label=path.name)
    if lines:
        pytest.fail(golden.report(stack, expected, snap, lines), pytrace=False)


def test_a_changed_snapshot_is_reported() -> None:
    """The guard can fail: one changed line of one rendered file shows up in the diff and the report."""
    snap = golden.snapshot("lab")
    expected = golden.dumps(snap)
    assert golden.diff(expected, snap) == []
    changed = copy.deepcopy(snap)
    ini = changed["hosts"]["lab-main-1"]["files"]["roles.pgbouncer.ini 1"]
    ini[ini.index("pool_mode = transaction")] = "pool_mode = session"
    lines = golden.diff(expected, changed)
    assert [line for line in lines if line.startswith("-") and "pool_mode = transaction" in line]
    assert [line for line in lines if line.startswith("+") and "pool_mode = session" in line]
    text = golden.report("lab", expected, changed, lines)
    assert "hosts » lab-main-1 » files » roles.pgbouncer.ini 1\n" in text
    assert "pool_mode = session" in text and golden.REGENERATE in text


def test_every_deploy_template_and_helper_is_in_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A template or helper added to templates/ without being added to the snapshot fails here."""
    used: set[str] = set()
    get_template = _common._env.get_template

    def recording(name: str, *args: Any, **kwargs: Any) -> jinja2.Template:
        used.add(name)
        return get_template(name, *args, **kwargs)

    monkeypatch.setattr(_common._env, "get_template", recording)
    keys = {key for stack in golden.STACKS for host in golden.hosts_snapshot(stack).values() for key in host["files"]}
    templates = {str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*") if p.is_file() and p.parts[-2] != "lab"}
    missing = {t for t in templates if t not in used and t not in keys}
    assert not missing, f"templates no snapshot renders or lists: {sorted(missing)}"
