"""The lab network: one Linux bridge holding 198.18.0.1, a veth per host.

There is no NAT and no forwarding: hosts reach each other and the bridge
address (the apt proxy), nothing else. A partition takes a host's veth down on
the bridge side while the host keeps running.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from pgfleet.errors import LabError
from pgfleet.lab.layout import Layout
from pgfleet.lab.system import run, tool


def _ip(*args: str, what: str) -> str:
    return run([tool("ip"), *args], what=what).stdout


def links() -> list[dict]:
    return json.loads(_ip("-j", "link", "show", what="listing network interfaces") or "[]")


def addresses() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """(interface, address/prefix) for every IPv4 address on this machine."""
    out = []
    for link in json.loads(_ip("-j", "-4", "addr", "show", what="listing addresses") or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                out.append((link["ifname"], ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")))
    return out


def conflicts(layout: Layout, addrs: list[tuple[str, ipaddress.IPv4Interface]]) -> list[str]:
    """Addresses in the lab subnet held by an interface that is not this lab's bridge."""
    return [f"{ifname} has {iface}" for ifname, iface in addrs
            if ifname != layout.bridge and (iface.ip in layout.subnet or layout.subnet.overlaps(iface.network))]


def check_free(layout: Layout) -> None:
    """Refuse when the lab's address range is already in use by something else."""
    taken = conflicts(layout, addresses())
    if taken:
        raise LabError(f"the lab network {layout.subnet} is taken ({'; '.join(taken)}), and that is not this lab's bridge "
                       f"{layout.bridge}: remove that address, or stop the lab that owns it ('pgfleet lab down --stack STACK')")


def ensure_bridge(layout: Layout) -> None:
    """Create the bridge with the host-side address, or leave an existing correct one alone."""
    check_free(layout)
    name = layout.bridge
    if not Path(f"/sys/class/net/{name}").exists():
        _ip("link", "add", name, "type", "bridge", what=f"creating the lab bridge {name}")
    want = ipaddress.IPv4Interface(f"{layout.bridge_address}/{layout.subnet.prefixlen}")
    have = [iface for ifname, iface in addresses() if ifname == name]
    if want not in have:
        _ip("addr", "add", str(want), "dev", name, what=f"giving the lab bridge {name} {want}")
    _ip("link", "set", name, "up", what=f"bringing the lab bridge {name} up")


def host_veth(pid1: int) -> str | None:
    """The bridge-side veth of a running host, found from the host's ``host0`` peer index."""
    try:
        peer = int(Path(f"/proc/{pid1}/root/sys/class/net/host0/iflink").read_text())
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    for dev in Path("/sys/class/net").iterdir():
        try:
            if int((dev / "ifindex").read_text()) == peer:
                return dev.name
        except (FileNotFoundError, ValueError):
            continue
    return None


def link_up(ifname: str) -> bool:
    try:
        flags = int(Path(f"/sys/class/net/{ifname}/flags").read_text(), 16)
    except FileNotFoundError:
        return False
    return bool(flags & 0x1)  # IFF_UP


def set_link(ifname: str, up: bool, host: str) -> None:
    _ip("link", "set", "dev", ifname, "up" if up else "down", what=f"{'healing' if up else 'partitioning'} {host} (veth {ifname})")


def lab_interfaces(layout: Layout) -> list[str]:
    """This lab's bridge and every ``vb-*`` veth attached to it or named after one of its hosts."""
    names = {f"vb-{h.name}"[:15] for h in layout.hosts}
    found = []
    for link in links():
        ifname = link["ifname"]
        if ifname == layout.bridge:
            found.append(ifname)
        elif ifname.startswith("vb-") and (link.get("master") == layout.bridge or ifname in names):
            found.append(ifname)
    return found


def remove(layout: Layout) -> None:
    """Delete leftover veths, then the bridge."""
    for ifname in sorted(lab_interfaces(layout), key=lambda n: n == layout.bridge):
        if Path(f"/sys/class/net/{ifname}").exists():
            _ip("link", "del", ifname, what=f"removing lab interface {ifname}")


def route_device(address: str) -> str | None:
    """The interface this machine would send a packet to ``address`` through (``ip route get``), or None."""
    cp = run([tool("ip"), "-j", "route", "get", address], what=f"looking up the route to {address}", check=False)
    try:
        routes = json.loads(cp.stdout or "[]")
    except ValueError:
        return None
    return routes[0].get("dev") if routes else None


def not_running(layout: Layout, addresses: list[str]) -> str | None:
    """Why this lab cannot be reached, or None: its bridge must exist, be up, and carry the route to every host.

    When the lab is down its addresses route through the machine's default
    gateway, off the machine; nothing may be sent to them then.
    """
    if not Path(f"/sys/class/net/{layout.bridge}").exists():
        return f"its bridge {layout.bridge} does not exist"
    if not link_up(layout.bridge):
        return f"its bridge {layout.bridge} is down"
    for address in addresses:
        dev = route_device(address)
        if dev != layout.bridge:
            return f"{address} would be sent through {dev or 'no interface'}, not the lab's bridge {layout.bridge}"
    return None
