"""Where pgfleet keeps local state: lab hosts, keys, the lab's secrets, caches.

One directory outside the git tree (``/var/lib/pgfleet`` unless
``PGFLEET_STATE_DIR`` says otherwise), one subdirectory per stack, mode 0700.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT = Path("/var/lib/pgfleet")


def root() -> Path:
    return Path(os.environ.get("PGFLEET_STATE_DIR", DEFAULT))


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def stack_dir(stack: str) -> Path:
    """Per-stack state (secrets, lab hosts, SSH keys); created 0700."""
    return private_dir(root() / stack)


def cache_dir() -> Path:
    """Shared across stacks: the lab's base image, apt cache."""
    return private_dir(root() / "cache")


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file only root can read, atomically (never a moment world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
