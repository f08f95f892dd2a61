"""``pgbackrest info`` as the node programs read it: JSON, run as PostgreSQL's OS user, failures with pgBackRest's reason."""

from __future__ import annotations

import json
import subprocess


class CommandFailed(RuntimeError):
    """A command failed; the message carries its own words (stderr), not only an exit status."""


def run(argv: list[str], timeout: float) -> str:
    """stdout of ``argv``; CommandFailed naming the command and its stderr when it fails or hangs."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{argv[0]}: no answer within {timeout:g} s") from None
    if cp.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited {cp.returncode}: {(cp.stderr or cp.stdout).strip()[-500:]}")
    return cp.stdout


def info(stanza: str, user: str, timeout: float = 60) -> list[dict]:
    """The stanza's ``pgbackrest info`` document (warnings go to the log, never into the JSON)."""
    return list(json.loads(run(["runuser", "-u", user, "--", "pgbackrest", f"--stanza={stanza}", "--log-level-file=off",
                                "--log-level-console=error", "--output=json", "info"], timeout)))
