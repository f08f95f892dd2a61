"""What every role shares: template rendering, custom facts, the converge pattern.

Templates are rendered here (jinja2, StrictUndefined) and uploaded as
in-memory files, so secrets never appear on a command line or in pyinfra's
output, and a missing variable fails the deploy instead of writing a blank.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FactBase, OperationError
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, python

from pgfleet import contract, handoff, templating
from pgfleet.secrets import Secrets

TEMPLATES = templating.TEMPLATES
#: Where converge steps keep the desired input and, once applied, a copy of it.
DESIRED_DIR = contract.DESIRED_DIR
APPLIED_DIR = contract.APPLIED_DIR

#: The shared StrictUndefined environment, with block tags that leave no blank lines.
_env = templating._env().overlay(trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>``; every variable it uses must be given."""
    return _env.get_template(template).render(**context)


def secrets() -> Secrets:
    """The stack's secrets (the deploy's hand-off file carries them beside, never in, host data)."""
    return handoff.secrets(host.data.pgfleet_stack)


def data() -> dict[str, Any]:
    """This host's data with the running deploy's defaults underneath (a plain dict for templates)."""
    return host.data.dict()


def put(name: str, dest: str, content: str, mode: str = "0644", user: str = "root", group: str = "root"):
    """Upload ``content`` (never shown in output) as ``dest``; the operation's result tells if it changed."""
    return files.put(name=name, src=io.StringIO(content), dest=dest, mode=mode, user=user, group=group)


def template(name: str, template_path: str, dest: str, mode: str = "0644", user: str = "root", group: str = "root", **context: Any):
    return put(name, dest, render(template_path, **context), mode=mode, user=user, group=group)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def converge(name: str, content: str, command: str, *, when: bool = True) -> bool:
    """Apply ``content`` with ``command`` unless exactly this content was applied before.

    The desired input goes to ``DESIRED_DIR/<name>`` (0600); ``command`` reads
    it from there (``{desired}`` in it is replaced). Only when the command
    succeeds is a copy kept in ``APPLIED_DIR``, so a failed or interrupted
    apply is retried by the next deploy and an applied one is never repeated.
    The command's output is shown; a failure stops the deploy with it.
    Returns whether an apply was scheduled.
    """
    desired = f"{DESIRED_DIR}/{name}"
    applied = f"{APPLIED_DIR}/{name}"
    if not when or host.get_fact(Sha256File, path=applied) == sha256(content):
        return False
    put(f"Desired {name}", desired, content, mode="0600")
    cmd = f"{command.format(desired=shlex.quote(desired))} && install -D -m 0600 {shlex.quote(desired)} {shlex.quote(applied)}"
    python.call(name=f"Apply {name}", function=run_reporting, command=cmd, title=name)
    return True


def run_reporting(command: str, title: str) -> None:
    """Run ``command`` on the current host, show its output, raise with it on failure."""
    ok, output = host.run_shell_command(command=command, print_output=False)
    if not ok:
        handoff.record("error_output", host=host.name, step=f"Apply {title}", output=output.output.splitlines())
        raise OperationError(f"{title} failed on {host.name}:\n{output.output}")
    for line in output.stdout_lines:
        logger.warning(f"[{host.name}] {title}: {line}")
        handoff.record("output", host=host.name, title=title, line=line)


class Virtualization(FactBase):
    """``systemd-detect-virt --container``: the container kind, or ``none`` on a real/virtual machine."""

    def command(self) -> str:
        # exit status 1 means "not in a container" (it prints "none"); anything else is an error
        return "systemd-detect-virt --container; rc=$?; [ $rc -le 1 ]"

    def process(self, output: list[str]) -> str:
        value = "".join(output).strip()
        if not value:
            raise ValueError("systemd-detect-virt printed nothing")
        return value


class HardNofile(FactBase):
    """The host's hard open-files limit (services cannot be given more)."""

    def command(self) -> str:
        return "ulimit -Hn"

    def process(self, output: list[str]) -> int:
        value = "".join(output).strip()
        return 1 << 20 if value == "unlimited" else int(value)


class ServiceActive(FactBase):
    """Whether a systemd unit is active right now (``systemctl is-active``)."""

    def command(self, unit: str) -> str:
        return f"systemctl is-active {shlex.quote(unit)} || true"

    def process(self, output: list[str]) -> bool:
        return "".join(output).strip() == "active"


def in_container() -> str | None:
    """The container kind when this host is one (lab: nspawn), else None."""
    v = host.get_fact(Virtualization)
    return None if v == "none" else v


def note(message: str) -> None:
    """A visible note in the deploy output (skips are said, never silent)."""
    logger.warning(f"[{host.name}] note: {message}")
    handoff.record("note", host=host.name, message=message)
