"""The stack file's schema: one pydantic model per section of ``pgfleet:`` settings.

Types, ranges and unknown keys are checked here; loading a stack file and the
cross-field checks are :mod:`pgfleet.spec`, which re-exports these models.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pgfleet import contract
from pgfleet.server_types import LOCATIONS, SERVER_TYPES, ServerType

NAMESPACE = "pgfleet"
#: The lab's network (reserved for benchmarking labs); the bridge is .1.
LAB_SUBNET = "198.18.0.0/24"
_NAME = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"
_IDENT = r"^[a-z_][a-z0-9_]{0,62}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VectorSettingsSpec(_Model):
    """pgvector's query-time settings for one database (``ALTER DATABASE … SET``); unset keeps pgvector's default.

    ``pgfleet vector advise`` prints the values that reach a target recall as a change here.
    """

    #: HNSW candidate list per query (pgvector's default 40): higher finds more true neighbours, slower.
    ef_search: int | None = Field(default=None, ge=1, le=1000)
    #: pgvector 0.8: keep scanning the index until a filtered query has enough rows (``off`` by default).
    iterative_scan: Literal["off", "relaxed_order", "strict_order"] | None = None


class DatabaseSpec(_Model):
    name: str = Field(pattern=_IDENT)
    owner: str = Field(pattern=_IDENT)
    extensions: list[str] = ["vector"]
    vector: VectorSettingsSpec = VectorSettingsSpec()


class StaticHostSpec(_Model):
    """An existing machine (e.g. Hetzner Robot bare metal) for provider ``static``."""

    name: str = Field(pattern=_NAME)
    public_ip: ipaddress.IPv4Address
    private_ip: ipaddress.IPv4Address | None = None


class ClusterSpec(_Model):
    name: str = Field(pattern=_NAME)
    nodes: int = 3
    server_type: str = "ccx13"
    #: The PostgreSQL major (package names, paths); semantic validation names the ones Debian 13 ships.
    postgres_major: int = contract.POSTGRES_MAJOR
    #: PostgreSQL tuning (:func:`pgfleet.sizing.postgres_parameters`): ``vector`` (pgvector: large shared_buffers and
    #: HNSW build memory), ``oltp``, or ``stock`` (PostgreSQL's defaults plus what HA needs: the benchmark's baseline).
    profile: Literal["oltp", "vector", "stock"] = "vector"
    #: Keep the cache warm across restarts (pg_prewarm's autoprewarm) and failovers (a promoted member reads its
    #: vector indexes); unset: the tuned profiles do, ``stock`` does not.
    prewarm: bool | None = None
    synchronous: bool = False
    #: Extra postgresql.conf parameters; they win over the derived ones.
    parameters: dict[str, str | int | float | bool] = {}
    databases: list[DatabaseSpec] = [DatabaseSpec(name="app", owner="app")]
    #: Provider ``static`` only: the machines, in order.
    hosts: list[StaticHostSpec] = []
    #: A DNS name clients use for the cluster (e.g. db.example.com); it goes
    #: into every node's certificate so verify-full works whichever node answers.
    dns_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")

    @property
    def server(self) -> ServerType:
        return SERVER_TYPES[self.server_type]


class PgBouncerSpec(_Model):
    pool_mode: Literal["transaction", "session"] = "transaction"
    #: Server connections per (database, user) pair; derived from cores when unset.
    default_pool_size: int | None = Field(default=None, ge=1)
    reserve_pool_size: int = Field(default=5, ge=0)
    max_client_conn: int = Field(default=2000, ge=10)


class EtcdSpec(_Model):
    placement: Literal["colocated", "dedicated"] = "colocated"
    members: int = 3
    #: Server type of dedicated etcd nodes.
    server_type: str = "cx23"


class BackupSpec(_Model):
    enabled: bool = False
    endpoint: str | None = None
    bucket: str | None = None
    region: str = "fsn1"
    #: Repository path inside the bucket; one per cluster below it.
    path: str = "/pgbackrest"
    retention_full: int = Field(default=2, ge=1, le=100)
    retention_diff: int = Field(default=7, ge=1, le=365)
    #: systemd OnCalendar= expressions.
    full_schedule: str = "Sun *-*-* 01:00:00"
    diff_schedule: str = "Mon..Sat *-*-* 01:00:00"


class LoadBalancerSpec(_Model):
    enabled: bool = False
    type: Literal["lb11", "lb21", "lb31"] = "lb11"


class FailoverSpec(_Model):
    """Patroni timing; unset values come from :mod:`pgfleet.sizing`'s fast profile."""

    ttl: int | None = None
    loop_wait: int | None = None
    retry_timeout: int | None = None
    synchronous_mode_strict: bool = False


