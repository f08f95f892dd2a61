"""Reading a deployed Pulumi stack's outputs through the pulumi CLI."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from pgfleet.errors import PgfleetError


def stack_output(stack: str, name: str, *, show_secrets: bool = False) -> Any:
    """``pulumi stack output NAME --json`` for ``stack``, parsed; clear errors when it cannot be read."""
    argv = ["pulumi", "stack", "output", name, "--json", "--stack", stack]
    if show_secrets:
        argv.append("--show-secrets")
    try:
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise PgfleetError(f"the pulumi CLI is not installed: install it, then run 'pulumi up -s {stack}'") from None
    except subprocess.CalledProcessError as e:
        raise PgfleetError(f"'pulumi stack output {name} -s {stack}' failed: {e.stderr.strip()}") from None
    return json.loads(out)
