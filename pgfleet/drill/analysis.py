"""From recorded facts to verdicts: RTO, the set check, split brain, timelines.

Pure functions over plain values (no I/O, no clocks), so every rule that
decides whether a drill passed is unit-tested with constructed timelines.
Times are seconds on one monotonic clock; ids are ``(writer, seq)``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pgfleet.drill.workload import Ack, ClientError

LeaderChange = Literal["must", "must-not", "may"]


@dataclass(frozen=True)
class Gap:
    """An interval with no acknowledged commit."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def longest_gap(times: Sequence[float], start: float, end: float) -> Gap:
    """The longest interval in ``[start, end]`` containing no time of ``times``.

    The window's edges count: no ack at all gives the whole window.
    """
    if end < start:
        raise ValueError(f"window ends before it starts ({start} > {end})")
    points = [start, *sorted(t for t in times if start < t < end), end]
    best = Gap(start, start)
    for a, b in zip(points, points[1:]):
        if b - a > best.length:
            best = Gap(a, b)
    return best


@dataclass(frozen=True)
class Outage:
    """How long writes stopped after the fault."""

    #: longest interval without an ack from the fault to the end of the run;
    #: when writes never resumed this is a lower bound (fault → end)
    rto: float
    gap: Gap
    resumed: bool
    #: fault → first ack after it (None: never)
    first_ack_after: float | None
    #: longest interval between acks before the fault: the workload's own noise
    baseline_gap: float | None


def outage(ack_times: Sequence[float], fault_at: float, end_at: float) -> Outage:
    """RTO = the longest interval without any acknowledged commit after the fault."""
    times = sorted(ack_times)
    after = [t for t in times if fault_at < t <= end_at]
    before = [t for t in times if t <= fault_at]
    gap = longest_gap(after, fault_at, end_at)
    baseline = max((b - a for a, b in zip(before, before[1:])), default=None)
    return Outage(rto=gap.length, gap=gap, resumed=bool(after),
                  first_ack_after=(after[0] - fault_at) if after else None, baseline_gap=baseline)


@dataclass(frozen=True)
class ClientOutage:
    """One client's (writer's) outage after the fault: what an application with that connection saw."""

    writer: int
    #: longest interval from the fault to the end of the run without an ack of this writer
    gap: Gap
    #: committed again before the end of the hold (commits still in flight when the fault hit
    #: do not count); a client that did not was down for the whole hold
    resumed: bool


#: An ack this soon after the fault belongs to a commit that was already in flight (the server
#: answered before the fault reached it): it says nothing about whether the client recovered.
IN_FLIGHT = 0.5


def client_outages(acks: Sequence[Ack], writers: Iterable[int], fault_at: float, hold_end: float,
                   end_at: float) -> list[ClientOutage]:
    """Per client: the longest time it could not commit after the fault. A hang is an outage, not
    a pause: a writer with no ack after the fault has the whole window as its gap. A commit that
    was in flight when the fault hit and acknowledged a moment later does not count as recovery:
    what counts is a commit more than :data:`IN_FLIGHT` after the fault and within the hold."""
    by: dict[int, list[float]] = {w: [] for w in writers}
    for a in acks:
        by.setdefault(a.writer, []).append(a.mono)
    out = []
    for w, times in sorted(by.items()):
        after = [t for t in times if fault_at < t <= end_at]
        out.append(ClientOutage(w, longest_gap(after, fault_at, end_at),
                                any(fault_at + IN_FLIGHT < t <= hold_end for t in after)))
    return out


def first_ack_on_new_timeline(acks: Iterable[Ack], fault_at: float, old_timeline: int | None) -> float | None:
    """Fault → first write acknowledged by a server on a later timeline: when
    the read-write endpoint (HAProxy) routed clients to the promoted primary."""
    if old_timeline is None:
        return None
    later = [a.mono for a in acks if a.mono > fault_at and a.timeline is not None and a.timeline > old_timeline]
    return (min(later) - fault_at) if later else None


def fmt_id(i: tuple[int, int]) -> str:
    return f"{i[0]}:{i[1]}"


