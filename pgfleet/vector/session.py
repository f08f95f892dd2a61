"""The measuring sessions of ``pgfleet vector advise``: DSNs in, reports out (no stack, no inventory here).

- On a replica, through the direct read-only endpoint, as the database's owner:
  the index inventory, then per index the probe's own query shapes
  (:mod:`pgfleet.probe.measure`): sampled stored vectors, their exact top-k
  once (index scans off, plan checked), then the ANN top-k with the owner's
  own settings and, in this session only, ``set_config(<setting>, N, false)``
  for each value the search tries (reset afterwards). SELECTs only.
- On the primary, as the owner in a read-only session: the churn counters
  (a standby has none of its own).
- On the primary, only when a rebuild is worth estimating: a sample of the
  rows (read on the replica) copied into the scratch database
  :data:`SCRATCH_DB`, which an admin callback creates (owned by the owner, with
  pgvector) and always drops; indexes are built on that copy only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgfleet.errors import PgfleetError
from pgfleet.probe import measure
from pgfleet.vector import advise, catalog
from pgfleet.vector.advise import Advice, Build, Search, ServerOption
from pgfleet.vector.catalog import Churn, IndexInfo, SessionView

#: The database a rebuild is tried in: created and dropped by every run that needs it, never a user's.
SCRATCH_DB = "pgfleet_advise_scratch"
SCRATCH_TABLE = "advise_sample"
SCRATCH_INDEX = "advise_sample_idx"

#: (database, statements): runs statements one by one as the superuser on the primary (the CLI: psql over SSH)
AdminSQL = Callable[[str, Sequence[str]], None]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scratch_setup(owner: str) -> list[tuple[str, list[str]]]:
    """The superuser's statements that make :data:`SCRATCH_DB` anew (a leftover of an interrupted run is dropped),
    reachable by the owner alone, with pgvector (creating an extension needs the superuser)."""
    return [("postgres", [f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)",
                          f"CREATE DATABASE {SCRATCH_DB} OWNER {_q(owner)}",
                          f"REVOKE ALL ON DATABASE {SCRATCH_DB} FROM PUBLIC",
                          f"GRANT CONNECT, TEMPORARY ON DATABASE {SCRATCH_DB} TO {_q(owner)}"]),
            (SCRATCH_DB, ["CREATE EXTENSION IF NOT EXISTS vector", f"ALTER SCHEMA public OWNER TO {_q(owner)}"])]


def scratch_teardown() -> list[tuple[str, list[str]]]:
    return [("postgres", [f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)"])]


@contextmanager
def scratch_database(admin: AdminSQL, owner: str) -> Iterator[None]:
    """:data:`SCRATCH_DB` for the duration of the block; dropped even when the block fails."""
    try:
        for database, statements in scratch_setup(owner):
            admin(database, statements)
        yield
    finally:
        for database, statements in scratch_teardown():
            admin(database, statements)


@dataclass(frozen=True)
class IndexQuery:
    """The probe's :class:`~pgfleet.probe.measure.QueryShape` for one index: ``ORDER BY column <op> q LIMIT k+1``."""

    table: str
    column: str
    key: str
    operator: str
    k: int


@dataclass(frozen=True)
class Settings:
    target: float
    k: int = 10
    #: stored vectors taken as queries
    sample: int = 100
    max_p95: float = advise.SLOW_P95
    #: try a rebuild in the scratch database when the search misses or is slow
    rebuild: bool = True
    scratch_rows: int = advise.SCRATCH_ROWS
    #: only these indexes (``name`` or ``schema.name``); empty: every one
    only: tuple[str, ...] = ()

    def wants(self, info: IndexInfo) -> bool:
        return not self.only or info.index in self.only or info.qualified_index in self.only


@dataclass(frozen=True)
class DatabaseTarget:
    """One database and the owner's three ways in (DSNs as ``pgfleet dsn`` prints them)."""

    name: str
    owner: str
    #: ``--ro --direct``: a replica (the measurements)
    replica_dsn: str
    #: ``--direct``: the primary (read-only session: churn counters)
    primary_dsn: str
    #: ``--direct --db SCRATCH_DB --user OWNER``: the scratch database on the primary
    scratch_dsn: str


@dataclass(frozen=True)
class Figures:
    """What the stack says about the servers: the type's RAM and the larger types of its family (smallest first)."""

    server_type: str | None = None
    ram_bytes: int | None = None
    options: tuple[ServerOption, ...] = ()


