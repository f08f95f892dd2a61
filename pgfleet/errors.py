"""One exception hierarchy for everything pgfleet refuses or fails at.

The CLI catches :class:`PgfleetError` and prints its message without a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class PgfleetError(Exception):
    """Base of every error pgfleet reports to a user."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a stack file: where, what, and how to fix it."""

    field: str
    value: object
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.value!r} — {self.message}. Fix: {self.fix}"


class SpecError(PgfleetError):
    """A stack file is invalid; carries every problem found, not just the first."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class StackNotFound(PgfleetError):
    """No stack file for the name given."""


class LabError(PgfleetError):
    """The lab cannot be brought up, reached or torn down."""


class DeployError(PgfleetError):
    """A deploy step failed on a host."""


class ClusterError(PgfleetError):
    """The running cluster is not in the state a command needs."""


class NotPossible(PgfleetError):
    """A step needs something the stack's provider cannot do (e.g. power off a static machine); the message says why."""


class MonitoringError(PgfleetError):
    """The stack's Prometheus cannot be reached, is not trusted, or answers an error; the message names the URL."""
