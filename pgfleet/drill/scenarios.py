"""The faults of issue 6: what each breaks, how it recovers, what it must (not) change.

A scenario only speaks :class:`~pgfleet.drill.control.ClusterControl`. It
declares whether the leader must, must not or may change (the timeline rule
follows from what actually happened: one promotion, one new timeline), and
when the old primary is probed directly for split brain:

- ``after-fault``: over the network while the fault lasts, once a new leader
  is visible (Patroni killed: PostgreSQL keeps running without its guard);
- ``isolated``: the same, through the provider's own channel because the
  network cannot reach it (partition);
- ``after-recover``: once the member is back (it must be a standby then);
- ``none``: the leader is not the target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pgfleet.drill.analysis import LeaderChange
from pgfleet.drill.control import ClusterControl, ClusterState, DrillNotWired
from pgfleet.errors import ClusterError, PgfleetError

Probe = Literal["none", "after-fault", "isolated", "after-recover"]


@dataclass
class DrillContext:
    """What the runner knew when the fault was injected."""

    before: ClusterState
    leader: str
    target: str
    run_id: str
    extra: dict[str, str] = field(default_factory=dict)


class Scenario(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    leader_change: ClassVar[LeaderChange]
    probe: ClassVar[Probe] = "after-recover"
    #: at least one writer must have entered through the target (its HAProxy) when the fault hits
    needs_entry: ClassVar[bool] = False

    def target(self, state: ClusterState, control: ClusterControl) -> str:
        """The member the fault hits; the leader unless said otherwise."""
        if state.leader is None:
            raise ClusterError("no single leader to aim the fault at")
        return state.leader.name

    @abstractmethod
    def inject(self, control: ClusterControl, ctx: DrillContext) -> None: ...

    def recover(self, control: ClusterControl, ctx: DrillContext) -> None:
        """Undo the fault; nothing by default (Patroni heals it by itself)."""


class PowerLoss(Scenario):
    """The target's host loses power (hard, silent); power comes back when the fault is undone."""

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.power_off(ctx.target)

    def recover(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.power_on(ctx.target)


class NetworkCut(Scenario):
    """The target keeps running but loses its network; the link comes back when the fault is undone."""

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.partition(ctx.target)

    def recover(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.heal(ctx.target)


class Switchover(Scenario):
    name = "switchover"
    summary = "planned switchover to the synchronous standby through Patroni's REST API"
    leader_change = "must"

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        sync = [m.name for m in ctx.before.sync_standbys] or [m.name for m in ctx.before.members if not m.is_leader]
        if not sync:
            raise ClusterError("switchover needs a standby, and the cluster has none")
        ctx.extra["candidate"] = sync[0]
        control.switchover(ctx.leader, sync[0])


class PostgresCrash(Scenario):
    name = "postgres-crash"
    summary = "SIGKILL of the primary's postmaster; Patroni stays (restarts it in place or fails over)"
    leader_change = "may"

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.kill_postgres(ctx.target)


class PatroniCrash(Scenario):
    name = "patroni-crash"
    summary = "SIGKILL of Patroni on the primary; PostgreSQL keeps running without its guard"
    leader_change = "may"
    probe = "after-fault"

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.kill_patroni(ctx.target)

    def recover(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.start_patroni(ctx.target)  # a no-op if systemd restarted it already


class NodeLoss(PowerLoss):
    name = "node-loss"
    summary = "hard power-off of the primary's host"
    leader_change = "must"


class PrimaryPartition(NetworkCut):
    name = "primary-partition"
    summary = "the primary keeps running but loses its network"
    leader_change = "must"
    probe = "isolated"


class ReplicaLoss(PowerLoss):
    name = "replica-loss"
    summary = "the synchronous standby dies; writes continue, another standby becomes synchronous"
    leader_change = "must-not"
    probe = "none"

    def target(self, state: ClusterState, control: ClusterControl) -> str:
        replicas = [m.name for m in state.sync_standbys] or [m.name for m in state.members if not m.is_leader]
        if not replicas:
            raise ClusterError("replica-loss needs a standby, and the cluster has none")
        return replicas[0]


class ReplicaPartition(NetworkCut):
    name = "replica-partition"
    summary = ("the synchronous standby loses its network; commits wait for it until its WAL sender gives up, "
               "then another standby becomes synchronous")
    leader_change = "must-not"
    probe = "none"

    def target(self, state: ClusterState, control: ClusterControl) -> str:
        if not state.sync_standbys:
            raise ClusterError("replica-partition needs a synchronous standby, and the cluster has none")
        return state.sync_standbys[0].name



def asynchronous_replica(state: ClusterState, scenario: str) -> str:
    """A streaming replica that is not synchronous: losing it never stalls a commit, so what a
    drill on it measures is only what its clients (who entered through its HAProxy) see."""
    found = [m.name for m in state.members if not m.is_leader and not m.is_sync]
    if not found:
        raise ClusterError(f"{scenario} needs an asynchronous replica, and the cluster has none")
    return found[0]


class EntryLoss(PowerLoss):
    name = "entry-loss"
    summary = "hard power-off of the asynchronous replica while writers entered through it (its HAProxy)"
    leader_change = "must-not"
    probe = "none"
    needs_entry = True

    def target(self, state: ClusterState, control: ClusterControl) -> str:
        return asynchronous_replica(state, self.name)


class EntryPartition(NetworkCut, EntryLoss):
    name = "entry-partition"
    summary = "the asynchronous replica loses its network while writers entered through it (its HAProxy)"


class EtcdMemberLoss(Scenario):
    name = "etcd-member-loss"
    summary = "one etcd member dies (the one beside the primary: its Patroni must fail over to another member); nothing else may change"
    leader_change = "must-not"
    probe = "none"

    def target(self, state: ClusterState, control: ClusterControl) -> str:
        etcd = control.etcd_members()
        if not etcd:
            raise DrillNotWired("etcd-member-loss only knows co-located etcd members yet; this stack has none on its database nodes")
        leader = state.leader.name if state.leader else None
        return leader if leader in etcd else etcd[0]

    def inject(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.kill_etcd(ctx.target)

    def recover(self, control: ClusterControl, ctx: DrillContext) -> None:
        control.start_etcd(ctx.target)


#: In the order ``all`` runs them: gentle first, so an early failure says more.
SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (
    Switchover, PostgresCrash, PatroniCrash, NodeLoss, PrimaryPartition, ReplicaLoss, ReplicaPartition, EntryLoss,
    EntryPartition, EtcdMemberLoss)}


def resolve(name: str) -> list[Scenario]:
    """``all`` or one scenario name → scenario instances."""
    if name == "all":
        return [cls() for cls in SCENARIOS.values()]
    if name not in SCENARIOS:
        raise PgfleetError(f"unknown scenario {name!r}: use one of {', '.join(SCENARIOS)}, or all")
    return [SCENARIOS[name]()]
