"""``pgfleet up | down | preview`` on cloud stacks: the orchestration around the Automation API boundary.

The Pulumi CLI cannot be installed here, so ``pulumi.automation`` is faked
(tests/automation_fakes.py, autospecced from the real library) and answers
``up`` with the outputs the real program produces under Pulumi mocks
(tests/pulumi_harness.py). SSH, the deploy and the health wait are replaced
at their module boundaries and record the order they were called in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi.automation as auto
import pytest
import yaml
from typer.testing import CliRunner

import automation_fakes
from cloud_world import World, checkout, program_outputs, world  # noqa: F401 (fixtures)
from pgfleet import ROOT, envstore, github
from pgfleet import environments as envs
from pgfleet.cli import app
from pgfleet.cli import cluster as cli_cluster
from pgfleet.secrets import Secrets


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_up_runs_pulumi_then_waits_for_ssh_then_deploys_then_waits_healthy(world: World, checkout: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGFLEET_S3_ACCESS_KEY", "AKIA-ci")
    monkeypatch.setenv("PGFLEET_S3_SECRET_KEY", "ci-secret")
    r = invoke("up", "staging")
    assert r.exit_code == 0, r.output
    inv = world.pulumi.up_outputs["staging"]["inventory"][0]
    hosts = [f"ssh {h['name']} {h['public_ip']}" for h in inv["hosts"]]
    assert world.events == ["pulumi stack staging", *hosts, "deploy staging", "healthy main"]
    (_, _, kw), = [c for c in world.pulumi.calls if c[0] == "up"]
    assert kw["config_file"] == str(checkout / "Pulumi.staging.yaml") and kw["color"] == "never"
    assert "Updating (staging)" in r.stdout  # Pulumi's own progress, line by line
    # the stack's user secrets went into its config as secrets, from PGFLEET_* variables
    cfg = world.pulumi.config["staging"]
    assert cfg["pgfleet:s3_access_key"].value == "AKIA-ci" and cfg["pgfleet:s3_access_key"].secret
    assert cfg["pgfleet:s3_secret_key"].secret
    # progress: numbered steps, each done
    for n in range(1, 5):
        assert f"<== [{n}/4]" in r.stdout
    first = inv["hosts"][0]["public_ip"]
    assert f"cluster main: psql \"host={first}" in r.stdout.replace("\n", "")


def test_up_with_output_github_writes_outputs_and_masks_every_secret_first(world: World, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out_file = tmp_path / "github_output"
    out_file.write_text("earlier=kept\n")
    monkeypatch.setenv(github.OUTPUT_ENV, str(out_file))
    r = invoke("up", "staging", "--output", "github")
    assert r.exit_code == 0, r.output
    secrets = Secrets.model_validate(world.pulumi.up_outputs["staging"]["secrets"][0])
    values = [*secrets.passwords.values(), *[ln for ln in secrets.ca_key_pem.splitlines() if ln.strip()]]
    lines = r.stdout.splitlines()
    masks = {ln.removeprefix("::add-mask::") for ln in lines if ln.startswith("::add-mask::")}
    assert set(values) <= masks
    first_ssh_step = next(i for i, ln in enumerate(lines) if "[2/4]" in ln)
    assert max(i for i, ln in enumerate(lines) if ln.startswith("::add-mask::")) < first_ssh_step
    # no secret anywhere in the log except in its mask
    for v in values:
        assert not [ln for ln in lines if v in ln and not ln.startswith("::add-mask::")], v

    got = github.parse_outputs(out_file.read_text())
    assert got["earlier"] == "kept"
    inv = world.pulumi.up_outputs["staging"]["inventory"][0]
    assert got["ca_cert"] == secrets.ca_cert_pem.rstrip("\n") or got["ca_cert"] == secrets.ca_cert_pem
    assert json.loads(got["inventory"])["hosts"] == inv["hosts"]
    assert json.loads(got["endpoints"]) == world.pulumi.up_outputs["staging"]["endpoints"][0]
    nodes = [h["public_ip"] for h in inv["hosts"] if "postgres" in h["roles"]]
    assert f"host={','.join(nodes)}" in got["dsn"] and "port=5000" in got["dsn"]
    assert "port=5001" in got["dsn_ro"] and got["dsn_main"] == got["dsn"]
    assert "sslmode=verify-full" in got["dsn"] and f"sslrootcert={got['ca_file']}" in got["dsn"]
    assert Path(got["ca_file"]).read_text() == secrets.ca_cert_pem
    assert got["password"] == secrets.passwords["owner_app"] and got["password"] in masks
    assert got["user"] == "app" and got["database"] == "app"


def test_output_github_outside_a_workflow_is_refused_before_anything_is_created(world: World) -> None:
    r = invoke("up", "staging", "--output", "github")
    assert r.exit_code == 1 and "GITHUB_OUTPUT" in str(r.exception)
    assert world.events == [] and world.pulumi.calls == []
    r = invoke("up", "staging", "--output", "json")
    assert r.exit_code == 1 and "one output format is github" in str(r.exception)


def test_a_failed_pulumi_up_stops_before_ssh_and_deploy(world: World) -> None:
    world.pulumi.fail["staging"] = "error: hcloud: server type cpx32 unavailable in nbg1"
    r = invoke("up", "staging")
    assert r.exit_code == 1
    assert "pulumi up of stack 'staging' failed" in str(r.exception) and "unavailable in nbg1" in str(r.exception)
    assert world.events == ["pulumi stack staging"]
    assert "[1/4] hosts of staging (hcloud): failed" in r.stdout


def test_servers_that_never_answer_ssh_stop_up_naming_them(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.ssh_answers = 255
    monkeypatch.setattr(cli_cluster, "SSH_TIMEOUT", 0.0)
    r = invoke("up", "dev")
    assert r.exit_code == 1
    assert "no SSH after 0 s on dev-main-1" in str(r.exception) and "Connection refused" in str(r.exception)
    assert "admin_cidrs" in str(r.exception)
    assert not [e for e in world.events if e.startswith("deploy")]


def test_down_destroys_and_removes_the_stack_only_with_yes_and_never_production(world: World) -> None:
    world.pulumi.stacks["staging"] = {"inventory": ({}, False)}
    r = invoke("down", "staging")
    assert r.exit_code == 1 and "--yes" in str(r.exception) and world.pulumi_ops() == []
    world.pulumi.stacks["prod"] = {"inventory": ({}, False)}
    r = invoke("down", "prod", "--yes")
    assert r.exit_code == 1 and "marked production" in str(r.exception) and world.pulumi_ops() == []
    r = invoke("down", "staging", "--yes")
    assert r.exit_code == 0, r.output
    assert world.pulumi_ops() == [("destroy", "staging"), ("remove_stack", "staging")]
    assert "staging" not in world.pulumi.stacks


def test_preview_and_the_drift_gate(world: World) -> None:
    r = invoke("preview", "staging", "--expect-no-changes")
    assert r.exit_code == 0, r.output
    (_, _, kw), = [c for c in world.pulumi.calls if c[0] == "preview"]
    assert kw["expect_no_changes"] is True and "staging: 12 same" in r.stdout
    world.pulumi.fail["staging"] = "error: no changes were expected but changes were proposed"
    r = invoke("preview", "staging", "--expect-no-changes")
    assert r.exit_code == 1 and "drift: pulumi preview found changes" in str(r.exception)
    r = invoke("preview", "lab")
    assert r.exit_code == 1 and "does not build" in str(r.exception)


def test_an_environment_comes_up_in_a_fresh_checkout_and_its_salt_goes_back_to_the_store(
        world: World, checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"file://{tmp_path / 'state-store'}"
    monkeypatch.setenv(envstore.URL_ENV, url)
    envs.create("pr-12", "staging", store=envstore.open_store(url))
    (checkout / "Pulumi.pr-12.yaml").unlink()  # the job that runs `up` is another checkout

    created = world.pulumi.create_or_select_stack

    def with_salt(stack_name: str, *a: Any, **kw: Any) -> Any:
        f = checkout / f"Pulumi.{stack_name}.yaml"  # what `pulumi stack init` does with a passphrase provider
        f.write_text("encryptionsalt: v1:fresh-salt\n" + f.read_text())
        return created(stack_name, *a, **kw)

    world.pulumi.create_or_select_stack = with_salt  # type: ignore[method-assign]
    automation_fakes.install(monkeypatch, world.pulumi)
    r = invoke("up", "pr-12")
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(envstore.open_store(url).get("pr-12"))["encryptionsalt"] == "v1:fresh-salt"
    # and `down` in yet another checkout destroys it and forgets it everywhere
    (checkout / "Pulumi.pr-12.yaml").unlink()
    r = invoke("down", "pr-12", "--yes")
    assert r.exit_code == 0, r.output
    assert ("destroy", "pr-12") in world.pulumi_ops() and envstore.open_store(url).names() == []


def test_the_fake_cannot_drift_from_pulumi_automation(world: World) -> None:
    """The fakes are autospecced: an argument the installed library does not take fails, as it would for real."""
    with pytest.raises(TypeError):
        auto.create_or_select_stack(stack="x")  # the real parameter is stack_name
    stack = auto.create_or_select_stack("staging", work_dir=str(ROOT))
    with pytest.raises(TypeError):
        stack.up(colour="never")
    with pytest.raises(TypeError):
        stack.workspace.remove_stack("staging", purge=True)


def test_deploy_dry_expect_no_changes_is_the_host_drift_gate(world: World) -> None:
    world.pulumi.stacks["staging"] = dict(world.pulumi.up_outputs["staging"])
    r = invoke("deploy", "staging", "--dry", "--expect-no-changes")
    assert r.exit_code == 1 and "drift: 1 change(s) on the hosts of staging (install postgresql)" in str(r.exception)
    r = invoke("deploy", "staging", "--dry")
    assert r.exit_code == 0, r.output
