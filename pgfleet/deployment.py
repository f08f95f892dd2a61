"""Running the pyinfra deploy for a stack and reading what it did.

``pgfleet deploy`` is a thin wrapper: it validates the stack, makes sure the
stack's secrets exist, computes every host's data once and hands it (with the
secrets) to pyinfra in one 0600 file (:mod:`pgfleet.handoff`), then runs
exactly what a user would run by hand (``pyinfra -y --json
pyinfra_inventory.py deploy.py`` with ``PGFLEET_STACK``). Changes come from
pyinfra's JSON results; the roles' notes and the failed step, its host and its
output come back as records.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from pgfleet import ROOT, handoff
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
    # host data and secrets go to pyinfra in one 0600 file, results come back as records beside it
    handoff.write(handoff.compute(st))
    results = handoff.results_path(stack)
    results.unlink(missing_ok=True)
    env[handoff.RESULTS_ENV] = str(results)
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None and proc.stdout is not None
        # the JSON results outgrow a pipe's buffer: read them beside the log, or pyinfra blocks writing them
        # while we still wait for the end of its log
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            stdout = pool.submit(proc.stdout.read)
            log: list[str] = []
            for line in proc.stderr:
                log.append(line.rstrip("\n"))
                if echo:
                    sys.stderr.write(line)
                    sys.stderr.flush()
            out = stdout.result()
        rc = proc.wait()
        records = handoff.records(results)
    finally:
        handoff.remove(stack)
    if rc != 0:
        raise DeployError(failure_message(stack, records, log))
    return parse_results(stack, dry, out, records)


def _given(spec: Spec | None) -> Spec:
    if spec is None:
        raise TypeError("deployment.run(name, spec): a stack given by name needs its validated spec")
    return spec


def notes(records: list[dict[str, Any]]) -> list[str]:
    """What the roles said, as ``[host] note: …`` and ``[host] <converge step>: <output line>``."""
    out = []
    for r in records:
        if r["kind"] == "note":
            out.append(f"[{r['host']}] note: {r['message']}")
        elif r["kind"] == "output":
            out.append(f"[{r['host']}] {r['title']}: {r['line']}")
    return out


def parse_results(stack: str, dry: bool, stdout: str, records: list[dict[str, Any]]) -> DeployResult:
    """Changes from pyinfra's JSON results (the plan when ``dry``), notes from the roles' records."""
    result = DeployResult(stack=stack, dry=dry)
    result.notes = notes(records)
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


def failure_message(stack: str, records: list[dict[str, Any]], log: list[str]) -> str:
    """Name the step that failed, the host(s) and their output, from the deploy's error records.

    Without one, pyinfra stopped before any operation (connecting or preparing):
    the end of its log says why.
    """
    errors = [r for r in records if r["kind"] == "error"]
    if errors:
        step = errors[0]["step"]
        hosts = sorted({r["host"] for r in errors if r["step"] == step})
        body = [line.strip() for r in records if r["kind"] == "error_output" and r["host"] in hosts
                for line in r["output"] if line.strip()][:60]
        if not body:  # e.g. an exception in a role's Python step: pyinfra logged it
            body = [line.strip() for line in log if line.strip()][-40:]
    else:
        step, hosts = "before any operation (connecting or preparing)", []
        body = [line.strip() for line in log if line.strip()][-40:]
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
