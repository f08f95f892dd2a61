"""patroni-config DESIRED.json: converge Patroni's cluster-wide (DCS) configuration and restart in order.

Reads the live configuration from the local Patroni REST API, PATCHes the
keys that differ, then — when a changed PostgreSQL parameter needs a restart —
restarts the members that report ``pending_restart``, one at a time:
replicas first when values grow (a hot standby needs max_connections & co.
at least as large as its primary), the primary first when any value shrinks
or a parameter is removed. Prints which members needed and got a restart.
Credentials come from patroni.yml, never from the command line.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from . import patroni
from .config import NodeConfig, json_argument
from .patroni import Member

UNITS = {"kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def diff(want: Mapping[str, Any], have: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of ``want`` that ``have`` lacks or holds differently (a JSON merge patch)."""
    out: dict[str, Any] = {}
    for k, v in want.items():
        if isinstance(v, dict):
            sub = diff(v, have.get(k) or {})
            if sub:
                out[k] = sub
        elif str(have.get(k)).lower() != str(v).lower():
            out[k] = v
    return out


def parameters(conf: Mapping[str, Any]) -> dict[str, Any]:
    return dict((conf.get("postgresql") or {}).get("parameters") or {})


def patch_for(want: Mapping[str, Any], have: Mapping[str, Any]) -> dict[str, Any]:
    """What to PATCH: the differences, and null for parameters no longer wanted (back to PostgreSQL's defaults)."""
    patch = diff(want, have)
    removed = {k: None for k in parameters(have) if k not in parameters(want)}
    if removed:
        patch.setdefault("postgresql", {}).setdefault("parameters", {}).update(removed)
    return patch


def number(v: Any) -> float | None:
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(v))
    if not m:
        return None
    return float(m.group(1)) * UNITS.get(m.group(2), 1)


def primary_first(need_restart: list[str], changed: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether any restart-bound parameter shrinks; a removed one falls back to its default, usually smaller."""
    def shrinks(k: str) -> bool:
        new, before = number(changed[k]), number(old.get(k))
        return changed[k] is None or (new is not None and before is not None and new < before)
    return any(shrinks(k) for k in need_restart)


def restart_order(pending: list[Member], leader_first: bool) -> list[Member]:
    """The leader first or last, the replicas in Patroni's order."""
    return sorted(pending, key=lambda m: (not m.is_leader) if leader_first else m.is_leader)


def postmaster_parameters(user: str) -> set[str]:
    out = subprocess.run(["runuser", "-u", user, "--", "psql", "-XAtqc", "select name from pg_settings where context = 'postmaster'"],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def wait_pending(api: patroni.Client, seconds: float) -> list[Member]:
    """Members flagged ``pending_restart`` once every running one is (Patroni notices within loop_wait)."""
    deadline = time.time() + seconds
    pending: list[Member] = []
    while time.time() < deadline:
        try:
            members = api.cluster()
        except patroni.PatroniError:
            members = []
        pending = [m for m in members if m.pending_restart]
        if pending and len(pending) == len([m for m in members if m.state in ("running", "streaming")]):
            break
        time.sleep(1)
    return pending


def main(argv: list[str], cfg: NodeConfig) -> int:
    want = json_argument(argv, "patroni-config", "DESIRED.json")
    if want is None:
        return 2
    api = patroni.local(cfg, with_auth=True)
    try:
        have = api.config()
    except patroni.PatroniError as e:
        raise SystemExit(str(e)) from None
    patch = patch_for(want, have)
    if not patch:
        print("Patroni configuration already as wanted")
        return 0
    changed = patch.get("postgresql", {}).get("parameters", {})
    old = parameters(have)
    print("changing: " + ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in changed.items())
          + ("; " if changed else "") + ", ".join(k for k in patch if k != "postgresql"))
    try:
        api.patch_config(patch)
    except patroni.PatroniError as e:
        raise SystemExit(str(e)) from None
    need_restart = sorted(set(changed) & postmaster_parameters(cfg.postgres_user))
    if not need_restart:
        print("no restart needed (parameters apply on reload)")
        return 0
    pending = wait_pending(api, int(want.get("loop_wait", 10)) * 3 + 10)
    print(f"parameters needing a restart: {', '.join(need_restart)}; members pending restart: {', '.join(m.name for m in pending) or 'none'}")
    leader_first = primary_first(need_restart, changed, old)
    order = restart_order(pending, leader_first)
    for m in order:
        try:
            api.at(m.api_url).restart()
        except patroni.PatroniError as e:
            raise SystemExit(f"restart of {m.name}: {e}") from None
        print(f"restarted {m.name} ({m.role})", flush=True)
    print(f"restart order: {' -> '.join(m.name for m in order)} ({'primary first: a value shrank' if leader_first else 'replicas first'})")
    return 0