class NetworkSpec(_Model):
    ip_range: str = "10.42.0.0/16"
    subnet: str = "10.42.1.0/24"


class LabSpec(_Model):
    """Provider ``lab`` only: the local systemd-nspawn fleet."""

    #: Add a client/backup host beside the database hosts.
    client_host: bool = True


_URL = r"^https?://[^\s/:]+(:\d{1,5})?(/\S*)?$"
#: A Pulumi config secret's key (``pulumi config set --secret pgfleet:KEY``): the spec names it, never holds its value.
_SECRET_NAME = r"^[a-z][a-z0-9_]{0,62}$"
_EMAIL = r"^[^@\s]+@[^@\s]+$"


class SmtpSpec(_Model):
    """E-mail alerts through an SMTP relay; the password is a stack secret, passed to the renderer, never in host data."""

    smarthost: str = Field(pattern=r"^[^\s:]+:\d{1,5}$")
    sender: str = Field(pattern=_EMAIL)
    to: list[str] = Field(min_length=1)
    username: str | None = None
    #: Key of the Pulumi config secret holding the SMTP password (e.g. smtp_password).
    password_secret: str | None = Field(default=None, pattern=_SECRET_NAME)
    require_tls: bool = True


class ReceiversSpec(_Model):
    """Where alerts go: every webhook and the e-mail relay get every alert."""

    webhooks: list[Annotated[str, Field(pattern=_URL)]] = []
    email: SmtpSpec | None = None


