"""A running cluster seen from outside: Patroni's view of its members, and DSNs.

``pgfleet status`` asks any member's Patroni REST API (HTTPS, verified against
the cluster CA) for ``/cluster``; ``pgfleet dsn`` builds libpq connection
strings through HAProxy with ``sslmode=verify-full``. The password goes into a
0600 passfile in the stack's state directory, never into the DSN itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from pgfleet import contract, sizing, state
from pgfleet.errors import ClusterError
from pgfleet.inventory import Inventory
from pgfleet.node import patroni
from pgfleet.node.patroni import Member, leader
from pgfleet.secrets import Secrets, owner_password_name
from pgfleet.spec import ClusterSpec, Spec



__all__ = ["Member", "leader"]


def rest_client(host: str, secrets: Secrets, *, auth: bool = False, timeout: float = 3) -> patroni.Client:
    """A member's Patroni REST API as pgfleet reaches it: the cluster CA, the REST user when state is to change."""
    return patroni.Client(f"https://{host}:{contract.PATRONI_REST_PORT}", ca_data=secrets.ca_cert_pem, timeout=timeout,
                          auth=(contract.PATRONI_REST_USER, secrets.password("patroni_rest")) if auth else None)


def members(inv: Inventory, cluster: str, secrets: Secrets, timeout: float = 3) -> list[Member]:
    """The cluster's members as Patroni reports them, from the first member that answers."""
    errors = []
    for h in inv.cluster_members(cluster):
        try:
            return rest_client(h.public_ip, secrets, timeout=timeout).cluster()
        except (OSError, ValueError, patroni.PatroniError) as e:
            errors.append(f"{h.name}: {e}")
    raise ClusterError(f"no member of cluster {cluster!r} answers on its Patroni REST API: {'; '.join(errors)}")


def healthy(ms: list[Member], synchronous: bool) -> bool:
    """One leader, every other member streaming, and a synchronous standby when the cluster asks for one."""
    replicas = [m for m in ms if m is not leader(ms)]
    return (leader(ms) is not None and all(m.state == "streaming" for m in replicas)
            and (not synchronous or not replicas or any(m.is_sync for m in replicas)))


def wait_healthy(inv: Inventory, cluster: ClusterSpec, secrets: Secrets, timeout: float = 90) -> list[Member]:
    """Members once every member of the inventory is there and :func:`healthy`
    (Patroni picks the synchronous standby a loop after replicas stream; a
    member whose Patroni is down or not registered yet is simply missing)."""
    expected = len(inv.cluster_members(cluster.name))
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
            pw = secrets.password(owner_password_name(d.owner))
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
    return [h.public_ip for h in inv.cluster_members(cluster)]


#: HAProxy's endpoints on every node, by what a client asks for.
ENDPOINT_PORTS = {"rw": contract.HAPROXY_POOLED_RW, "ro": contract.HAPROXY_POOLED_RO,
                  "direct-rw": contract.HAPROXY_DIRECT_RW, "direct-ro": contract.HAPROXY_DIRECT_RO}
#: The libpq versions a printed DSN can be written for: 16 added ``load_balance_hosts``, which 15 rejects
#: ("invalid connection option"); Debian 12's psql is 15, psycopg's bundled libpq is newer.
LIBPQ_VERSIONS = (15, 16)
DEFAULT_LIBPQ = 16


def endpoint_kind(ro: bool = False, direct: bool = False) -> str:
    return ("direct-" if direct else "") + ("ro" if ro else "rw")


def conninfo(spec: Spec, inv: Inventory, cluster: ClusterSpec, *, kind: str = "rw", db: str | None = None,
             user: str | None = None, libpq: int = DEFAULT_LIBPQ, ca_file: Path | None = None,
             passfile: Path | None = None) -> dict[str, str]:
    """The keywords of one endpoint's DSN, in the order they are printed.

    TLS verify-full against the cluster CA; dead-peer detection from
    :func:`pgfleet.sizing.client_timing` (without it a client of a node that
    vanished hangs for the kernel's ~15 min); clients spread over the nodes
    (``load_balance_hosts=random``, libpq ≥ 16) so one node's loss does not hit
    every client at once. No password: it comes from ``passfile``.
    """
    if kind not in ENDPOINT_PORTS:
        raise ClusterError(f"unknown endpoint {kind!r}: use one of {', '.join(ENDPOINT_PORTS)}")
    if libpq not in LIBPQ_VERSIONS:
        raise ClusterError(f"--libpq {libpq}: pgfleet writes DSNs for libpq {' or '.join(map(str, LIBPQ_VERSIONS))} "
                           "(16 means 16 or newer; psql --version tells yours)")
    database = db or cluster.databases[0].name
    owner = next((d.owner for d in cluster.databases if d.name == database), None)
    if user is None:
        if owner is None:
            raise ClusterError(f"cluster {cluster.name!r} has no database {database!r} (it has: {', '.join(d.name for d in cluster.databases)})")
        user = owner
    hosts = endpoint_hosts(inv, cluster.name)
    t = sizing.client_timing(sizing.haproxy_timing(sizing.patroni_timing(spec)))
    out = {"host": ",".join(hosts), "port": str(ENDPOINT_PORTS[kind]), "dbname": database, "user": user,
           "sslmode": "verify-full"}
    if ca_file is not None:
        out["sslrootcert"] = str(ca_file)
    if passfile is not None:
        out["passfile"] = str(passfile)
    out.update({"connect_timeout": str(t.connect_timeout), "keepalives": "1", "keepalives_idle": str(t.keepalives_idle),
                "keepalives_interval": str(t.keepalives_interval), "keepalives_count": str(t.keepalives_count),
                "tcp_user_timeout": str(t.tcp_user_timeout)})
    if libpq >= 16 and len(hosts) > 1:
        out["load_balance_hosts"] = "random"
    return out