@dataclass
class IndexReport:
    info: IndexInfo
    search: Search | None = None
    builds: tuple[Build, ...] = ()
    #: rows copied into the scratch database for the builds
    scratch_rows: int = 0
    #: why no rebuild was estimated although one was wanted (scratch refused, no admin path …)
    rebuild_note: str | None = None
    churn: Churn | None = None
    advice: list[Advice] = field(default_factory=list)
    error: str | None = None

    @property
    def measured(self) -> bool:
        return self.error is None and self.search is not None


@dataclass
class DatabaseReport:
    name: str
    owner: str
    dsn: str
    view: SessionView | None = None
    indexes: list[IndexReport] = field(default_factory=list)
    error: str | None = None
    #: why the primary's churn counters could not be read (the measurements do not need them; the REINDEX advice does)
    churn_error: str | None = None


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip()}"


def _measurer(cur: psycopg.Cursor[Any], q: IndexQuery, info: IndexInfo, sample: list[tuple[Any, str]],
              exact: list[list[measure.Neighbour]], setting: str, index: str) -> advise.MeasureAt:
    """The search's measurement: the ANN side at one value of ``setting`` (None: the session's own), its plan checked
    to read ``index`` (a sequential scan would report a perfect recall that no index gives)."""
    vtype = info.vector_type or "vector"

    def at(value: int | None) -> tuple[float, float, int]:
        if value is not None:
            cur.execute("SELECT set_config(%s, %s, false)", (setting, str(value)))
        used = measure.index_names(measure.explain(cur, q, vtype, sample[0][1]))
        if index not in used:
            raise measure.MeasureError(f"the planner answers ORDER BY {q.column} {q.operator} q LIMIT {q.k + 1} without "
                                       f"{index} (it reads: {', '.join(used) or 'no index'}): too few rows, or statistics "
                                       "missing (ANALYZE)")
        ann, seconds = measure.each(cur, q, vtype, sample)
        value_, queries = measure.recall(zip(ann, exact))
        return value_, advise.percentile(seconds, 0.95), queries

    return at


def _reset(cur: psycopg.Cursor[Any], setting: str) -> None:
    cur.execute(sql.SQL("RESET {}").format(sql.SQL(setting)))  # a name from catalog.SEARCH_SETTINGS, never user input


def measure_index(conn: psycopg.Connection[Any], info: IndexInfo, view: SessionView, s: Settings) -> tuple[Search, IndexQuery]:
    """The search on the replica: the owner's current value first, then larger ones until the target is reached."""
    why = info.unmeasurable()
    if why:
        raise measure.MeasureError(why)
    assert info.column is not None and info.operator is not None
    q = IndexQuery(info.qualified_table, info.column, info.key, info.operator, s.k)
    setting = catalog.SEARCH_SETTINGS[info.method]
    with conn.cursor() as cur:
        sample = measure.sample_vectors(cur, q, s.sample)
        if not sample:
            raise measure.MeasureError(f"{info.qualified_table}.{info.column} holds no vector to query with")
        exact, _ = measure.exact(cur, q, info.vector_type or "vector", sample)
        try:
            found = advise.search(setting, view.settings[setting], _measurer(cur, q, info, sample, exact, setting, info.index),
                                  s.target, advise.candidates_for(info))
        finally:
            _reset(cur, setting)
    return found, q


def try_rebuilds(conn: psycopg.Connection[Any], info: IndexInfo, q: IndexQuery, current: int, s: Settings,
                 admin: AdminSQL, db: DatabaseTarget) -> tuple[list[Build], int]:
    """The current build and :func:`~pgfleet.vector.advise.rebuild_candidates` on up to ``scratch_rows`` rows copied
    from the replica into the scratch database; the first build is the current one (the baseline). Also: the rows copied."""
    with conn.cursor() as cur:
        rows = measure.sample_vectors(cur, q, s.scratch_rows)
    table, index = sql.Identifier(SCRATCH_TABLE), sql.Identifier(SCRATCH_INDEX)
    sq = IndexQuery(SCRATCH_TABLE, "v", "id", q.operator, q.k)
    vtype = info.vector_type or "vector"
    setting = catalog.SEARCH_SETTINGS["hnsw"]
    builds: list[Build] = []
    with scratch_database(admin, db.owner), measure.connect(db.scratch_dsn) as sconn, sconn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, v {})").format(table, sql.SQL(info.column_type or vtype)))
        with cur.copy(sql.SQL("COPY {} (id, v) FROM STDIN").format(table)) as copy:
            for i, (_, vector) in enumerate(rows):
                copy.write_row((i, vector))
        cur.execute(sql.SQL("ANALYZE {}").format(table))
        sample = measure.sample_vectors(cur, sq, s.sample)
        exact, _ = measure.exact(cur, sq, vtype, sample)
        # the sample is smaller than the table: the planner could prefer a sequential scan where the real table uses
        # the index, and the estimate is of the index (the session and its table are the scratch database's alone)
        cur.execute("SET enable_seqscan = off")
        base = (info.options["m"], info.options["ef_construction"])
        for m, efc in [base, *advise.rebuild_candidates(*base)]:
            cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(index))
            start = time.perf_counter()
            cur.execute(sql.SQL("CREATE INDEX {} ON {} USING hnsw (v {}) WITH (m = {}, ef_construction = {})").format(
                index, table, sql.Identifier(info.opclass), sql.Literal(m), sql.Literal(efc)))
            seconds = time.perf_counter() - start
            try:
                found = advise.search(setting, current, _measurer(cur, sq, info, sample, exact, setting, SCRATCH_INDEX),
                                      s.target, advise.EF_SEARCH_CANDIDATES, set_current=True)
            finally:
                _reset(cur, setting)
            builds.append(Build(m, efc, found, seconds))
    return builds, len(rows)


