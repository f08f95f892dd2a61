"""GitHub Actions' workflow commands: step outputs in ``$GITHUB_OUTPUT`` and ``::add-mask::`` for secrets.

GitHub masks a secret in the job's log only once it has been told the value,
and it matches line by line: a multi-line secret (a PEM key) needs one mask
per line. Masks are printed before anything else that could show the value.
Outputs use the ``name<<DELIMITER`` form, so multi-line values (the CA) work,
with a delimiter that cannot occur in the value.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from pgfleet.errors import PgfleetError

OUTPUT_ENV = "GITHUB_OUTPUT"


def mask_lines(values: Iterable[str]) -> list[str]:
    """``::add-mask::`` commands for every non-empty line of every value, each line once."""
    seen: dict[str, None] = {}
    for v in values:
        for line in str(v).splitlines():
            if line.strip():
                seen.setdefault(line.strip(), None)
    return [f"::add-mask::{line}" for line in seen]


def output_path(env: Mapping[str, str] | None = None) -> Path:
    path = (os.environ if env is None else env).get(OUTPUT_ENV)
    if not path:
        raise PgfleetError(f"--output github needs ${OUTPUT_ENV} (set by GitHub Actions in every step): "
                           "run it inside a workflow step, or set it to a file to try it")
    return Path(path)


def format_outputs(outputs: Mapping[str, str]) -> str:
    """The text to append to ``$GITHUB_OUTPUT``."""
    out = []
    for name, value in outputs.items():
        delim = f"ghadelimiter_{secrets.token_hex(8)}"
        while delim in value:
            delim = f"ghadelimiter_{secrets.token_hex(8)}"
        out.append(f"{name}<<{delim}\n{value}\n{delim}\n")
    return "".join(out)


def write_outputs(path: Path, outputs: Mapping[str, str]) -> None:
    with path.open("a") as f:
        f.write(format_outputs(outputs))


def parse_outputs(text: str) -> dict[str, str]:
    """What GitHub reads back from ``$GITHUB_OUTPUT`` (both ``name=value`` and ``name<<DELIM`` forms)."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1:end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
        else:
            i += 1
    return out
