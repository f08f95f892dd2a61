"""Clustered vectors for the recall probe's lab tests: a good HNSW index and a really poor one on the same data.

Points sit in tight Gaussian clusters around random centres (what embeddings of
a few topics look like); with ``m=4, ef_construction=8`` the HNSW graph barely
links the clusters and the ANN query misses true neighbours that the exact
query finds (recall ~0.7), while pgvector's defaults (m=16, ef_construction=64)
find them all (1.0). 16 dimensions: at 32, clusters this tight put even the
default index at 0.93-1.0 from one measurement to the next, too close to a 0.95
target for a test. Rows are written with COPY through the DSN ``pgfleet dsn`` prints.
"""

from __future__ import annotations

import random

import psycopg
from psycopg import sql

GOOD = {"m": 16, "ef_construction": 64}
POOR = {"m": 4, "ef_construction": 8}


def vectors(rows: int, dims: int, clusters: int, spread: float, seed: int) -> list[list[float]]:
    rnd = random.Random(seed)
    centres = [[rnd.uniform(-1, 1) for _ in range(dims)] for _ in range(clusters)]
    return [[c + rnd.gauss(0, spread) for c in centres[i % clusters]] for i in range(rows)]


def seed(dsn: str, table: str, index: dict[str, int], *, rows: int = 20000, dims: int = 16, clusters: int = 40,
         spread: float = 0.05, seed_value: int = 7) -> None:
    """(Re)create ``table`` (id, embedding vector(dims)) with an HNSW L2 index built with ``index`` (m, ef_construction)."""
    t = sql.Identifier(table)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(t))
        conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, embedding vector({}))").format(t, sql.Literal(dims)))
        with conn.cursor().copy(sql.SQL("COPY {} (id, embedding) FROM STDIN").format(t)) as copy:
            for i, v in enumerate(vectors(rows, dims, clusters, spread, seed_value)):
                copy.write_row((i, "[" + ",".join(f"{x:.5f}" for x in v) + "]"))
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_l2_ops) WITH (m = {}, ef_construction = {})")
                     .format(t, sql.Literal(index["m"]), sql.Literal(index["ef_construction"])))
        conn.execute(sql.SQL("ANALYZE {}").format(t))


def rebuild_index(dsn: str, table: str, index: dict[str, int]) -> None:
    """Replace the table's HNSW index by one built with ``index`` (m, ef_construction)."""
    t = sql.Identifier(table)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(f"{table}_embedding_idx")))
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_l2_ops) WITH (m = {}, ef_construction = {})")
                     .format(t, sql.Literal(index["m"]), sql.Literal(index["ef_construction"])))


def drop(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
