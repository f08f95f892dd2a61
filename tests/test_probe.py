"""Unit tests of the recall probe (pgfleet/probe/), without a database, and of its import contract.

The parts that need PostgreSQL (sampling, the two top-k queries, catalogue
look-ups) run in the lab; here: the recall arithmetic, the exact plan check,
the configuration the deploy writes, the SQL text, the exposition, and that
the package runs copied alone.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgfleet import contract
from pgfleet.monitoring import metrics
from pgfleet.probe import config, exporter, measure
from pgfleet.probe.__main__ import main
from pgfleet.probe.config import ConfigError, ProbeConfig, Watch
from pgfleet.probe.exporter import Outcome, ProbeCollector
from pgfleet.probe.measure import MeasureError, Measurement
from pgfleet.schema import VectorIndexWatchSpec

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pgfleet" / "probe"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PASSWORD = "it's a \\ pass=word"


def spec_watch(**kw: object) -> dict:
    """A watch as the deploy hands it to build(): the spec's fields, the cluster resolved, and the login."""
    w = VectorIndexWatchSpec(**{"database": "app", "table": "public.items", "column": "embedding", **kw}).model_dump()  # type: ignore[arg-type]
    return {**w, "cluster": "main", "hosts": ["10.42.1.11", "10.42.1.12", "10.42.1.13"], "user": "app", "password": PASSWORD}


def built(*watches: dict, **kw: object) -> dict:
    args = {"listen_port": contract.PGFLEET_EXPORTER_PORT, "interval": contract.PROBE_INTERVAL,
            "statement_timeout_ms": contract.PROBE_STATEMENT_TIMEOUT_MS, **kw}
    return config.build(list(watches) or [spec_watch()], ca_file="/etc/pgfleet/tls/ca.crt", port=contract.HAPROXY_DIRECT_RO,
                        **args)  # type: ignore[arg-type]


def a_watch(**kw: object) -> Watch:
    return ProbeConfig.from_dict(built(spec_watch(**kw))).watches[0]


# ---- recall@k


def test_the_own_row_is_dropped_by_key_on_both_sides_even_behind_a_duplicate() -> None:
    # "dup" holds the same vector as the query: distance 0 like the own row, and listed before it
    exact = measure.top_k([("dup", 0.0), (7, 0.0), ("a", 0.1), ("b", 0.2)], own=7, k=2)
    ann = measure.top_k([(7, 0.0), ("dup", 0.0), ("b", 0.2), ("c", 0.3)], own=7, k=2)
    assert exact == [("dup", 0.0), ("a", 0.1)] and ann == [("dup", 0.0), ("b", 0.2)]
    assert measure.query_recall(ann, exact) == 0.5
    # an ANN result that missed the own row still gives k others
    assert measure.top_k([("a", 0.1), ("b", 0.2), ("c", 0.3)], own=7, k=2) == [("a", 0.1), ("b", 0.2)]


def test_recall_counts_a_row_tied_with_the_kth_as_found_and_a_farther_one_as_missed() -> None:
    exact = [("a", 0.1), ("b", 0.2), ("c", 0.3)]
    assert measure.query_recall([("a", 0.1), ("b", 0.2), ("tie", 0.3)], exact) == 1.0
    assert measure.query_recall([("a", 0.1), ("b", 0.2), ("far", 0.31)], exact) == pytest.approx(2 / 3)
    assert measure.query_recall([("a", 0.1)], exact) == pytest.approx(1 / 3)  # the ANN query found fewer than k
    assert measure.query_recall([], exact) == 0.0
    assert measure.query_recall([("a", 0.1)], []) is None


def test_recall_is_the_mean_over_queries_that_have_neighbours() -> None:
    pairs = [([("a", 0.1), ("b", 0.2)], [("a", 0.1), ("b", 0.2)]),  # 1
             ([("x", 0.5), ("b", 0.2)], [("a", 0.1), ("b", 0.2)]),  # 0.5
             ([], [])]  # a one-row table: nothing to find, left out
    assert measure.recall(pairs) == (0.75, 2)
    with pytest.raises(MeasureError, match="no sampled vector"):
        measure.recall([([], [])])


def test_rows_without_a_vector_are_nobodys_neighbour() -> None:
    assert measure.neighbours([(1, 0.5), (2, Decimal("0.75")), (3, None)]) == [(1, 0.5), (2, 0.75)]


def test_k_limits_both_lists() -> None:
    rows = [(i, i / 10) for i in range(1, 12)]
    assert [key for key, _ in measure.top_k(rows, own=1, k=10)] == list(range(2, 12))
    assert len(measure.top_k(rows, own=99, k=10)) == 10


# ---- the exact side must be exact


