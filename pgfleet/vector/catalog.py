"""What the catalogue says about a database's pgvector indexes: the inventory ``pgfleet vector advise`` works on.

Read as the database's owner: the index list and sizes on the replica it
measures on (catalogues replicate), the churn counters on the primary
(a standby counts no updates or deletes of its own: replay is not counted), in
a read-only session there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgfleet.probe import measure

#: pgvector's operator classes are ``<type>_<distance>_ops``; the distance names the ORDER BY operator.
DISTANCE_OPERATORS = {"l2": "<->", "ip": "<#>", "cosine": "<=>", "l1": "<+>", "hamming": "<~>", "jaccard": "<%>"}
VECTOR_TYPES = ("vector", "halfvec", "sparsevec", "bit")
#: pgvector's build defaults, used when an index's reloptions do not name them.
HNSW_DEFAULTS = {"m": 16, "ef_construction": 64}
IVFFLAT_DEFAULTS = {"lists": 100}
#: The query-time setting each access method reads, and pgvector's default for it.
SEARCH_SETTINGS = {"hnsw": "hnsw.ef_search", "ivfflat": "ivfflat.probes"}


def operator_for(opclass: str) -> str | None:
    """The distance operator an operator class orders by (``vector_cosine_ops`` → ``<=>``); None for one pgvector does not ship."""
    for t in VECTOR_TYPES:
        if opclass.startswith(t + "_") and opclass.endswith("_ops"):
            return DISTANCE_OPERATORS.get(opclass[len(t) + 1:-len("_ops")])
    return None


def build_options(method: str, reloptions: list[str] | None) -> dict[str, int]:
    """m / ef_construction (hnsw) or lists (ivfflat): the index's own reloptions over pgvector's defaults."""
    out = dict(HNSW_DEFAULTS if method == "hnsw" else IVFFLAT_DEFAULTS)
    for item in reloptions or []:
        name, _, value = item.partition("=")
        if name in out and value.strip().isdigit():
            out[name] = int(value)
    return out


@dataclass(frozen=True)
class IndexInfo:
    """One hnsw or ivfflat index as the catalogue describes it."""

    database: str
    schema: str
    table: str
    index: str
    method: str
    #: None for an expression index (its query shape is not ``ORDER BY column <op> q``)
    column: str | None
    #: ``vector``, ``halfvec``, ``sparsevec`` or ``bit``; with its modifier (``vector(768)``) in column_type
    vector_type: str | None
    column_type: str | None
    dimensions: int | None
    opclass: str
    operator: str | None
    #: pg_class.reltuples (None: never analyzed)
    rows: int | None
    options: dict[str, int]
    size_bytes: int
    partial: bool
    valid: bool
    #: a single-column unique key of the table (leaves each query's own row out), else ``ctid``
    key: str = "ctid"

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def qualified_index(self) -> str:
        return f"{self.schema}.{self.index}"

    def unmeasurable(self) -> str | None:
        """Why the index cannot be measured with the plain ``ORDER BY column <op> q LIMIT k`` query, if it cannot."""
        if not self.valid:
            return "the index is not valid (a failed or running CREATE INDEX CONCURRENTLY)"
        if self.column is None:
            return "an expression index: pgfleet measures ORDER BY column <op> q only"
        if self.partial:
            return "a partial index: it answers only queries with its WHERE clause"
        if self.operator is None:
            return f"operator class {self.opclass} is not one of pgvector's"
        return None


@dataclass(frozen=True)
class Churn:
    """pg_stat_user_tables of one table, read on the primary."""

    changed_rows: int
    dead_rows: int
    live_rows: int
    #: when the database's statistics were last reset (None: never, i.e. since the cluster was created)
    since: str | None = None


@dataclass(frozen=True)
class SessionView:
    """What a session of the owner gets on the measuring server."""

    host: str | None
    in_recovery: bool
    shared_buffers_bytes: int
    settings: dict[str, int] = field(default_factory=dict)


_INDEXES = """
SELECT n.nspname, t.relname, ic.relname, am.amname, a.attname, format_type(a.atttypid, NULL), format_type(a.atttypid, a.atttypmod),
       a.atttypmod, opc.opcname, ic.reloptions, t.reltuples::bigint, pg_relation_size(ic.oid), i.indpred IS NOT NULL,
       i.indisvalid,
       (SELECT ka.attname FROM pg_index u
          JOIN pg_attribute ka ON ka.attrelid = u.indrelid AND ka.attnum = u.indkey[0]
         WHERE u.indrelid = t.oid AND u.indisunique AND u.indnkeyatts = 1 AND u.indpred IS NULL AND u.indkey[0] <> 0
           AND u.indisvalid
         ORDER BY u.indisprimary DESC, ka.attname LIMIT 1)
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = ic.relam
  JOIN pg_opclass opc ON opc.oid = i.indclass[0]
  LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] AND i.indkey[0] <> 0
 WHERE am.amname = ANY(%(ams)s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY n.nspname, t.relname, ic.relname
"""
_CHURN = """
SELECT s.schemaname, s.relname, s.n_tup_upd + s.n_tup_del, s.n_dead_tup, s.n_live_tup,
       (SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database())
  FROM pg_stat_user_tables s
"""


def index_row(database: str, row: tuple[Any, ...]) -> IndexInfo:
    """One row of the inventory query as an :class:`IndexInfo`."""
    (schema, table, index, method, column, vtype, ctype, typmod, opclass, reloptions, reltuples, size, partial, valid,
     key) = row
    return IndexInfo(database=database, schema=schema, table=table, index=index, method=method, column=column,
                     vector_type=vtype, column_type=ctype, dimensions=typmod if typmod and typmod > 0 else None,
                     opclass=opclass, operator=operator_for(opclass), rows=None if reltuples is None or reltuples < 0 else int(reltuples),
                     options=build_options(method, reloptions), size_bytes=int(size), partial=bool(partial), valid=bool(valid),
                     key=key or "ctid")


def indexes(conn: psycopg.Connection[Any], database: str) -> list[IndexInfo]:
    """Every hnsw and ivfflat index of the connected database."""
    rows = conn.execute(_INDEXES, {"ams": list(measure.VECTOR_AMS)}).fetchall()
    return [index_row(database, r) for r in rows]


def churn(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], Churn]:
    """(schema, table) → churn counters of every user table; call it on the primary."""
    return {(s, t): Churn(int(changed or 0), int(dead or 0), int(live or 0), since)
            for s, t, changed, dead, live, since in conn.execute(_CHURN).fetchall()}


def session_view(conn: psycopg.Connection[Any], methods: set[str]) -> SessionView:
    """Where the session runs and what it gets: the search settings of ``methods`` as the owner's login left them."""
    host, recovery = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone() or (None, False)
    with conn.cursor() as cur:
        buffers = measure.memory(cur)["shared_buffers"]
    settings: dict[str, int] = {}
    if methods:
        conn.execute("SELECT '[1]'::vector")  # loads pgvector: its settings exist only once it is loaded
        for method in sorted(methods):
            name = SEARCH_SETTINGS[method]
            settings[name] = int((conn.execute("SELECT current_setting(%s)", (name,)).fetchone() or [0])[0])
    return SessionView(host, bool(recovery), buffers, settings)