def wants_rebuild(info: IndexInfo, found: Search, s: Settings) -> bool:
    """HNSW only: no ef_search reaches the target, or the one that does is slow."""
    return info.method == "hnsw" and (found.found is None or found.found.p95_seconds > s.max_p95)


def read_churn(dsn: str) -> dict[tuple[str, str], Churn]:
    """The primary's churn counters, in a session that cannot write."""
    with measure.connect(dsn) as conn:
        conn.execute("SET default_transaction_read_only = on")
        return catalog.churn(conn)


def advise_database(db: DatabaseTarget, s: Settings, figures: Figures, admin: AdminSQL | None) -> DatabaseReport:
    """Every vector index of one database: inventory, search, the estimates, the advice. Errors become the
    report's (the database's, or one index's): nothing here raises for a database it cannot measure."""
    report = DatabaseReport(db.name, db.owner, db.replica_dsn)
    try:
        churns: dict[tuple[str, str], Churn] | None = read_churn(db.primary_dsn)
    except psycopg.Error as e:
        churns, report.churn_error = None, _error(e)  # the measurements do not need them; the report says why
    try:
        with measure.connect(db.replica_dsn) as conn:
            infos = [i for i in catalog.indexes(conn, db.name) if s.wants(i)]
            view = report.view = catalog.session_view(conn, {i.method for i in infos})
            for info in infos:
                report.indexes.append(_index(conn, info, view, s, figures, admin, db,
                                             None if churns is None else churns.get((info.schema, info.table))))
    except psycopg.Error as e:
        report.error = _error(e)
    return report


def _index(conn: psycopg.Connection[Any], info: IndexInfo, view: SessionView, s: Settings, figures: Figures,
           admin: AdminSQL | None, db: DatabaseTarget, churn: Churn | None) -> IndexReport:
    r = IndexReport(info, churn=churn)
    where = f"{'replica' if view.in_recovery else 'primary (no replica answered)'} {view.host or ''}".strip()
    try:
        found, q = measure_index(conn, info, view, s)
    except (psycopg.Error, measure.MeasureError) as e:
        r.error = _error(e)
        return r
    r.search = found
    a = advise.setting_advice(info, found, s.target, where)
    if a:
        r.advice.append(a)
    if wants_rebuild(info, found, s):
        if not s.rebuild:
            r.rebuild_note = "not tried (--no-rebuild)"
        elif admin is None:
            r.rebuild_note = "not tried: no admin path to the primary"
        else:
            try:
                builds, rows = try_rebuilds(conn, info, q, view.settings[catalog.SEARCH_SETTINGS["hnsw"]], s, admin, db)
                r.builds = tuple(builds)
                r.scratch_rows = rows
                chosen = advise.choose_rebuild(builds[0], builds[1:])
                b = advise.rebuild_advice(info, builds[0], chosen, rows, s.target)
                if b:
                    r.advice.append(b)
                else:
                    r.rebuild_note = "no better build on the sample"
            except (psycopg.Error, measure.MeasureError, PgfleetError) as e:  # the scratch database is gone (finally)
                r.rebuild_note = f"could not estimate: {_error(e)}"
    r.advice += advise.memory_advice(info, view.shared_buffers_bytes, figures.ram_bytes, figures.options, figures.server_type)
    c = advise.churn_advice(info, churn)
    if c:
        r.advice.append(c)
    return r