class VectorIndexWatchSpec(_Model):
    """One vector index whose recall the probe measures: ANN top-k against the exact top-k on a replica."""

    #: Defaults to the first cluster.
    cluster: str | None = Field(default=None, pattern=_NAME)
    database: str = Field(pattern=_IDENT)
    #: ``table`` or ``schema.table``.
    table: str = Field(pattern=r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$")
    column: str = Field(pattern=_IDENT)
    #: A unique column of the table: the probe leaves each query's own row out of both top-k lists.
    key: str = Field(default="id", pattern=_IDENT)
    #: pgvector's distance operator: <-> L2, <=> cosine, <#> negative inner product, <+> L1.
    operator: Literal["<->", "<=>", "<#>", "<+>"] = "<=>"
    k: int = Field(default=10, ge=1, le=1000)
    #: Stored vectors taken as queries per measurement.
    sample_size: int = Field(default=100, ge=1, le=10000)
    target_recall: float = Field(default=0.95, gt=0, le=1)


class MonitoringSpec(_Model):
    """Prometheus + Alertmanager for the environment (the monitoring host and exporters are deployed by pgfleet)."""

    enabled: bool = True
    #: The monitoring host's Hetzner server type (provider hcloud; the lab sizes it like one).
    server_type: str = "cx23"
    #: Provider static: the existing machine that runs Prometheus and Alertmanager.
    host: StaticHostSpec | None = None
    retention_days: int = Field(default=15, ge=1, le=3650)
    receivers: ReceiversSpec = ReceiversSpec()
    #: A Prometheus-compatible store the user already runs (``remote_write``).
    remote_write_url: str | None = Field(default=None, pattern=_URL)
    vector_indexes: list[VectorIndexWatchSpec] = []


#: A Hetzner label value: at most 63 characters, alphanumeric at both ends, ``-_.`` inside.
LABEL_VALUE = r"^([a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?)?$"


class EphemeralSpec(_Model):
    """An environment made by ``pgfleet env create``: where it came from, who owns it, when ``env gc`` may destroy it."""

    #: The stack it was made like (e.g. staging).
    template: str = Field(pattern=_NAME)
    #: Who asked for it (a GitHub actor, ``pr-12``, a user name): a Hetzner label on every resource.
    owner: str = Field(pattern=LABEL_VALUE, min_length=1)
    #: When it may be destroyed; with its timezone, so every janitor agrees on the moment.
    expires: AwareDatetime

    @property
    def expires_label(self) -> str:
        """ISO 8601 basic format in UTC (``20261202T051300Z``): Hetzner label values allow no ``:``."""
        return self.expires.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class Spec(_Model):
    """One environment: everything pgfleet needs to build and run it."""

    environment: str = Field(pattern=_NAME)
    provider: Literal["hcloud", "static", "lab"]
    production: bool = False
    location: str = "fsn1"
    network: NetworkSpec = NetworkSpec()
    admin_cidrs: list[str] = []
    client_cidrs: list[str] = []
    ssh_user: str = "root"
    ssh_public_key: str | None = None
    clusters: list[ClusterSpec] = Field(min_length=1)
    pgbouncer: PgBouncerSpec = PgBouncerSpec()
    etcd: EtcdSpec = EtcdSpec()
    backups: BackupSpec = BackupSpec()
    load_balancer: LoadBalancerSpec = LoadBalancerSpec()
    failover: FailoverSpec = FailoverSpec()
    lab: LabSpec = LabSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    #: Set by ``pgfleet env create`` only.
    ephemeral: EphemeralSpec | None = None

    @property
    def network_zone(self) -> str:
        return LOCATIONS[self.location]

    def cluster(self, name: str) -> ClusterSpec:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def node_names(self, cluster: ClusterSpec) -> list[str]:
        """Host names of a cluster's database nodes, in order (``<env>-<cluster>-<n>``)."""
        if cluster.hosts:  # provider static (validation: hosts there and only there)
            return [h.name for h in cluster.hosts]
        return [f"{self.environment}-{cluster.name}-{i}" for i in range(1, cluster.nodes + 1)]

    def watched_cluster(self, watch: VectorIndexWatchSpec) -> ClusterSpec:
        """The cluster a watched vector index belongs to (the first cluster unless it names one)."""
        return self.cluster(watch.cluster or self.clusters[0].name)

    def resource_name(self, group: str | None = None) -> str:
        """A Hetzner resource's name: ``pgfleet-<env>`` (network, SSH key) or ``pgfleet-<env>-<group>``
        (a cluster's or etcd's or monitoring's placement group and firewall, a cluster's load balancer)."""
        return f"pgfleet-{self.environment}" + (f"-{group}" if group else "")

    def resource_names(self) -> list[str]:
        """Every name the stack's cloud resources and hosts get: each must be an RFC 1123 label (Hetzner, hostnames)."""
        groups = [c.name for c in self.clusters] + (["etcd"] if self.etcd.placement == "dedicated" else [])
        groups += ["monitoring"] if self.monitoring.enabled else []
        hosts = [n for c in self.clusters for n in self.node_names(c)] + (self.etcd_names() if self.etcd.placement == "dedicated" else [])
        hosts += [f"{self.environment}-client"] if self.lab.client_host and self.provider == "lab" else []
        if self.monitoring.enabled:
            hosts.append(self.monitoring.host.name if self.monitoring.host else f"{self.environment}-monitor")
        return [self.resource_name(), *(self.resource_name(g) for g in groups), *hosts]

    def etcd_names(self) -> list[str]:
        """Host names that run etcd: dedicated nodes, or the first cluster's first members."""
        if self.etcd.placement == "dedicated":
            return [f"{self.environment}-etcd-{i}" for i in range(1, self.etcd.members + 1)]
        return self.node_names(self.clusters[0])[: self.etcd.members]
