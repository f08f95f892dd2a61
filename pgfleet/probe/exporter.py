"""The Prometheus side: the latest outcome of every watch as gauges, measured every interval, served over HTTP.

A failed measurement sets ``pgfleet_vector_probe_success`` to 0 and removes
that watch's measured series (absent, never a stale value that looks fine);
the target and the time of the last success stay, so an alert can tell how
long a watch has been blind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .config import ProbeConfig, Watch
from .measure import Measurement, measure

LABELS = ("cluster", "database", "table", "column")
#: name -> help; the measured ones exist only after a successful measurement
MEASURED = {
    "pgfleet_vector_recall": "recall@k of the ANN query (the application role's settings) against the exact top-k",
    "pgfleet_vector_ann_seconds": "mean seconds of one ANN query, with the application role's settings",
    "pgfleet_vector_exact_seconds": "mean seconds of one exact (no index) query on a replica",
    "pgfleet_vector_rows": "rows in the watched table",
    "pgfleet_vector_index_size_bytes": "size of the watched hnsw/ivfflat index",
    "pgfleet_vector_index_fits_shared_buffers": "1 when the index is no larger than shared_buffers",
    "pgfleet_vector_index_fits_memory": "1 when the index is no larger than effective_cache_size",
}
ALWAYS = {
    "pgfleet_vector_recall_target": "the recall the watch is expected to keep",
    "pgfleet_vector_probe_success": "1 when the last measurement of the watch succeeded (its error is in the probe's log otherwise)",
    "pgfleet_vector_probe_last_success_timestamp_seconds": "when the last successful measurement of the watch finished (epoch s)",
}
METRICS = {**MEASURED, **ALWAYS}

log = logging.getLogger("pgfleet_probe")


class Stopped(BaseException):
    """SIGTERM: leave the loop at once, whatever it is waiting for (not an Exception: no handler swallows it)."""


@dataclass(frozen=True)
class Outcome:
    watch: Watch
    #: epoch seconds when the measurement ended
    finished: float
    measurement: Measurement | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.measurement is not None

    def report(self) -> dict[str, Any]:
        """What ``--once`` prints (never a connection string: they hold passwords)."""
        out: dict[str, Any] = {**self.watch.labels, "target_recall": self.watch.target_recall, "ok": self.ok, "error": self.error}
        if self.measurement:
            m = self.measurement
            out.update(asdict(m), fits_shared_buffers=m.fits_shared_buffers, fits_memory=m.fits_memory)
        return out


def run(watch: Watch) -> Outcome:
    """Measure one watch; any error is logged and returned, never raised (the next interval retries)."""
    try:
        m = measure(watch)
    except Exception as e:  # psycopg.Error, MeasureError, and whatever else a server may answer
        message = f"{type(e).__name__}: {' '.join(str(e).split())}"
        log.error("%s: %s", watch.name, message)
        return Outcome(watch, time.time(), error=message)
    log.info("%s: recall %.4f over %d queries (target %s), index %s %d bytes", watch.name, m.recall, m.queries,
             watch.target_recall, m.index, m.index_size_bytes)
    return Outcome(watch, time.time(), measurement=m)


class ProbeCollector(Collector):
    """Turns the latest outcome of each watch into metric families at scrape time."""

    def __init__(self, watches: Iterable[Watch]) -> None:
        self._watches = tuple(watches)
        self._latest: dict[Watch, Outcome] = {}
        self._last_success: dict[Watch, float] = {}
        self._lock = threading.Lock()

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            self._latest[outcome.watch] = outcome
            if outcome.ok:
                self._last_success[outcome.watch] = outcome.finished

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # the registry need not collect at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {name: GaugeMetricFamily(name, text, labels=LABELS) for name, text in METRICS.items()}
        with self._lock:
            latest, last_success = dict(self._latest), dict(self._last_success)
        for w in self._watches:
            labels = [w.labels[name] for name in LABELS]
            families["pgfleet_vector_recall_target"].add_metric(labels, w.target_recall)
            if w in last_success:
                families["pgfleet_vector_probe_last_success_timestamp_seconds"].add_metric(labels, last_success[w])
            outcome = latest.get(w)
            if outcome is None:
                continue  # not measured yet
            families["pgfleet_vector_probe_success"].add_metric(labels, 1.0 if outcome.ok else 0.0)
            if m := outcome.measurement:
                for name, value in (("pgfleet_vector_recall", m.recall), ("pgfleet_vector_ann_seconds", m.ann_seconds),
                                    ("pgfleet_vector_exact_seconds", m.exact_seconds), ("pgfleet_vector_rows", m.rows),
                                    ("pgfleet_vector_index_size_bytes", m.index_size_bytes),
                                    ("pgfleet_vector_index_fits_shared_buffers", int(m.fits_shared_buffers)),
                                    ("pgfleet_vector_index_fits_memory", int(m.fits_memory))):
                    families[name].add_metric(labels, float(value))
        yield from (f for f in families.values() if f.samples)  # no HELP lines for series that do not exist


def registry_for(collector: ProbeCollector) -> CollectorRegistry:
    """A private registry: only the probe's series (no process or platform collectors beside them)."""
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def serve(config: ProbeConfig) -> None:
    """Serve the metrics and measure every watch every ``interval`` seconds, the first time at once; runs until :class:`Stopped`."""
    collector = ProbeCollector(config.watches)
    start_http_server(config.listen_port, addr=config.listen_address, registry=registry_for(collector))
    log.info("serving %d watches on %s:%d, every %ss", len(config.watches), config.listen_address, config.listen_port, config.interval)
    next_start = time.monotonic()
    while True:
        for w in config.watches:
            collector.record(run(w))
        next_start = max(next_start + config.interval, time.monotonic())  # a slow round delays the next, never doubles it
        time.sleep(max(0.0, next_start - time.monotonic()))
