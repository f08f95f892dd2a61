"""What a drill may do to a cluster: :class:`ClusterControl`, and pgfleet's.

Scenarios only speak this interface, so the same drill runs against the lab,
a static stack or Hetzner Cloud. :class:`PatroniControl` implements it with
what the deploy set up (Patroni's authenticated REST API, the inventory's SSH
access, pgfleet's DSNs) and, for power and the network, the stack's provider
(:mod:`pgfleet.providers`: the lab's fault tools; on Hetzner its API for power
and the members' nftables for partitions).

What a provider cannot do yet raises :class:`DrillNotWired` naming the missing
piece instead of pretending.
"""

from __future__ import annotations

import json
import shlex
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgfleet import contract, providers
from pgfleet.node import patroni
from pgfleet.node.patroni import Member
from pgfleet.errors import ClusterError, NotPossible, PgfleetError
from pgfleet.providers.base import run_on

if TYPE_CHECKING:
    from pgfleet.inventory import Inventory
    from pgfleet.secrets import Secrets
    from pgfleet.spec import ClusterSpec, Spec
    from pgfleet.stack import Stack

PATRONI_PORT = contract.PATRONI_REST_PORT
POSTGRES_PORT = contract.POSTGRES_PORT


#: A drill step needs something the lab, the deploy or a provider does not offer yet.
DrillNotWired = NotPossible


# --------------------------------------------------------------------------- cluster state


@dataclass(frozen=True)
class ClusterState:
    members: tuple[Member, ...]

    @property
    def leaders(self) -> list[Member]:
        return patroni.leaders(self.members)

    @property
    def leader(self) -> Member | None:
        ls = self.leaders
        return ls[0] if len(ls) == 1 else None

    @property
    def sync_standbys(self) -> list[Member]:
        return [m for m in self.members if m.is_sync]

    @property
    def timeline(self) -> int | None:
        return self.leader.timeline if self.leader else None

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


def parse_patroni_cluster(doc: dict[str, Any]) -> ClusterState:
    """Patroni's ``GET /cluster`` document → :class:`ClusterState`."""
    return ClusterState(tuple(patroni.members(doc)))


def majority_view(views: Sequence[ClusterState], members: int) -> ClusterState:
    """The view (leader and roles) that more than half of all members report;
    ClusterError while they disagree (a member is still catching up)."""
    def key(v: ClusterState) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((m.name, "leader" if m.is_leader else "sync" if m.is_sync else "replica") for m in v.members))

    groups: dict[tuple[tuple[str, str], ...], list[ClusterState]] = {}
    for v in views:
        groups.setdefault(key(v), []).append(v)
    best = max(groups.values(), key=len)
    if len(best) * 2 <= members:
        leaders = sorted({m.name for v in views for m in v.leaders})
        raise ClusterError(f"members disagree about the cluster ({len(views)} answered; leaders named: {', '.join(leaders) or 'none'})")
    return best[0]


def health_problems(state: ClusterState, expected_members: int, synchronous: bool,
                    max_lag_bytes: int = 1 << 20) -> list[str]:
    """Full health: one running leader, every other member streaming on its
    timeline within the lag bound, a synchronous standby when asked for."""
    out: list[str] = []
    if len(state.leaders) != 1:
        out.append(f"{len(state.leaders)} leaders ({', '.join(m.name for m in state.leaders) or 'none'}), expected 1")
    if len(state.members) != expected_members:
        out.append(f"{len(state.members)} members, expected {expected_members}")
    leader = state.leader
    if leader and leader.state != "running":
        out.append(f"leader {leader.name} is {leader.state!r}, not running")
    for m in state.members:
        if m.is_leader:
            continue
        if m.state != "streaming":
            out.append(f"{m.name} is {m.state!r}, not streaming")
        if leader and m.timeline != leader.timeline:
            out.append(f"{m.name} is on timeline {m.timeline}, the leader on {leader.timeline}")
        if m.lag is None:
            out.append(f"{m.name}: lag unknown")
        elif m.lag > max_lag_bytes:
            out.append(f"{m.name} lags {m.lag} bytes (> {max_lag_bytes})")
    if synchronous and leader and not state.sync_standbys:
        out.append("no synchronous standby")
    return out