@dataclass(frozen=True)
class SetCheck:
    """Acknowledged ids against the ids present on the (new) primary."""

    acknowledged: int
    present: int
    #: acknowledged but missing: lost writes (must be empty)
    lost: list[str]
    #: present although the client never saw the ack (outcome unknown at the
    #: time of the fault): allowed
    unacked_present: int
    #: present but never attempted by this run: something else wrote them (must be empty)
    unexpected: list[str]


def set_check(acked: Iterable[tuple[int, int]], present: Iterable[tuple[int, int]],
              attempted: Mapping[int, int]) -> SetCheck:
    """Like Patroni's Jepsen suite: every acknowledged insert must have survived."""
    acked_s, present_s = set(acked), set(present)
    lost = sorted(acked_s - present_s)
    extra = present_s - acked_s
    unexpected = sorted(i for i in extra if not (1 <= i[1] <= attempted.get(i[0], 0)))
    return SetCheck(acknowledged=len(acked_s), present=len(present_s), lost=[fmt_id(i) for i in lost],
                    unacked_present=len(extra) - len(unexpected), unexpected=[fmt_id(i) for i in unexpected])


@dataclass(frozen=True)
class ErrorSummary:
    count: int
    #: first line of each distinct message -> how often (most frequent first, at most 10)
    kinds: dict[str, int]
    first_at: float | None
    last_at: float | None


def summarize_errors(errors: Sequence[ClientError], since: float = 0.0) -> ErrorSummary:
    if not errors:
        return ErrorSummary(0, {}, None, None)
    kinds = Counter(f"{e.phase}: {e.message[:160]}" for e in errors)
    return ErrorSummary(count=len(errors), kinds=dict(kinds.most_common(10)),
                        first_at=min(e.mono for e in errors) - since, last_at=max(e.mono for e in errors) - since)


def concurrent_writers(acks: Sequence[Ack], tolerance: float = 0.2) -> list[str]:
    """Split brain as the clients saw it: two servers (or timelines) whose
    acknowledged writes interleave in time. A failover shows as one identity's
    acks ending before the next one's begin; anything else is evidence.

    ``tolerance``: the old primary may deliver, a moment after the promotion,
    the ack of a commit its synchronous standby had already flushed; that is
    not two writers. A longer overlap is. (Writes a split brain really lost
    also fail the set check, whatever this says.)"""
    spans: dict[tuple[str | None, int | None], list[float]] = {}
    for a in acks:
        s = spans.setdefault((a.server, a.timeline), [a.mono, a.mono])
        s[0], s[1] = min(s[0], a.mono), max(s[1], a.mono)
    ids = sorted(spans, key=lambda k: spans[k][0])
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if spans[b][0] + tolerance < spans[a][1]:
                out.append(f"{a[0]} (timeline {a[1]}) and {b[0]} (timeline {b[1]}) both acknowledged writes "
                           f"between {spans[b][0]:.3f}s and {min(spans[a][1], spans[b][1]):.3f}s")
    return out


def timeline_problems(change: LeaderChange, old_leader: str | None, new_leader: str | None,
                      tl_before: int | None, tl_after: int | None) -> list[str]:
    """A new leader means exactly one new timeline; the same leader means none."""
    out: list[str] = []
    changed = old_leader != new_leader
    if change == "must" and not changed:
        out.append(f"the leader did not change (still {old_leader})")
    if change == "must-not" and changed:
        out.append(f"the leader changed ({old_leader} → {new_leader}) though this fault must not move it")
    if tl_before is None or tl_after is None:
        out.append("timeline unknown before or after the drill")
    else:
        want = tl_before + (1 if changed else 0)
        if tl_after != want:
            out.append(f"timeline went {tl_before} → {tl_after}, expected {want} "
                       f"({'one promotion' if changed else 'no promotion'})")
    return out


