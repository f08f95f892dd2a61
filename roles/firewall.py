"""nftables on every host: default drop, then only what each kind of peer needs.

SSH from the admin ranges; the database endpoints (HAProxy 5000-5003,
PgBouncer 6432, PostgreSQL 5432) from the client ranges; Patroni REST and
HAProxy stats also from the admin ranges (monitoring, ``pgfleet status``);
every cluster port (etcd 2379/2380, Patroni 8008, the endpoints, pgBackRest's
TLS server 8432 when backups are on) from the cluster's own members. The file is checked with ``nft -c`` before it is loaded.
"""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server, systemd

from pgfleet import contract
from roles._common import ServiceActive, put, render

DEFAULTS = {"firewall_config": "/etc/nftables.conf"}

ENDPOINT_PORTS = [f"{contract.HAPROXY_POOLED_RW}-{contract.HAPROXY_DIRECT_RO}", str(contract.PGBOUNCER_PORT), str(contract.POSTGRES_PORT)]
MONITORING_PORTS = [str(contract.HAPROXY_STATS_PORT), str(contract.PATRONI_REST_PORT)]
ETCD_PORTS = [str(contract.ETCD_CLIENT_PORT), str(contract.ETCD_PEER_PORT)]
PATRONI_PORTS = [str(contract.PATRONI_REST_PORT)]
#: pgBackRest's TLS server: the backup member reaches the other members through it.
PGBACKREST_PORTS = [str(contract.PGBACKREST_TLS_PORT)]


def _split(cidrs: list[str]) -> tuple[list[str], list[str]]:
    nets = [ipaddress.ip_network(c) for c in cidrs]
    return [str(n) for n in nets if n.version == 4], [str(n) for n in nets if n.version == 6]


def ruleset(d: dict) -> str:
    admin4, admin6 = _split(d["firewall_admin_cidrs"])
    client4, client6 = _split(d["firewall_client_cidrs"])
    sets = [
        {"name": "admin4", "type": "ipv4_addr", "elements": admin4},
        {"name": "admin6", "type": "ipv6_addr", "elements": admin6},
        {"name": "clients4", "type": "ipv4_addr", "elements": client4},
        {"name": "clients6", "type": "ipv6_addr", "elements": client6},
        {"name": "members4", "type": "ipv4_addr", "elements": list(d["firewall_member_ips"])},
    ]
    postgres, etcd = d["firewall_postgres"], d["firewall_etcd"]
    cluster = (ENDPOINT_PORTS + PATRONI_PORTS + [str(contract.HAPROXY_STATS_PORT)] if postgres else []) + (ETCD_PORTS if etcd else [])
    if postgres and d.get("pgbackrest_enabled"):
        cluster += PGBACKREST_PORTS
    return render("firewall/nftables.conf.j2", sets=sets,
                  endpoint_ports=ENDPOINT_PORTS if postgres else [],
                  monitoring_ports=MONITORING_PORTS if postgres else [],
                  cluster_ports=cluster)


@deploy("Firewall", data_defaults=DEFAULTS)
def apply() -> None:
    d = host.data
    was_active = host.get_fact(ServiceActive, unit=contract.NFTABLES_UNIT)
    conf = put("Firewall rules", d.firewall_config, ruleset(d.dict()), mode="0644")
    systemd.service(name="Firewall enabled", service=contract.NFTABLES_UNIT, running=True, enabled=True)
    if was_active:
        server.shell(name="Firewall rules check and load", commands=[f"nft -c -f {d.firewall_config} && nft -f {d.firewall_config}"],
                     _if=conf.did_change)
