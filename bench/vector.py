#!/usr/bin/env python3
"""pgvector on a running cluster with real embeddings: HNSW build time, recall@10 against ef_search with its
latency, throughput by clients and endpoint, filtered queries with and without iterative scans, halfvec and
binary quantization, and latency on a new primary after a cold switchover.

The corpus is bench/vector_corpus.py's (Debian 13 package descriptions, all-MiniLM-L6-v2, 384 dimensions,
cosine); run it first, so its cache holds the embeddings and the exact top-10 of every held-out query. Rows go
into the cluster's first database (``app``) as ``bench_docs(id, category, embedding vector(384))``; the queries
are never in the table. DSNs are the ones ``pgfleet dsn <stack> [--ro] [--direct]`` prints (this script runs it).

Every query is one transaction, ``BEGIN; SET LOCAL hnsw.ef_search …; SELECT …; COMMIT``, timed whole: SET LOCAL
is what survives transaction pooling (a plain SET would stay on the server connection for the next client), so
the latencies include those round trips on every endpoint alike.

Two runs against one cluster deployed with two profiles (``--label tuned`` / ``--label stock``: the operator
redeploys between them) land side by side in bench/results/vector.json, with their ratios once both exist.
Phases (``--phase``, comma-separated; default all but failover-cold):

    load           COPY (binary) the rows, build HNSW (m=16, ef_construction=64, vector_cosine_ops), time it
    recall         recall@10 and QPS / p50 / p95 / p99 for each ef_search, one client, pooled read-only
    clients        QPS and latency at 1, 8, 16 clients (processes, a connection each): pooled rw, pooled ro, direct
    filtered       WHERE category = … at several selectivities, iterative scan off and relaxed_order
    quantized      halfvec expression index, binary quantization + re-ranking: recall, latency, index size
    failover-cold  restart the candidate's PostgreSQL, drop this machine's page cache, switch over to it,
                   then p95 per 5 s window over the first 60 s on the new primary (pooled read-write)

    nice -n 19 .venv-bench/bin/python bench/vector_corpus.py          # once: corpus, embeddings, truth (cached)
    .venv-bench/bin/python bench/vector.py --label stock              # load, recall, clients, filtered, quantized
    .venv-bench/bin/python bench/vector.py --label tuned --phase failover-cold --prewarm with|without
    .venv-bench/bin/python bench/vector.py --ratios                   # print tuned / stock from the file

Figures only: nothing passes or fails on them.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import multiprocessing
import os
import statistics
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import results_file  # bench/results_file.py (this script's own folder is on sys.path)

from pgfleet.probe.measure import Neighbour, connect, node_types, query_recall  # connect: no prepared statements, as a pooled client
from pgfleet.vector import advise

NAME = "vector"
TABLE = "bench_docs"
PHASES = ("load", "recall", "clients", "filtered", "quantized", "failover-cold")
DEFAULT_PHASES = PHASES[:-1]
EF_CURVE = (10, 20, 40, 64, 100, 128, 200, 400)
HNSW = {"m": 16, "ef_construction": 64}
#: table shares the filtered phase looks for: the category nearest each (a common one down to a rare one)
SELECTIVITIES = (0.10, 0.02, 0.005, 0.001)
#: candidates the binary-quantized index hands to the full-vector re-ranking
RERANK = (40, 100, 200)
#: settings each run records: the profiles differ in these
SETTINGS = ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "max_parallel_maintenance_workers",
            "max_parallel_workers_per_gather", "random_page_cost", "jit", "hnsw.ef_search", "hnsw.iterative_scan",
            "huge_pages", "server_version")  # shared_preload_libraries is the superuser's: prewarm_state reads it


# ---- pure parts (the unit suite tests them without numpy or a cluster)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, p in 0–100: pgfleet.vector.advise's, the one ``vector advise`` reports."""
    return advise.percentile(values, p / 100)


def latency_summary(seconds: Sequence[float], wall: float) -> dict[str, float | int]:
    """QPS over the wall time and p50 / p95 / p99 in milliseconds."""
    if not seconds:
        return {"queries": 0, "qps": 0.0}
    return {"queries": len(seconds), "qps": round(len(seconds) / wall, 1) if wall > 0 else 0.0,
            **{f"p{p}_ms": round(1000 * percentile(seconds, p), 3) for p in (50, 95, 99)}}


