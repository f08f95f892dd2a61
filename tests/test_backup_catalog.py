"""Backup catalog parsing and the restorable window (refusals name the window)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pgfleet.backup.catalog import RestoreRefused, base_backup_for, check_target, parse_info, window
from pgfleet.errors import PgfleetError

T0 = 1_764_000_000  # 2025-11-24T16:00:00Z


def _info(backups: list[dict], stanza: str = "main") -> str:
    return json.dumps([{
        "name": stanza, "status": {"code": 0, "message": "ok"}, "cipher": "aes-256-cbc",
        "archive": [{"id": "17-1", "min": "000000010000000000000003", "max": "00000002000000000000000A"}],
        "backup": backups,
    }])


def _backup(label: str, typ: str, start: int, stop: int, error: bool = False) -> dict:
    return {"label": label, "type": typ, "error": error, "timestamp": {"start": start, "stop": stop},
            "archive": {"start": "000000010000000000000003", "stop": "000000010000000000000004"},
            "info": {"size": 31_000_000, "delta": 31_000_000, "repository": {"size": 4_000_000, "delta": 4_000_000}}}


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)


def test_parse_info_reads_backups_and_wal_range() -> None:
    c = parse_info(_info([_backup("20251124-152000F", "full", T0, T0 + 30), _backup("20251124-160000D_20251124-152000F", "diff", T0 + 2400, T0 + 2410)]), "main")
    assert [b.type for b in c.backups] == ["full", "diff"]
    assert c.backups[0].stop == _utc(T0 + 30) and c.backups[0].repo_size == 4_000_000
    assert (c.wal_min, c.wal_max) == ("000000010000000000000003", "00000002000000000000000A")
    assert c.status_code == 0


def test_failed_backups_are_not_restorable() -> None:
    c = parse_info(_info([_backup("x", "full", T0, T0 + 30, error=True)]), "main")
    assert c.backups == ()
    with pytest.raises(RestoreRefused, match="no completed backup"):
        check_target(window(c, None), _utc(T0 + 100))


def test_unknown_stanza_is_a_clear_error() -> None:
    with pytest.raises(PgfleetError, match="no stanza 'other'"):
        parse_info(_info([]), "other")


def test_window_runs_from_first_backup_end_to_last_archived_wal() -> None:
    c = parse_info(_info([_backup("a", "full", T0, T0 + 30), _backup("b", "full", T0 + 600, T0 + 630)]), "main")
    w = window(c, _utc(T0 + 900))
    assert (w.earliest, w.latest) == (_utc(T0 + 30), _utc(T0 + 900))
    check_target(w, _utc(T0 + 31))
    check_target(w, _utc(T0 + 900))


@pytest.mark.parametrize("offset,words", [(10, "before the earliest backup ended"), (901, "no WAL archived that far")])
def test_targets_outside_the_window_are_refused_with_the_window(offset: int, words: str) -> None:
    c = parse_info(_info([_backup("a", "full", T0, T0 + 30)]), "main")
    with pytest.raises(RestoreRefused) as e:
        check_target(window(c, _utc(T0 + 900)), _utc(T0 + offset))
    assert words in str(e.value)
    assert "Restorable: from 2025-11-24T16:00:30+00:00 to 2025-11-24T16:15:00+00:00" in str(e.value)


def test_naive_target_is_refused() -> None:
    c = parse_info(_info([_backup("a", "full", T0, T0 + 30)]), "main")
    with pytest.raises(RestoreRefused, match="no time zone"):
        check_target(window(c, None), dt.datetime(2030, 1, 1))


def test_base_backup_is_the_newest_that_ended_before_the_target() -> None:
    c = parse_info(_info([_backup("a", "full", T0, T0 + 30), _backup("b", "diff", T0 + 600, T0 + 630)]), "main")
    assert base_backup_for(c, _utc(T0 + 629)).label == "a"
    assert base_backup_for(c, _utc(T0 + 630)).label == "b"
    assert base_backup_for(c, None).label == "b"
