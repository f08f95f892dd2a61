"""node-metrics CONFIG.json: what no Debian exporter measures, as a file for node_exporter's textfile collector.

- ``pgfleet_certificate_expiry_timestamp_seconds{endpoint}``: notAfter of each certificate this node serves or presents;
- ``pgfleet_wal_ready_segments``: WAL segments waiting for the archiver (``.ready`` files; pg_stat_archiver has no backlog);
- ``pgfleet_backup_restorable_window_seconds``: how far back the repository can restore (now − the oldest backup's stop).

Written atomically (a temporary file renamed), so node_exporter never reads half a file; a measurement that
fails is left out and counted in ``pgfleet_node_metrics_errors`` with its reason on stderr (the journal).
"""

from __future__ import annotations

import calendar
import os
import sys
import time

from . import backrest
from .config import NodeConfig, json_argument


def certificate_not_after(path: str) -> float:
    """notAfter of a PEM certificate, in epoch seconds (``openssl x509 -enddate``)."""
    out = backrest.run(["openssl", "x509", "-noout", "-enddate", "-in", path], timeout=10)
    return float(calendar.timegm(time.strptime(out.strip().removeprefix("notAfter="), "%b %d %H:%M:%S %Y %Z")))


def ready_segments(data_dir: str) -> int:
    return sum(1 for f in os.listdir(os.path.join(data_dir, "pg_wal", "archive_status")) if f.endswith(".ready"))


def restorable_window(info: list[dict], now: float) -> float | None:
    """Seconds from the oldest backup's stop to ``now`` (``pgbackrest info --output=json``); None without a backup."""
    stops = [b["timestamp"]["stop"] for stanza in info for b in stanza.get("backup", [])]
    return now - min(stops) if stops else None


def _line(name: str, value: float, **labels: str) -> str:
    lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{lab}}} {value}\n" if lab else f"{name} {value}\n"


def collect(conf: dict, now: float) -> tuple[str, list[str]]:
    """The textfile's content and the errors met (each measurement on its own)."""
    out: list[str] = []
    errors: list[str] = []
    out.append("# HELP pgfleet_certificate_expiry_timestamp_seconds notAfter of a certificate this node serves or presents\n"
               "# TYPE pgfleet_certificate_expiry_timestamp_seconds gauge\n")
    for endpoint, path in sorted(conf["certificates"].items()):
        try:
            out.append(_line("pgfleet_certificate_expiry_timestamp_seconds", certificate_not_after(path), endpoint=endpoint))
        except (OSError, backrest.CommandFailed, ValueError) as e:
            errors.append(f"certificate {endpoint} ({path}): {e}")
    if conf["data_dir"]:
        try:
            n = ready_segments(conf["data_dir"])
            out.append("# HELP pgfleet_wal_ready_segments WAL segments waiting for the archiver\n# TYPE pgfleet_wal_ready_segments gauge\n")
            out.append(_line("pgfleet_wal_ready_segments", n))
        except OSError as e:
            errors.append(f"archive status of {conf['data_dir']}: {e}")
    if conf["stanza"]:
        try:
            window = restorable_window(backrest.info(conf["stanza"], conf["postgres_user"], timeout=45), now)
            if window is not None:
                out.append("# HELP pgfleet_backup_restorable_window_seconds now minus the stop time of the oldest backup\n"
                           "# TYPE pgfleet_backup_restorable_window_seconds gauge\n")
                out.append(_line("pgfleet_backup_restorable_window_seconds", round(window, 3)))
        except (OSError, backrest.CommandFailed, ValueError, KeyError) as e:
            errors.append(f"pgbackrest info of stanza {conf['stanza']}: {e}")
    out.append("# HELP pgfleet_node_metrics_errors measurements that failed in the last run (see the unit's journal)\n"
               "# TYPE pgfleet_node_metrics_errors gauge\n")
    out.append(_line("pgfleet_node_metrics_errors", len(errors)))
    return "".join(out), errors


def write_atomically(path: str, content: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str], config: NodeConfig) -> int:
    conf = json_argument(argv, "node-metrics", "CONFIG.json")
    if conf is None:
        return 2
    content, errors = collect(conf, time.time())
    write_atomically(conf["output"], content)
    for e in errors:
        print(f"node-metrics: {e}", file=sys.stderr)
    return 0
