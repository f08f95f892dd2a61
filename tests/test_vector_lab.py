"""``pgfleet vector advise`` on the shared lab cluster, run as a user runs it (a subprocess, ``--json``).

One table of clustered vectors (tests/recall_data.py) in database ``app``, with its own name so the probe's
watched tables (recall_good, recall_poor) are left alone. The current state the advice starts from is set
with SQL (``ALTER DATABASE app SET hnsw.ef_search = 10``) as a stand-in for a spec change: the cluster is
shared, so a deploy per test would be slow and would change it for every other test. Everything is undone in
``finally``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import recall_data
from pgfleet.vector.advise import EF_SEARCH_CANDIDATES, LOAD_PGVECTOR, SCRATCH_ROWS
from pgfleet.vector.session import SCRATCH_DB

pytestmark = pytest.mark.lab
PGFLEET = [str(Path(sys.executable).with_name("pgfleet"))]
TABLE = "advise_items"
INDEX = f"{TABLE}_embedding_idx"  # the name CREATE INDEX ON advise_items (embedding) gives it
ROWS = 20000  # as the probe's lab tables: fewer rows and the planner may prefer a sequential scan
LOW_EF_SEARCH = 10  # pgvector returns at most ef_search rows: with k = 10 and the own row left out, recall ≤ 0.9


def pgfleet(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PGFLEET, *args], capture_output=True, text=True, timeout=timeout)


def dsn(*flags: str) -> str:
    r = pgfleet("dsn", "lab", *flags)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def advise(*extra: str) -> tuple[int, dict]:
    r = pgfleet("vector", "advise", "lab", "--db", "app", "--index", INDEX, "--target-recall", "0.99", "--sample", "50",
                "--json", *extra)
    assert r.returncode in (0, 1, 2), r.stdout[-3000:] + r.stderr[-3000:]
    return r.returncode, json.loads(r.stdout)


def owner_sql(direct: str, *statements: str) -> None:
    """``statements`` in one session as the owner, as ``psql -c`` runs what ``vector advise`` prints."""
    with psycopg.connect(direct, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def replicas_show(ro: str, check, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Wait until five new sessions in a row on the read-only endpoint (any replica) satisfy ``check(conn)``:
    the replicas replayed the change (an async replica may trail the synchronous one)."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 5:
        with psycopg.connect(ro, autocommit=True) as conn:
            streak = streak + 1 if check(conn) else 0
        assert time.monotonic() < deadline, "the replicas did not show the change in time"
        if streak < 5:
            time.sleep(0.5)


def ef_search(conn: psycopg.Connection) -> int:
    conn.execute("SELECT '[1]'::vector")  # loads pgvector, whose settings exist only once it is loaded
    return int(conn.execute("SHOW hnsw.ef_search").fetchone()[0])  # type: ignore[index]


def index_of(doc: dict) -> dict:
    [ix] = [i for i in doc["indexes"] if i["index"] == INDEX]
    return ix


@pytest.fixture(scope="module")
def items(deployed):  # type: ignore[no-untyped-def]
    """advise_items (20000 clustered 16-d vectors, a well-built HNSW index), present on the replicas."""
    direct, ro = dsn("--direct"), dsn("--ro", "--direct")
    recall_data.seed(direct, TABLE, recall_data.GOOD, rows=ROWS)
    try:
        replicas_show(ro, lambda c: c.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (ROWS,))
        yield direct, ro
    finally:
        recall_data.drop(direct, TABLE)
        owner_sql(direct, LOAD_PGVECTOR, "ALTER DATABASE app RESET hnsw.ef_search")


def test_advise_finds_the_ef_search_that_reaches_the_target_and_its_sql_reaches_it(items) -> None:  # type: ignore[no-untyped-def]
    direct, ro = items
    owner_sql(direct, LOAD_PGVECTOR, f"ALTER DATABASE app SET hnsw.ef_search = {LOW_EF_SEARCH}")
    try:
        replicas_show(ro, lambda c: ef_search(c) == LOW_EF_SEARCH)
        code, doc = advise("--no-rebuild")
        assert code == 1, doc
        ix = index_of(doc)
        assert (ix["method"], ix["operator"], ix["dimensions"], ix["options"]) == ("hnsw", "<->", 16, recall_data.GOOD)
        assert ix["measured"] and ix["owner_settings"] == {"hnsw.ef_search": LOW_EF_SEARCH}
        assert ix["recall"] < 0.99 and not ix["search"]["reaches_target_now"]
        assert doc["databases"][0]["measured_on"]["replica"] is True
        assert doc["databases"][0]["churn_error"] is None  # the primary's counters were read
        [a] = [a for a in ix["advice"] if a["kind"] == "ef_search"]
        value = a["setting"]["hnsw.ef_search"]
        assert a["basis"] == "measured" and value in EF_SEARCH_CANDIDATES and ix["search"]["found"]["recall"] >= 0.99
        assert doc["sql"] == [LOAD_PGVECTOR, f'ALTER DATABASE "app" SET hnsw.ef_search = {value};']
        assert f"ef_search: {value}" in doc["stack_change"]

        owner_sql(direct, *doc["sql"])  # as the user would: the printed SQL, in one session as the owner
        replicas_show(ro, lambda c: ef_search(c) == value)
        code, again = advise("--no-rebuild")
        ix = index_of(again)
        assert ix["owner_settings"] == {"hnsw.ef_search": value} and ix["recall"] >= 0.99 and ix["search"]["reaches_target_now"]
        assert ix["advice"] == [] and code == 0, again
        # the printed DSN is the owner's session on a replica, with the new setting
        with psycopg.connect(again["databases"][0]["dsn"], autocommit=True) as conn:
            assert ef_search(conn) == value and conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        owner_sql(direct, LOAD_PGVECTOR, "ALTER DATABASE app RESET hnsw.ef_search")


def test_a_rebuild_is_estimated_in_the_scratch_database_and_the_users_table_is_untouched(items) -> None:  # type: ignore[no-untyped-def]
    direct, ro = items
    recall_data.rebuild_index(direct, TABLE, recall_data.POOR)
    try:
        replicas_show(ro, lambda c: c.execute("SELECT reloptions FROM pg_class WHERE relname = %s", (INDEX,)).fetchone()
                      == (["m=4", "ef_construction=8"],))
        # --max-p95-ms 0: any latency counts as slow, so the rebuild is estimated whatever the recall
        code, doc = advise("--max-p95-ms", "0")
        ix = index_of(doc)
        assert ix["measured"] and ix["options"] == recall_data.POOR, ix
        assert ix["scratch_rows"] == min(ROWS, SCRATCH_ROWS) and ix["rebuild_note"] in (None, "no better build on the sample"), ix["rebuild_note"]
        builds = [(b["m"], b["ef_construction"]) for b in ix["builds"]]
        assert builds == [(4, 8), (8, 16), (16, 32)]
        assert all(b["search"]["current"]["set_by_advise"] for b in ix["builds"])
        rebuild = [a for a in ix["advice"] if a["kind"] == "rebuild"]
        # either a better build was found and is advised (estimated), or the report says none was: never neither
        assert bool(rebuild) == (ix["rebuild_note"] is None), (rebuild, ix["rebuild_note"])
        assert all(a["basis"] == "estimated" and a["sql"][0].startswith("CREATE INDEX CONCURRENTLY") for a in rebuild)
        assert code == (1 if ix["advice"] else 0)
        with psycopg.connect(direct, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (SCRATCH_DB,)).fetchone() == (0,)
            assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (ROWS,)
            assert conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s", (INDEX,)).fetchone() == (["m=4", "ef_construction=8"],)
    finally:
        recall_data.rebuild_index(direct, TABLE, recall_data.GOOD)
