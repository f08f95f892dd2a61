"""Unit tests of ``pgfleet vector advise`` without a database: operator classes, the search for the smallest
search setting (the measurement injected), every advice, the stack change and SQL it prints, JSON and exit codes.

The sessions against PostgreSQL (replica, primary, scratch database) run in the lab: tests/test_vector_lab.py.
"""

from __future__ import annotations

import io
import json

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from pgfleet import sizing
from pgfleet.cli import app
from pgfleet.cli import vector as cli_vector
from pgfleet.probe import measure
from pgfleet.schema import DatabaseSpec
from pgfleet.vector import advise, catalog, report, session
from pgfleet.vector.advise import Build, Point, Search, ServerOption
from pgfleet.vector.catalog import Churn, IndexInfo, SessionView
from pgfleet.vector.session import DatabaseReport, IndexReport

GiB = 1024**3


def info(**kw: object) -> IndexInfo:
    base: dict[str, object] = dict(database="app", schema="public", table="items", index="items_embedding_idx", method="hnsw",
                                   column="embedding", vector_type="vector", column_type="vector(768)", dimensions=768,
                                   opclass="vector_cosine_ops", operator="<=>", rows=100_000,
                                   options={"m": 16, "ef_construction": 64}, size_bytes=400 * 1024**2, partial=False, valid=True,
                                   key="id")
    return IndexInfo(**{**base, **kw})  # type: ignore[arg-type]


# ---- the catalogue


@pytest.mark.parametrize("opclass, operator", [
    ("vector_l2_ops", "<->"), ("vector_cosine_ops", "<=>"), ("vector_ip_ops", "<#>"), ("vector_l1_ops", "<+>"),
    ("halfvec_l2_ops", "<->"), ("halfvec_cosine_ops", "<=>"), ("halfvec_ip_ops", "<#>"), ("halfvec_l1_ops", "<+>"),
    ("sparsevec_l2_ops", "<->"), ("sparsevec_cosine_ops", "<=>"), ("bit_hamming_ops", "<~>"), ("bit_jaccard_ops", "<%>"),
])
def test_every_pgvector_operator_class_names_its_distance_operator(opclass: str, operator: str) -> None:
    assert catalog.operator_for(opclass) == operator


def test_an_operator_class_pgvector_does_not_ship_has_no_operator() -> None:
    for other in ("int4_ops", "vector_ops", "vector_l3_ops", "text_pattern_ops", "l2_ops", "myvector_l2_ops"):
        assert catalog.operator_for(other) is None, other


def test_build_options_take_the_reloptions_over_pgvectors_defaults() -> None:
    assert catalog.build_options("hnsw", None) == {"m": 16, "ef_construction": 64}
    assert catalog.build_options("hnsw", ["m=32", "fillfactor=90"]) == {"m": 32, "ef_construction": 64}
    assert catalog.build_options("ivfflat", ["lists=1000"]) == {"lists": 1000}
    assert catalog.build_options("ivfflat", []) == {"lists": 100}


def test_a_catalogue_row_gives_dimensions_from_the_typmod_and_no_rows_before_analyze() -> None:
    row = ("public", "items", "items_idx", "hnsw", "embedding", "halfvec", "halfvec(384)", 384, "halfvec_l2_ops",
           ["m=24", "ef_construction=100"], -1, 8192, False, True, None)
    i = catalog.index_row("app", row)
    assert (i.dimensions, i.operator, i.rows, i.options, i.key) == (384, "<->", None, {"m": 24, "ef_construction": 100}, "ctid")
    assert i.qualified_table == "public.items" and i.unmeasurable() is None
    unsized = catalog.index_row("app", row[:7] + (-1,) + row[8:10] + (5000,) + row[11:14] + ("id",))
    assert (unsized.dimensions, unsized.rows, unsized.key) == (None, 5000, "id")


@pytest.mark.parametrize("change, reason", [
    ({"valid": False}, "not valid"), ({"column": None}, "expression"), ({"partial": True}, "partial"),
    ({"operator": None, "opclass": "odd_ops"}, "odd_ops"),
])
def test_indexes_the_plain_query_cannot_measure_say_why(change: dict, reason: str) -> None:
    why = info(**change).unmeasurable()
    assert why is not None and reason in why


def test_the_plan_reader_finds_every_index_name() -> None:
    plan = [{"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Index Scan", "Index Name": "items_idx"},
                                                      {"Node Type": "Seq Scan", "Relation Name": "items"}]}}]
    assert measure.index_names(plan) == ["items_idx"]
    assert measure.index_names([{"Plan": {"Node Type": "Seq Scan"}}]) == []


