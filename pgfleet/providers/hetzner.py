"""Faults on Hetzner Cloud servers for drills on cloud stacks (staging, CI environments).

- **power off / on**: Hetzner's API (``POST /v1/servers/{id}/actions/poweroff``
  — a hard power cut, like pulling the plug — and ``…/poweron``), the server
  found by its name (pgfleet names servers after inventory hosts), with the
  token from ``HCLOUD_TOKEN`` (the variable Hetzner's own CLI reads; pgfleet
  never stores it). Each call waits for Hetzner's action to finish.
- **partition**: Hetzner's firewalls do not filter the private network, so
  the member's own nftables drop everything to and from the cluster's private
  subnet in a separate table (``inet pgfleet_drill``); pgfleet keeps reaching
  the member over SSH on its public address, which is how an isolated old
  primary is probed. ``heal`` deletes the table.

The drill CLI refuses stacks marked production and needs ``--yes`` outside
the lab. Not run against a real account from here (the Hetzner API is
unreachable in this environment): the request shapes are unit-tested.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pgfleet.errors import PgfleetError

API = "https://api.hetzner.cloud/v1"
TOKEN_ENV = "HCLOUD_TOKEN"
DRILL_TABLE = "pgfleet_drill"


class HetznerError(PgfleetError):
    """Hetzner's API refused or failed a drill action; the message names the server and the answer."""


def token() -> str:
    t = os.environ.get(TOKEN_ENV, "")
    if not t:
        raise HetznerError(f"a node-loss drill on Hetzner powers a server off through Hetzner's API: set {TOKEN_ENV} "
                           "to a read/write API token of the stack's project (e.g. "
                           f"{TOKEN_ENV}=$(pulumi config get hcloud:token -s STACK))")
    return t


class Api:
    """The few Hetzner Cloud API calls a drill needs."""

    def __init__(self, api_token: str, base: str = API, opener: Any = None) -> None:
        self._token = api_token
        self._base = base
        self._open = opener or urllib.request.urlopen

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        req = urllib.request.Request(self._base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with self._open(req, timeout=30) as r:
                return dict(json.loads(r.read() or b"{}"))
        except urllib.error.HTTPError as e:
            raise HetznerError(f"Hetzner API {method} {path}: HTTP {e.code} {e.read()[:300]!r}") from None
        except OSError as e:
            raise HetznerError(f"Hetzner API {method} {path}: {e}") from None

    def server_id(self, name: str) -> int:
        servers = self._call("GET", "/servers?" + urllib.parse.urlencode({"name": name})).get("servers", [])
        if len(servers) != 1:
            raise HetznerError(f"no single Hetzner server named {name!r} in the token's project (found {len(servers)})")
        return int(servers[0]["id"])

    def action(self, name: str, verb: str, timeout: float = 120) -> None:
        """``poweroff`` / ``poweron`` the server ``name`` and wait until Hetzner reports the action done."""
        sid = self.server_id(name)
        act = self._call("POST", f"/servers/{sid}/actions/{verb}")["action"]
        deadline = time.monotonic() + timeout
        while act.get("status") == "running":
            if time.monotonic() > deadline:
                raise HetznerError(f"{verb} of {name} (server {sid}) still running after {timeout:.0f} s")
            time.sleep(1)
            act = self._call("GET", f"/actions/{act['id']}")["action"]
        if act.get("status") != "success":
            raise HetznerError(f"{verb} of {name} (server {sid}) failed: {act.get('error')}")


def partition_rules(private_range: str) -> str:
    """An nftables batch that cuts a member off the private network (both directions), nothing else."""
    return (f"table inet {DRILL_TABLE} {{\n"
            f"    chain input {{ type filter hook input priority -10; policy accept; ip saddr {private_range} drop; }}\n"
            f"    chain output {{ type filter hook output priority -10; policy accept; ip daddr {private_range} drop; }}\n"
            "}\n")


def partition_script(private_range: str) -> str:
    return f"printf '%s' {shlex.quote(partition_rules(private_range))} | nft -f -"


def heal_script() -> str:
    return f"nft delete table inet {DRILL_TABLE}"
