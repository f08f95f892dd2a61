"""The vector benchmark's pure parts (bench/vector.py, bench/vector_corpus.py): parsing and deduplicating Debian's
package lists, the query split, recall as the probe counts it, QPS at equal recall, tuned / stock ratios, the
binary COPY stream and the cold-start windows. No numpy, torch or cluster: the bench extra is not in the test install."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    """bench/<name>.py by its path: bench/ is not put on sys.path, where its deploy.py would shadow the real one."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_load("results_file")  # what bench/vector.py imports as its neighbour
vc = _load("vector_corpus")
vector = _load("vector")

PACKAGES = """Package: alpha
Version: 1
Section: libs
Description: fast   tensor library
Description-md5: 1

Package: alpha-dev
Section: libdevel
Description: fast tensor library
 (headers).
 .
 more

Package: beta
Section: contrib/python
Description: Python   bindings for beta.
Multi-Arch: same

Package: gamma
Section: libs
Description: fast tensor\tlibrary

Package: nodesc
Section: libs
"""


def test_paragraphs_keep_continuation_lines() -> None:
    ps = list(vc.paragraphs(PACKAGES))
    assert [p["Package"] for p in ps] == ["alpha", "alpha-dev", "beta", "gamma", "nodesc"]
    assert ps[1]["Description"] == "fast tensor library\n (headers).\n .\n more"


def test_description_is_synopsis_then_long_text_normalised() -> None:
    assert vc.description("fast tensor library\n (headers).\n .\n more") == "fast tensor library. (headers). more"
    assert vc.description("Python   bindings for beta.") == "Python bindings for beta"
    assert vc.normalise("a\n .\n b\t c ") == "a b c"


def test_package_texts_dedup_and_majority_section() -> None:
    texts = vc.package_texts(PACKAGES)
    # alpha and gamma share one text once whitespace is normalised: libs (2 votes); the component is dropped
    assert texts == {"fast tensor library": "libs", "fast tensor library. (headers). more": "libdevel",
                     "Python bindings for beta": "python"}


def test_section_ties_break_by_name() -> None:
    texts = vc.package_texts("Package: a\nSection: utils\nDescription: x\n\nPackage: b\nSection: admin\nDescription: x\n")
    assert texts == {"x": "admin"}


def test_split_is_by_text_hash_and_stable() -> None:
    texts = {f"text {i}": "libs" if i % 2 else "doc" for i in range(50)}
    a = vc.split(texts, 5, ["s"])
    b = vc.split(dict(reversed(list(texts.items()))), 5, ["other source"])
    assert len(a.queries) == 5 and len(a.docs) == 45
    assert a.queries == b.queries and a.docs == b.docs and a.hash == b.hash  # the source order and name do not matter
    assert not {t for t, _ in a.queries} & {t for t, _ in a.docs}
    assert vc.split({**texts, "one more": "doc"}, 5, ["s"]).hash != a.hash
    with pytest.raises(ValueError):
        vc.split({"a": "x"}, 1, [])


def test_merge_keeps_the_first_category() -> None:
    assert vc.merge({"a": "libs"}, {"a": "doc", "b": "net"}) == {"a": "libs", "b": "net"}


def test_corpus_cache_round_trip(tmp_path: Path) -> None:
    c = vc.split({f"t{i}": "libs" for i in range(20)}, 3, ["test"])
    vc.save_corpus(c, tmp_path)
    assert (tmp_path / "latest").read_text().strip() == c.hash
    back = vc.load_corpus(cache=tmp_path)
    assert back.docs == c.docs and back.queries == c.queries and back.hash == c.hash