# ---- the search


def fake(recalls: dict[int, float], current: int, p95: float = 0.002):  # type: ignore[no-untyped-def]
    """A measurement: recall by value (None: the session's own value), recording each call."""
    calls: list[int | None] = []

    def at(value: int | None) -> tuple[float, float, int]:
        calls.append(value)
        return recalls[current if value is None else value], p95 * (1 + (value or current) / 100), 100

    return at, calls


def test_the_search_stops_at_the_smallest_value_that_reaches_the_target() -> None:
    at, calls = fake({10: 0.80, 40: 0.95, 64: 0.985, 100: 0.992, 128: 0.999, 200: 1.0}, current=10)
    s = advise.search("hnsw.ef_search", 10, at, 0.99, advise.EF_SEARCH_CANDIDATES)
    assert s.found is not None and s.found.value == 100 and s.found.recall == 0.992
    assert calls == [None, 40, 64, 100]  # the owner's own session first, nothing SET; never past the first hit
    assert not s.reaches_target_now and not s.current.set_by_advise and s.current.value == 10


def test_a_current_value_that_reaches_the_target_is_the_answer_and_nothing_else_is_tried() -> None:
    at, calls = fake({40: 0.995}, current=40)
    s = advise.search("hnsw.ef_search", 40, at, 0.99, advise.EF_SEARCH_CANDIDATES)
    assert s.reaches_target_now and s.found is s.current and s.tried == () and calls == [None]


def test_values_at_or_below_the_current_one_are_skipped_and_a_miss_everywhere_finds_nothing() -> None:
    at, calls = fake({200: 0.5, 256: 0.6, 400: 0.7, 512: 0.8, 800: 0.85, 1000: 0.9}, current=200)
    s = advise.search("hnsw.ef_search", 200, at, 0.99, advise.EF_SEARCH_CANDIDATES)
    assert s.found is None and [p.value for p in s.tried] == [256, 400, 512, 800, 1000] and calls[0] is None


def test_a_scratch_session_sets_the_current_value_too() -> None:
    at, calls = fake({40: 0.9, 64: 0.99}, current=40)
    s = advise.search("hnsw.ef_search", 40, at, 0.99, advise.EF_SEARCH_CANDIDATES, set_current=True)
    assert calls == [40, 64] and s.current.set_by_advise and s.found is not None and s.found.value == 64


def test_ivfflat_tries_probes_up_to_its_lists() -> None:
    assert advise.candidates_for(info(method="ivfflat", options={"lists": 100})) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert advise.candidates_for(info()) == advise.EF_SEARCH_CANDIDATES


def test_p95_is_a_measured_value_by_nearest_rank() -> None:
    assert advise.percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert advise.percentile([3.0, 1.0, 2.0], 0.95) == 3.0
    assert advise.percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        advise.percentile([], 0.95)


# ---- advice


def search_with(current: Point, *tried: Point, target: float = 0.99) -> Search:
    found = current if current.recall >= target else next((p for p in tried if p.recall >= target), None)
    return Search("hnsw.ef_search", current, tuple(tried), found)


def test_ef_search_advice_is_measured_with_its_sql_and_setting() -> None:
    s = search_with(Point(10, 0.9, 0.001, 50, False), Point(40, 1.0, 0.0015, 50))
    a = advise.setting_advice(info(), s, 0.99, "replica 198.18.0.12")
    assert a is not None and a.basis == "measured" and a.kind == "ef_search"
    assert a.sql == (advise.LOAD_PGVECTOR, 'ALTER DATABASE "app" SET hnsw.ef_search = 40;') and a.setting == {"hnsw.ef_search": 40}
    assert "0.900 → 1.000" in a.effect and "replica 198.18.0.12" in a.effect
    assert advise.setting_advice(info(), search_with(Point(40, 0.995, 0.001, 50, False)), 0.99, "x") is None


def test_a_search_that_never_reaches_the_target_says_so_without_sql() -> None:
    s = search_with(Point(40, 0.7, 0.001, 50, False), Point(1000, 0.9, 0.01, 50))
    a = advise.setting_advice(info(), s, 0.99, "replica")
    assert a is not None and a.sql == () and a.setting == {} and "no hnsw.ef_search up to 1000" in a.action


