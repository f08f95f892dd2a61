"""The lab's apt proxy: apt-cacher-ng on the bridge address.

Hosts have no route off the bridge, so apt inside them goes through this
proxy, which fetches from deb.debian.org. The lab starts it as its own
process (config and PID under the lab's state dir) and keeps the package
cache across `lab down`, so later labs install packages quickly.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from pgfleet import state
from pgfleet.errors import LabError
from pgfleet.lab.layout import APT_PROXY_PORT, DEBIAN_MIRROR, SECURITY_MIRROR, Layout
from pgfleet.lab.system import kill_pid, processes, read_pid, tool
from pgfleet.templating import render


def pid_file(layout: Layout) -> Path:
    """The PID the lab records for the apt-cacher-ng it started."""
    return layout.proxy_dir / "apt-cacher-ng.pid"


def _conf_dir(layout: Layout) -> Path:
    return layout.proxy_dir / "conf"


def write_config(layout: Layout) -> Path:
    conf = state.private_dir(_conf_dir(layout))
    cache = state.private_dir(Layout.apt_cache())
    logs = state.private_dir(layout.proxy_dir / "log")
    (conf / "acng.conf").write_text(render(
        "lab/acng.conf.j2", cache_dir=cache, log_dir=logs, bind_address=layout.bridge_address, port=APT_PROXY_PORT,
        pid_file=layout.proxy_dir / "acng-self.pid", security_backend=SECURITY_MIRROR))
    (conf / "backends_debian").write_text(render("lab/backends_debian.j2", debian_mirror=DEBIAN_MIRROR))
    return conf


def answering(layout: Layout, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((layout.bridge_address, APT_PROXY_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def running_pids(layout: Layout) -> list[int]:
    """apt-cacher-ng processes this lab started: the recorded PID, and any running with this lab's config."""
    conf = str(_conf_dir(layout))
    recorded = read_pid(pid_file(layout))
    return sorted(p.pid for p in processes()
                  if p.argv and p.argv[0].endswith("apt-cacher-ng") and (conf in p.argv or p.pid == recorded))


def ensure(layout: Layout) -> bool:
    """Start the proxy unless this lab's one is already answering. Returns True if started now."""
    if running_pids(layout) and answering(layout):
        return False
    stop(layout)
    if answering(layout):
        raise LabError(f"something that is not this lab's apt proxy already listens on {layout.bridge_address}:{APT_PROXY_PORT} "
                       f"(see 'ss -ltnp sport = :{APT_PROXY_PORT}'); stop it, then run 'pgfleet lab up' again")
    conf = write_config(layout)
    log = open(layout.proxy_dir / "apt-cacher-ng.out", "ab")
    proc = subprocess.Popen([tool("apt-cacher-ng"), "-c", str(conf), "ForeGround=1"], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    log.close()
    state.write_private(pid_file(layout), f"{proc.pid}\n")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = (layout.proxy_dir / "apt-cacher-ng.out").read_text(errors="replace")[-2000:]
            raise LabError(f"the apt proxy (apt-cacher-ng) exited {proc.returncode} at start: {out or '(no output)'}")
        if answering(layout, 0.5):
            return True
        time.sleep(0.2)
    raise LabError(f"the apt proxy (apt-cacher-ng, pid {proc.pid}) does not answer on {layout.bridge_address}:{APT_PROXY_PORT} after 15 s")


def stop(layout: Layout) -> None:
    for pid in running_pids(layout):
        kill_pid(pid, what="stopping the apt proxy (apt-cacher-ng)")
    pid_file(layout).unlink(missing_ok=True)


def purge() -> None:
    """Delete the package cache (``lab down --purge``)."""
    import shutil

    if Layout.apt_cache().exists():
        shutil.rmtree(Layout.apt_cache())


__all__ = ["ensure", "stop", "running_pids", "answering", "purge"]
