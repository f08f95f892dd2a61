"""Running the pyinfra deploy for a stack and reading what it did.

``pgfleet deploy`` is a thin wrapper: it validates the stack, makes sure the
stack's secrets exist, then runs exactly what a user would run by hand
(``pyinfra -y --json pyinfra_inventory.py deploy.py`` with ``PGFLEET_STACK``)
and reads pyinfra's JSON results to report changes, or the failed step, its
host and its output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

from pgfleet import ROOT
from pgfleet.backup.repo import claim_buckets
from pgfleet.errors import DeployError
from pgfleet.spec import Spec
from pgfleet.stack import Stack

INVENTORY_FILE = "pyinfra_inventory.py"
DEPLOY_FILE = "deploy.py"


@dataclass
class DeployResult:
    stack: str
    dry: bool
    #: operation name -> hosts it changed
    changed: dict[str, list[str]] = field(default_factory=dict)
    unchanged: int = 0
    #: "[host] …" notes the roles printed (skips, restarts, converge output)
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return sum(len(h) for h in self.changed.values())


def command(stack: str, *, dry: bool = False, limit: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The pyinfra command line (no secrets on it) and its environment."""
    argv = [sys.executable, "-m", "pyinfra", "--json", "-y", INVENTORY_FILE, DEPLOY_FILE]
    if dry:
        argv.insert(3, "--dry")
    if limit:
        argv[3:3] = ["--limit", limit]
    env = {**os.environ, "PGFLEET_STACK": stack, "PYINFRA_PROGRESS": "off"}
    return argv, env


def run(stack: str | Stack, spec: Spec | None = None, *, dry: bool = False, limit: str | None = None,
        echo: bool = True) -> DeployResult:
    """Deploy ``stack`` (an opened :class:`Stack`, or its name and validated spec); raise
    :class:`DeployError` naming the failed step, host and output."""
    st = stack if isinstance(stack, Stack) else Stack(stack, _given(spec))
    stack, spec = st.name, st.spec
    inv = st.inventory()
    if limit:
        inv.host(limit)  # a clear error for an unknown host
    sec = st.secrets  # created (lab) or fetched before any host is touched
    if spec.backups.enabled and not dry:
        # wrong keys or someone else's repository stop the deploy here, before any host changes
        for line in claim_buckets(stack, spec, sec):
            if echo:
                sys.stderr.write(line + "\n")
    argv, env = command(stack, dry=dry, limit=limit)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdout is not None
    log: list[str] = []
    for line in proc.stderr:
        log.append(line.rstrip("\n"))
        if echo:
            sys.stderr.write(line)
            sys.stderr.flush()
    out = proc.stdout.read()
    rc = proc.wait()
    if rc != 0:
        raise DeployError(failure_message(stack, log))
    return parse_results(stack, dry, out, log)


def _given(spec: Spec | None) -> Spec:
    if spec is None:
        raise TypeError("deployment.run(name, spec): a stack given by name needs its validated spec")
    return spec


def parse_results(stack: str, dry: bool, stdout: str, log: list[str]) -> DeployResult:
    result = DeployResult(stack=stack, dry=dry)
    result.notes = [line.strip() for line in log if re.match(r"\s*\[[^\]]+\] (note|[\w.-]+\.(json|sql)):", line)]
    try:
        doc = json.loads(stdout[stdout.index("{"):]) if "{" in stdout else {}
    except ValueError as e:
        raise DeployError(f"pyinfra's results for {stack} are not JSON ({e}): {stdout[:500]}") from None
    if dry:
        for op in doc.get("plan") or []:
            hosts = op.get("hosts_with_change", []) + op.get("hosts_with_conditional_change", [])
            if hosts:
                result.changed[op["name"]] = sorted(hosts)
        return result
    for op in (doc.get("results") or {}).get("operations", []):
        if op["success"]:
            result.changed[op["name"]] = op["success"]
        result.unchanged += len(op["no_change"])
    return result


def failure_message(stack: str, log: list[str]) -> str:
    """Name the step that failed, the host(s) and their output, from pyinfra's log."""
    step = None
    failed: list[str] = []
    for i, line in enumerate(log):
        m = re.match(r"--> Starting operation: (.*)", line)
        if m:
            step, failed = m.group(1).strip(), []
            continue
        if re.search(r"\] (Error|Command socket/SSH error|Failed)", line) or "Unexpected error" in line:
            failed.append(line.strip())
    hosts = sorted({m.group(1) for line in log if (m := re.match(r"\s*\[([^\]]+)\] .*(Error|error)", line))})
    # the output of the failing step: lines between its start and the results table
    start = max((i for i, line in enumerate(log) if line.startswith("--> Starting operation")), default=0)
    body = [line.strip() for line in log[start + 1:] if line.strip() and not line.strip().endswith("Skipped")
            and not line.startswith("-->")][:60]
    if not any(line.startswith("--> Starting operation") for line in log):
        body = [line.strip() for line in log if line.strip()][-40:]
        step = "before any operation (connecting or preparing)"
    output = "\n    ".join(body)
    return (f"deploy of {stack} failed at step {step!r} on {', '.join(hosts) or 'a host'}; nothing after it ran.\n"
            f"    {output}")


def summary(result: DeployResult) -> str:
    verb = "would change" if result.dry else "changed"
    if not result.changed:
        return f"{result.stack}: no changes" + ("" if result.dry else f" ({result.unchanged} operations already as wanted)")
    lines = [f"{result.stack}: {verb} {result.changes} (operation, host) pair(s):"]
    lines += [f"  {name}: {', '.join(hosts)}" for name, hosts in result.changed.items()]
    return "\n".join(lines)