def test_rebuild_candidates_grow_within_pgvectors_limits() -> None:
    assert advise.rebuild_candidates(16, 64) == [(32, 128), (64, 256)]
    assert advise.rebuild_candidates(4, 8) == [(8, 16), (16, 32)]
    assert advise.rebuild_candidates(64, 600) == [(100, 1000)]
    assert all(e >= 2 * m for m, e in advise.rebuild_candidates(48, 50))
    assert advise.rebuild_candidates(100, 1000) == []


def build(m: int, value: int | None, p95: float = 0.002) -> Build:
    current = Point(40, 0.8, p95, 50)
    found = None if value is None else Point(value, 0.995, p95, 50)
    return Build(m, 2 * m * 2, Search("hnsw.ef_search", current, (found,) if found else (), found), 1.0)


def test_the_chosen_rebuild_is_the_cheapest_that_does_better_on_the_sample() -> None:
    assert advise.choose_rebuild(build(16, None), [build(32, None), build(64, 400)]).m == 64  # type: ignore[union-attr]
    assert advise.choose_rebuild(build(16, 400), [build(32, 100), build(64, 64)]).m == 32  # type: ignore[union-attr]
    assert advise.choose_rebuild(build(16, 100), [build(32, 200), build(64, None)]) is None
    assert advise.choose_rebuild(build(16, 100, p95=0.09), [build(32, 100, p95=0.03)]).m == 32  # type: ignore[union-attr]
    a = advise.rebuild_advice(info(), build(16, None), build(32, 100), 10_000, 0.99)
    assert a is not None and a.basis == "estimated" and "10000-row sample in the scratch database" in a.effect
    assert a.sql[0].startswith('CREATE INDEX CONCURRENTLY ON "public"."items" USING hnsw ("embedding" vector_cosine_ops) '
                               "WITH (m = 32, ef_construction = 128)")
    assert advise.rebuild_advice(info(), build(16, 100), None, 10_000, 0.99) is None


def test_an_index_that_fits_shared_buffers_and_ram_gets_no_memory_advice() -> None:
    assert advise.memory_advice(info(size_bytes=GiB), 2 * GiB, 8 * GiB, [], "ccx13") == []


def test_an_index_larger_than_shared_buffers_gets_halfvec_and_binary_estimates() -> None:
    out = advise.memory_advice(info(size_bytes=3 * GiB), 2 * GiB, 8 * GiB, [], "ccx13")
    assert [(a.kind, a.basis) for a in out] == [("halfvec", "estimated"), ("binary", "estimated")]
    assert "~1.5 GiB instead of 3.0 GiB (fits shared_buffers 2.0 GiB)" in out[0].effect
    assert "~96.0 MiB" in out[1].effect and "halfvec_cosine_ops" in out[0].action and "bit(768)" in out[1].action
    half = advise.memory_advice(info(size_bytes=3 * GiB, vector_type="halfvec"), 2 * GiB, 8 * GiB, [], "ccx13")
    assert [a.kind for a in half] == ["binary"] and "~192.0 MiB" in half[0].effect
    assert advise.memory_advice(info(size_bytes=3 * GiB, vector_type="bit"), 2 * GiB, 8 * GiB, [], "ccx13") == []


def test_an_index_larger_than_ram_gets_the_smallest_type_whose_shared_buffers_hold_it() -> None:
    options = [ServerOption("ccx23", 16 * GiB, 4 * GiB), ServerOption("ccx33", 32 * GiB, 8 * GiB),
               ServerOption("ccx43", 64 * GiB, 16 * GiB)]
    out = advise.memory_advice(info(size_bytes=9 * GiB), 2 * GiB, 8 * GiB, options, "ccx13")
    (server,) = [a for a in out if a.kind == "server_type"]
    assert server.basis == "estimated" and server.action == "server_type: ccx43 (now ccx13)" and "(fits the index)" in server.effect
    huge = advise.memory_advice(info(size_bytes=40 * GiB), 2 * GiB, 8 * GiB, options, "ccx13")
    assert [a.action for a in huge if a.kind == "server_type"] == ["server_type: ccx43 (now ccx13)"]
    assert "still does not fit" in next(a.effect for a in huge if a.kind == "server_type")