def mean_recall(found: Iterable[Sequence[Neighbour]], exact: Iterable[Sequence[Neighbour]]) -> float | None:
    """Mean recall@k over queries, each as the recall probe counts it (pgfleet.probe.measure.query_recall: an ANN
    row as near as the exact k-th counts); queries with no exact neighbour (an empty filter) are left out."""
    values = [r for ann, ex in zip(found, exact, strict=True) if (r := query_recall(ann, ex)) is not None]
    return round(sum(values) / len(values), 4) if values else None


def qps_at_recall(curve: Sequence[dict[str, Any]], target: float) -> float | None:
    """QPS at ``target`` recall, linear between the two curve points around it (points sorted by recall; where
    several ef_search values share a recall the faster counts); None outside the curve's range."""
    points = sorted((p["recall"], p["qps"]) for p in curve if p.get("recall") is not None and p.get("qps"))
    best: dict[float, float] = {}
    for r, q in points:
        best[r] = max(q, best.get(r, 0.0))
    rs = sorted(best)
    if not rs or target < rs[0] or target > rs[-1]:
        return None
    i = bisect.bisect_left(rs, target)
    if rs[i] == target:
        return best[target]
    r0, r1 = rs[i - 1], rs[i]
    q0, q1 = best[r0], best[r1]
    return q0 + (q1 - q0) * (target - r0) / (r1 - r0)


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def ratios(tuned: dict[str, Any], stock: dict[str, Any], targets: Sequence[float] = (0.90, 0.95, 0.98, 0.99)) -> dict[str, Any]:
    """tuned / stock: HNSW build time, QPS at equal recall (interpolated on each recall curve, at the targets both
    curves reach) and p95 by endpoint and clients (>1 is slower for time and p95, faster for QPS)."""
    out: dict[str, Any] = {}
    bt, bs = (x.get("load", {}).get("index_build_s") for x in (tuned, stock))
    out["index_build_time"] = _ratio(bt, bs)
    ct, cs = (x.get("recall", {}).get("curve", []) for x in (tuned, stock))
    out["qps_at_recall"] = {f"{t:.2f}": _ratio(qps_at_recall(ct, t), qps_at_recall(cs, t)) for t in targets
                            if qps_at_recall(ct, t) is not None and qps_at_recall(cs, t) is not None}
    p95: dict[str, float | None] = {}
    qps: dict[str, float | None] = {}
    st = {(r["endpoint"], r["clients"]): r for r in stock.get("clients", {}).get("runs", [])}
    for r in tuned.get("clients", {}).get("runs", []):
        s = st.get((r["endpoint"], r["clients"]))
        if s:
            key = f"{r['endpoint']}@{r['clients']}"
            p95[key] = _ratio(r.get("p95_ms"), s.get("p95_ms"))
            qps[key] = _ratio(r.get("qps"), s.get("qps"))
    out["p95"] = p95
    out["qps_fixed_ef_search"] = qps
    return out


def windows(samples: Sequence[tuple[float, float]], width: float = 5.0, span: float = 60.0) -> list[dict[str, Any]]:
    """(seconds since the start, latency seconds) → per ``width``-second window up to ``span``: queries and p95 ms."""
    out = []
    for i in range(int(math.ceil(span / width))):
        lo, hi = i * width, (i + 1) * width
        lat = [s for t, s in samples if lo <= t < hi]
        out.append({"from_s": lo, "queries": len(lat), "p95_ms": round(1000 * percentile(lat, 95), 3) if lat else None})
    return out


def pick_categories(counts: Sequence[tuple[str, int]], total: int, targets: Sequence[float] = SELECTIVITIES) -> list[tuple[str, int]]:
    """For each target share, the not yet chosen category whose share is nearest (on a log scale)."""
    chosen: list[tuple[str, int]] = []
    for t in targets:
        left = [(c, n) for c, n in counts if n > 0 and c not in {x for x, _ in chosen}]
        if left:
            chosen.append(min(left, key=lambda cn: (abs(math.log(cn[1] / total / t)), cn[0])))
    return chosen


