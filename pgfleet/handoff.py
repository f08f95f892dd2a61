"""The deploy's hand-off: what the parent computed, for the pyinfra process, and what pyinfra did, back.

The parent (:func:`pgfleet.deployment.run`) computes every host's data once and
writes it, with the stack's secrets under a separate key, to one 0600 file in
the stack's state directory, recording the stack file's hash; it deletes the
file after the run, also on failure. ``pyinfra_inventory.py`` and the roles only
read it (:func:`current`); a plain ``PGFLEET_STACK=lab pyinfra -y
pyinfra_inventory.py deploy.py`` computes it in memory when the file is absent
or stale (the stack file's hash differs).

Results come back as JSON lines in a file next to it (its path in
``PGFLEET_RESULTS``): the roles' notes and converge output, and for each
operation that failed its step, host and output (deploy.py's state callbacks).
Without ``PGFLEET_RESULTS`` (a plain pyinfra run) nothing is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgfleet import hostdata, state
from pgfleet import spec as spec_mod
from pgfleet.secrets import Secrets
from pgfleet.stack import Stack

HANDOFF_FILE = "deploy-handoff.json"
RESULTS_FILE = "deploy-results.jsonl"
#: Where the pyinfra process appends its result records (set by the parent).
RESULTS_ENV = "PGFLEET_RESULTS"

Groups = dict[str, list[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Handoff:
    stack: str
    stack_file: str
    stack_file_sha256: str
    #: pyinfra groups (one per inventory role) of (host name, host data)
    groups: Groups
    secrets: Secrets
    #: the pgfleet process that wrote it: a file whose writer is gone is a leftover (killed run), never reused
    owner_pid: int = 0

    def to_json(self) -> str:
        return json.dumps({"stack": self.stack, "stack_file": self.stack_file, "stack_file_sha256": self.stack_file_sha256,
                           "groups": self.groups, "secrets": self.secrets.model_dump(), "owner_pid": self.owner_pid})

    @classmethod
    def from_json(cls, text: str) -> Handoff:
        doc = json.loads(text)
        groups = {role: [(name, data) for name, data in hosts] for role, hosts in doc["groups"].items()}
        return cls(doc["stack"], doc["stack_file"], doc["stack_file_sha256"], groups, Secrets.model_validate(doc["secrets"]),
                   int(doc.get("owner_pid", 0)))


def handoff_path(stack: str) -> Path:
    return state.stack_dir(stack) / HANDOFF_FILE


def results_path(stack: str) -> Path:
    return state.stack_dir(stack) / RESULTS_FILE


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compute(st: Stack) -> Handoff:
    """Host data for every host of the stack (its inventory: reachable) and its secrets."""
    groups = hostdata.pyinfra_groups(st.spec, st.inventory())
    return Handoff(st.name, str(st.file.resolve()), file_sha256(st.file), groups, st.secrets)


def write(h: Handoff) -> Path:
    path = handoff_path(h.stack)
    state.write_private(path, dataclasses.replace(h, owner_pid=os.getpid()).to_json())
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def read(stack: str) -> Handoff | None:
    """The stack's hand-off file; None when there is none or it is stale (the stack file changed since)."""
    path = handoff_path(stack)
    if not path.is_file():
        return None
    h = Handoff.from_json(path.read_text())
    if not _alive(h.owner_pid):  # left by a run that was killed: it holds secrets, so it goes now
        path.unlink(missing_ok=True)
        return None
    stack_file = Path(h.stack_file)
    if h.stack != stack or not stack_file.is_file() or file_sha256(stack_file) != h.stack_file_sha256:
        return None
    return h


def remove(stack: str) -> None:
    for path in (handoff_path(stack), results_path(stack)):
        path.unlink(missing_ok=True)


_current: dict[str, Handoff] = {}


def current(stack: str) -> Handoff:
    """The hand-off of the running deploy (``stack``: a name or a stack file): the file when fresh,
    else computed here and kept in memory only (a plain pyinfra run leaves no secrets behind)."""
    name = spec_mod.stack_name(stack)
    if name not in _current:
        _current[name] = read(name) or compute(Stack.open(stack))
    return _current[name]


def secrets(stack: str) -> Secrets:
    """The stack's secrets for the roles (never host data)."""
    return current(stack).secrets


# ---- results: JSON lines, appended by the pyinfra process, read by the parent


def record(kind: str, **fields: Any) -> None:
    """Append one result record (``kind``: note, output, error, connect_error) when the parent asked for them."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps({"kind": kind, **fields}) + "\n")


def records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a killed process
    return out