@pytest.mark.parametrize("churn, advised", [
    (None, False),
    (Churn(changed_rows=20_000, dead_rows=0, live_rows=100_000), False),  # 20 %: not above the threshold
    (Churn(changed_rows=20_001, dead_rows=0, live_rows=100_000), True),
    (Churn(changed_rows=0, dead_rows=30_000, live_rows=100_000, since="2026-11-01 00:00:00+00"), True),
])
def test_reindex_is_advised_only_above_the_churn_share(churn: Churn | None, advised: bool) -> None:
    a = advise.churn_advice(info(rows=100_000), churn)
    assert (a is not None) == advised
    if a:
        assert a.basis == "estimated" and a.sql == ('REINDEX INDEX CONCURRENTLY "public"."items_embedding_idx";',)


# ---- the report: stack change, SQL, JSON, exit codes


CTX = report.Context("lab", "main", 0.99, 10, 50, server_type="cx23", ram_bytes=4 * GiB)
SPEC_DBS = {d.name: d.model_dump(mode="json") for d in (
    DatabaseSpec(name="app", owner="app", extensions=["vector", "pg_trgm"], vector={"iterative_scan": "relaxed_order"}),  # type: ignore[arg-type]
    DatabaseSpec(name="other", owner="o"))}


def db_report(*indexes: IndexReport, error: str | None = None, name: str = "app") -> DatabaseReport:
    return DatabaseReport(name, "app", "host=198.18.0.11 port=5003 dbname=app user=app",
                          SessionView("198.18.0.12", True, 128 * 1024**2, {"hnsw.ef_search": 10}), list(indexes), error)


def measured(*advice: advise.Advice, database: str = "app", method: str = "hnsw") -> IndexReport:
    return IndexReport(info(database=database, method=method), search_with(Point(40, 0.995, 0.001, 50, False)), advice=list(advice))


def ef(value: int, database: str = "app") -> advise.Advice:
    return advise.Advice("ef_search", "measured", "set", "effect", (advise.LOAD_PGVECTOR, f"ALTER DATABASE \"{database}\" SET hnsw.ef_search = {value};"),
                         {"hnsw.ef_search": value})


def test_the_stack_change_is_the_whole_database_entry_the_schema_accepts_with_the_largest_ef_search() -> None:
    settings = advise.database_settings([("app", ef(100)), ("app", ef(40))])
    assert settings == {"app": {"hnsw.ef_search": 100}}
    text = report.stack_change(CTX, SPEC_DBS, settings)
    assert text is not None and "pgfleet deploy lab" in text and "stacks/Pulumi.lab.yaml" in text
    doc = yaml.safe_load(text)
    [cluster] = doc["pgfleet:clusters"]
    assert cluster["name"] == "main"
    [entry] = cluster["databases"]
    spec = DatabaseSpec(**entry)
    assert (spec.name, spec.owner, spec.extensions) == ("app", "app", ["vector", "pg_trgm"])
    assert spec.vector.ef_search == 100 and spec.vector.iterative_scan == "relaxed_order"  # other keys kept
    assert report.settings_sql(settings) == [advise.LOAD_PGVECTOR, 'ALTER DATABASE "app" SET hnsw.ef_search = 100;']


def test_probes_have_no_stack_key_so_only_sql_keeps_them() -> None:
    settings = {"app": {"ivfflat.probes": 8}}
    assert report.stack_change(CTX, SPEC_DBS, settings) is None
    assert report.settings_sql(settings) == [advise.LOAD_PGVECTOR, 'ALTER DATABASE "app" SET ivfflat.probes = 8;']
    assert report.unkept_settings(settings) == ["ivfflat.probes"]


@pytest.mark.parametrize("reports, code", [
    ([db_report(measured())], 0),
    ([db_report()], 0),  # no vector index: nothing misses the target
    ([db_report(measured(ef(64)))], 1),
    ([db_report(measured(advise.Advice("reindex", "estimated", "r", "e")))], 1),
    ([db_report(measured(ef(64)), IndexReport(info(), error="MeasureError: x"))], 2),
    ([db_report(measured()), db_report(error="OperationalError: refused", name="other")], 2),
])
def test_exit_codes(reports: list[DatabaseReport], code: int) -> None:
    assert report.code_for(reports) == code
    assert report.to_json(CTX, reports, SPEC_DBS)["exit_code"] == code


