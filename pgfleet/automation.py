"""Pulumi's Automation API, narrowed to the few things pgfleet does with a stack.

``pgfleet up / down / env …`` drive Pulumi through ``pulumi.automation``: a
LocalWorkspace on this repository (``Pulumi.yaml``, the program in
``__main__.py``) and the stack's own file. Everything pgfleet asks of Pulumi
goes through :class:`Workspace`, so the tests can put a fake behind this one
boundary (autospecced from ``pulumi.automation`` itself, so it cannot drift
from the library). The Automation API needs the ``pulumi`` CLI on PATH.

Secrets the stack needs from its user (object storage keys, an SMTP password)
are set into the stack's config from ``PGFLEET_<NAME>`` environment variables
when present (CI passes its repository secrets this way); ``hcloud:token``
is read by the Hetzner provider from ``HCLOUD_TOKEN`` and never stored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi.automation as auto

from pgfleet import ROOT
from pgfleet.errors import PgfleetError

Echo = Callable[[str], Any]


class PulumiError(PgfleetError):
    """Pulumi (the CLI behind the Automation API) failed or is missing; the message says which command and why."""


class StackMissing(PulumiError):
    """The backend has no such stack (never brought up, or removed already)."""


@dataclass(frozen=True)
class Output:
    value: Any
    secret: bool


def secret_env(name: str) -> str:
    """``s3_access_key`` -> ``PGFLEET_S3_ACCESS_KEY``: where CI hands a stack secret to ``pgfleet up``."""
    return f"PGFLEET_{name.upper()}"


def _echo_stdout(line: str) -> None:
    sys.stdout.write(line if line.endswith("\n") else line + "\n")
    sys.stdout.flush()


class Workspace:
    """One LocalWorkspace on the repository; ``echo`` gets Pulumi's progress line by line (plain text: CI logs stay readable)."""

    def __init__(self, *, work_dir: Path = ROOT, echo: Echo = _echo_stdout, env: dict[str, str] | None = None) -> None:
        self.work_dir = work_dir
        self.echo = echo
        self.env = dict(os.environ if env is None else env)

    def _options(self) -> auto.LocalWorkspaceOptions:
        return auto.LocalWorkspaceOptions(work_dir=str(self.work_dir), env_vars=self.env)

    def _stack(self, name: str, *, create: bool) -> auto.Stack:
        try:
            if create:
                return auto.create_or_select_stack(name, work_dir=str(self.work_dir), opts=self._options())
            return auto.select_stack(name, work_dir=str(self.work_dir), opts=self._options())
        except auto.StackNotFoundError:
            raise StackMissing(f"Pulumi has no stack {name!r} in {self._backend()}: nothing was created for it yet") from None
        except FileNotFoundError:
            raise PulumiError("the pulumi CLI is not installed (the Automation API drives it): install it, e.g. "
                              "curl -fsSL https://get.pulumi.com | sh, or the pulumi/actions setup step in CI") from None
        except auto.CommandError as e:
            raise PulumiError(f"pulumi could not open stack {name!r} in {self._backend()}: {_short(e)}") from None

    def _backend(self) -> str:
        return self.env.get("PULUMI_BACKEND_URL") or "the logged-in Pulumi backend"

    def _set_user_secrets(self, stack: auto.Stack, names: Iterable[str]) -> list[str]:
        """Copy ``PGFLEET_<NAME>`` variables into the stack's secret config; returns the names set."""
        done = []
        for n in names:
            value = self.env.get(secret_env(n))
            if value:
                stack.set_config(f"pgfleet:{n}", auto.ConfigValue(value=value, secret=True))
                done.append(n)
        return done

    def up(self, name: str, config_file: Path, *, user_secrets: Iterable[str] = ()) -> dict[str, Output]:
        """``pulumi up`` (creating the stack when it does not exist); the stack's outputs."""
        stack = self._stack(name, create=True)
        self._set_user_secrets(stack, user_secrets)
        try:
            result = stack.up(on_output=self.echo, color="never", config_file=str(config_file), suppress_progress=True)
        except auto.CommandError as e:
            raise PulumiError(f"pulumi up of stack {name!r} failed: {_short(e)}") from None
        return {k: Output(v.value, v.secret) for k, v in result.outputs.items()}

    def preview(self, name: str, config_file: Path, *, expect_no_changes: bool = False,
                user_secrets: Iterable[str] = ()) -> dict[str, int]:
        """``pulumi preview``; the planned operations by kind (``same``, ``update``, ``create`` …)."""
        stack = self._stack(name, create=True)
        self._set_user_secrets(stack, user_secrets)
        try:
            result = stack.preview(on_output=self.echo, color="never", config_file=str(config_file),
                                   expect_no_changes=expect_no_changes or None, suppress_progress=True)
        except auto.CommandError as e:
            what = "drift: pulumi preview found changes" if expect_no_changes else "pulumi preview failed"
            raise PulumiError(f"{what} for stack {name!r}: {_short(e)}") from None
        # keys are OpType members (a str Enum whose f-string is "OpType.SAME"): their values read as Pulumi prints them
        return {str(getattr(k, "value", k)): n for k, n in result.change_summary.items()}

    def destroy(self, name: str, config_file: Path) -> None:
        """``pulumi destroy``, then remove the stack (its history and config in the backend) too."""
        stack = self._stack(name, create=False)
        try:
            stack.destroy(on_output=self.echo, color="never", config_file=str(config_file), suppress_progress=True)
            stack.workspace.remove_stack(name)
        except auto.CommandError as e:
            raise PulumiError(f"pulumi destroy of stack {name!r} failed: {_short(e)}") from None

    def outputs(self, name: str) -> dict[str, Output]:
        stack = self._stack(name, create=False)
        try:
            return {k: Output(v.value, v.secret) for k, v in stack.outputs().items()}
        except auto.CommandError as e:
            raise PulumiError(f"cannot read the outputs of stack {name!r}: {_short(e)}") from None

    def resource_counts(self) -> dict[str, int | None]:
        """Every stack in the backend with its resource count (None: Pulumi does not say)."""
        try:
            ws = auto.LocalWorkspace(work_dir=str(self.work_dir), env_vars=self.env)
            return {s.name: s.resource_count for s in ws.list_stacks()}
        except FileNotFoundError:
            raise PulumiError("the pulumi CLI is not installed (the Automation API drives it)") from None
        except auto.CommandError as e:
            raise PulumiError(f"pulumi could not list the stacks in {self._backend()}: {_short(e)}") from None


def _short(e: Exception) -> str:
    """The CLI's last lines: the reason, without pages of engine log."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return "\n".join(lines[-8:])
