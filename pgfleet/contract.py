"""The cluster contract: the facts every part of pgfleet must agree on about a running cluster.

Ports, paths, OS users, PostgreSQL role names, systemd units, Patroni's etcd
namespace and the PostgreSQL major with what derives from it. Each fact is
defined here once; the deploy passes them to templates as host data and to
node programs in :data:`NODE_CONFIG`, so nothing else writes them as literals.
(What Patroni's roles mean lives with its API: :mod:`pgfleet.node.patroni`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# ---- PostgreSQL major

#: The majors the target OS ships: Debian 13 has PostgreSQL 17 only.
SUPPORTED_MAJORS = (17,)
POSTGRES_MAJOR = 17


def postgres_home(major: int) -> str:
    return f"/var/lib/postgresql/{major}"


def data_dir(major: int) -> str:
    return f"{postgres_home(major)}/data"


def bin_dir(major: int) -> str:
    return f"/usr/lib/postgresql/{major}/bin"


def postgres_package(major: int, extension_package: str = "") -> str:
    """Debian's package name: ``postgresql-17``, or an extension's ``postgresql-17-pgvector``."""
    return f"postgresql-{major}" + (f"-{extension_package}" if extension_package else "")


# ---- ports

POSTGRES_PORT = 5432
PGBOUNCER_PORT = 6432
#: HAProxy's endpoints: pooled read-write / read-only, direct read-write / read-only.
HAPROXY_POOLED_RW, HAPROXY_POOLED_RO, HAPROXY_DIRECT_RW, HAPROXY_DIRECT_RO = 5000, 5001, 5002, 5003
HAPROXY_STATS_PORT = 7000
PATRONI_REST_PORT = 8008
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
#: pgBackRest's TLS server on every database node: the backup member reaches the other members through it.
PGBACKREST_TLS_PORT = 8432
SSH_PORT = 22
#: Monitoring (pgfleet/monitoring/prometheus.py scrapes them; only the monitoring host may reach the exporters).
NODE_EXPORTER_PORT = 9100
POSTGRES_EXPORTER_PORT = 9187
#: The first PgBouncer process's exporter; process i (1-based) has PGBOUNCER_EXPORTER_PORT + i - 1.
PGBOUNCER_EXPORTER_PORT = 9127
#: PgBouncer processes per node at most (sizing.pgbouncer_processes): their exporters' ports are reserved up to here.
PGBOUNCER_MAX_PROCESSES = 4
PGBOUNCER_EXPORTER_PORTS = (PGBOUNCER_EXPORTER_PORT, PGBOUNCER_EXPORTER_PORT + PGBOUNCER_MAX_PROCESSES - 1)
PGBACKREST_EXPORTER_PORT = 9854
#: HAProxy's TLS frontend for the monitoring host: its own /metrics and Patroni's (/patroni/metrics), client certificate required.
HAPROXY_METRICS_PORT = 7001
#: etcd's --listen-metrics-urls (TLS with client certificates, no client-API access).
ETCD_METRICS_PORT = 2381
#: pgfleet's probe exporter (recall, index fit, certificates, archive backlog) on the monitoring host.
PGFLEET_EXPORTER_PORT = 9188
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
# ---- who may reach which port: the one matrix both firewalls (nftables on every host, Hetzner's) render

#: Sources: "admin" (admin_cidrs: operators and pgfleet's own commands), "clients" (client_cidrs), "members"
#: (the stack's own machines, over the private network, which Hetzner's firewall does not filter), "monitor"
#: (the monitoring host only, over the private network: the exporters are not for admins or clients).
PUBLIC_SOURCES = ("admin", "clients")


@dataclass(frozen=True)
class PortRule:
    """TCP ``ports`` (``"5432"`` or ``"5000-5003"``) on hosts with one of ``roles`` (``"any"``: every host)
    are open to ``source``; ``backups_only``: only when the stack has backups."""

    source: str
    ports: tuple[str, ...]
    roles: tuple[str, ...]
    what: str
    backups_only: bool = False


def _p(*ports: int | tuple[int, int]) -> tuple[str, ...]:
    return tuple(f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p) for p in ports)


#: Clients reach only HAProxy's endpoints (5000-5003): the node that answers is chosen by Patroni's state,
#: never by the port a client happened to dial. PostgreSQL and PgBouncer directly, HAProxy's stats and
#: Patroni's REST API are for the admin ranges: operators, ``pgfleet status``, the drills' direct probes and
#: set check, PgBouncer's stats console. Members reach what replication, the DCS and backups need.
PORT_MATRIX: tuple[PortRule, ...] = (
    PortRule("admin", _p(SSH_PORT), ("any",), "SSH"),
    PortRule("clients", _p((HAPROXY_POOLED_RW, HAPROXY_DIRECT_RO)), ("postgres",), "HAProxy endpoints"),
    PortRule("admin", _p(POSTGRES_PORT, PGBOUNCER_PORT, HAPROXY_STATS_PORT, PATRONI_REST_PORT), ("postgres",),
             "PostgreSQL and PgBouncer directly, HAProxy stats, Patroni REST"),
    PortRule("members", _p((HAPROXY_POOLED_RW, HAPROXY_DIRECT_RO), PGBOUNCER_PORT, POSTGRES_PORT, PATRONI_REST_PORT,
                           HAPROXY_STATS_PORT), ("postgres",), "endpoints, replication, Patroni REST, HAProxy stats"),
    PortRule("members", _p(ETCD_CLIENT_PORT, ETCD_PEER_PORT), ("etcd",), "etcd client and peer"),
    PortRule("members", _p(PGBACKREST_TLS_PORT), ("postgres",), "pgBackRest's TLS server", backups_only=True),
    PortRule("monitor", _p(NODE_EXPORTER_PORT), ("postgres", "etcd"), "node exporter"),
    PortRule("monitor", _p(POSTGRES_EXPORTER_PORT, PGBOUNCER_EXPORTER_PORTS, HAPROXY_METRICS_PORT), ("postgres",),
             "PostgreSQL and PgBouncer exporters, HAProxy's and Patroni's metrics"),
    PortRule("monitor", _p(PGBACKREST_EXPORTER_PORT), ("postgres",), "pgBackRest exporter", backups_only=True),
    PortRule("monitor", _p(ETCD_METRICS_PORT), ("etcd",), "etcd metrics"),
    PortRule("admin", _p(PROMETHEUS_PORT, ALERTMANAGER_PORT), ("monitor",), "Prometheus and Alertmanager (HTTPS)"),
    # the probe measures recall on a replica through the direct read-only endpoint, as the application's role
    PortRule("monitor", _p(HAPROXY_DIRECT_RO), ("postgres",), "HAProxy's direct read-only endpoint, for the recall probe"),
)


def port_rules(roles: Sequence[str], backups: bool, sources: Sequence[str] = ("admin", "clients", "members", "monitor")) -> list[PortRule]:
    """The matrix rows that apply to a host with ``roles``, from ``sources``."""
    return [r for r in PORT_MATRIX if r.source in sources and (r.roles == ("any",) or set(r.roles) & set(roles))
            and (backups or not r.backups_only)]



# ---- paths

TLS_DIR = "/etc/pgfleet/tls"
CA_FILE = f"{TLS_DIR}/ca.crt"
HOST_CERT = f"{TLS_DIR}/host.crt"
HOST_KEY = f"{TLS_DIR}/host.key"
PATRONI_CONFIG_DIR = "/etc/patroni"
PATRONI_CONFIG = f"{PATRONI_CONFIG_DIR}/patroni.yml"
POSTGRES_SOCKET_DIR = "/var/run/postgresql"
PGBACKREST_CONFIG_DIR = "/etc/pgbackrest"
#: pgBackRest's configuration on every database node (0640 root:postgres: it holds the keys).
PGBACKREST_CONFIG = f"{PGBACKREST_CONFIG_DIR}/pgbackrest.conf"
PGBACKREST_SPOOL = "/var/spool/pgbackrest"
PGBACKREST_CLIENT_CERT = f"{PGBACKREST_CONFIG_DIR}/client.crt"
PGBACKREST_CLIENT_KEY = f"{PGBACKREST_CONFIG_DIR}/client.key"
#: pgfleet's programs on a node: launchers here, the package in :data:`NODE_PACKAGE_DIR`.
HELPERS_DIR = "/usr/local/lib/pgfleet"
NODE_PACKAGE = "pgfleet_node"
NODE_PACKAGE_DIR = f"{HELPERS_DIR}/{NODE_PACKAGE}"
#: The node programs' contract values (0644, no secrets).
NODE_CONFIG = "/etc/pgfleet/node.json"
ETCD_LEADER_AWAY_CONFIG = "/etc/pgfleet/etcd-leader-away.json"
#: Where converge steps keep the desired input and, once applied, a copy of it.
DESIRED_DIR = "/etc/pgfleet/converge"
APPLIED_DIR = "/var/lib/pgfleet/applied"

#: pgfleet's monitoring files on every host (exporters' TLS settings) and the monitoring host's configuration.
MONITORING_DIR = "/etc/pgfleet/monitoring"
EXPORTERS_WEB_CONFIG = f"{MONITORING_DIR}/exporters-web.yml"
#: Prometheus' and Alertmanager's HTTPS settings on the monitoring host.
MONITOR_WEB_CONFIG = f"{MONITORING_DIR}/web.yml"
PROMETHEUS_DIR = "/etc/prometheus"
PROMETHEUS_CONFIG = f"{PROMETHEUS_DIR}/prometheus.yml"
PROMETHEUS_RULES = f"{PROMETHEUS_DIR}/pgfleet-rules.yml"
PROMETHEUS_STORAGE = "/var/lib/prometheus/metrics2"
ALERTMANAGER_CONFIG = f"{PROMETHEUS_DIR}/alertmanager.yml"
#: The monitoring host's key, readable by Prometheus and Alertmanager (Debian runs Prometheus with PrivateUsers,
#: which maps no supplementary group: the ssl-cert group cannot grant it the host key).
MONITOR_KEY = f"{PROMETHEUS_DIR}/pgfleet-host.key"
#: node_exporter's textfile collector: pgfleet's node metrics land here (:mod:`pgfleet.node.node_metrics`).
NODE_METRICS_DIR = "/var/lib/prometheus/node-exporter"
NODE_METRICS_CONFIG = "/etc/pgfleet/node-metrics.json"
#: Seconds between two node-metrics runs, and between two ``pgbackrest info`` of the pgBackRest exporter.
NODE_METRICS_INTERVAL = 30
PGBACKREST_EXPORTER_INTERVAL = 60
#: The recall probe on the monitoring host: its package beside the node programs, its configuration (0640: passwords).
PROBE_PACKAGE = "pgfleet_probe"
PROBE_CONFIG = "/etc/pgfleet/probe.json"
#: Seconds between two recall measurements of each watched index (each takes sample_size exact scans on a replica).
PROBE_INTERVAL = 60
#: Longest an exact (sequential-scan) query of the probe may run on the replica before it is cancelled.
PROBE_STATEMENT_TIMEOUT_MS = 30000

# ---- OS users and groups

POSTGRES_OS_USER = "postgres"
ETCD_OS_USER = "etcd"
#: Debian's group for reading TLS keys; postgres is in it, etcd gets it in its unit.
TLS_GROUP = "ssl-cert"

# ---- PostgreSQL roles (passwords come from the stack's secrets), REST and etcd users

PG_SUPERUSER = "postgres"
PG_REPLICATION = "replicator"
PG_REWIND = "rewind"
PG_MONITOR = "monitor"
PG_POOLER_AUTH = "pgbouncer_auth"
PATRONI_REST_USER = "patroni"
ETCD_PATRONI_USER = "patroni"
#: etcd key prefix Patroni works under (``namespace``), and the only one its user may touch.
PATRONI_NAMESPACE = "/service/"

# ---- systemd units

PATRONI_UNIT = "patroni.service"
ETCD_UNIT = "etcd.service"
#: Debian's single-process unit: stopped and masked, pgfleet runs :func:`pgbouncer_unit` instances instead.
PGBOUNCER_PACKAGE_UNIT = "pgbouncer.service"
#: One PgBouncer process per instance (``pgbouncer@1.service`` …), all on PGBOUNCER_PORT (so_reuseport).
PGBOUNCER_TEMPLATE_UNIT = "pgbouncer@.service"
PGBOUNCER_EXPORTER_TEMPLATE_UNIT = "prometheus-pgbouncer-exporter@.service"
HAPROXY_UNIT = "haproxy.service"
PGBACKREST_UNIT = "pgbackrest.service"
NFTABLES_UNIT = "nftables.service"
LEADER_AWAY_UNIT = "pgfleet-etcd-leader-away.service"
def pgbouncer_unit(process: int | str) -> str:
    return PGBOUNCER_TEMPLATE_UNIT.replace("@", f"@{process}")


def pgbouncer_config(process: int | str) -> str:
    return f"/etc/pgbouncer/pgbouncer-{process}.ini"


def pgbouncer_socket_dir(process: int | str) -> str:
    """Each process's own Unix socket (its stats console, and its peers' route for forwarded cancels)."""
    return f"/run/pgbouncer/{process}"


def pgbouncer_exporter_unit(process: int | str) -> str:
    return PGBOUNCER_EXPORTER_TEMPLATE_UNIT.replace("@", f"@{process}")


def pgbouncer_processes(count: int) -> list[int]:
    """The process numbers of a node that runs ``count`` PgBouncer processes (``pgbouncer@1`` …)."""
    return list(range(1, count + 1))


def pgbouncer_exporter_port(process: int) -> int:
    return PGBOUNCER_EXPORTER_PORT + process - 1


def default_file(unit: str) -> str:
    """Debian's /etc/default file a unit reads (``/etc/default/prometheus`` for ``prometheus.service``)."""
    return f"/etc/default/{unit_name(unit)}"