def test_the_json_report_carries_the_index_its_measurement_and_the_advice() -> None:
    r = measured(ef(64))
    r.search = search_with(Point(10, 0.9, 0.001, 50, False), Point(40, 0.98, 0.0012, 50), Point(64, 0.995, 0.0013, 50))
    doc = json.loads(json.dumps(report.to_json(CTX, [db_report(r)], SPEC_DBS)))
    [i] = doc["indexes"]
    assert (i["index"], i["operator"], i["dimensions"], i["owner_settings"]) == ("items_embedding_idx", "<=>", 768, {"hnsw.ef_search": 10})
    assert i["recall"] == 0.9 and i["measured"] and i["search"]["found"]["value"] == 64
    assert (i["fits_shared_buffers"], i["fits_ram"], i["ram_bytes"], i["server_type"]) == (False, True, 4 * GiB, "cx23")
    assert [p["value"] for p in i["search"]["tried"]] == [40, 64]
    assert i["advice"][0]["basis"] == "measured" and i["advice"][0]["sql"] == [advise.LOAD_PGVECTOR, 'ALTER DATABASE "app" SET hnsw.ef_search = 64;']
    assert doc["sql"] == [advise.LOAD_PGVECTOR, 'ALTER DATABASE "app" SET hnsw.ef_search = 64;'] and "ef_search: 64" in doc["stack_change"]
    assert doc["databases"][0]["measured_on"] == {"host": "198.18.0.12", "replica": True}


def test_the_terminal_report_shows_the_table_the_advice_and_the_dsn() -> None:
    buf = io.StringIO()
    r = measured(ef(64))
    r.search = search_with(Point(10, 0.9, 0.001, 50, False), Point(64, 0.995, 0.0013, 50))
    report.render(Console(file=buf, width=200, color_system=None), CTX, [db_report(r)], SPEC_DBS)
    out = buf.getvalue()
    for text in ("lab / main / app", "items_embedding_idx", "recall@10", "0.900", "measured set", "ef_search: 64",
                 'ALTER DATABASE "app" SET hnsw.ef_search = 64;', "--ro --direct --db app", "port=5003", "advice above",
                 "does not fit shared_buffers 128.0 MiB, fits RAM 4.0 GiB (cx23)"):
        assert text in out, (text, out)


# ---- the scratch database


def test_the_scratch_database_is_made_anew_for_the_owner_and_dropped_even_on_failure() -> None:
    setup = session.scratch_setup("app")
    assert setup[0][0] == "postgres" and setup[0][1][0] == "DROP DATABASE IF EXISTS pgfleet_advise_scratch WITH (FORCE)"
    assert 'CREATE DATABASE pgfleet_advise_scratch OWNER "app"' in setup[0][1]
    assert setup[1] == ("pgfleet_advise_scratch", ["CREATE EXTENSION IF NOT EXISTS vector", 'ALTER SCHEMA public OWNER TO "app"'])
    calls: list[tuple[str, list[str]]] = []
    with pytest.raises(RuntimeError, match="boom"):
        with session.scratch_database(lambda db, sts: calls.append((db, list(sts))), "app"):
            raise RuntimeError("boom")
    assert calls[-1] == ("postgres", ["DROP DATABASE IF EXISTS pgfleet_advise_scratch WITH (FORCE)"]) and len(calls) == 3
    # every statement names the scratch database or runs inside it: none reaches a user's database
    assert all(db == "pgfleet_advise_scratch" or all("pgfleet_advise_scratch" in s for s in sts)
               for db, sts in setup + session.scratch_teardown())


def test_a_database_that_does_not_answer_is_reported_not_raised() -> None:
    dead = "host=127.0.0.1 port=1 dbname=app user=app connect_timeout=3"  # nothing listens on loopback port 1
    r = session.advise_database(session.DatabaseTarget("app", "app", dead, dead, dead), session.Settings(0.99), session.Figures(), None)
    assert r.error is not None and "OperationalError" in r.error and r.indexes == []
    assert report.code_for([r]) == 2


def test_rebuild_is_wanted_for_hnsw_that_misses_or_is_slow_only() -> None:
    s = session.Settings(0.99, max_p95=0.05)
    assert session.wants_rebuild(info(), search_with(Point(40, 0.5, 0.001, 50, False)), s)
    assert session.wants_rebuild(info(), search_with(Point(40, 0.995, 0.2, 50, False)), s)
    assert not session.wants_rebuild(info(), search_with(Point(40, 0.995, 0.001, 50, False)), s)
    assert not session.wants_rebuild(info(method="ivfflat"), search_with(Point(4, 0.5, 0.001, 50, False)), s)


# ---- the command


