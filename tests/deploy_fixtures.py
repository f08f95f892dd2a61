"""Host data for unit tests of the deploy: a stack's hosts with made-up addresses, fresh secrets.

Public addresses come from the documentation range (203.0.113.0/24): they only
ever appear in rendered text, no traffic goes to them.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from pgfleet import hostdata, inventory, secrets, spec
from pgfleet.inventory import Inventory, InventoryHost
from roles import base, databases, etcd, firewall, haproxy, patroni, pgbackrest, pgbouncer, tls

ROLE_DEFAULTS: dict[str, Any] = {}
for _role in (base, tls, firewall, etcd, patroni, databases, pgbackrest, pgbouncer, haproxy):
    ROLE_DEFAULTS.update(_role.DEFAULTS)

LB_ADDRESS = "10.42.1.254"


def fake_inventory(s: spec.Spec, stack: str) -> Inventory:
    hosts = []
    for i, p in enumerate(inventory.plan(s)):
        public = p.private_ip if s.provider == "lab" else f"203.0.113.{20 + i}"
        hosts.append(InventoryHost(name=p.name, cluster=p.cluster, roles=list(p.roles), public_ip=public,
                                   private_ip=p.private_ip, server_type=p.server_type))
    lbs = {c.name: LB_ADDRESS for c in s.clusters} if s.load_balancer.enabled else {}
    return Inventory(stack=stack, provider=s.provider, hosts=hosts, load_balancers=lbs)


def fake_secrets(s: spec.Spec) -> secrets.Secrets:
    cert, key = secrets.new_ca("pgfleet test CA")
    return secrets.Secrets(passwords={n: secrets.new_password() for n in secrets.password_names(s)}, ca_cert_pem=cert, ca_key_pem=key)


@lru_cache(maxsize=1)
def fixed_ca() -> tuple[str, str]:
    """One CA for every snapshot: a fixed key and a fixed date, so its PEMs never change between runs."""
    key = ec.derive_private_key(0x9F1EE7_C0FFEE_5EED, ec.SECP256R1())
    return secrets.new_ca("pgfleet golden CA", key=key, now=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))


def fixed_secrets(s: spec.Spec) -> secrets.Secrets:
    """Secrets a snapshot can hold: ``pw-<name>`` for every password and object storage key, the fixed CA."""
    cert, key = fixed_ca()
    names = secrets.password_names(s) + secrets.s3_key_names(s)
    return secrets.Secrets(passwords={n: f"pw-{n}" for n in names}, ca_cert_pem=cert, ca_key_pem=key)


def host_datas(stack: str) -> tuple[spec.Spec, Inventory, dict[str, dict[str, Any]]]:
    """Every host's data as the roles see it (role defaults under host data)."""
    s = spec.load(stack)
    inv = fake_inventory(s, stack)
    return s, inv, {h.name: {**ROLE_DEFAULTS, **hostdata.host_data(s, inv, h)} for h in inv.hosts}
