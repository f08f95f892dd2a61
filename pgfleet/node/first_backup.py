"""first-backup STANZA UNIT: start the full-backup unit unless the repository already holds a backup.

Every member runs it at deploy; the unit's guard (``backup-member``) backs up on one member only, and a member
that finds a backup (another member's, or an older one) does nothing. A failing backup fails the deploy step
(``systemctl start`` waits for the oneshot unit; its journal says why). It runs once per repository: a database
that is large when it first gets a repository makes that deploy wait for its first full backup.
"""

from __future__ import annotations

import subprocess
import sys

from . import backrest
from .config import NodeConfig


def has_backup(info: list[dict]) -> bool:
    return any(stanza.get("backup") for stanza in info)


def main(argv: list[str], config: NodeConfig) -> int:
    if len(argv) != 2:
        print("usage: first-backup STANZA UNIT", file=sys.stderr)
        return 2
    stanza, unit = argv
    try:
        found = has_backup(backrest.info(stanza, config.postgres_user))
    except backrest.CommandFailed as e:
        print(f"first-backup: {e}", file=sys.stderr)
        return 1
    if found:
        print(f"stanza {stanza} has a backup already")
        return 0
    return subprocess.run(["systemctl", "start", unit]).returncode