def test_the_figures_are_the_server_types_ram_and_the_larger_types_of_its_family() -> None:
    st = cli_vector._Opened("lab", None)  # cx23: shared x86, 4 GiB
    f = cli_vector._figures(st)
    assert (f.server_type, f.ram_bytes) == ("cx23", 4 * GiB)
    assert [o.name for o in f.options] == ["cx33", "cx43", "cx53"]
    # pgfleet's sizing for each larger type (the vector profile: between a quarter and 40 % of RAM)
    assert [o.shared_buffers_bytes for o in f.options] == [
        sizing.shared_buffers_bytes(st.spec, st.cluster_spec.model_copy(update={"server_type": t})) for t in ("cx33", "cx43", "cx53")]
    assert all(o.memory_bytes // 4 <= o.shared_buffers_bytes <= o.memory_bytes * 0.4 for o in f.options)


def test_the_command_prints_json_and_exits_with_the_reports_code(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(cli_vector._Opened, "inventory", lambda self: None)
    monkeypatch.setattr(cli_vector._Opened, "target", lambda self, d, o: session.DatabaseTarget(d, o, "ro", "rw", "scratch"))
    monkeypatch.setattr(cli_vector, "admin_sql", lambda st, c: None)

    def fake_advise(db, s, figures, admin):  # type: ignore[no-untyped-def]
        seen.append(f"{db.name} {s.target} {s.sample} {figures.server_type}")
        return db_report(measured(ef(64)))

    monkeypatch.setattr(cli_vector, "advise_database", fake_advise)
    r = CliRunner().invoke(app, ["vector", "advise", "lab", "--db", "app", "--target-recall", "0.95", "--sample", "20", "--json"])
    assert r.exit_code == 1, r.output
    assert seen == ["app 0.95 20 cx23"]
    assert json.loads(r.stdout)["sql"] == [advise.LOAD_PGVECTOR, 'ALTER DATABASE "app" SET hnsw.ef_search = 64;']


def test_an_unknown_database_or_cluster_is_exit_2_before_any_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def no(*a: object) -> None:
        raise AssertionError("connected")

    monkeypatch.setattr(cli_vector._Opened, "inventory", no)
    r = CliRunner().invoke(app, ["vector", "advise", "lab", "--db", "nope"])
    assert r.exit_code == 2 and "no database nope" in r.output
    r = CliRunner().invoke(app, ["vector", "advise", "lab", "--cluster", "nope"])
    assert r.exit_code == 2 and "no cluster 'nope'" in r.output
    r = CliRunner().invoke(app, ["vector", "advise", "lab", "--target-recall", "0"])
    assert r.exit_code == 2


def test_index_selection_and_a_named_index_no_database_has(monkeypatch: pytest.MonkeyPatch) -> None:
    s = session.Settings(0.99, only=("items_embedding_idx", "other.docs_idx"))
    assert s.wants(info()) and s.wants(info(schema="other", index="docs_idx")) and not s.wants(info(index="docs_idx"))
    assert session.Settings(0.99).wants(info(index="anything"))
    assert cli_vector.missing_indexes(["items_embedding_idx", "public.items_embedding_idx", "typo_idx"],
                                      [db_report(measured())]) == ["typo_idx"]
    monkeypatch.setattr(cli_vector._Opened, "inventory", lambda self: None)
    monkeypatch.setattr(cli_vector._Opened, "target", lambda self, d, o: session.DatabaseTarget(d, o, "ro", "rw", "scratch"))
    monkeypatch.setattr(cli_vector, "admin_sql", lambda st, c: None)
    monkeypatch.setattr(cli_vector, "advise_database", lambda db, s, f, a: db_report(measured()))
    r = CliRunner().invoke(app, ["vector", "advise", "lab", "--index", "typo_idx"])
    assert r.exit_code == 2 and "no hnsw or ivfflat index typo_idx" in r.output
    assert CliRunner().invoke(app, ["vector", "advise", "lab", "--index", "items_embedding_idx"]).exit_code == 0


def test_a_primary_whose_churn_cannot_be_read_is_named_in_the_report() -> None:
    d = db_report(measured())
    assert report.to_json(CTX, [d], SPEC_DBS)["databases"][0]["churn_error"] is None
    d.churn_error = "OperationalError: connection refused"
    assert report.to_json(CTX, [d], SPEC_DBS)["databases"][0]["churn_error"] == "OperationalError: connection refused"
    out = io.StringIO()
    report.render(Console(file=out, width=200), CTX, [d], SPEC_DBS)
    assert "no churn figures from the primary: OperationalError: connection refused" in out.getvalue()
