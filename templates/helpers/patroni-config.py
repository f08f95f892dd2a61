#!/usr/bin/python3
"""pgfleet: converge Patroni's cluster-wide (DCS) configuration and restart in order.

Usage: patroni-config.py DESIRED.json

Reads the live configuration from the local Patroni REST API, PATCHes the
keys that differ, then — when a changed PostgreSQL parameter needs a restart —
restarts the members that report ``pending_restart``, one at a time:
replicas first when values grow (a hot standby needs max_connections & co.
at least as large as its primary), the primary first when any value shrinks.
Prints which members needed and got a restart. Credentials come from
/etc/patroni/patroni.yml, never from the command line.
"""

import base64
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request

import yaml

TLS = "/etc/pgfleet/tls"
LOCAL = "https://127.0.0.1:8008"
UNITS = {"kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}

CTX = ssl.create_default_context(cafile=f"{TLS}/ca.crt")


def auth_header() -> str:
    conf = yaml.safe_load(open("/etc/patroni/patroni.yml"))["restapi"]["authentication"]
    return "Basic " + base64.b64encode(f"{conf['username']}:{conf['password']}".encode()).decode()


def rest(method: str, url: str, body: dict | None = None, auth: bool = False, timeout: float = 10) -> tuple[int, dict | str]:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth_header()
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=timeout) as r:
            raw = r.read().decode()
            code = r.status
    except urllib.error.HTTPError as e:
        raw, code = e.read().decode(), e.code
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw


def diff(want: dict, have: dict) -> dict:
    """The parts of ``want`` that ``have`` lacks or holds differently (a JSON merge patch)."""
    out = {}
    for k, v in want.items():
        if isinstance(v, dict):
            sub = diff(v, have.get(k) or {})
            if sub:
                out[k] = sub
        elif str(have.get(k)).lower() != str(v).lower():
            out[k] = v
    return out


def number(v) -> float | None:
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(v))
    if not m:
        return None
    return float(m.group(1)) * UNITS.get(m.group(2), 1)


def postmaster_parameters() -> set[str]:
    out = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-XAtqc", "select name from pg_settings where context = 'postmaster'"],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def main() -> None:
    want = json.load(open(sys.argv[1]))
    code, have = rest("GET", f"{LOCAL}/config")
    if code != 200 or not isinstance(have, dict):
        raise SystemExit(f"GET /config answered {code}: {have}")
    patch = diff(want, have)
    # parameters no longer in the spec go back to PostgreSQL's defaults (null removes them)
    have_params = (have.get("postgresql") or {}).get("parameters") or {}
    want_params = want.get("postgresql", {}).get("parameters", {})
    removed = {k: None for k in have_params if k not in want_params}
    if removed:
        patch.setdefault("postgresql", {}).setdefault("parameters", {}).update(removed)
    if not patch:
        print("Patroni configuration already as wanted")
        return
    changed = patch.get("postgresql", {}).get("parameters", {})
    old = (have.get("postgresql") or {}).get("parameters") or {}
    print("changing: " + ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in changed.items())
          + ("; " if changed else "") + ", ".join(k for k in patch if k != "postgresql"))
    code, body = rest("PATCH", f"{LOCAL}/config", patch, auth=True)
    if code != 200:
        raise SystemExit(f"PATCH /config answered {code}: {body}")
    need_restart = sorted(set(changed) & postmaster_parameters())
    if not need_restart:
        print("no restart needed (parameters apply on reload)")
        return
    # a removed parameter falls back to its default, usually smaller: treat it as shrinking
    shrinks = [k for k in need_restart if changed[k] is None
               or (None not in (number(old.get(k)), number(changed[k])) and number(changed[k]) < number(old.get(k)))]
    # Patroni notices the change within loop_wait and flags the members
    deadline = time.time() + int(want.get("loop_wait", 10)) * 3 + 10
    pending: list[dict] = []
    members: list[dict] = []
    while time.time() < deadline:
        code, cluster = rest("GET", f"{LOCAL}/cluster")
        members = cluster.get("members", []) if isinstance(cluster, dict) else []
        pending = [m for m in members if m.get("pending_restart")]
        if len(pending) == len([m for m in members if m.get("state") in ("running", "streaming")]) and pending:
            break
        time.sleep(1)
    print(f"parameters needing a restart: {', '.join(need_restart)}; members pending restart: {', '.join(m['name'] for m in pending) or 'none'}")
    primary_first = bool(shrinks)
    pending.sort(key=lambda m: (m.get("role") != "leader") if primary_first else (m.get("role") == "leader"))
    for m in pending:
        code, body = rest("POST", m["api_url"].replace("/patroni", "/restart"), {"restart_pending": True}, auth=True, timeout=300)
        if code != 200:
            raise SystemExit(f"restart of {m['name']} answered {code}: {body}")
        print(f"restarted {m['name']} ({m.get('role')})")
    print(f"restart order: {' -> '.join(m['name'] for m in pending)} ({'primary first: a value shrank' if primary_first else 'replicas first'})")


if __name__ == "__main__":
    main()