def test_percentiles_and_summary() -> None:
    lat = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert vector.percentile(lat, 50) == 0.05 and vector.percentile(lat, 95) == 0.095 and vector.percentile(lat, 99) == 0.099
    s = vector.latency_summary(lat, 2.0)
    assert s == {"queries": 100, "qps": 50.0, "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0}
    assert vector.latency_summary([], 1.0) == {"queries": 0, "qps": 0.0}


def test_recall_counts_ties_as_the_probe_does() -> None:
    exact = [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert vector.mean_recall([[(1, 0.1), (2, 0.2), (3, 0.3)]], [exact]) == 1.0
    assert vector.mean_recall([[(1, 0.1), (9, 0.5), (8, 0.6)]], [exact]) == pytest.approx(1 / 3, abs=1e-4)
    # another row as near as the exact 3rd counts (which of equally distant rows make the top k is arbitrary)
    assert vector.mean_recall([[(1, 0.1), (2, 0.2), (7, 0.3)]], [exact]) == 1.0
    # a query whose filter keeps no row is left out, not counted as 0 or 1
    assert vector.mean_recall([[(1, 0.1)], []], [exact[:1], []]) == 1.0
    assert vector.mean_recall([[]], [[]]) is None


def test_qps_at_recall_interpolates() -> None:
    curve = [{"ef_search": 10, "recall": 0.80, "qps": 1000.0}, {"ef_search": 40, "recall": 0.90, "qps": 600.0},
             {"ef_search": 100, "recall": 0.98, "qps": 200.0}, {"ef_search": 200, "recall": 0.98, "qps": 150.0}]
    assert vector.qps_at_recall(curve, 0.85) == pytest.approx(800.0)
    assert vector.qps_at_recall(curve, 0.90) == 600.0
    assert vector.qps_at_recall(curve, 0.94) == pytest.approx(400.0)
    assert vector.qps_at_recall(curve, 0.98) == 200.0  # the faster of the two points at that recall
    assert vector.qps_at_recall(curve, 0.99) is None and vector.qps_at_recall(curve, 0.5) is None
    assert vector.qps_at_recall([], 0.9) is None


def _run(build: float, qps_scale: float, p95: float) -> dict:
    return {"load": {"index_build_s": build},
            "recall": {"curve": [{"recall": 0.85, "qps": 1000 * qps_scale}, {"recall": 0.99, "qps": 300 * qps_scale}]},
            "clients": {"runs": [{"endpoint": "pooled-ro", "clients": 8, "qps": 500 * qps_scale, "p95_ms": p95}]}}


def test_ratios_tuned_over_stock() -> None:
    r = vector.ratios(_run(60.0, 2.0, 4.0), _run(120.0, 1.0, 8.0))
    assert r["index_build_time"] == 0.5
    assert r["qps_at_recall"] == {"0.90": 2.0, "0.95": 2.0, "0.98": 2.0, "0.99": 2.0}
    assert r["p95"] == {"pooled-ro@8": 0.5} and r["qps_fixed_ef_search"] == {"pooled-ro@8": 2.0}
    # a recall only one curve reaches is left out; a missing phase gives None / nothing
    short = _run(60.0, 2.0, 4.0)
    short["recall"]["curve"] = [{"recall": 0.85, "qps": 900}, {"recall": 0.92, "qps": 700}]
    assert set(vector.ratios(short, _run(120.0, 1.0, 8.0))["qps_at_recall"]) == {"0.90"}
    assert vector.ratios({}, {}) == {"index_build_time": None, "qps_at_recall": {}, "p95": {}, "qps_fixed_ef_search": {}}


def test_merge_run_keeps_the_other_label_and_adds_ratios() -> None:
    doc = vector.merge_run({}, "stock", "load", {"index_build_s": 100.0})
    assert "tuned_over_stock" not in doc
    doc = vector.merge_run(doc, "tuned", "load", {"index_build_s": 50.0})
    doc = vector.merge_run(doc, "tuned", "recall", {"curve": []})
    assert doc["runs"]["stock"] == {"load": {"index_build_s": 100.0}}
    assert set(doc["runs"]["tuned"]) == {"load", "recall"}
    assert doc["tuned_over_stock"]["index_build_time"] == 0.5


def test_windows_p95_per_five_seconds() -> None:
    samples = [(t / 10, 0.001 * (1 + (t < 50))) for t in range(0, 600)]  # 2 ms in the first 5 s, then 1 ms
    w = vector.windows(samples, 5, 60)
    assert len(w) == 12 and w[0] == {"from_s": 0.0, "queries": 50, "p95_ms": 2.0}
    assert w[1]["p95_ms"] == 1.0 and w[-1]["from_s"] == 55.0
    assert vector.windows([(61.0, 0.5)], 5, 60)[-1]["queries"] == 0  # past the span: not counted


def test_pick_categories_by_selectivity() -> None:
    counts = [("libs", 10000), ("python", 2100), ("net", 480), ("vcs", 95), ("zope", 10)]
    chosen = vector.pick_categories(counts, 100000, (0.10, 0.02, 0.005, 0.001))
    assert [c for c, _ in chosen] == ["libs", "python", "net", "vcs"]
    assert [c for c, _ in vector.pick_categories(counts[:2], 100000, (0.10, 0.1, 0.1))] == ["libs", "python"]


def test_vector_text_round_trips_float32() -> None:
    v = [struct.unpack("!f", struct.pack("!f", x))[0] for x in (0.1, -0.333333, 1e-8)]
    text = vector.vector_text(v)
    assert text.startswith("[") and text.endswith("]")
    assert [struct.unpack("!f", struct.pack("!f", float(x)))[0] for x in text[1:-1].split(",")] == v


def test_copy_binary_layout() -> None:
    floats = struct.pack("!2f", 0.5, -1.0)
    data = b"".join(vector.copy_binary([(7, "libs", floats)]))
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
    assert data.startswith(header) and data.endswith(b"\xff\xff")
    row = data[len(header):-2]
    assert struct.unpack("!hiq", row[:14]) == (3, 8, 7)
    assert struct.unpack("!i", row[14:18]) == (4,) and row[18:22] == b"libs"
    assert struct.unpack("!ihh", row[22:30]) == (12, 2, 0) and row[30:] == floats