def vector_text(v: Iterable[float]) -> str:
    """pgvector's text form; float32's 9 significant digits round-trip exactly."""
    return "[" + ",".join(f"{x:.9g}" for x in v) + "]"


def copy_binary(rows: Iterable[tuple[int, str, bytes]]) -> Iterable[bytes]:
    """COPY … (FORMAT binary) of (id bigint, category text, embedding vector): a vector field is int16 dims,
    int16 unused, then big-endian float4s (pgvector's vector_recv), ``bytes`` holding the floats."""
    yield b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
    for id_, cat, floats in rows:
        c = cat.encode()
        dims = len(floats) // 4
        yield (struct.pack("!hiq", 3, 8, id_) + struct.pack("!i", len(c)) + c
               + struct.pack("!ihh", 4 + len(floats), dims, 0) + floats)
    yield struct.pack("!h", -1)


def merge_run(doc: dict[str, Any], label: str, phase: str, result: dict[str, Any]) -> dict[str, Any]:
    """The results file with ``result`` as ``label``'s ``phase`` (other labels and phases kept), ratios redone."""
    runs = dict(doc.get("runs", {}))
    runs[label] = {**runs.get(label, {}), phase: result}
    out = {**doc, "runs": runs}
    if "tuned" in runs and "stock" in runs:
        out["tuned_over_stock"] = ratios(runs["tuned"], runs["stock"])
    return out


# ---- against the cluster


def dsn_from_cli(stack: str, *flags: str) -> str:
    return results_file.timed_cli("dsn", stack, *flags)[1].strip()


ENDPOINT_FLAGS = {"pooled-rw": (), "pooled-ro": ("--ro",), "direct": ("--direct",)}


def endpoints(stack: str, given: Sequence[str] = ()) -> dict[str, str]:
    """pooled-rw (HAProxy → PgBouncer → primary), pooled-ro (→ replicas), direct (HAProxy → the primary): the
    DSNs ``pgfleet dsn`` prints, less those given as NAME=DSN (another cluster, or a smoke test on loopback)."""
    own = dict(g.split("=", 1) for g in given)
    if unknown := set(own) - set(ENDPOINT_FLAGS):
        raise SystemExit(f"--dsn: unknown endpoint(s) {', '.join(sorted(unknown))}: {', '.join(ENDPOINT_FLAGS)}")
    return {name: own.get(name) or dsn_from_cli(stack, *flags) for name, flags in ENDPOINT_FLAGS.items()}


ANN = f"SELECT id, embedding <=> %(q)s::vector AS d FROM {TABLE} ORDER BY d LIMIT %(k)s"
ANN_FILTERED = f"SELECT id, embedding <=> %(q)s::vector AS d FROM {TABLE} WHERE category = %(c)s ORDER BY d LIMIT %(k)s"
ANN_HALF = (f"SELECT id, embedding <=> %(q)s::vector AS d FROM {TABLE} "
            f"ORDER BY embedding::halfvec(384) <=> %(q)s::halfvec(384) LIMIT %(k)s")
ANN_BINARY = (f"SELECT id, d FROM (SELECT id, embedding <=> %(q)s::vector AS d FROM {TABLE} "
              f"ORDER BY binary_quantize(embedding)::bit(384) <~> binary_quantize(%(q)s::vector) LIMIT %(n)s) c "
              f"ORDER BY d LIMIT %(k)s")


