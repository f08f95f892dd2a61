"""One measurement of one watch: recall@k of the ANN query against the exact top-k, latencies, index size and fit.

Both sides run on one connection to one replica (the direct read-only
endpoint), logged in as the application role: the ANN side sets nothing, so it
sees what that role sees (``ALTER ROLE/DATABASE SET hnsw.ef_search`` … apply
at login, pooled or not); the exact side then turns index scans off inside one
transaction and its plan is checked to read no index, so a wrong "exact"
answer cannot pass for perfect recall. One replica for both means a replica
that lags or is being rebuilt elsewhere cannot make the two lists differ.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from .config import Watch

#: (key, distance) of one neighbour, nearest first
Neighbour = tuple[Any, float]
#: Planner settings the exact transaction turns off (SET LOCAL: they end with it).
INDEX_SCANS = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")
#: Index access methods pgvector provides.
VECTOR_AMS = ("hnsw", "ivfflat")


class QueryShape(Protocol):
    """What the neighbour queries need to know of an index's table: a :class:`~.config.Watch`, or one index that
    ``pgfleet vector advise`` measures (one implementation of the query shapes for both)."""

    @property
    def table(self) -> str: ...  # ``table`` or ``schema.table``
    @property
    def column(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def operator(self) -> str: ...
    @property
    def k(self) -> int: ...


class MeasureError(RuntimeError):
    """The watch cannot be measured as configured (no table, no index, an exact plan that reads an index)."""


@dataclass(frozen=True)
class Measurement:
    recall: float
    #: sampled vectors that had at least one other row to find
    queries: int
    #: mean seconds of one ANN / one exact query
    ann_seconds: float
    exact_seconds: float
    rows: int
    index: str
    index_size_bytes: int
    shared_buffers_bytes: int
    effective_cache_size_bytes: int

    @property
    def fits_shared_buffers(self) -> bool:
        return self.index_size_bytes <= self.shared_buffers_bytes

    @property
    def fits_memory(self) -> bool:
        """Within effective_cache_size: what the planner (and the alerts) take as the memory for caching."""
        return self.index_size_bytes <= self.effective_cache_size_bytes


# ---- pure parts


def table_identifier(table: str) -> sql.Identifier:
    """``schema.table`` as two quoted names (one quoted name would look for a table called "schema.table")."""
    return sql.Identifier(*table.split("."))


def top_k(rows: Iterable[Neighbour], own: Any, k: int) -> list[Neighbour]:
    """The k nearest other rows: the query's own row is left out by key, so a duplicate vector still counts."""
    return [r for r in rows if r[0] != own][:k]


def neighbours(rows: Iterable[tuple[Any, Any]]) -> list[Neighbour]:
    """(key, distance) rows as the query returns them, less the NULL vectors: the exact side sorts them last and
    no index returns them, so they are nobody's neighbour (they matter only in a table of fewer than k+1 vectors)."""
    return [(key, float(d)) for key, d in rows if d is not None]


def query_recall(ann: Sequence[Neighbour], exact: Sequence[Neighbour]) -> float | None:
    """Share of the exact neighbours the ANN query found; None when there are none to find.

    An ANN row as near as the exact k-th counts as found: among equally distant
    rows, which ones make the top k is arbitrary on both sides.
    """
    if not exact:
        return None
    keys = {key for key, _ in exact}
    kth = exact[-1][1]
    hits = sum(1 for key, distance in ann if key in keys or distance <= kth)
    return min(hits, len(exact)) / len(exact)


def recall(pairs: Iterable[tuple[Sequence[Neighbour], Sequence[Neighbour]]]) -> tuple[float, int]:
    """Mean recall over (ann, exact) pairs that had neighbours, and how many those were."""
    values = [r for ann, exact in pairs if (r := query_recall(ann, exact)) is not None]
    if not values:
        raise MeasureError("no sampled vector has another row to compare with")
    return sum(values) / len(values), len(values)


def node_types(plan: Any) -> list[str]:
    """Every "Node Type" in an ``EXPLAIN (FORMAT JSON)`` document, however deeply nested (Plans, InitPlans …)."""
    if isinstance(plan, list):
        return [t for item in plan for t in node_types(item)]
    if not isinstance(plan, dict):
        return []
    own = [plan["Node Type"]] if isinstance(plan.get("Node Type"), str) else []
    return own + [t for value in plan.values() for t in node_types(value)]


