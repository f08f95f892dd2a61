"""End-to-end tests of the lab on real systemd-nspawn hosts (root only)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pgfleet import lab as lab_mod
from pgfleet.lab import hosts, network
from pgfleet.lab.layout import Layout
from pgfleet.lab.system import alive, processes

from conftest import machine_leftovers

pytestmark = pytest.mark.lab

PGFLEET = [sys.executable, "-m", "pgfleet.cli"]


def sh(spec, name: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return lab_mod.run(spec, name, command, timeout=120, check=check)


def tcp(spec, src: str, address: str, port: int) -> bool:  # type: ignore[no-untyped-def]
    """Can ``src`` open a TCP connection to address:port? (bash /dev/tcp: no extra packages in the image)."""
    cp = sh(spec, src, f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}' && echo open || echo closed")
    return cp.stdout.strip() == "open"


def boot_id(spec, name: str) -> str:  # type: ignore[no-untyped-def]
    return sh(spec, name, "cat /proc/sys/kernel/random/boot_id").stdout.strip()


def test_every_host_runs_debian13_and_answers_ssh(lab, lab_spec):  # type: ignore[no-untyped-def]
    assert [h.name for h in lab.hosts] == ["lab-main-1", "lab-main-2", "lab-main-3", "lab-client", "lab-monitor"]
    for h in lab.hosts:
        out = sh(lab_spec, h.name, "hostname; . /etc/os-release; echo $VERSION_ID; systemctl is-system-running --wait; "
                                   "ip -4 -o addr show host0 | awk '{print $4}'").stdout.split()
        assert out[:4] == [h.name, "13", "running", f"{h.private_ip}/24"], out
    # the shared base image is bare Debian (the deploy installs PostgreSQL later, into each host's overlay)
    from pgfleet.lab import image

    base = image.require_built()
    pkgs = subprocess.run(["dpkg-query", f"--admindir={base}/var/lib/dpkg", "-W", "-f", "${Package}\n"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert "openssh-server" in pkgs and not [p for p in pkgs if p.startswith("postgresql")], "no PostgreSQL packages are baked into the image"


def test_inventory_matches_recorded_host_keys(lab, lab_spec):  # type: ignore[no-untyped-def]
    printed = subprocess.run([*PGFLEET, "inventory", "lab"], check=True, capture_output=True, text=True).stdout
    assert json.loads(printed) == json.loads(lab.to_json())
    assert lab.provider == "lab"
    known = open(lab.known_hosts_file).read()
    for h in lab.hosts:
        assert h.public_ip == h.private_ip
        key = sh(lab_spec, h.name, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        assert f"{h.name},{h.private_ip} {key}\n" in known
    # A host whose key is not recorded is refused, not accepted.
    layout = Layout.of(lab_spec)
    cp = subprocess.run(["ssh", "-i", lab.ssh_key_file, "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
                         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlPath=none",
                         f"root@{layout.hosts[0].address}", "true"], capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0 and "verification failed" in cp.stderr


def test_hosts_reach_each_other_and_the_apt_proxy_but_nothing_else(lab, lab_spec):  # type: ignore[no-untyped-def]
    layout = Layout.of(lab_spec)
    for h in lab.hosts:
        assert sh(lab_spec, h.name, "ip route show default").stdout.strip() == "", f"{h.name} has a default route"
        # The kernel refuses before any packet leaves: no route off the lab network.
        cp = sh(lab_spec, h.name, "ip route get 1.1.1.1", check=False)
        assert cp.returncode != 0 and "unreachable" in cp.stderr.lower()
        assert tcp(lab_spec, h.name, layout.bridge_address, 3142), f"{h.name} cannot reach the apt proxy"
        names = sh(lab_spec, h.name, "getent hosts " + " ".join(o.name for o in lab.hosts)).stdout
        for other in lab.hosts:
            assert f"{other.private_ip} " in names.replace("\t", " ") or other.private_ip in names
            if other.name != h.name:
                assert tcp(lab_spec, h.name, other.private_ip, 22), f"{h.name} cannot reach {other.name}"
    out = sh(lab_spec, "lab-client", "apt-get -q update && apt-get -q -y install --no-install-recommends less >/dev/null && less --version | head -1")
    assert "less" in out.stdout


def test_up_again_changes_nothing(lab, lab_spec):  # type: ignore[no-untyped-def]
    before = {h.name: hosts.power(h) for h in Layout.of(lab_spec).hosts}
    boots = {h.name: boot_id(lab_spec, h.name) for h in lab.hosts}
    report = lab_mod.up(lab_spec)
    assert report.booted == [] and not report.image_built
    assert {h.name: hosts.power(h) for h in Layout.of(lab_spec).hosts} == before
    assert {h.name: boot_id(lab_spec, h.name) for h in lab.hosts} == boots


def test_status_shows_every_host(lab, lab_spec):  # type: ignore[no-untyped-def]
    st = lab_mod.status(lab_spec)
    assert [(s.name, s.address, s.running, s.link, s.ssh) for s in st] == [(h.name, h.private_ip, True, "up", True) for h in lab.hosts]
    out = subprocess.run([*PGFLEET, "lab", "status"], check=True, capture_output=True, text=True).stdout
    for h in lab.hosts:
        assert h.name in out and h.private_ip in out


def test_kill_powers_off_hard_and_start_boots_it_again(lab, lab_spec):  # type: ignore[no-untyped-def]
    name = "lab-main-2"
    host = Layout.of(lab_spec).host(name)
    sh(lab_spec, name, "echo survived > /root/marker && sync")
    sh(lab_spec, name, "systemd-run --unit=sleeper sleep 600")
    old_boot = boot_id(lab_spec, name)
    p = hosts.power(host)
    try:
        assert lab_mod.kill(lab_spec, name)
        assert not hosts.power(host).up
        # every process of the host died at once: its init and the service it ran
        assert p.init is not None and not alive(p.init)
        assert not [pr for pr in processes() if pr.argv[:2] == ("/usr/bin/sleep", "600") or pr.argv[:2] == ("sleep", "600")]
        assert not tcp(lab_spec, "lab-main-1", host.address, 22)
        assert not [s for s in lab_mod.status(lab_spec) if s.name == name][0].running
    finally:
        lab_mod.start(lab_spec, name)
    assert boot_id(lab_spec, name) != old_boot
    assert sh(lab_spec, name, "cat /root/marker").stdout.strip() == "survived"
    assert tcp(lab_spec, "lab-main-1", host.address, 22)


def test_kill_is_silent_like_a_power_loss_no_reset_reaches_a_peer(lab, lab_spec):  # type: ignore[no-untyped-def]
    """A peer of a powered-off machine hears nothing: no FIN, no reset. A connection to the killed
    host stays open on this side until its own timeouts end it (drills rely on that being real)."""
    import socket

    name = "lab-client"
    address = Layout.of(lab_spec).host(name).address
    sock = socket.create_connection((address, 22), timeout=5)
    try:
        assert sock.recv(64).startswith(b"SSH-")  # sshd's banner: the connection is established
        assert lab_mod.kill(lab_spec, name)
        time.sleep(1.0)
        sock.sendall(b"SSH-2.0-pgfleet-test\r\n")  # data a dead host never acknowledges
        sock.settimeout(3.0)
        with pytest.raises(TimeoutError):  # neither b"" (FIN) nor ConnectionResetError (RST)
            sock.recv(64)
    finally:
        sock.close()
        lab_mod.start(lab_spec, name)
    assert sh(lab_spec, name, "hostname").stdout.strip() == name


def test_partition_cuts_the_link_and_heal_restores_it(lab, lab_spec):  # type: ignore[no-untyped-def]
    name = "lab-main-3"
    host = Layout.of(lab_spec).host(name)
    old_boot = boot_id(lab_spec, name)
    init = hosts.power(host).init
    try:
        veth = lab_mod.partition(lab_spec, name)
        assert not network.link_up(veth)
        assert not tcp(lab_spec, "lab-main-1", host.address, 22)
        st = [s for s in lab_mod.status(lab_spec) if s.name == name][0]
        assert st.running and st.link == "down" and not st.ssh
        assert hosts.power(host).init == init, "a partitioned host keeps running"
        # its console still works without the network, and sees the same boot
        inside = lab_mod.exec_on(lab_spec, name, "cat /proc/sys/kernel/random/boot_id; hostname")
        assert inside.stdout.split() == [old_boot, name]
    finally:
        lab_mod.heal(lab_spec, name)
    deadline = time.monotonic() + 20
    while not tcp(lab_spec, "lab-main-1", host.address, 22) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert tcp(lab_spec, "lab-main-1", host.address, 22)
    assert boot_id(lab_spec, name) == old_boot, "heal reconnects the same running host"


def test_up_brings_back_a_dead_host(lab, lab_spec):  # type: ignore[no-untyped-def]
    lab_mod.kill(lab_spec, "lab-client")
    report = lab_mod.up(lab_spec)
    assert report.booted == ["lab-client"]
    assert sh(lab_spec, "lab-client", "hostname").stdout.strip() == "lab-client"


@pytest.mark.lab_last
def test_down_cleans_up_after_a_crash_that_lost_the_state(lab, lab_spec):  # type: ignore[no-untyped-def]
    """A killed session loses its PID files; down must find hosts, mounts, veths and the proxy on the system."""
    layout = Layout.of(lab_spec)
    lab_mod.partition(lab_spec, "lab-main-1")  # a half-done drill, too
    for h in layout.hosts:
        h.pid_file.unlink()
    (layout.proxy_dir / "apt-cacher-ng.pid").unlink()
    removed = lab_mod.down(lab_spec)
    assert any("lab-main-1" in r for r in removed) and any("apt-cacher-ng" in r for r in removed)
    assert machine_leftovers(lab_spec) == []
    # and the lab comes back from the warm cache for the session's final teardown
    report = lab_mod.up(lab_spec)
    assert not report.image_built and len(report.booted) == len(lab.hosts)
