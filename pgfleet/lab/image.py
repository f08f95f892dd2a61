"""The lab's base image: a Debian 13 root like Hetzner's bare ``debian-13``.

Built once with debootstrap (through the lab's apt proxy, so its packages
land in the apt cache too), customised for the lab, and cached read-only;
every host boots an overlay of it. No PostgreSQL packages are baked in: the
deploy installs them as it would on Hetzner.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from pgfleet.errors import LabError
from pgfleet.lab.layout import DEBIAN_MIRROR, SECURITY_MIRROR, SUITE, Layout
from pgfleet.lab.system import run, tool
from pgfleet.templating import render

#: minbase + what a Hetzner debian-13 server has that the lab needs to boot and be reached.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2", "openssh-server", "ca-certificates")
#: Bump when the customisation below changes, so cached images are rebuilt.
RECIPE = 1


def image_id() -> str:
    """A name that changes whenever what the image contains would change."""
    recipe = json.dumps({"suite": SUITE, "packages": PACKAGES, "recipe": RECIPE,
                         "sources": render("lab/sources.list.j2", mirror=DEBIAN_MIRROR, suite=SUITE, security_mirror=SECURITY_MIRROR),
                         "resolv": render("lab/resolv.conf.j2")}, sort_keys=True)
    return f"debian-{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def image_dir() -> Path:
    return Layout.image_cache() / image_id()


def rootfs() -> Path:
    return image_dir() / "rootfs"


def is_built() -> bool:
    return (image_dir() / "image.json").is_file()


def ensure(proxy_url: str) -> tuple[Path, bool]:
    """The base root filesystem, building it if no cached one exists. Returns (path, built_now)."""
    if is_built():
        return rootfs(), False
    build(proxy_url)
    return rootfs(), True


def build(proxy_url: str) -> None:
    final = image_dir()
    tmp = final.with_name(final.name + ".building")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    target = tmp / "rootfs"
    started = time.monotonic()
    run([tool("debootstrap"), "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), DEBIAN_MIRROR.rstrip("/")],
        what="building the lab's Debian 13 base image (debootstrap)", timeout=1800,
        env={"http_proxy": proxy_url, "HTTP_PROXY": proxy_url})
    customise(target)
    (tmp / "image.json").write_text(json.dumps({"id": image_id(), "suite": SUITE, "packages": PACKAGES,
                                                "build_seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def customise(root: Path) -> None:
    """What every lab host shares; per-host files go into each host's overlay."""
    etc = root / "etc"
    (etc / "apt" / "sources.list").write_text(
        render("lab/sources.list.j2", mirror=DEBIAN_MIRROR, suite=SUITE, security_mirror=SECURITY_MIRROR))
    # debootstrap copied this machine's resolver (a 10.x address here): lab hosts have no DNS.
    resolv = etc / "resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text(render("lab/resolv.conf.j2"))
    # Each host gets its own identity: keys, machine-id and hostname are written per host.
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    (etc / "machine-id").unlink(missing_ok=True)
    (etc / "machine-id").write_text("")
    (etc / "hostname").unlink(missing_ok=True)
    # pam_systemd stalls the first SSH login ~2 min and hangs poweroff on cgroup-v1
    # machines; keep it out now and when a later package (libpam-systemd) brings it.
    (etc / "dpkg" / "dpkg.cfg.d" / "pgfleet-lab").write_text(
        "# pgfleet lab: never let pam-auth-update enable pam_systemd (hangs on cgroup v1)\n"
        "path-exclude=/usr/share/pam-configs/systemd\n")
    (root / "usr" / "share" / "pam-configs" / "systemd").unlink(missing_ok=True)
    for pam in (etc / "pam.d").iterdir():
        text = pam.read_text()
        if "pam_systemd.so" in text:
            pam.write_text("".join(line for line in text.splitlines(keepends=True) if "pam_systemd.so" not in line))
    chroot = tool("chroot")
    run([chroot, str(root), "systemctl", "enable", "systemd-networkd.service"], what="enabling systemd-networkd in the lab image")
    # apt's daily timers would race the deploy for the dpkg lock on 2 shared cores.
    run([chroot, str(root), "systemctl", "mask", "apt-daily.timer", "apt-daily-upgrade.timer"], what="masking apt timers in the lab image")
    run([chroot, str(root), "apt-get", "clean"], what="cleaning the lab image's apt cache")


def purge() -> None:
    """Delete every cached image (``lab down --purge``)."""
    cache = Layout.image_cache()
    if cache.exists():
        shutil.rmtree(cache)


def require_built() -> Path:
    if not is_built():
        raise LabError("the lab's base image is not built yet: run 'pgfleet lab up'")
    return rootfs()
