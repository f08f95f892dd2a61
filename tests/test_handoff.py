"""The deploy hand-off (pgfleet/handoff.py): one 0600 file of host data + secrets in, result records out."""

from __future__ import annotations

import io
import json
import os
import runpy
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploy_fixtures import fake_inventory, fixed_secrets
from pgfleet import ROOT, deployment, handoff
from pgfleet import spec as spec_mod
from pgfleet.errors import DeployError
from pgfleet.providers.hcloud import HcloudProvider
from pgfleet.stack import Stack


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """Stack dev from a copy of its stack file, with a made-up inventory and fixed secrets (no Pulumi)."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    shutil.copy(ROOT / "stacks" / "Pulumi.dev.yaml", stacks / "Pulumi.dev.yaml")
    monkeypatch.setenv("PGFLEET_STACKS_DIR", str(stacks))
    monkeypatch.setenv("PGFLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(handoff.RESULTS_ENV, raising=False)
    s = spec_mod.load("dev")
    monkeypatch.setattr(HcloudProvider, "inventory", lambda self: fake_inventory(s, "dev"))
    monkeypatch.setattr(HcloudProvider, "secrets", lambda self: fixed_secrets(s))
    monkeypatch.setattr(handoff, "_current", {})
    return Stack.open("dev")


def test_the_handoff_is_one_private_file_with_secrets_apart_from_host_data(dev: Stack) -> None:
    path = handoff.write(handoff.compute(dev))
    assert path == handoff.handoff_path("dev") and path.parent == Path(os.environ["PGFLEET_STATE_DIR"]) / "dev"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    h = handoff.read("dev")
    assert h is not None and h.secrets == dev.secrets
    assert [name for name, _ in h.groups["postgres"]] == [h.name for h in dev.inventory().by_role("postgres")]
    host_data = json.dumps(h.groups)
    assert not [n for n, pw in dev.secrets.passwords.items() if pw in host_data], "a secret is in host data"
    assert dev.secrets.ca_key_pem not in host_data


def test_a_stale_handoff_is_not_read_and_is_computed_again(dev: Stack) -> None:
    handoff.write(handoff.compute(dev))
    dev.file.write_text(dev.file.read_text() + "\n# changed\n")
    assert handoff.read("dev") is None
    assert handoff.current("dev").stack_file_sha256 == handoff.file_sha256(dev.file)


def test_pyinfra_inventory_reads_the_handoff(dev: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    h = handoff.compute(dev)
    handoff.write(h)
    monkeypatch.setattr(HcloudProvider, "inventory", lambda self: pytest.fail("the inventory was loaded again"))
    monkeypatch.setenv("PGFLEET_STACK", "dev")
    inv = runpy.run_path(str(ROOT / "pyinfra_inventory.py"))
    assert [[name, data] for name, data in inv["postgres"]] == json.loads(json.dumps(h.groups))["postgres"]
    assert inv["client"] == []


class FakePyinfra:
    """Stands in for the pyinfra process: checks the hand-off it was given, writes records, fails."""

    def __init__(self, argv: list[str], env: dict[str, str], **_: object) -> None:
        self.env = env
        path = handoff.handoff_path(env["PGFLEET_STACK"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        os.environ[handoff.RESULTS_ENV] = env[handoff.RESULTS_ENV]
        try:
            handoff.record("note", host="dev-main-1", message="issuing host certificate: none on the host")
            handoff.record("error", host="dev-main-1", step="PgBouncer running")
            handoff.record("error_output", host="dev-main-1", step="PgBouncer running",
                           output=["Failed to start pgbouncer.service: Unit pgbouncer.service is masked."])
        finally:
            del os.environ[handoff.RESULTS_ENV]
        self.stderr = io.StringIO("--> Starting operation: PgBouncer running\n")
        self.stdout = io.StringIO("")

    def wait(self) -> int:
        return 1


def test_a_failed_deploy_names_step_host_and_output_from_records_and_removes_the_handoff(
        dev: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployment.subprocess, "Popen", FakePyinfra)
    with pytest.raises(DeployError) as e:
        deployment.run(dev, dry=True, echo=False)
    msg = str(e.value)
    assert "deploy of dev failed at step 'PgBouncer running' on dev-main-1; nothing after it ran." in msg, msg
    assert "Unit pgbouncer.service is masked." in msg
    assert not handoff.handoff_path("dev").exists() and not handoff.results_path("dev").exists()


def test_notes_and_converge_output_come_from_records() -> None:
    records = [{"kind": "note", "host": "h1", "message": "inside a container"},
               {"kind": "output", "host": "h1", "title": "databases.sql", "line": "CREATE ROLE"},
               {"kind": "error", "host": "h2", "step": "x"}]
    r = deployment.parse_results("dev", False, '{"results": {"operations": []}}', records)
    assert r.notes == ["[h1] note: inside a container", "[h1] databases.sql: CREATE ROLE"]
    assert deployment.summary(r) == "dev: no changes (0 operations already as wanted)"


def test_without_records_the_failure_is_before_any_operation() -> None:
    msg = deployment.failure_message("dev", [], ["Connecting to hosts", "[dev-main-1] Could not connect (timed out)"])
    assert "failed at step 'before any operation (connecting or preparing)'" in msg and "Could not connect" in msg


def test_the_recorder_writes_the_failed_step_and_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roles import results

    out = tmp_path / "results.jsonl"
    monkeypatch.setenv(handoff.RESULTS_ENV, str(out))
    meta = SimpleNamespace(is_complete=lambda: True, stderr_lines=["Unit pgbouncer.service is masked."], stdout_lines=[])
    state = SimpleNamespace(get_op_meta=lambda op_hash: SimpleNamespace(names={"PgBouncer running"}),
                            get_op_data_for_host=lambda host, op_hash: SimpleNamespace(operation_meta=meta))
    host = SimpleNamespace(name="dev-main-2")
    results.Recorder.operation_host_error(state, host, "op1")
    results.Recorder.operation_end(state, "op1")
    assert handoff.records(out) == [
        {"kind": "error", "host": "dev-main-2", "step": "PgBouncer running"},
        {"kind": "error_output", "host": "dev-main-2", "step": "PgBouncer running", "output": ["Unit pgbouncer.service is masked."]},
    ]