def _node(node_type: str, *children: dict, **kw: object) -> dict:
    return {"Node Type": node_type, **kw, **({"Plans": list(children)} if children else {})}


def test_a_plan_with_an_index_scan_anywhere_is_rejected() -> None:
    nested = [{"Plan": _node("Limit", _node("Sort", _node("Index Scan", **{"Index Name": "items_embedding_idx"})))}]
    with pytest.raises(MeasureError, match="Index Scan"):
        measure.check_exact_plan(nested)
    bitmap = [{"Plan": _node("Limit", _node("Sort", _node("Bitmap Heap Scan", _node("Bitmap Index Scan"))))}]
    with pytest.raises(MeasureError, match="Bitmap Index Scan"):
        measure.check_exact_plan(bitmap)
    init_plan = [{"Plan": _node("Limit", _node("Result", **{"Parent Relationship": "InitPlan"}),
                                 _node("Sort", _node("Seq Scan")), _node("Index Only Scan"))}]
    with pytest.raises(MeasureError, match="Index Only Scan"):
        measure.check_exact_plan(init_plan)


def test_a_seq_scan_and_sort_plan_passes_and_an_empty_answer_does_not() -> None:
    measure.check_exact_plan([{"Plan": _node("Limit", _node("Sort", _node("Seq Scan", **{"Relation Name": "items"})))}])
    measure.check_exact_plan([{"Plan": _node("Limit", _node("Gather Merge", _node("Sort", _node("Parallel Seq Scan"))))}])
    for nothing in (None, [], [{}], "not json"):
        with pytest.raises(MeasureError, match="no plan"):
            measure.check_exact_plan(nothing)


# ---- SQL text


def test_schema_table_is_two_quoted_names() -> None:
    assert measure.table_identifier("public.items").as_string(None) == '"public"."items"'
    assert measure.table_identifier("items").as_string(None) == '"items"'
    assert measure.table_identifier('we"ird').as_string(None) == '"we""ird"'


def test_the_neighbour_query_has_the_application_shape_cast_to_the_column_type() -> None:
    w = a_watch(operator="<->", k=5)
    text = measure.neighbours_query(w, "vector").as_string(None)
    assert text == ('SELECT "id", "embedding" <-> %(q)s::vector FROM "public"."items" '
                    'ORDER BY "embedding" <-> %(q)s::vector LIMIT %(n)s')
    explain = measure.neighbours_query(w, "halfvec", sql.Literal("[1,2]"), sql.Literal(6)).as_string(None)
    assert explain.endswith("ORDER BY \"embedding\" <-> '[1,2]'::halfvec LIMIT 6")


def sql_strings(path: Path) -> list[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body and isinstance(n.body[0], ast.Expr)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_only_the_exact_transaction_changes_settings_and_only_with_set_local() -> None:
    sets = [s for s in sql_strings(PACKAGE / "measure.py") if re.search(r"\bSET\b", s)]
    assert sets == ["SET LOCAL {} = off"]
    assert measure.INDEX_SCANS == ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")
    assert not [s for p in PACKAGE.glob("*.py") for s in sql_strings(p) if "ef_search" in s or "probes" in s.split()]


def test_an_operator_outside_pgvectors_is_refused_because_it_is_written_into_the_sql() -> None:
    with pytest.raises(ConfigError, match="operator"):
        Watch(**{**built()["watches"][0], "operator": "<-> 1; DROP TABLE items; --"})


# ---- configuration


def test_build_writes_connection_strings_libpq_parses_back() -> None:
    w = ProbeConfig.from_dict(built()).watches[0]
    common = {"host": "10.42.1.11,10.42.1.12,10.42.1.13", "dbname": "app", "user": "app", "password": PASSWORD,
              "sslmode": "verify-full", "sslrootcert": "/etc/pgfleet/tls/ca.crt", "connect_timeout": "5", "target_session_attrs": "any"}
    # one replica for both sides; the exact side's sequential scans are bounded
    assert conninfo_to_dict(w.dsn) == {**common, "port": str(contract.HAPROXY_DIRECT_RO),
                                       "options": f"-c statement_timeout={contract.PROBE_STATEMENT_TIMEOUT_MS}"}
    assert (w.cluster, w.table, w.column, w.key, w.operator, w.k, w.sample_size, w.target_recall) == (
        "main", "public.items", "embedding", "id", "<=>", 10, 100, 0.95)


@pytest.mark.parametrize("password", ["", "plain", "a'b", "a\\b", "\\'", "sp ace", "x='y' z", "''", "\\\\"])
def test_conninfo_quoting_survives_any_password(password: str) -> None:
    assert conninfo_to_dict(config.conninfo(password=password, user="app"))["password"] == password


def test_the_config_file_round_trips_and_has_the_documented_defaults() -> None:
    doc = built(spec_watch(), spec_watch(table="vectors", column="v", key="pk", operator="<#>", k=3, sample_size=7, target_recall=0.8))
    cfg = ProbeConfig.loads(json.dumps(doc))
    assert ProbeConfig.loads(cfg.dumps()) == cfg and cfg.to_dict() == doc
    assert (cfg.listen_address, cfg.listen_port, cfg.interval) == ("127.0.0.1", contract.PGFLEET_EXPORTER_PORT, 60)
    assert [w.labels for w in cfg.watches][1] == {"cluster": "main", "database": "app", "table": "vectors", "column": "v"}


def test_build_takes_exactly_the_specs_watch_fields_plus_the_login() -> None:
    assert set(config.WATCH_KEYS) == set(VectorIndexWatchSpec.model_fields) | {"hosts", "user", "password"}
    with pytest.raises(ConfigError, match="missing"):
        built({k: v for k, v in spec_watch().items() if k != "password"})
    with pytest.raises(ConfigError, match="hosts"):
        built({**spec_watch(), "hosts": []})


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(extra=1), "unknown keys"),
    (lambda d: d["watches"][0].pop("dsn"), "missing"),
    (lambda d: d["watches"].append(dict(d["watches"][0])), "same cluster"),
    (lambda d: d["watches"][0].update(k=0), "k must"),
    (lambda d: d["watches"][0].update(target_recall=1.5), "target_recall"),
    (lambda d: d["watches"][0].update(table="a.b.c"), "schema.table"),
    (lambda d: d.update(interval=0), "interval"),
    (lambda d: d.update(listen_port=70000), "listen_port"),
])
def test_a_config_the_probe_cannot_run_is_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = built()
    change(doc)
    with pytest.raises(ConfigError, match=message):
        ProbeConfig.from_dict(doc)