def etcd_status_problems(statuses: Sequence[dict[str, Any]], endpoints: Sequence[str]) -> list[str]:
    """etcd's health from ``etcdctl endpoint status -w json``: every member answers, has no error,
    and all agree on one leader and one raft term. A member that just came back from a partition
    may still have no leader: losing another member then would cost the cluster its quorum, so a
    drill must not start (or be called recovered) before etcd is whole again."""
    out: list[str] = []
    seen = {str(st.get("Endpoint")): st.get("Status") or {} for st in statuses}
    for ep in endpoints:
        status = seen.get(ep)
        if status is None:
            out.append(f"etcd member {ep} does not answer")
        elif status.get("errors"):
            out.append(f"etcd member {ep}: {'; '.join(map(str, status['errors']))}")
        elif not status.get("leader"):
            out.append(f"etcd member {ep} has no leader")
    answered = [st for ep, st in seen.items() if ep in endpoints and not st.get("errors")]
    if len({st.get("leader") for st in answered}) > 1:
        out.append("etcd members disagree on their leader")
    if len({st.get("raftTerm") for st in answered}) > 1:
        out.append("etcd members are on different raft terms (one is catching up)")
    return out


# --------------------------------------------------------------------------- the interface


class ClusterControl(ABC):
    """Everything a scenario may observe or do. Implementations raise
    :class:`DrillNotWired` for what their provider cannot do (yet)."""

    #: stack name, for reports
    stack: str
    expected_members: int
    synchronous: bool

    @abstractmethod
    def state(self) -> ClusterState:
        """Members, roles, timelines as Patroni reports them (any reachable member)."""

    @abstractmethod
    def rw_dsn(self) -> str:
        """The application's read-write endpoint (HAProxy → PgBouncer → primary)."""

    @abstractmethod
    def direct_dsn(self, member: str) -> str:
        """PostgreSQL on one member, no pooler, no HAProxy: for set checks and probes."""

    def entry_address(self, member: str) -> str:
        """The address clients dial to enter through ``member`` (what ``conn.info.hostaddr`` reports)."""
        raise DrillNotWired(f"this cluster control cannot tell which address enters through {member}")

    @abstractmethod
    def run(self, member: str, argv: Sequence[str], timeout: float = 30.0) -> str:
        """Run a command as root on a member; returns stdout, raises on failure."""

    @abstractmethod
    def switchover(self, leader: str, candidate: str | None) -> None:
        """Planned switchover through Patroni's authenticated REST API."""

    @abstractmethod
    def power_off(self, member: str) -> None: ...

    @abstractmethod
    def power_on(self, member: str) -> None: ...

    @abstractmethod
    def partition(self, member: str) -> None:
        """Cut the member off the network while it keeps running."""

    @abstractmethod
    def heal(self, member: str) -> None: ...

    @abstractmethod
    def sql_isolated(self, member: str, sql: str) -> str:
        """Run SQL on a member that the network cannot reach (partitioned):
        through the provider's own channel, as the postgres OS user."""

    # ---- built on run(): the unit names must match roles/ (see __init__ of implementations)

    patroni_unit = contract.unit_name(contract.PATRONI_UNIT)
    etcd_unit = contract.unit_name(contract.ETCD_UNIT)

    def kill_postgres(self, member: str) -> None:
        """SIGKILL the postmaster; Patroni stays and decides what happens next."""
        self.run(member, ["sh", "-c", _KILL_POSTMASTER])

    def kill_patroni(self, member: str) -> None:
        """SIGKILL Patroni's main process only; PostgreSQL keeps running under it."""
        self.run(member, ["systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", self.patroni_unit])

    def start_patroni(self, member: str) -> None:
        self.run(member, ["systemctl", "start", self.patroni_unit])

    def kill_etcd(self, member: str) -> None:
        self.run(member, ["systemctl", "kill", "--signal=SIGKILL", self.etcd_unit])

    def start_etcd(self, member: str) -> None:
        self.run(member, ["systemctl", "start", self.etcd_unit])

    def etcd_members(self) -> list[str]:
        """Members that run an etcd member (co-located placement)."""
        return []

    def etcd_problems(self) -> list[str]:
        """What is wrong with the DCS (etcd) this cluster depends on; nothing known by default."""
        return []

    def health(self) -> list[str]:
        """Full health: Patroni's view (:func:`health_problems`), then etcd's (:meth:`etcd_problems`)."""
        try:
            return health_problems(self.state(), self.expected_members, self.synchronous) or self.etcd_problems()
        except PgfleetError as e:
            return [str(e)]