@dataclass
class DrillResult:
    """One scenario's outcome; :meth:`failures` is the verdict."""

    scenario: str
    stack: str
    leader_change: LeaderChange
    old_leader: str | None = None
    new_leader: str | None = None
    timeline_before: int | None = None
    timeline_after: int | None = None
    writers: int = 0
    duration_s: float = 0.0
    fault_at_s: float | None = None  # since the workload started
    fault_wall: float | None = None
    #: RTO: the longest time any one client could not commit (per-client gaps, a hang counts in full)
    rto_s: float | None = None
    #: the older, kinder figure: the longest time no client at all committed
    rto_all_writers_s: float | None = None
    #: writer -> its longest gap after the fault (s)
    client_gaps_s: dict[str, float] = field(default_factory=dict)
    #: writer -> the address it had entered through when the fault hit (``conn.info.hostaddr``)
    entries_at_fault: dict[str, str | None] = field(default_factory=dict)
    #: writers with no commit between the fault and the end of the hold: down for all of it
    writers_down: list[int] = field(default_factory=list)
    #: writers still blocked when the run ended, whose connections the workload shut down
    writers_ended: list[int] = field(default_factory=list)
    #: how long the fault was held before it was undone (s)
    hold_s: float | None = None
    #: every writer committed again during the hold
    writes_resumed: bool = False
    baseline_gap_s: float | None = None
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    unacked_present: int = 0
    unexpected: list[str] = field(default_factory=list)
    client_errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    blocked_writers: int = 0
    time_to_new_leader_s: float | None = None
    time_to_routing_s: float | None = None
    rejoin_s: float | None = None
    split_brain: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)
    health: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the drill could not run to the end (e.g. a step not wired yet)
    aborted: str | None = None

    def failures(self) -> list[str]:
        out: list[str] = []
        if self.aborted:
            out.append(f"aborted: {self.aborted}")
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged write(s) lost")
        if self.unexpected:
            out.append(f"{len(self.unexpected)} row(s) present that this run never wrote")
        out += [f"split brain: {s}" for s in self.split_brain]
        out += self.timeline
        out += [f"not healthy: {h}" for h in self.health]
        hold = f"{self.hold_s:.0f} s " if self.hold_s is not None else ""
        if not self.aborted and self.writers_down and len(self.writers_down) == len(self.client_gaps_s):
            out.append(f"writes never resumed after the fault: every writer was down for the whole {hold}hold")
        elif not self.aborted and self.writers_down:
            via = ", ".join(f"{w} (entered through {self.entries_at_fault.get(str(w)) or '?'})" for w in self.writers_down)
            out.append(f"writer(s) {via} never committed again during the {hold}hold: down for all of it")
        elif not self.aborted and not self.writes_resumed:
            out.append("writes never resumed after the fault")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lost_count"] = len(self.lost)
        d["ok"] = self.ok
        d["failures"] = self.failures()
        return d


def apply_workload(r: DrillResult, acks: Sequence[Ack], errors: Sequence[ClientError], attempted: Mapping[int, int],
                   present: Iterable[tuple[int, int]], started: float, stopped: float, fault_at: float,
                   hold_end: float | None = None, entries: Mapping[int, str | None] | None = None,
                   ended: Sequence[int] = ()) -> None:
    """Fill ``r``'s write-side figures from what the workload recorded and the
    ids found on the primary afterwards."""
    hold_end = stopped if hold_end is None else min(hold_end, stopped)
    o = outage([a.mono for a in acks], fault_at, stopped)
    clients = client_outages(acks, attempted, fault_at, hold_end, stopped)
    sc = set_check((a.id for a in acks), present, attempted)
    es = summarize_errors(errors, since=started)
    r.duration_s = stopped - started
    r.fault_at_s = fault_at - started
    r.rto_all_writers_s, r.baseline_gap_s = o.rto, o.baseline_gap
    r.client_gaps_s = {str(c.writer): round(c.gap.length, 3) for c in clients}
    r.rto_s = max((c.gap.length for c in clients), default=o.rto)
    r.writers_down = [c.writer for c in clients if not c.resumed]
    r.writes_resumed = bool(clients) and not r.writers_down
    r.hold_s = hold_end - fault_at
    r.entries_at_fault = {str(w): e for w, e in (entries or {}).items()}
    r.writers_ended = list(ended)
    r.acknowledged, r.lost, r.unacked_present, r.unexpected = sc.acknowledged, sc.lost, sc.unacked_present, sc.unexpected
    r.client_errors, r.error_kinds = es.count, es.kinds
    r.time_to_routing_s = first_ack_on_new_timeline(acks, fault_at, r.timeline_before) if r.new_leader != r.old_leader else None
    r.split_brain += concurrent_writers(acks)
