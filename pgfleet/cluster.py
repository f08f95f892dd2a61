"""A running cluster seen from outside: Patroni's view of its members, and DSNs.

``pgfleet status`` asks any member's Patroni REST API (HTTPS, verified against
the cluster CA) for ``/cluster``; ``pgfleet dsn`` builds libpq connection
strings through HAProxy with ``sslmode=verify-full``. The password goes into a
0600 passfile in the stack's state directory, never into the DSN itself.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pgfleet import state
from pgfleet.errors import ClusterError
from pgfleet.hostdata import cluster_members
from pgfleet.inventory import Inventory
from pgfleet.secrets import Secrets
from pgfleet.spec import ClusterSpec, Spec

PORT_POOLED_RW, PORT_POOLED_RO, PORT_DIRECT_RW, PORT_DIRECT_RO = 5000, 5001, 5002, 5003
REST_PORT = 8008


@dataclass(frozen=True)
class Member:
    name: str
    host: str
    role: str
    state: str
    timeline: int | None
    lag: int | str | None
    sync: bool


def rest_context(secrets: Secrets) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=secrets.ca_cert_pem)


def members(inv: Inventory, cluster: str, secrets: Secrets, timeout: float = 3) -> list[Member]:
    """The cluster's members as Patroni reports them, from the first member that answers."""
    ctx = rest_context(secrets)
    errors = []
    for h in cluster_members(inv, cluster):
        try:
            with urllib.request.urlopen(f"https://{h.public_ip}:{REST_PORT}/cluster", context=ctx, timeout=timeout) as r:
                doc = json.loads(r.read())
        except (OSError, urllib.error.URLError, ValueError) as e:
            errors.append(f"{h.name}: {e}")
            continue
        return [Member(name=m["name"], host=m.get("host", ""), role=m.get("role", "?"), state=m.get("state", "?"),
                       timeline=m.get("timeline"), lag=m.get("lag"), sync=m.get("role") == "sync_standby")
                for m in doc.get("members", [])]
    raise ClusterError(f"no member of cluster {cluster!r} answers on its Patroni REST API: {'; '.join(errors)}")


def leader(ms: list[Member]) -> Member | None:
    return next((m for m in ms if m.role in ("leader", "standby_leader")), None)


def healthy(ms: list[Member], synchronous: bool) -> bool:
    """One leader, every other member streaming, and a synchronous standby when the cluster asks for one."""
    replicas = [m for m in ms if m is not leader(ms)]
    return (leader(ms) is not None and all(m.state == "streaming" for m in replicas)
            and (not synchronous or not replicas or any(m.sync for m in replicas)))


def wait_healthy(inv: Inventory, cluster: ClusterSpec, secrets: Secrets, timeout: float = 90) -> list[Member]:
    """Members once every member of the inventory is there and :func:`healthy`
    (Patroni picks the synchronous standby a loop after replicas stream; a
    member whose Patroni is down or not registered yet is simply missing)."""
    expected = len(cluster_members(inv, cluster.name))
    deadline = time.monotonic() + timeout
    while True:
        try:
            ms = members(inv, cluster.name, secrets)
            if len(ms) == expected and healthy(ms, cluster.synchronous):
                return ms
        except ClusterError:
            ms = []
        if time.monotonic() > deadline:
            raise ClusterError(f"cluster {cluster.name!r} not healthy after {timeout:.0f} s: {ms}")
        time.sleep(1)


def ca_file(stack: str, secrets: Secrets) -> Path:
    """The cluster CA for clients (``sslrootcert``), kept in the stack's state directory."""
    p = state.stack_dir(stack) / "ca.crt"
    if not p.exists() or p.read_text() != secrets.ca_cert_pem:
        state.write_private(p, secrets.ca_cert_pem)
        p.chmod(0o644)
    return p


def passfile(stack: str, spec: Spec, secrets: Secrets) -> Path:
    """A 0600 libpq passfile with the database owners' passwords (``passfile=`` in the DSN)."""
    lines = []
    for c in spec.clusters:
        for d in c.databases:
            pw = secrets.password(f"owner_{d.owner}")
            lines.append(f"*:*:*:{d.owner}:{pw.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}")
    p = state.stack_dir(stack) / "pgpass"
    text = "\n".join(sorted(set(lines))) + "\n"
    if not p.exists() or p.read_text() != text:
        state.write_private(p, text)
    return p


def endpoint_hosts(inv: Inventory, cluster: str) -> list[str]:
    """Addresses a client dials: the load balancer when there is one, else every node (libpq tries each)."""
    if cluster in inv.load_balancers:
        return [inv.load_balancers[cluster]]
    return [h.public_ip for h in cluster_members(inv, cluster)]


def dsn(stack: str, spec: Spec, inv: Inventory, secrets: Secrets, cluster: ClusterSpec, *, ro: bool = False, direct: bool = False,
        db: str | None = None, user: str | None = None) -> str:
    database = db or cluster.databases[0].name
    owner = next((d.owner for d in cluster.databases if d.name == database), None)
    if user is None:
        if owner is None:
            raise ClusterError(f"cluster {cluster.name!r} has no database {database!r} (it has: {', '.join(d.name for d in cluster.databases)})")
        user = owner
    port = (PORT_DIRECT_RO if ro else PORT_DIRECT_RW) if direct else (PORT_POOLED_RO if ro else PORT_POOLED_RW)
    hosts = endpoint_hosts(inv, cluster.name)
    return (f"host={','.join(hosts)} port={port} dbname={database} user={user} sslmode=verify-full "
            f"sslrootcert={ca_file(stack, secrets)} passfile={passfile(stack, spec, secrets)} connect_timeout=5")