def index_names(plan: Any) -> list[str]:
    """Every "Index Name" a plan reads: which index answers a query (an ANN figure means nothing if none does)."""
    if isinstance(plan, list):
        return [n for item in plan for n in index_names(item)]
    if not isinstance(plan, dict):
        return []
    own = [plan["Index Name"]] if isinstance(plan.get("Index Name"), str) else []
    return own + [n for value in plan.values() for n in index_names(value)]


def check_exact_plan(plan: Any) -> None:
    """Raise unless the plan is a real plan that reads no index (Index Scan, Index Only Scan, Bitmap Index Scan …)."""
    types = node_types(plan)
    if not types:
        raise MeasureError(f"the exact query's EXPLAIN returned no plan: {plan!r:.200}")
    readers = [t for t in types if "Index" in t]
    if readers:
        raise MeasureError(f"the exact query's plan reads an index ({', '.join(readers)}): it would not be exact")


def neighbours_query(w: QueryShape, vector_type: str, vector: sql.Composable = sql.Placeholder("q"),
                     limit: sql.Composable = sql.Placeholder("n")) -> sql.Composed:
    """The application's query shape, plus the distance (for ties): ``ORDER BY column <op> q LIMIT k+1``.

    ``vector_type`` is the column's type as the server formats it (``vector``, ``halfvec`` …): the query
    vector, sent as text, is cast to it so the index's operator class applies.
    """
    distance = sql.SQL("{column} {op} {vector}::{type}").format(
        column=sql.Identifier(w.column), op=sql.SQL(w.operator), vector=vector, type=sql.SQL(vector_type))
    return sql.SQL("SELECT {key}, {distance} FROM {table} ORDER BY {distance} LIMIT {limit}").format(
        key=sql.Identifier(w.key), distance=distance, table=table_identifier(w.table), limit=limit)


# ---- against the database

_TARGET = """
SELECT to_regclass(%(t)s)::oid,
       (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
         WHERE a.attrelid = to_regclass(%(t)s) AND a.attname = %(c)s AND a.attnum > 0 AND NOT a.attisdropped)
"""
# the index's (first and only) key column is the watched one, and its operator class orders by the watched operator
_INDEX = """
SELECT ic.relname, pg_relation_size(ic.oid)
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  JOIN pg_opclass opc ON opc.oid = i.indclass[0]
 WHERE i.indrelid = %(rel)s::oid AND a.attname = %(c)s AND i.indisvalid AND am.amname = ANY(%(ams)s)
   AND EXISTS (SELECT 1 FROM pg_amop ao JOIN pg_operator o ON o.oid = ao.amopopr
                WHERE ao.amopfamily = opc.opcfamily AND ao.amoppurpose = 'o' AND o.oprname = %(op)s)
 ORDER BY pg_relation_size(ic.oid) DESC, ic.relname
 LIMIT 1
"""
_MEMORY = """
SELECT name, (setting::numeric * pg_size_bytes(unit))::bigint
  FROM pg_settings WHERE name IN ('shared_buffers', 'effective_cache_size')
"""


def connect(dsn: str) -> psycopg.Connection[Any]:
    # no server-side prepared statements: each query is planned with its own vector, as a simple client's is
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=None)


def _timed(cur: psycopg.Cursor[Any], query: sql.Composed, params: dict[str, Any]) -> tuple[list[Neighbour], float]:
    start = time.perf_counter()
    rows = cur.execute(query, params).fetchall()
    return neighbours(rows), time.perf_counter() - start


@dataclass(frozen=True)
class _Target:
    """What the catalogue says about the watched column, read before the queries."""

    vector_type: str
    index: str
    index_size_bytes: int
    memory: dict[str, int]


