"""Gaps between scheduled backups, from the spec's systemd ``OnCalendar=`` expressions, without a host.

``pgfleet check-backups`` asks a node's ``systemd-analyze calendar``; alert
thresholds must be computed before any host exists, so this reads the weekly
forms pgfleet's schedules use (``Sun *-*-* 01:00:00``, ``Mon..Sat *-*-* 01:00``,
``Mon,Thu *-*-* 03:30``, ``daily``, ``weekly``) and refuses the rest with a
:class:`ValueError` that spec validation turns into a problem with its fix.
"""

from __future__ import annotations

import re

DAY = 86400
WEEK = 7 * DAY
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_SHORTHAND = {"daily": "*-*-* 00:00:00", "weekly": "Mon *-*-* 00:00:00"}
_FORM = re.compile(r"^(?:(?P<days>[A-Za-z.,]+)\s+)?(?:\*-\*-\*\s+)?(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?$")


def _weekdays(text: str | None) -> list[int]:
    if not text:
        return list(range(7))
    out: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("..")
        try:
            a = _DAYS.index(first[:3])
            b = _DAYS.index(last[:3]) if last else a
        except ValueError:
            raise ValueError(f"unknown weekday in {text!r}") from None
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return sorted(out)


def week_times(expr: str) -> list[int]:
    """When in a week (seconds after Monday 00:00 UTC) the schedule fires."""
    text = _SHORTHAND.get(expr.strip().lower(), expr.strip())
    m = _FORM.match(text)
    if not m:
        raise ValueError(f"cannot read the OnCalendar expression {expr!r} (pgfleet reads 'DAYS *-*-* HH:MM[:SS]', 'daily', 'weekly')")
    t = int(m["h"]) * 3600 + int(m["m"]) * 60 + int(m["s"] or 0)
    if t >= DAY:
        raise ValueError(f"time of day out of range in {expr!r}")
    return [d * DAY + t for d in _weekdays(m["days"])]


def _gaps(times: list[int]) -> list[int]:
    ts = sorted(set(times))
    return [b - a for a, b in zip(ts, ts[1:])] + [ts[0] + WEEK - ts[-1]]


def longest_gap(*exprs: str) -> int:
    """The longest time (s) between two runs of any of the schedules (what ``check-backups`` allows, before grace)."""
    return max(_gaps([t for e in exprs for t in week_times(e)]))


def shortest_gap(expr: str) -> int:
    """The shortest time (s) between two runs of one schedule."""
    return min(_gaps(week_times(expr)))
