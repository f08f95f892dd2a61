"""nftables on every host: default drop, then only what :data:`pgfleet.contract.PORT_MATRIX` allows.

The same matrix renders Hetzner's firewall (:func:`pgfleet.fleet.policy.firewall_rules`): clients reach
HAProxy's endpoints only; the admin ranges SSH, PostgreSQL and PgBouncer directly, HAProxy stats and
Patroni's REST API; the stack's own members what replication, etcd and backups need; the monitoring host the exporters. The file is
checked with ``nft -c`` before it is loaded.
"""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server, systemd

from pgfleet import contract
from roles._common import ServiceActive, put, render

DEFAULTS = {"firewall_config": "/etc/nftables.conf"}

#: The nftables set of addresses behind each source of the matrix (IPv4; admin and clients also IPv6).
SETS = {"admin": "admin", "clients": "clients", "members": "members", "monitor": "monitor"}


def _split(cidrs: list[str]) -> tuple[list[str], list[str]]:
    nets = [ipaddress.ip_network(c) for c in cidrs]
    return [str(n) for n in nets if n.version == 4], [str(n) for n in nets if n.version == 6]


def host_roles(d: dict) -> list[str]:
    return [r for r, on in (("postgres", d["firewall_postgres"]), ("etcd", d["firewall_etcd"]), ("monitor", d["firewall_monitor"])) if on]


def ruleset(d: dict) -> str:
    admin4, admin6 = _split(d["firewall_admin_cidrs"])
    client4, client6 = _split(d["firewall_client_cidrs"])
    sets = [
        {"name": "admin4", "type": "ipv4_addr", "elements": admin4},
        {"name": "admin6", "type": "ipv6_addr", "elements": admin6},
        {"name": "clients4", "type": "ipv4_addr", "elements": client4},
        {"name": "clients6", "type": "ipv6_addr", "elements": client6},
        {"name": "members4", "type": "ipv4_addr", "elements": list(d["firewall_member_ips"])},
        {"name": "monitor4", "type": "ipv4_addr", "elements": list(d["firewall_monitor_ips"])},
    ]
    rules = [{"ports": list(r.ports), "set": SETS[r.source], "ipv6": r.source in contract.PUBLIC_SOURCES, "what": r.what}
             for r in contract.port_rules(host_roles(d), bool(d.get("pgbackrest_enabled")))]
    return render("firewall/nftables.conf.j2", sets=sets, rules=rules)


@deploy("Firewall", data_defaults=DEFAULTS)
def apply() -> None:
    d = host.data
    was_active = host.get_fact(ServiceActive, unit=contract.NFTABLES_UNIT)
    conf = put("Firewall rules", d.firewall_config, ruleset(d.dict()), mode="0644")
    systemd.service(name="Firewall enabled", service=contract.NFTABLES_UNIT, running=True, enabled=True)
    if was_active:
        server.shell(name="Firewall rules check and load", commands=[f"nft -c -f {d.firewall_config} && nft -f {d.firewall_config}"],
                     _if=conf.did_change)