def set_local(conn, settings: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """SET LOCAL every setting in one statement (one round trip)."""
    if settings:
        calls = ", ".join("set_config(%s, %s, true)" for _ in settings)
        conn.execute(f"SELECT {calls}", [x for name, value in settings.items() for x in (name, str(value))])


def timed_query(conn, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> tuple[list[Neighbour], float]:  # type: ignore[no-untyped-def]
    """One transaction: the settings (SET LOCAL), the query; (rows, seconds for the whole transaction)."""
    t = time.perf_counter()
    with conn.transaction():
        set_local(conn, settings)
        rows = conn.execute(sql, params).fetchall()
    return [(int(i), float(d)) for i, d in rows], time.perf_counter() - t


def run_queries(dsn: str, sql: str, params: Sequence[dict[str, Any]], settings: dict[str, Any]) -> tuple[list[list[Neighbour]], list[float], float]:
    with connect(dsn) as conn:
        found, lat = [], []
        t = time.perf_counter()
        for p in params:
            rows, s = timed_query(conn, sql, p, settings)
            found.append(rows)
            lat.append(s)
        return found, lat, time.perf_counter() - t


def server_settings(dsn: str) -> dict[str, str]:
    import psycopg

    with connect(dsn) as conn:
        conn.execute("SELECT '[1]'::vector")  # loads pgvector, whose hnsw.* settings exist only from then on
        out = {}
        for name in SETTINGS:
            try:
                out[name] = conn.execute(f"SHOW {name}").fetchone()[0]
            except psycopg.errors.UndefinedObject as e:  # an unknown setting is an answer too; anything else fails
                out[name] = f"? {type(e).__name__}"
        return out


def replica_dsns(stack: str | None) -> list[str]:
    """Each replica's own direct DSN (the database owner, as the drills connect), from Patroni; none without a stack."""
    if not stack:
        return []
    from pgfleet.drill.control import PatroniControl

    control = PatroniControl.from_stack(stack)
    return [control.direct_dsn(m.name) for m in control.state().members if not m.is_leader]


def wait_replicas(direct: str, replicas: Sequence[str], timeout: float = 600) -> float | None:
    """Until every replica has replayed the primary's current WAL (the read-only endpoint reads them); seconds.
    Asked of each replica (pg_last_wal_replay_lsn): pg_stat_replication hides the LSNs from the application role.
    None when there is no replica to ask (a smoke test on one server)."""
    if not replicas:
        return None
    t = time.monotonic()
    with connect(direct) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    for dsn in replicas:
        with connect(dsn) as conn:
            while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(target),)).fetchone()[0]:
                if time.monotonic() - t > timeout:
                    raise SystemExit(f"a replica has not replayed {target} after {timeout:.0f} s")
                time.sleep(1)
    return round(time.monotonic() - t, 1)


class Data:
    """The cached corpus, embeddings and exact top-10 (bench/vector_corpus.py's cache)."""

    def __init__(self, cache: Path | None = None) -> None:
        import vector_corpus as vc  # bench/vector_corpus.py

        self.vc = vc
        kw = {"cache": cache} if cache else {}
        self.corpus = vc.load_corpus(**kw)
        self.docs, self.queries, self.embedding = vc.embeddings(self.corpus, **kw)
        self.truth_ids, self.truth_dist = vc.truth(self.corpus, self.docs, self.queries, **kw)
        self.query_text = [vector_text(q) for q in self.queries]

    def exact(self, i: int, ids: Any = None, dist: Any = None) -> list[Neighbour]:
        ids = self.truth_ids if ids is None else ids
        dist = self.truth_dist if dist is None else dist
        return [(int(a), float(b)) for a, b in zip(ids[i], dist[i]) if a >= 0]

    def describe(self) -> dict[str, Any]:
        return {"hash": self.corpus.hash, "rows": len(self.corpus.docs), "queries": len(self.corpus.queries),
                "sources": self.corpus.sources, "model": self.vc.MODEL, "dims": self.vc.DIMS, "embedding": self.embedding}


def phase_load(data: Data, eps: dict[str, str], replicas: Sequence[str]) -> dict[str, Any]:
    """Table and HNSW index on the direct endpoint (session settings and COPY stay on one server connection)."""
    cats = [c for _, c in data.corpus.docs]
    be = data.docs.astype(">f4")
    with connect(eps["direct"]) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, category text NOT NULL, embedding vector(384) NOT NULL)")
        t = time.monotonic()
        with conn.cursor().copy(f"COPY {TABLE} (id, category, embedding) FROM STDIN (FORMAT binary)") as copy:
            for chunk in copy_binary((i, cats[i], be[i].tobytes()) for i in range(len(cats))):
                copy.write(chunk)
        copy_s = time.monotonic() - t
        t = time.monotonic()
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        vacuum_s = time.monotonic() - t
        t = time.monotonic()
        conn.execute(f"CREATE INDEX {TABLE}_embedding_idx ON {TABLE} USING hnsw (embedding vector_cosine_ops) "
                     f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})")
        build_s = time.monotonic() - t
        sizes = dict(conn.execute(f"SELECT 'table', pg_table_size('{TABLE}') UNION ALL "
                                  f"SELECT 'hnsw', pg_relation_size('{TABLE}_embedding_idx')").fetchall())
        rows = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    assert rows == len(cats), (rows, len(cats))
    return {"rows": rows, "copy_s": round(copy_s, 2), "vacuum_analyze_s": round(vacuum_s, 2), "index_build_s": round(build_s, 2),
            "hnsw": HNSW, "table_bytes": int(sizes["table"]), "index_bytes": int(sizes["hnsw"]),
            "replicas_caught_up_s": wait_replicas(eps["direct"], replicas)}


