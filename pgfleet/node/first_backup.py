"""first-backup STANZA UNIT: start the full-backup unit unless the repository already holds a backup.

Every member runs it at deploy; the unit's guard (``backup-member``) backs up on one member only, and a member
that finds a backup (another member's, or an older one) does nothing. A failing backup fails the deploy step.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .config import NodeConfig


def has_backup(info: list[dict]) -> bool:
    return any(stanza.get("backup") for stanza in info)


def main(argv: list[str], config: NodeConfig) -> int:
    if len(argv) != 2:
        print("usage: first-backup STANZA UNIT", file=sys.stderr)
        return 2
    stanza, unit = argv
    out = subprocess.run(["runuser", "-u", config.postgres_user, "--", "pgbackrest", f"--stanza={stanza}", "--log-level-file=off",
                          "--output=json", "info"], capture_output=True, text=True, check=True).stdout
    if has_backup(json.loads(out)):
        print(f"stanza {stanza} has a backup already")
        return 0
    return subprocess.run(["systemctl", "start", unit]).returncode
