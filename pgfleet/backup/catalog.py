"""What the backup repository holds, and which moments a restore can reach.

Parsed from ``pgbackrest info --output=json``. A point-in-time restore needs
a backup that *ended* before the target (a backup is consistent only from its
stop time) and archived WAL up to the target: the restorable window runs from
the earliest backup's stop time to the last archived WAL's time (PostgreSQL's
``pg_stat_archiver.last_archived_time`` on the primary).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from pgfleet.errors import PgfleetError


class RestoreRefused(PgfleetError):
    """A restore target outside what the repository can reach; nothing was touched."""


@dataclass(frozen=True)
class Backup:
    label: str
    type: str  # full | diff | incr
    start: dt.datetime
    stop: dt.datetime
    size: int  # database size, bytes
    repo_size: int  # bytes stored in the repository (compressed)
    wal_start: str
    wal_stop: str


@dataclass(frozen=True)
class Catalog:
    stanza: str
    status_code: int  # 0 ok, 2 no valid backups, …
    status_message: str
    backups: tuple[Backup, ...]
    wal_min: str | None
    wal_max: str | None


def _ts(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)


def parse_info(text: str, stanza: str) -> Catalog:
    """The stanza's entry of ``pgbackrest info --output=json``."""
    try:
        stanzas = json.loads(text)
    except json.JSONDecodeError as e:
        raise PgfleetError(f"pgbackrest info did not print JSON ({e}): {text[:300]}") from None
    for s in stanzas:
        if s.get("name") != stanza:
            continue
        backups = tuple(
            Backup(
                label=b["label"], type=b["type"],
                start=_ts(b["timestamp"]["start"]), stop=_ts(b["timestamp"]["stop"]),
                size=int(b.get("info", {}).get("size", 0)),
                repo_size=int(b.get("info", {}).get("repository", {}).get("size", 0)),
                wal_start=(b.get("archive") or {}).get("start") or "", wal_stop=(b.get("archive") or {}).get("stop") or "",
            )
            for b in s.get("backup", [])
            if not b.get("error")
        )
        archives = [a for a in s.get("archive", []) if a.get("min")]
        return Catalog(
            stanza=stanza, status_code=int(s.get("status", {}).get("code", -1)),
            status_message=str(s.get("status", {}).get("message", "")), backups=backups,
            wal_min=archives[0]["min"] if archives else None, wal_max=archives[-1]["max"] if archives else None,
        )
    raise PgfleetError(f"the backup repository has no stanza {stanza!r}: run 'pgfleet deploy' to create it")


@dataclass(frozen=True)
class Window:
    earliest: dt.datetime | None  # None: no backup yet
    latest: dt.datetime | None  # None: unknown (no primary to ask)

    def __str__(self) -> str:
        if self.earliest is None:
            return "nothing is restorable yet (no completed backup)"
        end = self.latest.isoformat(timespec="seconds") if self.latest else "the last archived WAL"
        return f"from {self.earliest.isoformat(timespec='seconds')} to {end}"


def window(catalog: Catalog, last_archived: dt.datetime | None) -> Window:
    earliest = min((b.stop for b in catalog.backups), default=None)
    latest = last_archived
    if earliest is not None and latest is not None and latest < earliest:
        latest = earliest
    return Window(earliest, latest)


def check_target(w: Window, target: dt.datetime) -> None:
    """Refuse, with the window, a target the repository cannot reach."""
    if target.tzinfo is None:
        raise RestoreRefused(f"restore target {target.isoformat()} has no time zone: give one, e.g. {target.isoformat()}+00:00")
    if w.earliest is None:
        raise RestoreRefused(f"cannot restore to {target.isoformat()}: {w}. Take one with 'pgfleet backup STACK'")
    if target < w.earliest:
        raise RestoreRefused(f"cannot restore to {target.isoformat(timespec='seconds')}: it is before the earliest backup ended. "
                             f"Restorable: {w}")
    if w.latest is not None and target > w.latest:
        raise RestoreRefused(f"cannot restore to {target.isoformat(timespec='seconds')}: no WAL archived that far yet. "
                             f"Restorable: {w}")


def base_backup_for(catalog: Catalog, target: dt.datetime | None) -> Backup:
    """The newest backup that ended before ``target`` (``None``: the newest of all)."""
    usable = [b for b in catalog.backups if target is None or b.stop <= target]
    if not usable:
        raise RestoreRefused(f"no backup ended before {target}")
    return max(usable, key=lambda b: b.stop)
