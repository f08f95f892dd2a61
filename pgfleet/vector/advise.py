"""The advice of ``pgfleet vector advise``: pure functions over measurements and figures, tested without a database.

The search for the smallest ``hnsw.ef_search`` (or ``ivfflat.probes``) that
reaches the target recall takes the measurement as a function, so the
measuring session (:mod:`pgfleet.vector.session`) and the unit tests share it.
Each advice says whether its effect was ``measured`` (on the replica, with the
owner's session) or is ``estimated`` (a sample in a scratch database, or
arithmetic on sizes and counters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pgfleet.vector.catalog import Churn, IndexInfo

#: Values of ``hnsw.ef_search`` tried in turn (pgvector allows 1-1000).
EF_SEARCH_CANDIDATES = (40, 64, 100, 128, 200, 256, 400, 512, 800, 1000)
#: Values of ``ivfflat.probes`` tried in turn (only those up to the index's lists).
PROBES_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Changed or dead rows above this share of the rows: the graph/lists were built for data that is largely gone.
CHURN_SHARE = 0.2
#: A p95 above this (seconds) at the needed setting makes a better-built index worth estimating.
SLOW_P95 = 0.05
#: The most rows copied into the scratch database to try a rebuild on.
SCRATCH_ROWS = 10_000
#: halfvec stores 2 bytes a dimension instead of 4; binary quantization 1 bit instead of 32 (16 from halfvec).
QUANTIZED_SHARE = {"vector": {"halfvec": 1 / 2, "binary": 1 / 32}, "halfvec": {"binary": 1 / 16}}
#: pgvector's limits on hnsw build options.
MAX_M, MAX_EF_CONSTRUCTION = 100, 1000

Basis = Literal["measured", "estimated"]


#: Run before ``ALTER DATABASE … SET hnsw.…`` as the database owner: pgvector's settings exist in a session only
#: once its library is loaded there; until then PostgreSQL lets only a superuser set them ("permission denied").
LOAD_PGVECTOR = "SELECT '[1]'::vector;"


@dataclass(frozen=True)
class Point:
    """Recall and latency of the ANN query at one value of the search setting."""

    #: the setting's value in effect (for the owner's own session: what it shows)
    value: int
    recall: float
    p95_seconds: float
    queries: int
    #: False: the owner's own session (nothing SET); True: the measuring session SET it
    set_by_advise: bool = True


#: value of the setting (None: leave the session's own) → (recall, p95 seconds, queries)
MeasureAt = Callable[[int | None], tuple[float, float, int]]


@dataclass(frozen=True)
class Search:
    setting: str
    current: Point
    tried: tuple[Point, ...]
    #: the smallest value that reaches the target (the current one when it does); None when no candidate does
    found: Point | None

    @property
    def reaches_target_now(self) -> bool:
        return self.found is self.current


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in (0, 1]): a value that was measured, never an interpolation."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def search(setting: str, current_value: int, measure_at: MeasureAt, target: float, candidates: Iterable[int],
           *, set_current: bool = False) -> Search:
    """Measure the current value, then every candidate above it in ascending order until one reaches ``target``.

    ``set_current``: SET the current value too (a scratch session, which has no login settings of the owner).
    Recall rises with the setting but not strictly, so the search walks up rather than bisecting.
    """
    recall, p95, n = measure_at(current_value if set_current else None)
    current = Point(current_value, recall, p95, n, set_by_advise=set_current)
    if recall >= target:
        return Search(setting, current, (), current)
    tried: list[Point] = []
    for value in sorted(set(candidates)):
        if value <= current_value:
            continue
        recall, p95, n = measure_at(value)
        tried.append(Point(value, recall, p95, n))
        if recall >= target:
            return Search(setting, current, tuple(tried), tried[-1])
    return Search(setting, current, tuple(tried), None)


def candidates_for(info: IndexInfo) -> tuple[int, ...]:
    """The values of the index's search setting to try (ivfflat: probes up to its lists, which means every list)."""
    if info.method == "hnsw":
        return EF_SEARCH_CANDIDATES
    lists = info.options.get("lists", 1)
    return tuple(sorted({p for p in PROBES_CANDIDATES if p < lists} | {lists}))