def _target(cur: psycopg.Cursor[Any], w: QueryShape, table: sql.Identifier) -> _Target:
    rel, vector_type = cur.execute(_TARGET, {"t": table.as_string(cur), "c": w.column}).fetchone() or (None, None)
    if rel is None:
        raise MeasureError(f"table {w.table} does not exist (or the role cannot see it)")
    if vector_type is None:
        raise MeasureError(f"table {w.table} has no column {w.column}")
    index = cur.execute(_INDEX, {"rel": rel, "c": w.column, "ams": list(VECTOR_AMS), "op": w.operator}).fetchone()
    if index is None:
        raise MeasureError(f"no valid {' or '.join(VECTOR_AMS)} index on {w.table}.{w.column} orders by {w.operator}")
    return _Target(vector_type, index[0], int(index[1]), memory(cur))


def memory(cur: psycopg.Cursor[Any]) -> dict[str, int]:
    """shared_buffers and effective_cache_size in bytes, as the server runs with them."""
    return {name: int(size) for name, size in cur.execute(_MEMORY).fetchall()}


def exact(cur: psycopg.Cursor[Any], w: QueryShape, vector_type: str,
          sample: list[tuple[Any, str]]) -> tuple[list[list[Neighbour]], list[float]]:
    """The exact top-k of every sampled vector in one transaction whose SET LOCAL turns index scans off; the plan is checked first."""
    with cur.connection.transaction():
        for setting in INDEX_SCANS:
            cur.execute(sql.SQL("SET LOCAL {} = off").format(sql.Identifier(setting)))
        check_exact_plan(explain(cur, w, vector_type, sample[0][1]))
        return each(cur, w, vector_type, sample)


def explain(cur: psycopg.Cursor[Any], w: QueryShape, vector_type: str, vector: str) -> Any:
    """``EXPLAIN (FORMAT JSON)`` of the neighbour query for one vector, with the session's settings, parsed."""
    query = sql.SQL("EXPLAIN (FORMAT JSON) ") + neighbours_query(w, vector_type, sql.Literal(vector), sql.Literal(w.k + 1))
    plan = (cur.execute(query).fetchone() or [None])[0]
    return json.loads(plan) if isinstance(plan, str) else plan  # psycopg parses json, unless told not to


def each(cur: psycopg.Cursor[Any], w: QueryShape, vector_type: str,
         sample: list[tuple[Any, str]]) -> tuple[list[list[Neighbour]], list[float]]:
    """Every sampled vector's top-k (its own row left out) and each query's seconds, in the session's settings
    (the ANN side: autocommit, nothing set, so the role's own; ``pgfleet vector advise`` sets others around it)."""
    out, seconds = [], []
    query = neighbours_query(w, vector_type)
    for key, vector in sample:
        found, took = _timed(cur, query, {"q": vector, "n": w.k + 1})
        out.append(top_k(found, key, w.k))
        seconds.append(took)
    return out, seconds


def sample_vectors(cur: psycopg.Cursor[Any], w: QueryShape, size: int) -> list[tuple[Any, str]]:
    """Up to ``size`` stored (key, vector as text) pairs in random order: the queries of one measurement."""
    return cur.execute(sql.SQL("SELECT {key}, {column}::text FROM {table} WHERE {column} IS NOT NULL ORDER BY random() LIMIT %s").format(
        key=sql.Identifier(w.key), column=sql.Identifier(w.column), table=table_identifier(w.table)), (size,)).fetchall()


def measure(w: Watch) -> Measurement:
    """Measure once; raises psycopg.Error or :class:`MeasureError`."""
    table = table_identifier(w.table)
    with connect(w.dsn) as conn, conn.cursor() as cur:
        target = _target(cur, w, table)
        rows = (cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() or [0])[0]
        sample = sample_vectors(cur, w, w.sample_size)
        if not sample:
            raise MeasureError(f"{w.table}.{w.column} holds no vector to query with")
        ann, ann_times = each(cur, w, target.vector_type, sample)
        found, exact_times = exact(cur, w, target.vector_type, sample)
    value, queries = recall(zip(ann, found))
    return Measurement(recall=value, queries=queries, ann_seconds=sum(ann_times) / len(sample),
                       exact_seconds=sum(exact_times) / len(sample),
                       rows=int(rows), index=target.index, index_size_bytes=target.index_size_bytes,
                       shared_buffers_bytes=target.memory["shared_buffers"], effective_cache_size_bytes=target.memory["effective_cache_size"])
