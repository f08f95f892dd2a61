"""Running commands and finding processes on the lab machine.

Every command goes through :func:`run`, which raises :class:`LabError` with
the command and its output; nothing is swallowed. Processes are found through
``/proc`` so `lab down` can clean up after a crash that lost its PID files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pgfleet.errors import LabError


def run(argv: list[str], *, what: str, check: bool = True, timeout: float | None = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; on failure raise LabError naming ``what`` and the output."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            env=None if env is None else {**os.environ, **env})
    except FileNotFoundError:
        raise LabError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{what}: '{' '.join(argv)}' did not finish within {timeout:.0f} s; output: {_text(e.stdout)}{_text(e.stderr)}") from None
    if check and cp.returncode != 0:
        out = (cp.stdout + cp.stderr).strip()
        raise LabError(f"{what}: '{' '.join(argv)}' exited {cp.returncode}: {out[-3000:] or '(no output)'}")
    return cp


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


# --------------------------------------------------------------------------- preflight


def systemd_is_init() -> bool:
    """True on a normal systemd machine (sd_booted's test); False in sandboxes like this one."""
    return Path("/run/systemd/system").is_dir()


def nspawn_flags(systemd_init: bool) -> list[str]:
    """Without systemd as PID 1 there is no bus to register with: keep nspawn in our cgroup."""
    return [] if systemd_init else ["--register=no", "--keep-unit"]


INSTALL_HINT = "apt-get install systemd-container debootstrap apt-cacher-ng iproute2 openssh-client"


def find(name: str) -> str | None:
    """A tool's path: on PATH, or in /usr/sbin (not on every non-login PATH)."""
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)


REQUIRED_TOOLS = ("systemd-nspawn", "debootstrap", "apt-cacher-ng", "ip", "ssh", "ssh-keygen", "mount", "umount", "chroot")


def preflight() -> None:
    """Refuse early and clearly: root and the tools the lab needs."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (systemd-nspawn, bridges, overlay mounts): run it as root, e.g. sudo pgfleet lab up")
    missing = [t for t in REQUIRED_TOOLS if find(t) is None]
    if missing:
        raise LabError(f"missing {', '.join(missing)}: install with '{INSTALL_HINT}' (or run ./bootstrap setup)")


def tool(name: str) -> str:
    found = find(name)
    if found is None:
        raise LabError(f"{name} is not installed: {INSTALL_HINT}")
    return found


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    argv: tuple[str, ...]


def processes() -> list[Proc]:
    """Every process on the machine with its parent and command line."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "cmdline").read_bytes()
            stat = Path(entry.path, "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append(Proc(int(entry.name), ppid, tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)))
    return out


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(x) for x in text.split()]
    except (FileNotFoundError, ProcessLookupError):
        return [p.pid for p in processes() if p.ppid == pid]


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def wait_reaped(pids: list[int], timeout: float = 10) -> None:
    """Best effort: let dead processes leave the process table (so `pgrep` shows nothing).

    Ours are reaped here; orphans are reaped by PID 1, which on some machines
    does it only every few seconds. A lingering zombie holds no resources.
    """
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not Path(f"/proc/{pid}").exists():
                pending.remove(pid)
        if pending:
            time.sleep(0.2)


def kill_pid(pid: int, *, what: str, term_timeout: float = 10) -> None:
    """End a process the lab started: SIGTERM, then SIGKILL if it lingers."""
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_gone(pid, term_timeout):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not wait_gone(pid, 10):
        raise LabError(f"{what}: process {pid} survived SIGKILL")


# --------------------------------------------------------------------------- mounts


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first, so they unmount cleanly)."""
    prefix = str(path).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mp = fields[1].replace("\\040", " ")
        if mp.startswith(prefix) or mp == prefix.rstrip("/"):
            found.append(mp)
    return sorted(set(found), key=lambda m: m.count("/"), reverse=True)


def is_mounted(path: Path) -> bool:
    return str(path) in mounts_under(path)