def rebuild_candidates(m: int, ef_construction: int) -> list[tuple[int, int]]:
    """Better-connected builds to try on a sample: twice and four times m and ef_construction, within pgvector's
    limits and keeping ef_construction ≥ 2·m (pgvector refuses less)."""
    out: list[tuple[int, int]] = []
    for factor in (2, 4):
        cm = min(m * factor, MAX_M)
        ce = min(max(ef_construction * factor, 2 * cm), MAX_EF_CONSTRUCTION)
        if (cm, ce) != (m, ef_construction) and (cm, ce) not in out:
            out.append((cm, ce))
    return out


@dataclass(frozen=True)
class Build:
    """One build of the index tried on the scratch sample, and its search there."""

    m: int
    ef_construction: int
    search: Search
    build_seconds: float


def choose_rebuild(baseline: Build, others: Sequence[Build]) -> Build | None:
    """The first (cheapest) build that reaches the target on the sample where the current build does not, or at a
    smaller setting, or (same setting) with a lower p95; None when none is better."""
    base = baseline.search.found
    for b in others:
        f = b.search.found
        if f is None:
            continue
        if base is None or f.value < base.value or (f.value == base.value and f.p95_seconds < base.p95_seconds):
            return b
    return None


@dataclass(frozen=True)
class Advice:
    kind: Literal["ef_search", "probes", "rebuild", "halfvec", "binary", "server_type", "reindex"]
    basis: Basis
    #: what to do, in a sentence
    action: str
    #: what it does, with the figures it rests on
    effect: str
    sql: tuple[str, ...] = ()
    #: the database setting it changes (``{"hnsw.ef_search": 100}``), for the stack change
    setting: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerOption:
    """A server type the cluster could run on, with the shared_buffers pgfleet's sizing gives it."""

    name: str
    memory_bytes: int
    shared_buffers_bytes: int


def size_text(n: float) -> str:
    """Bytes as ``512 B``, ``3.0 KiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # not reached


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def sql_literal_name(name: str) -> str:
    """A double-quoted SQL identifier (database and index names in the printed SQL)."""
    return '"' + name.replace('"', '""') + '"'


def setting_advice(info: IndexInfo, s: Search, target: float, where: str) -> Advice | None:
    """(a) the smallest value of the search setting that reaches ``target``, measured on the replica; None when the
    current value already does."""
    if s.reaches_target_now:
        return None
    kind: Literal["ef_search", "probes"] = "ef_search" if info.method == "hnsw" else "probes"
    if s.found is None:
        best = max((s.current, *s.tried), key=lambda p: p.recall)
        return Advice(kind, "measured", f"no {s.setting} up to {max(p.value for p in (s.current, *s.tried))} reaches recall {target}",
                      f"best: recall {best.recall:.3f} at {s.setting} {best.value} (p95 {ms(best.p95_seconds)}), "
                      f"now {s.current.recall:.3f} at {s.current.value} ({where}, {s.current.queries} queries): "
                      "the index itself must be built better")
    f = s.found
    sql = f"ALTER DATABASE {sql_literal_name(info.database)} SET {s.setting} = {f.value};"
    return Advice(kind, "measured", f"set {s.setting} = {f.value} for database {info.database}",
                  f"recall@k {s.current.recall:.3f} → {f.recall:.3f} (target {target}), p95 {ms(s.current.p95_seconds)} → "
                  f"{ms(f.p95_seconds)} ({where}, {f.queries} queries)", (LOAD_PGVECTOR, sql), {s.setting: f.value})


def rebuild_advice(info: IndexInfo, baseline: Build, chosen: Build | None, rows: int, target: float) -> Advice | None:
    """(b) a rebuild with higher m / ef_construction, estimated on a sample copied into the scratch database."""
    if chosen is None:
        return None
    f, base = chosen.search.found, baseline.search.found
    assert f is not None
    now = (f"reaches it at {base.value} (p95 {ms(base.p95_seconds)})" if base
           else f"misses it up to {max(p.value for p in (baseline.search.current, *baseline.search.tried))}")
    col = sql_literal_name(info.column or "")
    sql = (f"CREATE INDEX CONCURRENTLY ON {sql_literal_name(info.schema)}.{sql_literal_name(info.table)} USING hnsw ({col} "
           f"{info.opclass}) WITH (m = {chosen.m}, ef_construction = {chosen.ef_construction});",
           f"DROP INDEX CONCURRENTLY {sql_literal_name(info.schema)}.{sql_literal_name(info.index)};")
    return Advice("rebuild", "estimated",
                  f"rebuild {info.index} with m = {chosen.m}, ef_construction = {chosen.ef_construction} "
                  f"(now {baseline.m}, {baseline.ef_construction})",
                  f"on a {rows}-row sample in the scratch database: the current build {now}; the new one reaches recall "
                  f"{target} at {baseline.search.setting} {f.value} (recall {f.recall:.3f}, p95 {ms(f.p95_seconds)}; build "
                  f"{chosen.build_seconds:.1f} s vs {baseline.build_seconds:.1f} s on the sample)", sql)


def memory_advice(info: IndexInfo, shared_buffers: int, ram: int | None, options: Sequence[ServerOption],
                  current_type: str | None) -> list[Advice]:
    """(c) halfvec / binary quantization when the index does not fit shared_buffers; (d) a larger server type when it
    does not fit the server's RAM. Both estimated from sizes."""
    out: list[Advice] = []
    size = info.size_bytes
    if size > shared_buffers and info.vector_type in QUANTIZED_SHARE:
        for kind, share in QUANTIZED_SHARE[info.vector_type].items():
            est = size * share
            fits = "fits" if est <= shared_buffers else "still does not fit"
            d = info.dimensions or "DIMS"
            how = (f"an expression index on ({info.column}::halfvec({d})) with halfvec_{info.opclass.split('_', 1)[1]}"
                   if kind == "halfvec" else
                   f"an expression index on (binary_quantize({info.column})::bit({d})) with bit_hamming_ops, re-ranking "
                   "its candidates by the full vectors")
            out.append(Advice(kind, "estimated", f"{kind} quantization: {how}",  # type: ignore[arg-type]
                              f"index ~{size_text(est)} instead of {size_text(size)} ({fits} shared_buffers "
                              f"{size_text(shared_buffers)}); recall changes and must be measured after the build"))
    if ram is not None and size > ram:
        bigger = next((o for o in options if o.shared_buffers_bytes >= size), options[-1] if options else None)
        if bigger is not None:
            fits = "fits" if bigger.shared_buffers_bytes >= size else "still does not fit"
            out.append(Advice("server_type", "estimated", f"server_type: {bigger.name} (now {current_type})",
                              f"index {size_text(size)} > RAM {size_text(ram)}; {bigger.name} has {size_text(bigger.memory_bytes)} "
                              f"RAM and shared_buffers {size_text(bigger.shared_buffers_bytes)} ({fits} the index)"))
    return out