def test_main_refuses_a_broken_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "probe.json").write_text('{"watches": [], "bogus": 1}')
    assert main([str(tmp_path / "probe.json")]) == 2
    assert "unknown keys: bogus" in capsys.readouterr().err


# ---- index size and memory


def a_measurement(**kw: object) -> Measurement:
    values = {"recall": 0.97, "queries": 100, "ann_seconds": 0.002, "exact_seconds": 0.05, "rows": 5000, "index": "items_embedding_idx",
              "index_size_bytes": 100 * 2**20, "shared_buffers_bytes": 128 * 2**20, "effective_cache_size_bytes": 4 * 2**30}
    return Measurement(**{**values, **kw})  # type: ignore[arg-type]


def test_an_index_fits_up_to_and_including_the_limit() -> None:
    m = a_measurement(index_size_bytes=128 * 2**20)
    assert m.fits_shared_buffers and m.fits_memory
    m = a_measurement(index_size_bytes=128 * 2**20 + 1)
    assert not m.fits_shared_buffers and m.fits_memory
    m = a_measurement(index_size_bytes=5 * 2**30)
    assert not m.fits_shared_buffers and not m.fits_memory


# ---- exposition


def scrape(collector: ProbeCollector) -> dict[str, dict[tuple[str, ...], float]]:
    """name -> {label values (cluster, database, table, column): value}, parsed from the text exposition."""
    text = generate_latest(exporter.registry_for(collector)).decode()
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(s.labels[k] for k in exporter.LABELS)] = s.value
    return out


def test_the_exposition_holds_a_measured_watch_and_a_failing_one_without_stale_values() -> None:
    good, bad = a_watch(), a_watch(table="other", target_recall=0.9)
    g, b = tuple(good.labels.values()), tuple(bad.labels.values())
    collector = ProbeCollector([good, bad])
    assert scrape(collector) == {"pgfleet_vector_recall_target": {g: 0.95, b: 0.9}}  # nothing measured yet
    collector.record(Outcome(bad, 1000.0, measurement=a_measurement(recall=0.5)))
    collector.record(Outcome(good, 2000.0, measurement=a_measurement(index_size_bytes=200 * 2**20)))
    collector.record(Outcome(bad, 2001.0, error="UndefinedTable: relation does not exist"))
    series = scrape(collector)
    assert series["pgfleet_vector_probe_success"] == {g: 1.0, b: 0.0}
    assert series["pgfleet_vector_probe_last_success_timestamp_seconds"] == {g: 2000.0, b: 1000.0}
    assert series["pgfleet_vector_recall"] == {g: 0.97}  # the failing watch's 0.5 is gone, not stale
    assert series["pgfleet_vector_ann_seconds"] == {g: 0.002} and series["pgfleet_vector_exact_seconds"] == {g: 0.05}
    assert series["pgfleet_vector_rows"] == {g: 5000.0} and series["pgfleet_vector_index_size_bytes"] == {g: 200.0 * 2**20}
    assert series["pgfleet_vector_index_fits_shared_buffers"] == {g: 0.0} and series["pgfleet_vector_index_fits_memory"] == {g: 1.0}
    assert set(series) == set(exporter.METRICS)