def phase_recall(data: Data, eps: dict[str, str], ef_values: Sequence[int], queries: int) -> dict[str, Any]:
    n = min(queries, len(data.query_text))
    params = [{"q": data.query_text[i], "k": 10} for i in range(n)]
    exact = [data.exact(i) for i in range(n)]
    warm = run_queries(eps["pooled-ro"], ANN, params, {"hnsw.ef_search": max(ef_values)})[2]
    curve = []
    for ef in ef_values:
        found, lat, wall = run_queries(eps["pooled-ro"], ANN, params, {"hnsw.ef_search": ef})
        point = {"ef_search": ef, "recall": mean_recall(found, exact), **latency_summary(lat, wall)}
        print(point, flush=True)
        curve.append(point)
    return {"endpoint": "pooled-ro", "clients": 1, "k": 10, "warm_up_pass_s": round(warm, 1), "curve": curve}


#: the query vectors, set before the client processes fork (so they are not pickled to each)
_TEXTS: list[str] = []


def _client(args: tuple[str, int, float, float, int]) -> tuple[list[float], int, str]:
    """One client process: its own connection, queries from its own offset until ``end`` (after ``start``).
    A failed query is counted and its connection replaced (as an application's pool would); the first error's
    text is kept."""
    dsn, ef, start, end, offset = args
    texts = _TEXTS
    lat: list[float] = []
    errors, first_error = 0, ""
    conn = connect(dsn)
    time.sleep(max(0.0, start - time.time()))
    i = offset
    while time.time() < end:
        try:
            if conn is None:
                conn = connect(dsn)
            lat.append(timed_query(conn, ANN, {"q": texts[i % len(texts)], "k": 10}, {"hnsw.ef_search": ef})[1])
        except Exception as e:  # noqa: BLE001 — counted and named in the results: a figure, not a test
            errors += 1
            first_error = first_error or f"{type(e).__name__}: {e}".strip()[:300]
            if conn is not None:
                conn.close()
            conn, _ = None, time.sleep(0.1)
        i += 1
    if conn is not None:
        conn.close()
    return lat, errors, first_error


