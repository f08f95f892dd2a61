"""Both firewalls render one port matrix (pgfleet.contract.PORT_MATRIX) and agree on what the outside may reach.

Hetzner's firewall (pgfleet.fleet.policy.firewall_rules) filters the public
interface; nftables on every host (roles/firewall.py) filters everything. For
every shipped cloud stack and every kind of host, the (port, source range)
pairs nftables opens to the admin and client ranges are exactly the pairs
Hetzner's firewall opens; member traffic (the private network) is nftables'
alone. Clients reach HAProxy's endpoints and nothing else.
"""

from __future__ import annotations

import re

import pytest

from deploy_fixtures import host_datas
from pgfleet import contract
from pgfleet.fleet import policy
from roles import firewall

CLOUD_STACKS = ["dev", "staging", "prod"]


def nft_public_pairs(rules: str, d: dict) -> set[tuple[str, str]]:
    """(port, cidr) pairs nftables accepts from the admin and client sets."""
    members = {"admin": d["firewall_admin_cidrs"], "clients": d["firewall_client_cidrs"]}
    out = set()
    for ports, name in re.findall(r"tcp dport \{ ([^}]*) \} ip6? saddr @(admin|clients)[46] accept", rules):
        for port in ports.split(", "):
            out |= {(port, cidr) for cidr in members[name]}
    return out


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_nftables_and_hetzner_open_the_same_ports_to_the_same_ranges(stack: str) -> None:
    s, inv, ds = host_datas(stack)
    for h in inv.hosts:
        d = ds[h.name]
        roles = tuple(firewall.host_roles(d))
        cloud = {(r.port, cidr) for r in policy.firewall_rules(s, roles) for cidr in r.sources}
        assert nft_public_pairs(firewall.ruleset(d), d) == cloud, h.name


def test_clients_reach_haproxy_only_and_the_admin_ranges_the_rest() -> None:
    s, inv, ds = host_datas("prod")
    d = ds["prod-main-1"]
    pairs = nft_public_pairs(firewall.ruleset(d), d)
    client_ports = {p for p, cidr in pairs if cidr in s.client_cidrs and cidr not in s.admin_cidrs}
    assert client_ports == {f"{contract.HAPROXY_POOLED_RW}-{contract.HAPROXY_DIRECT_RO}"}
    admin_ports = {p for p, cidr in pairs if cidr in s.admin_cidrs}
    assert admin_ports == {"22", "5432", "6432", "7000", "8008"}
    # etcd and pgBackRest's TLS server: members only
    assert not {p for p, _ in pairs} & {"2379", "2380", "8432"}


def test_the_agreement_check_can_fail() -> None:
    """A host whose nftables opened PgBouncer to the client ranges (as before the matrix) disagrees with Hetzner's."""
    s, inv, ds = host_datas("prod")
    d = ds["prod-main-1"]
    rules = firewall.ruleset(d).replace("tcp dport { 5000-5003 } ip saddr @clients4", "tcp dport { 5000-5003, 6432 } ip saddr @clients4")
    cloud = {(r.port, cidr) for r in policy.firewall_rules(s, tuple(firewall.host_roles(d))) for cidr in r.sources}
    assert nft_public_pairs(rules, d) != cloud