def backup_unit(kind: str) -> str:
    """The scheduled backup unit of a kind (``full``, ``diff``): ``pgbackrest-full.service``."""
    return f"pgbackrest-{kind}.service"


NODE_METRICS_UNIT = "pgfleet-node-metrics.service"
NODE_METRICS_TIMER = "pgfleet-node-metrics.timer"
#: The user Debian's Prometheus, Alertmanager and node_exporter run as.
PROMETHEUS_USER = "prometheus"
#: Debian's exporter units, and the user each runs as.
EXPORTER_UNITS = {"node": "prometheus-node-exporter.service", "postgres": "prometheus-postgres-exporter.service",
                  "pgbouncer": "prometheus-pgbouncer-exporter.service", "pgbackrest": "prometheus-pgbackrest-exporter.service"}
EXPORTER_USERS = {"node": PROMETHEUS_USER, "postgres": PROMETHEUS_USER, "pgbouncer": POSTGRES_OS_USER, "pgbackrest": POSTGRES_OS_USER}
PROMETHEUS_UNIT = "prometheus.service"
ALERTMANAGER_UNIT = "prometheus-alertmanager.service"
PROBE_UNIT = "pgfleet-probe.service"


def unit_name(unit: str) -> str:
    """``patroni`` for ``patroni.service`` (what ``journalctl -u`` and ``systemctl kill`` take)."""
    return unit.removesuffix(".service")


def local_url(port: int) -> str:
    """A service on this node over TLS (the host certificate has 127.0.0.1 in its SANs)."""
    return f"https://127.0.0.1:{port}"