def churn_share(rows: int | None, c: Churn | None) -> float | None:
    """Changed (updated + deleted) or dead rows as a share of the rows, the larger; None without figures."""
    if c is None:
        return None
    base = max(rows or 0, c.live_rows, 1)
    return max(c.changed_rows, c.dead_rows) / base


def churn_advice(info: IndexInfo, c: Churn | None) -> Advice | None:
    """(e) REINDEX INDEX CONCURRENTLY when updates and deletes (or dead rows) pass :data:`CHURN_SHARE` of the rows."""
    share = churn_share(info.rows, c)
    if c is None or share is None or share <= CHURN_SHARE:
        return None
    since = f"since the statistics reset of {c.since}" if c.since else "since the statistics were last reset"
    return Advice("reindex", "estimated", f"REINDEX INDEX CONCURRENTLY {info.qualified_index}",
                  f"{c.changed_rows} rows updated or deleted {since} and {c.dead_rows} dead, {share:.0%} of "
                  f"{max(info.rows or 0, c.live_rows)} rows (PostgreSQL does not record when an index was built): a fresh "
                  "build links the live rows only; writes continue while it runs on the primary",
                  (f"REINDEX INDEX CONCURRENTLY {sql_literal_name(info.schema)}.{sql_literal_name(info.index)};",))


EXIT_OK, EXIT_ADVICE, EXIT_UNKNOWN = 0, 1, 2


def exit_code(measured: Sequence[bool], advice_count: int) -> int:
    """2 when an index (or a database) could not be measured, else 1 when there is advice, else 0."""
    if not all(measured):
        return EXIT_UNKNOWN
    return EXIT_ADVICE if advice_count else EXIT_OK


def database_settings(advice: Iterable[tuple[str, Advice]]) -> dict[str, dict[str, int]]:
    """database → setting → value: one value per database, the largest any of its indexes needs."""
    out: dict[str, dict[str, int]] = {}
    for database, a in advice:
        for name, value in a.setting.items():
            current = out.setdefault(database, {})
            current[name] = max(value, current.get(name, 0))
    return out