def keyword_dsn(params: dict[str, str]) -> str:
    """``key=value …`` (libpq's keyword form), quoting values that need it."""
    def q(v: str) -> str:
        if v and not any(c in v for c in " '\\"):
            return v
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{k}={q(v)}" for k, v in params.items())


def uri_dsn(params: dict[str, str]) -> str:
    """The same DSN as a ``postgresql://`` URI (every host with its port, the rest as parameters)."""
    from urllib.parse import quote

    rest = {k: v for k, v in params.items() if k not in ("host", "port", "dbname", "user")}
    hosts = ",".join(f"{h}:{params['port']}" for h in params["host"].split(","))
    query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in rest.items())
    return f"postgresql://{quote(params['user'], safe='')}@{hosts}/{quote(params['dbname'], safe='')}" + (f"?{query}" if query else "")


#: libpq has environment variables for these keywords only; the others come from the service file.
ENV_VARS = {"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER", "sslmode": "PGSSLMODE",
            "sslrootcert": "PGSSLROOTCERT", "passfile": "PGPASSFILE", "connect_timeout": "PGCONNECT_TIMEOUT",
            "load_balance_hosts": "PGLOADBALANCEHOSTS"}


def service_name(stack: str, cluster: ClusterSpec, kind: str, params: dict[str, str], libpq: int) -> str:
    """The service file section for one endpoint: ``<stack>-<cluster>-<kind>`` (+ database/user when not the defaults)."""
    name = f"{stack}-{cluster.name}-{kind}"
    if params["dbname"] != cluster.databases[0].name:
        name += f"-{params['dbname']}"
    if params["user"] != next((d.owner for d in cluster.databases if d.name == params["dbname"]), None):
        name += f"-{params['user']}"
    return name + ("-libpq15" if libpq < 16 else "")


def write_service(stack: str, name: str, params: dict[str, str]) -> Path:
    """Add or replace section ``name`` of the stack's libpq service file (``PGSERVICEFILE``); other sections stay."""
    p = state.stack_dir(stack) / "pg_service.conf"
    sections: dict[str, list[str]] = {}
    current = None
    if p.exists():
        for line in p.read_text().splitlines():
            if line.startswith("[") and line.rstrip().endswith("]"):
                current = line.strip()[1:-1]
                sections[current] = []
            elif current is not None and line.strip() and not line.startswith("#"):
                sections[current].append(line)
    sections[name] = [f"{k}={v}" for k, v in params.items()]
    text = "# Managed by pgfleet (pgfleet dsn --env): libpq connection services, one per endpoint.\n"
    text += "".join(f"\n[{n}]\n" + "".join(f"{line}\n" for line in lines) for n, lines in sorted(sections.items()))
    if not p.exists() or p.read_text() != text:
        state.write_private(p, text)
        p.chmod(0o644)
    return p


def env_lines(service_file: Path, service: str, params: dict[str, str]) -> list[str]:
    """``export`` lines: the service (every keyword, for libpq) and the PG* variables other drivers read too."""
    import shlex

    out = [f"export PGSERVICEFILE={shlex.quote(str(service_file))}", f"export PGSERVICE={shlex.quote(service)}"]
    out += [f"export {ENV_VARS[k]}={shlex.quote(v)}" for k, v in params.items() if k in ENV_VARS]
    return out


def dsn(stack: str, spec: Spec, inv: Inventory, secrets: Secrets, cluster: ClusterSpec, *, ro: bool = False, direct: bool = False,
        db: str | None = None, user: str | None = None, libpq: int = DEFAULT_LIBPQ) -> str:
    """The DSN ``pgfleet dsn`` prints: every client, drill and benchmark connects with exactly this."""
    return keyword_dsn(dsn_params(stack, spec, inv, secrets, cluster, ro=ro, direct=direct, db=db, user=user, libpq=libpq))


def dsn_params(stack: str, spec: Spec, inv: Inventory, secrets: Secrets, cluster: ClusterSpec, *, ro: bool = False,
               direct: bool = False, db: str | None = None, user: str | None = None, libpq: int = DEFAULT_LIBPQ) -> dict[str, str]:
    """:func:`conninfo` with this machine's CA file and passfile (from the stack's state directory)."""
    return conninfo(spec, inv, cluster, kind=endpoint_kind(ro, direct), db=db, user=user, libpq=libpq,
                    ca_file=ca_file(stack, secrets), passfile=passfile(stack, spec, secrets))


def published_endpoints(spec: Spec, inv: Inventory) -> dict[str, dict[str, dict[str, str]]]:
    """Every cluster's endpoint DSNs for a stack output, per libpq version: no machine-local paths
    (save the ``ca_cert`` output as the file ``sslrootcert`` names, or as ``~/.postgresql/root.crt``)
    and no password (a passfile, or PGPASSWORD)."""
    return {c.name: {f"libpq{v}": {kind: keyword_dsn(conninfo(spec, inv, c, kind=kind, libpq=v)) for kind in ENDPOINT_PORTS}
                     for v in LIBPQ_VERSIONS}
            for c in spec.clusters}
