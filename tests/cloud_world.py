"""The world ``pgfleet up`` runs in, faked at its boundaries: Pulumi (autospecced ``pulumi.automation``, answering
with the real program's outputs under Pulumi mocks), SSH, the deploy and the health wait; each records the order
it was called in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import automation_fakes
from pgfleet import ROOT, cluster, deployment, envstore, github, remote
from pgfleet import environments as envs
from pgfleet.secrets import Secrets
from pulumi_harness import run_program


@pytest.fixture(scope="module")
def program_outputs() -> dict[str, dict[str, tuple[Any, bool]]]:
    """What the real program outputs for staging, dev and prod under Pulumi mocks (as the fake's ``up`` returns them)."""
    out = {}
    for stack in ("staging", "dev", "prod"):
        run = run_program(stack)
        out[stack] = {k: (v, k in run.secret_outputs) for k, v in run.outputs.items()}
    return out


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "stacks"
    shutil.copytree(ROOT / "stacks", d)
    monkeypatch.setenv("PGFLEET_STACKS_DIR", str(d))
    monkeypatch.setenv("PGFLEET_STATE_DIR", str(tmp_path / "state"))
    for v in (envstore.URL_ENV, envstore.PULUMI_URL_ENV, github.OUTPUT_ENV, envs.RUNNER_CIDRS_ENV):
        monkeypatch.delenv(v, raising=False)
    return d


class World:
    """The fakes and what happened, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, outputs: dict[str, dict[str, tuple[Any, bool]]]) -> None:
        self.events: list[str] = []
        self.ssh_answers = 0  # exit status the fake SSH gives
        #: what the fake deploy reports changed (a dry run: would change)
        self.changes: dict[str, list[str]] = {"install postgresql": ["x"]}
        self.pulumi = automation_fakes.install(monkeypatch)
        self.pulumi.up_outputs = {**outputs, "pr-12": outputs["staging"]}
        original = self.pulumi.create_or_select_stack

        def create_or_select(stack_name: str, *a: Any, **kw: Any) -> Any:
            self.events.append(f"pulumi stack {stack_name}")
            return original(stack_name, *a, **kw)

        self.pulumi.create_or_select_stack = create_or_select  # type: ignore[method-assign]
        automation_fakes.install(monkeypatch, self.pulumi)

        def ssh(inv: Any, h: Any, command: Any, *, timeout: float) -> subprocess.CompletedProcess[str]:
            self.events.append(f"ssh {h.name} {h.public_ip}")
            return subprocess.CompletedProcess([], self.ssh_answers, "", "" if self.ssh_answers == 0 else "Connection refused")

        def deploy(st: Any, **kw: Any) -> deployment.DeployResult:
            self.events.append(f"deploy {st.name}")
            return deployment.DeployResult(stack=st.name, dry=bool(kw.get("dry")), changed=dict(self.changes))

        def healthy(inv: Any, c: Any, sec: Secrets, timeout: float = 90) -> list[Any]:
            self.events.append(f"healthy {c.name}")
            return []

        monkeypatch.setattr(remote, "run", ssh)
        monkeypatch.setattr(deployment, "run", deploy)
        monkeypatch.setattr(cluster, "wait_healthy", healthy)

    def pulumi_ops(self) -> list[tuple[str, str]]:
        return [(c[0], c[1]) for c in self.pulumi.calls if c[0] in ("up", "destroy", "preview", "remove_stack")]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, checkout: Path, program_outputs: dict) -> World:
    return World(monkeypatch, program_outputs)