#: The postmaster is the ``postgres`` process whose parent is not ``postgres``.
_KILL_POSTMASTER = (
    'found=; for p in $(ps -C postgres -o pid=); do '
    'pp=$(ps -o ppid= -p "$p" | tr -d " "); '
    '[ "$(cat /proc/$pp/comm 2>/dev/null)" = postgres ] || { kill -KILL "$p"; found=$p; }; done; '
    '[ -n "$found" ] || { echo "no postmaster running" >&2; exit 1; }'
)


# --------------------------------------------------------------------------- Patroni + inventory


class PatroniControl(ClusterControl):
    """A cluster deployed by pgfleet: Patroni REST (HTTPS, cluster CA, the
    deploy's REST user) for state and switchover, the application DSN from
    :func:`pgfleet.cluster.dsn`, commands over the inventory's SSH access, and
    the stack's provider (:mod:`pgfleet.providers`) for power and network.

    Names come from the deploy (roles/patroni.py, roles/etcd.py, pgfleet/contract.py):
    units ``patroni.service`` and ``etcd.service``, REST user
    :data:`~pgfleet.contract.PATRONI_REST_USER`. The superuser never logs in
    over the network (pg_hba rejects it), so direct probes and the set check
    connect as the database owner, verify-full, with the stack's passfile.
    """

    def __init__(self, stack: str, spec: Spec, cluster: ClusterSpec, inv: Inventory, secrets: Secrets):
        from pgfleet import cluster as cluster_mod

        self.stack = stack
        self.cluster = cluster.name
        self.synchronous = cluster.synchronous
        self.provider = providers.get(stack, spec)
        self._spec, self._cluster, self._inv, self._secrets = spec, cluster, inv, secrets
        members = inv.cluster_members(cluster.name)
        self.hosts = {h.name: h.public_ip for h in members}  # member name -> address pgfleet dials
        self.expected_members = len(self.hosts)
        self._etcd = [h.name for h in inv.etcd_hosts()]
        self._database = cluster.databases[0]
        self._ca_file = cluster_mod.ca_file(stack, secrets)
        self._passfile = cluster_mod.passfile(stack, spec, secrets)
        self._rw_dsn: str | None = None

    @classmethod
    def from_stack(cls, stack: str, cluster: str | None = None) -> PatroniControl:
        """Build from the stack's spec, inventory and secrets."""
        from pgfleet.stack import Stack

        return cls.of(Stack.open(stack), cluster)

    @classmethod
    def of(cls, st: Stack, cluster: str | None = None) -> PatroniControl:
        """The cluster ``cluster`` (default: the first) of an opened stack."""
        return cls(st.name, st.spec, st.cluster(cluster), st.inventory(), st.secrets)

    # ---- Patroni REST

    def _api(self, member: str, auth: bool = False, timeout: float = 3.0) -> patroni.Client:
        from pgfleet import cluster as cluster_mod

        return cluster_mod.rest_client(self.hosts[member], self._secrets, auth=auth, timeout=timeout)

    def state(self) -> ClusterState:
        """The view most members share. A member that was cut off (partition)
        serves its own stale view for a while after it returns — it would
        still call itself leader — so one member's answer is not enough."""
        errors: list[str] = []
        views: list[ClusterState] = []
        for name in self.hosts:
            try:
                views.append(ClusterState(tuple(self._api(name).cluster())))
            except (OSError, ValueError) as e:
                errors.append(f"{name}: {e}")
            except patroni.PatroniError as e:
                errors.append(f"{name}: HTTP {e.status}")
        if not views:
            raise ClusterError(f"no Patroni REST API answered on port {PATRONI_PORT}: {'; '.join(errors)}")
        return majority_view(views, len(self.hosts))

    def switchover(self, leader: str, candidate: str | None) -> None:
        try:
            self._api(leader, auth=True).switchover(leader, candidate, timeout=60.0)
        except patroni.PatroniError as e:
            raise ClusterError(f"switchover {leader} → {candidate or 'any'} refused: HTTP {e.status} {e.text}") from None

    def live_config(self) -> dict[str, Any]:
        """Patroni's cluster-wide (DCS) settings as the first member that answers reports them."""
        errors = []
        for name in self.hosts:
            try:
                return self._api(name).config()
            except (OSError, PgfleetError) as e:
                errors.append(f"{name}: {e}")
        raise ClusterError(f"GET /config answered on no member: {'; '.join(errors)}")

    def patch_config(self, changes: dict[str, Any]) -> None:
        """Change Patroni's cluster-wide (DCS) settings, as ``patronictl edit-config`` does.

        For drills that break a setting on purpose; the next deploy converges it back."""
        errors = []
        for name in self.hosts:
            try:
                self._api(name, auth=True, timeout=10.0).patch_config(changes)
                return
            except OSError as e:
                errors.append(f"{name}: {e}")
            except patroni.PatroniError as e:
                errors.append(f"{name}: HTTP {e.status} {e.text}")
        raise ClusterError(f"PATCH /config {changes} refused: {'; '.join(errors)}")

    # ---- endpoints

    def rw_dsn(self) -> str:
        """Exactly what ``pgfleet dsn STACK`` prints (or the DSN the user asked to measure instead)."""
        from pgfleet import cluster as cluster_mod

        if self._rw_dsn is not None:
            return self._rw_dsn
        return cluster_mod.dsn(self.stack, self._spec, self._inv, self._secrets, self._cluster)

    def override_rw_dsn(self, dsn: str) -> None:
        """Measure another connection string (an application's own) through the same drill."""
        self._rw_dsn = dsn

    def direct_dsn(self, member: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(host=self.hosts[member], port=POSTGRES_PORT, dbname=self._database.name,
                             user=self._database.owner, passfile=str(self._passfile),
                             sslmode="verify-full", sslrootcert=str(self._ca_file))

    def entry_address(self, member: str) -> str:
        if member not in self.hosts:
            raise ClusterError(f"{member} is not a member of cluster {self.cluster}")
        if self.cluster in self._inv.load_balancers:
            raise DrillNotWired(f"clients of cluster {self.cluster} dial its load balancer, not a node: "
                                "the entry scenarios need a DSN that names the nodes")
        return self.hosts[member]

    # ---- commands on members

    def run(self, member: str, argv: Sequence[str], timeout: float = 30.0) -> str:
        if member not in self.hosts:
            raise ClusterError(f"{member} is not a member of cluster {self.cluster}")
        return run_on(self._inv, member, argv, timeout=timeout)

    def etcd_members(self) -> list[str]:
        return [m for m in self._etcd if m in self.hosts]

    def etcd_problems(self) -> list[str]:
        """Every etcd member's status, asked from an etcd member with its own certificate (etcd's
        client port is open to cluster members only)."""
        endpoints = [f"https://{self._inv.host(m).private_ip}:{contract.ETCD_CLIENT_PORT}" for m in self._etcd]
        if not endpoints:
            return []
        etcdctl = (f"ETCDCTL_API=3 etcdctl --cacert {contract.CA_FILE} --cert {contract.HOST_CERT} --key {contract.HOST_KEY} "
                   f"--dial-timeout=2s --command-timeout=3s --endpoints={','.join(endpoints)} endpoint status -w json")
        errors = []
        for member in self._etcd:  # etcd's own hosts: they have etcdctl (dedicated nodes, or another cluster's)
            try:  # members that do not answer make etcdctl exit 1 after printing the others; anything worse is an error
                out = run_on(self._inv, member, ["sh", "-c", f"{etcdctl}; rc=$?; [ $rc -le 1 ]"], timeout=20)
                return etcd_status_problems(json.loads(out or "[]"), endpoints)
            except (PgfleetError, ValueError) as e:
                errors.append(f"{member}: {e}")
        return [f"cannot ask etcd for its status: {'; '.join(errors)}"]

    # ---- faults only a provider can cause (lab: its fault tools; Hetzner: its API for power, the member's
    # nftables for partitions; static hosts: partitions only, nothing pgfleet can power off)

    def _member(self, member: str) -> str:
        if member not in self.hosts:
            raise ClusterError(f"{member} is not a member of cluster {self.cluster}")
        return member

    def power_off(self, member: str) -> None:
        self.provider.power_off(self._inv, member)

    def power_on(self, member: str) -> None:
        self.provider.power_on(self._inv, member)

    def partition(self, member: str) -> None:
        self.provider.isolate(self._inv, self._member(member))

    def heal(self, member: str) -> None:
        self.provider.heal(self._inv, self._member(member))

    def sql_isolated(self, member: str, sql: str) -> str:
        """SQL on a partitioned member as postgres over its socket: the lab's console, or SSH on the public address."""
        psql = (f"runuser -u {contract.POSTGRES_OS_USER} -- psql -X -At -v ON_ERROR_STOP=1 -d {shlex.quote(self._database.name)} "
                f"-c {shlex.quote(sql)}")
        return self.provider.run_isolated(self._inv, self._member(member), psql, what=sql, timeout=30)
