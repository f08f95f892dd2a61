"""The lab's apt proxy: apt-cacher-ng on the bridge address.

Hosts have no route off the bridge, so apt inside them goes through this
proxy, which fetches from deb.debian.org. The lab starts it as its own
process (config and PID under the lab's state dir) and keeps the package
cache across `lab down`, so later labs install packages quickly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pgfleet import state
from pgfleet.lab.daemon import Daemon
from pgfleet.lab.layout import APT_PROXY_PORT, DEBIAN_MIRROR, SECURITY_MIRROR, Layout
from pgfleet.lab.system import tool
from pgfleet.templating import render


def _conf_dir(layout: Layout) -> Path:
    return layout.proxy_dir / "conf"


def daemon(layout: Layout) -> Daemon:
    return Daemon("the apt proxy (apt-cacher-ng)", "apt-cacher-ng", layout.proxy_dir, str(_conf_dir(layout)),
                  layout.bridge_address, APT_PROXY_PORT)


def write_config(layout: Layout) -> Path:
    conf = state.private_dir(_conf_dir(layout))
    cache = state.private_dir(Layout.apt_cache())
    logs = state.private_dir(layout.proxy_dir / "log")
    (conf / "acng.conf").write_text(render(
        "lab/acng.conf.j2", cache_dir=cache, log_dir=logs, bind_address=layout.bridge_address, port=APT_PROXY_PORT,
        pid_file=layout.proxy_dir / "acng-self.pid", security_backend=SECURITY_MIRROR))
    (conf / "backends_debian").write_text(render("lab/backends_debian.j2", debian_mirror=DEBIAN_MIRROR))
    return conf


def ensure(layout: Layout) -> bool:
    """Start the proxy unless this lab's one is already answering. Returns True if started now."""
    d = daemon(layout)
    if d.running_pids() and d.answering():
        return False
    conf = write_config(layout)
    return d.ensure([tool("apt-cacher-ng"), "-c", str(conf), "ForeGround=1"], start_timeout=15)


def running_pids(layout: Layout) -> list[int]:
    return daemon(layout).running_pids()


def stop(layout: Layout) -> list[int]:
    return daemon(layout).stop()


def purge() -> None:
    """Delete the package cache (``lab down --purge``)."""
    if Layout.apt_cache().exists():
        shutil.rmtree(Layout.apt_cache())


__all__ = ["ensure", "stop", "running_pids", "purge", "daemon"]