def phase_clients(data: Data, eps: dict[str, str], ef: int, clients: Sequence[int], seconds: float,
                  which: Sequence[str]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    _TEXTS[:] = data.query_text
    runs = []
    for name in which:
        for c in clients:
            start = time.time() + 3 + 0.05 * c  # every client connected before the clock starts
            args = [(eps[name], ef, start, start + seconds, j * len(data.query_text) // c) for j in range(c)]
            with ctx.Pool(c) as pool:
                out = pool.map(_client, args)
            lat = [s for o in out for s in o[0]]
            r = {"endpoint": name, "clients": c, "ef_search": ef, "seconds": seconds, "errors": sum(o[1] for o in out),
                 "first_error": next((o[2] for o in out if o[2]), ""),
                 **latency_summary(lat, seconds)}
            print(r, flush=True)
            runs.append(r)
            time.sleep(2)
    return {"ef_search": ef, "runs": runs}


def _plan(dsn: str, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> str:
    """The plan's node types, outermost first: does the filtered query read the HNSW index at all?"""
    with connect(dsn) as conn, conn.transaction():
        set_local(conn, settings)
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0]
    return " / ".join(node_types(json.loads(plan) if isinstance(plan, str) else plan))


def phase_filtered(data: Data, eps: dict[str, str], ef: int, queries: int) -> dict[str, Any]:
    import numpy as np

    cats = np.array([c for _, c in data.corpus.docs])
    chosen = pick_categories(data.vc.categories(data.corpus), len(cats))
    n = min(queries, len(data.query_text))
    out = []
    for cat, count in chosen:
        mask = cats == cat
        ids, dist = data.vc.exact_top_k(data.docs, data.queries[:n], 10, mask)
        exact = [data.exact(i, ids, dist) for i in range(n)]
        params = [{"q": data.query_text[i], "k": 10, "c": cat} for i in range(n)]
        for mode in ("off", "relaxed_order"):
            settings = {"hnsw.ef_search": ef, "hnsw.iterative_scan": mode}
            found, lat, wall = run_queries(eps["pooled-ro"], ANN_FILTERED, params, settings)
            r = {"category": cat, "rows": count, "share": round(count / len(cats), 5), "iterative_scan": mode, "ef_search": ef,
                 "recall": mean_recall(found, exact), "mean_rows_returned": round(statistics.mean(len(f) for f in found), 2),
                 "plan": _plan(eps["pooled-ro"], ANN_FILTERED, params[0], settings), **latency_summary(lat, wall)}
            print(r, flush=True)
            out.append(r)
    return {"endpoint": "pooled-ro", "clients": 1, "runs": out}


def phase_quantized(data: Data, eps: dict[str, str], ef: int, queries: int, keep: bool, replicas: Sequence[str]) -> dict[str, Any]:
    n = min(queries, len(data.query_text))
    exact = [data.exact(i) for i in range(n)]
    builds = {}
    with connect(eps["direct"]) as conn:
        for name, expr, ops in (("halfvec", "(embedding::halfvec(384))", "halfvec_cosine_ops"),
                                ("binary", "(binary_quantize(embedding)::bit(384))", "bit_hamming_ops")):
            conn.execute(f"DROP INDEX IF EXISTS {TABLE}_{name}_idx")
            t = time.monotonic()
            conn.execute(f"CREATE INDEX {TABLE}_{name}_idx ON {TABLE} USING hnsw ({expr} {ops}) "
                         f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})")
            builds[name] = {"index_build_s": round(time.monotonic() - t, 2)}
        for name in ("embedding", "halfvec", "binary"):
            size = conn.execute("SELECT pg_relation_size(%s::regclass)", (f"{TABLE}_{name}_idx",)).fetchone()[0]
            builds.setdefault(name, {})["index_bytes"] = int(size)
    wait_replicas(eps["direct"], replicas)
    runs = []
    variants: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("vector", ANN, {}, {"hnsw.ef_search": ef}),
        ("halfvec", ANN_HALF, {}, {"hnsw.ef_search": ef}),
        *[(f"binary+rerank{r}", ANN_BINARY, {"n": r}, {"hnsw.ef_search": max(ef, r)}) for r in RERANK]]
    for name, sql, extra, settings in variants:
        params = [{"q": data.query_text[i], "k": 10, **extra} for i in range(n)]
        run_queries(eps["pooled-ro"], sql, params[: min(200, n)], settings)  # warm the new index's pages
        found, lat, wall = run_queries(eps["pooled-ro"], sql, params, settings)
        r = {"variant": name, **settings, "recall": mean_recall(found, exact), **latency_summary(lat, wall)}
        print(r, flush=True)
        runs.append(r)
    if not keep:
        with connect(eps["direct"]) as conn:
            for name in ("halfvec", "binary"):
                conn.execute(f"DROP INDEX IF EXISTS {TABLE}_{name}_idx")
    return {"endpoint": "pooled-ro", "clients": 1, "indexes": builds, "runs": runs}


def drop_page_cache() -> None:
    """This machine's page cache: the lab's containers share its kernel, so their files' cached pages go too."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def prewarm_state(stack: str, node: str) -> dict[str, Any]:
    """What the new primary says about prewarming: recorded, not assumed (the "with"/"without" label is the operator's).
    Read as the superuser on the node (shared_preload_libraries is not for the application's role to see)."""
    from pgfleet import lab as lab_mod
    from pgfleet.spec import load

    q = ("SELECT json_build_object('shared_preload_libraries', current_setting('shared_preload_libraries'), "
         "'pg_prewarm.autoprewarm', current_setting('pg_prewarm.autoprewarm', true), "
         "'pg_prewarm_extension', (SELECT extversion FROM pg_extension WHERE extname = 'pg_prewarm'), "
         "'autoprewarm_workers', (SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'autoprewarm%'))")
    out = lab_mod.run(load(stack), node, f"runuser -u postgres -- psql -d app -Atc {json.dumps(q)}", timeout=30).stdout
    return json.loads(out)


def phase_failover_cold(data: Data, eps: dict[str, str], stack: str, ef: int, span: float, width: float,
                        prewarm: str, note: str) -> dict[str, Any]:
    """Restart the candidate's PostgreSQL (its shared buffers empty), drop the page cache, switch over to it and
    query it at once through the pooled read-write endpoint: the first minute is what a cold primary serves."""
    from pgfleet import cluster as cluster_mod
    from pgfleet.drill.control import PatroniControl
    from pgfleet.stack import Stack

    if os.geteuid() != 0:
        raise SystemExit("failover-cold drops the page cache: run it as root")
    st = Stack.open(stack)
    control = PatroniControl.of(st)
    before = control.state()
    leader = before.leader
    if leader is None:
        raise SystemExit("no leader: nothing to switch over from")
    standbys = [m.name for m in before.members if not m.is_leader]
    if not standbys:
        raise SystemExit("no standby to switch over to")
    # every standby restarted (its shared buffers empty, or what autoprewarm reloads), one at a time: whichever
    # Patroni then holds synchronous is the candidate (a synchronous cluster switches over only to that one)
    for name in standbys:
        cluster_mod.rest_client(control.hosts[name], st.secrets, auth=True).restart(pending_only=False)
        deadline = time.monotonic() + 300
        while not ((m := control.state().member(name)) is not None and m.state in ("streaming", "running")):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} not streaming again within 300 s of its restart")
            time.sleep(2)
    deadline = time.monotonic() + 120
    while True:
        now_state = control.state()
        candidates = [m.name for m in now_state.sync_standbys] or ([] if before.sync_standbys else standbys)
        if candidates:
            candidate = candidates[0]
            break
        if time.monotonic() > deadline:
            raise SystemExit("no synchronous standby within 120 s of the restarts")
        time.sleep(2)
    drop_page_cache()
    t_switch = time.monotonic()
    control.switchover(leader.name, candidate)
    switch_s = time.monotonic() - t_switch
    samples: list[tuple[float, float]] = []
    errors = 0
    t0 = time.monotonic()
    conn = None
    i = 0
    while (now := time.monotonic() - t0) < span:
        try:
            if conn is None:
                conn = connect(eps["pooled-rw"])
            samples.append((now, timed_query(conn, ANN, {"q": data.query_text[i % len(data.query_text)], "k": 10},
                                             {"hnsw.ef_search": ef})[1]))
        except Exception:  # noqa: BLE001 — the switchover's own error window: counted, reconnect
            errors += 1
            conn = None
            time.sleep(0.1)
        i += 1
    if conn is not None:
        conn.close()
    after = control.state().leader
    state = prewarm_state(stack, candidate)
    return {"prewarm_label": prewarm, "note": note,
            # autoprewarm is what the new primary can show; a label it contradicts is kept, and flagged
            "label_matches_autoprewarm": (prewarm == "with") == (state["pg_prewarm.autoprewarm"] == "on"),
            "first_answer_s": round(samples[0][0], 2) if samples else None, "old_primary": leader.name,
            "new_primary": after.name if after else None, "candidate": candidate, "switchover_call_s": round(switch_s, 2), "ef_search": ef, "errors": errors,
            "prewarm": state,
            "windows": windows(samples, width, span), "overall": latency_summary([s for _, s in samples], span)}


def load_doc(name: str = NAME) -> dict[str, Any]:
    path = results_file.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", choices=("tuned", "stock"), help="the profile the cluster runs now")
    ap.add_argument("--phase", default=",".join(DEFAULT_PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    ap.add_argument("--dsn-from-cli", default="lab", metavar="STACK", help="the stack whose `pgfleet dsn` DSNs are used")
    ap.add_argument("--dsn", action="append", default=[], metavar="ENDPOINT=DSN",
                    help=f"use this DSN for an endpoint ({', '.join(ENDPOINT_FLAGS)}) instead of asking pgfleet")
    ap.add_argument("--name", default=NAME, help="results file bench/results/NAME.json")
    ap.add_argument("--cache", type=Path, help="bench/vector_corpus.py's cache folder (default: its own)")
    ap.add_argument("--ef-search", type=int, default=40, help="ef_search of the clients, filtered, quantized and failover phases")
    ap.add_argument("--ef-curve", default=",".join(map(str, EF_CURVE)))
    ap.add_argument("--queries", type=int, default=1000, help="queries per recall point (of the held-out ones)")
    ap.add_argument("--filtered-queries", type=int, default=200)
    ap.add_argument("--clients", default="1,8,16")
    ap.add_argument("--endpoints", default="pooled-rw,pooled-ro,direct")
    ap.add_argument("--seconds", type=float, default=20, help="per clients run")
    ap.add_argument("--keep-quantized", action="store_true", help="leave the halfvec and binary indexes in place")
    ap.add_argument("--span", type=float, default=60, help="failover-cold: seconds measured on the new primary")
    ap.add_argument("--window", type=float, default=5, help="failover-cold: window of each p95")
    ap.add_argument("--prewarm", choices=("with", "without"), help="failover-cold: does the deployed cluster prewarm a new "
                    "primary (the operator's word; the run also records what the new primary reports)")
    ap.add_argument("--prewarm-note", default="", help="failover-cold: how the cluster prewarms (or not), in words; stored")
    ap.add_argument("--ratios", action="store_true", help="print tuned / stock from the results file and exit")
    a = ap.parse_args()
    if a.ratios:
        doc = load_doc(a.name)
        print(json.dumps(ratios(doc["runs"]["tuned"], doc["runs"]["stock"]), indent=2))
        return
    if not a.label:
        ap.error("--label tuned|stock is needed to record a run")
    phases = [p for p in a.phase.split(",") if p]
    if unknown := set(phases) - set(PHASES):
        ap.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    if "failover-cold" in phases and not a.prewarm:
        ap.error("failover-cold needs --prewarm with|without")
    data = Data(a.cache)
    eps = endpoints(a.dsn_from_cli, a.dsn)
    doc = load_doc(a.name)
    if doc.get("corpus", {}).get("hash") not in (None, data.corpus.hash):
        print(f"results file was measured on corpus {doc['corpus']['hash']}; starting it over", flush=True)
        doc = {}
    doc.update({"benchmark": "pgvector: HNSW build, recall@10 vs ef_search, QPS and latency by endpoint and clients, filtered "
                             "and quantized queries, a cold primary after switchover; tuned and stock profiles side by side",
                "stack": a.dsn_from_cli, "corpus": data.describe(),
                "query": "one transaction per query: SET LOCAL hnsw.* then SELECT … ORDER BY embedding <=> q LIMIT 10, timed whole"})
    doc = merge_run(doc, a.label, "settings", {**server_settings(eps["direct"]), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    ef_curve = [int(x) for x in a.ef_curve.split(",")]
    for phase in phases:
        print(f"== {a.label}: {phase}", flush=True)
        if phase == "load":
            r = phase_load(data, eps, replica_dsns(None if a.dsn else a.dsn_from_cli))
        elif phase == "recall":
            r = phase_recall(data, eps, ef_curve, a.queries)
        elif phase == "clients":
            r = phase_clients(data, eps, a.ef_search, [int(c) for c in a.clients.split(",")], a.seconds, a.endpoints.split(","))
        elif phase == "filtered":
            r = phase_filtered(data, eps, a.ef_search, a.filtered_queries)
        elif phase == "quantized":
            r = phase_quantized(data, eps, a.ef_search, a.queries, a.keep_quantized, replica_dsns(None if a.dsn else a.dsn_from_cli))
        else:  # with and without prewarm side by side under the label
            r = {**doc.get("runs", {}).get(a.label, {}).get(phase, {}),
                 a.prewarm: phase_failover_cold(data, eps, a.dsn_from_cli, a.ef_search, a.span, a.window, a.prewarm, a.prewarm_note)}
        doc = merge_run(doc, a.label, phase, r)
        results_file.write(a.name, {k: v for k, v in doc.items() if k not in ("when", "machine")})  # each phase kept as it ends


if __name__ == "__main__":
    main()
