"""Lab logic that needs no root: addresses, names, rendering, detection, refusals."""

from __future__ import annotations

import ipaddress

import jinja2
import pytest

from pgfleet import spec as spec_mod
from pgfleet.errors import LabError
from pgfleet.lab import image, network, ssh, system
from pgfleet.lab.layout import Layout, bridge_name
from pgfleet.providers.lab import inventory
from pgfleet.templating import render


@pytest.fixture
def lab_spec(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PGFLEET_STATE_DIR", str(tmp_path / "state"))
    return spec_mod.load("lab")


def test_addresses_and_names(lab_spec):  # type: ignore[no-untyped-def]
    layout = Layout.of(lab_spec)
    assert [(h.name, h.address) for h in layout.hosts] == [
        ("lab-main-1", "198.18.0.11"), ("lab-main-2", "198.18.0.12"), ("lab-main-3", "198.18.0.13"), ("lab-client", "198.18.0.14"),
        ("lab-monitor", "198.18.0.15")]
    assert layout.bridge_address == "198.18.0.1"
    assert layout.proxy_url == "http://198.18.0.1:3142/"
    assert layout.bridge == "pgfl-lab"
    for h in layout.hosts:
        assert ipaddress.ip_address(h.address) in ipaddress.ip_network("198.18.0.0/24")


def test_bridge_names_fit_the_interface_limit():
    assert bridge_name("lab") == "pgfl-lab"
    long = bridge_name("a-very-long-stack-name")
    assert len(long) <= 15 and long.startswith("pgfl-") and long != bridge_name("a-very-long-stack-name2")


def test_no_client_host_when_the_spec_says_so(lab_spec):  # type: ignore[no-untyped-def]
    s = lab_spec.model_copy(update={"lab": spec_mod.LabSpec(client_host=False)})
    assert [h.name for h in Layout.of(s).hosts] == ["lab-main-1", "lab-main-2", "lab-main-3", "lab-monitor"]


def test_inventory_shape_needs_no_root_and_creates_nothing(lab_spec, tmp_path):  # type: ignore[no-untyped-def]
    inv = inventory(lab_spec)
    assert inv.provider == "lab" and inv.stack == "lab"
    assert all(h.public_ip == h.private_ip for h in inv.hosts)
    assert inv.by_role("etcd") == inv.hosts[:3] and [h.name for h in inv.by_role("client")] == ["lab-client"]
    assert inv.ssh_key_file == str(tmp_path / "state" / "lab" / "lab" / "ssh" / "id_ed25519")
    assert inv.known_hosts_file == str(tmp_path / "state" / "lab" / "lab" / "ssh" / "known_hosts")
    assert not (tmp_path / "state").exists()


def test_inventory_refuses_other_providers(lab_spec):  # type: ignore[no-untyped-def]
    with pytest.raises(LabError, match="not the lab"):
        inventory(lab_spec.model_copy(update={"provider": "static"}))


def test_networkd_file_wins_over_the_image_default_and_has_no_gateway():
    text = render("lab/10-lab.network.j2", address="198.18.0.12", prefixlen=24)
    assert "Address=198.18.0.12/24" in text and "Gateway" not in text and "Name=host0" in text
    assert "10-lab.network" < "80-container-host0.network"


def test_hosts_file_lists_every_lab_host(lab_spec):  # type: ignore[no-untyped-def]
    hosts = [{"name": h.name, "address": h.address} for h in Layout.of(lab_spec).hosts]
    text = render("lab/hosts.j2", hosts=hosts)
    for h in hosts:
        assert f"{h['address']}\t{h['name']}\n" in text
    assert text.startswith("127.0.0.1\tlocalhost\n")


def test_apt_proxy_config(lab_spec, tmp_path):  # type: ignore[no-untyped-def]
    assert render("lab/apt-proxy.conf.j2", proxy_url="http://198.18.0.1:3142/").strip().endswith('Proxy "http://198.18.0.1:3142/";')
    conf = render("lab/acng.conf.j2", cache_dir=tmp_path / "c", log_dir=tmp_path / "l", bind_address="198.18.0.1", port=3142,
                  pid_file=tmp_path / "p", security_backend="http://deb.debian.org/debian-security/")
    assert "BindAddress: 198.18.0.1\n" in conf and "file:backends_debian" in conf and f"CacheDir: {tmp_path / 'c'}\n" in conf
    assert render("lab/backends_debian.j2", debian_mirror="http://deb.debian.org/debian/") == "http://deb.debian.org/debian/\n"


def test_templates_refuse_missing_values():
    with pytest.raises(jinja2.UndefinedError):
        render("lab/10-lab.network.j2", address="198.18.0.11")


def test_image_resolver_points_nowhere():
    """debootstrap copies the machine's resolver (a 10.x address here); the image must not keep it."""
    assert "nameserver" not in render("lab/resolv.conf.j2")


def test_image_id_follows_the_recipe(monkeypatch):  # type: ignore[no-untyped-def]
    first = image.image_id()
    assert first == image.image_id() and first.startswith("debian-trixie-")
    monkeypatch.setattr(image, "PACKAGES", (*image.PACKAGES, "less"))
    assert image.image_id() != first


def test_known_hosts_lines():
    line = ssh.known_hosts_lines([("lab-main-1", "198.18.0.11", "ssh-ed25519 AAAAC3Nz root@lab-main-1")])
    assert line == "lab-main-1,198.18.0.11 ssh-ed25519 AAAAC3Nz\n"


def test_control_sockets_live_in_the_state_dir(lab_spec, monkeypatch):  # type: ignore[no-untyped-def]
    layout = Layout.of(lab_spec)
    opts = ssh.options(layout)
    assert "StrictHostKeyChecking=yes" in opts and f"UserKnownHostsFile={layout.known_hosts}" in opts
    monkeypatch.setenv("PGFLEET_STATE_DIR", "/var/lib/pgfleet")
    layout = Layout.of(lab_spec)
    assert "ControlPath=/var/lib/pgfleet/lab/lab/ssh/cm/%h" in ssh.options(layout)
    monkeypatch.setenv("PGFLEET_STATE_DIR", "/x" * 40)
    assert not [o for o in ssh.options(Layout.of(lab_spec)) if o.startswith("ControlPath")], "too deep for a socket: no multiplexing"


def test_nspawn_flags_follow_the_init_system():
    assert system.nspawn_flags(systemd_init=False) == ["--register=no", "--keep-unit"]
    assert system.nspawn_flags(systemd_init=True) == []


def test_address_conflicts(lab_spec):  # type: ignore[no-untyped-def]
    layout = Layout.of(lab_spec)
    iface = ipaddress.IPv4Interface
    assert network.conflicts(layout, [("pgfl-lab", iface("198.18.0.1/24")), ("eth0", iface("192.0.2.2/24"))]) == []
    assert network.conflicts(layout, [("eth1", iface("198.18.0.1/24"))]) == ["eth1 has 198.18.0.1/24"]
    assert network.conflicts(layout, [("pgfl-other", iface("198.18.0.1/24"))]) == ["pgfl-other has 198.18.0.1/24"]


def test_refuses_without_root(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(system.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        system.preflight()


def test_refuses_without_nspawn_or_debootstrap_and_says_how_to_install(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(system.os, "geteuid", lambda: 0)
    monkeypatch.setattr(system, "find", lambda name: None if name in ("systemd-nspawn", "debootstrap") else f"/usr/bin/{name}")
    with pytest.raises(LabError) as e:
        system.preflight()
    assert "systemd-nspawn, debootstrap" in str(e.value) and "apt-get install systemd-container debootstrap" in str(e.value)


def test_failed_commands_name_the_step_and_the_output():
    with pytest.raises(LabError, match=r"lab-main-1: probing: 'sh -c echo boom >&2; exit 3' exited 3: boom"):
        system.run(["sh", "-c", "echo boom >&2; exit 3"], what="lab-main-1: probing")