def test_the_once_report_carries_no_connection_string() -> None:
    w = a_watch()
    reports = [Outcome(w, 1.0, measurement=a_measurement()).report(), Outcome(w, 1.0, error="boom").report()]
    assert reports[0]["ok"] and reports[0]["recall"] == 0.97 and reports[0]["fits_memory"] is True
    assert reports[1] == {**w.labels, "target_recall": 0.95, "ok": False, "error": "boom"}
    assert PASSWORD not in json.dumps(reports) and "dsn" not in json.dumps(reports)


def test_every_probe_metric_is_in_the_catalogue_and_every_vector_metric_there_is_the_probes() -> None:
    for name in exporter.METRICS:
        assert metrics.BY_NAME[name].source == "pgfleet", name
        assert not metrics.BY_NAME[name].fault_only, f"{name} exists whenever a watch is configured (the lab watches one)"
    assert {n for n in metrics.BY_NAME if n.startswith("pgfleet_vector_")} == set(exporter.METRICS)


# ---- runs alone on the monitoring host


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(module, relative level) of every import statement in a file."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level))
    return out


def test_the_package_imports_only_the_standard_library_psycopg_and_prometheus_client() -> None:
    allowed = set(sys.stdlib_module_names) | {"psycopg", "prometheus_client"}
    files = sorted(PACKAGE.glob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "__main__.py", "config.py", "measure.py", "exporter.py"}
    bad = [(p.name, m) for p in files for m, level in imported_modules(p) if level == 0 and m.split(".")[0] not in allowed]
    assert not bad, bad
    # relative imports stay inside the package (level 1): the copy is named pgfleet_probe, with no parent
    assert all(level <= 1 for p in files for _, level in imported_modules(p))


def test_the_import_contract_forbids_every_other_part_of_pgfleet_and_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    probe = next(c for c in contracts if c["id"] == "probe")
    parts = {f"pgfleet.{p.stem}" for p in (ROOT / "pgfleet").iterdir()
             if p.name not in ("probe", "__init__.py", "__pycache__") and (p.suffix == ".py" or p.is_dir())}
    assert parts <= set(probe["forbidden_modules"]), sorted(parts - set(probe["forbidden_modules"]))
    node = next(c for c in contracts if c["id"] == "node")
    assert "pgfleet.probe" in node["forbidden_modules"] and "prometheus_client" in node["forbidden_modules"]

    shutil.copytree(ROOT / "pgfleet", tmp_path / "pgfleet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "roles", tmp_path / "roles", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "pgfleet" / "probe" / "bad.py").write_text("from pgfleet import contract\nfrom pgfleet.node import patroni\nimport yaml\n")
    p = subprocess.run([str(LINT_IMPORTS), "--config", str(tmp_path / "pyproject.toml"), "--no-cache", "--contract", "probe"],
                       cwd=tmp_path, capture_output=True, text=True, env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(tmp_path)})
    assert p.returncode == 1, p.stdout + p.stderr
    for edge in ("pgfleet.probe.bad -> pgfleet.contract", "pgfleet.probe.bad -> pgfleet.node.patroni", "pgfleet.probe.bad -> yaml"):
        assert edge in p.stdout, p.stdout


def test_the_copied_package_runs_once_and_reports_an_unreachable_cluster_without_crashing(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "pgfleet_probe", ignore=shutil.ignore_patterns("__pycache__"))
    doc = built(spec_watch())
    for w in doc["watches"]:  # nothing listens on port 1 of loopback: the connection is refused at once
        w["dsn"] = config.dsn(hosts=["127.0.0.1"], port=1, dbname="app", user="app", password=PASSWORD, ca_file="/nonexistent")
    (tmp_path / "probe.json").write_text(json.dumps(doc))
    (tmp_path / "empty.json").write_text(json.dumps({"watches": []}))

    def once(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-B", "-m", "pgfleet_probe", "--once", name], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})

    p = once("empty.json")
    assert p.returncode == 0 and json.loads(p.stdout) == {"watches": []}, p.stderr
    p = once("probe.json")
    assert p.returncode == 1, p.stdout + p.stderr
    [report] = json.loads(p.stdout)["watches"]
    assert report["ok"] is False and "OperationalError" in report["error"] and "recall" not in report
    assert "OperationalError" in p.stderr and PASSWORD not in p.stdout + p.stderr
