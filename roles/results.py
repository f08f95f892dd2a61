"""What the deploy did, as records for ``pgfleet deploy`` (:mod:`pgfleet.handoff`): failed steps, hosts and output.

pyinfra calls :class:`Recorder` for each operation on each host; an operation
that failed is recorded with its name and host, and, once pyinfra has stored
its output (after the callback, so at the end of the operation or of the
process), with that output. Nothing is recorded in a plain pyinfra run.
"""

from __future__ import annotations

import atexit
from typing import Any

from pyinfra.api.state import BaseStateCallback

from pgfleet import handoff

_failed: list[tuple[Any, Any, str]] = []  # (state, host, op_hash) of failed operations whose output is still to record
_registered: set[int] = set()


def step_name(state: Any, op_hash: str) -> str:
    return ", ".join(state.get_op_meta(op_hash).names) or "Operation"


class Recorder(BaseStateCallback):
    @staticmethod
    def operation_host_error(state: Any, host: Any, op_hash: str, retry_count: int = 0, max_retries: int = 0) -> None:
        handoff.record("error", host=host.name, step=step_name(state, op_hash))
        _failed.append((state, host, op_hash))

    @staticmethod
    def operation_end(state: Any, op_hash: str) -> None:
        flush_output()


def flush_output() -> None:
    """The stored output (stderr, then stdout) of each failed operation not recorded yet."""
    waiting = []
    while _failed:
        state, host, op_hash = item = _failed.pop(0)
        meta = state.get_op_data_for_host(host, op_hash).operation_meta
        if not meta.is_complete():
            waiting.append(item)  # its output is stored later: record it then
            continue
        lines = list(meta.stderr_lines) + list(meta.stdout_lines)
        if lines:
            handoff.record("error_output", host=host.name, step=step_name(state, op_hash), output=lines)
    _failed.extend(waiting)


def register(state: Any) -> None:
    """Once per pyinfra state (deploy.py runs once per host)."""
    if id(state) in _registered:
        return
    _registered.add(id(state))
    state.add_callback_handler(Recorder())
    # a failure on the last active host ends the run before operation_end: record its output on the way out
    atexit.register(flush_output)
