"""Patroni's REST API: the one member model, the one set of role rules, the one HTTPS client.

Used on the nodes (backup-member, on-leader, wait-member, patroni-config,
etcd-leader-away) and by pgfleet itself (``pgfleet status``, drills, backup
and restore), so both sides agree on what a leader or a synchronous standby is.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .config import NodeConfig

#: Roles of the member that holds the leader key ("master": Patroni before 3.0).
LEADER_ROLES = frozenset({"leader", "standby_leader", "master"})
#: Standbys that acknowledge commits (quorum_standby: Patroni's quorum commit mode).
SYNC_ROLES = frozenset({"sync_standby", "quorum_standby"})
REPLICA_ROLES = frozenset({"replica"}) | SYNC_ROLES


@dataclass(frozen=True)
class Member:
    """One member as ``GET /cluster`` reports it."""

    name: str
    role: str  # leader | replica | sync_standby | quorum_standby | standby_leader
    state: str  # running | streaming | starting | stopped | in archive recovery | …
    host: str = ""
    port: int | None = None
    timeline: int | None = None
    #: replication lag in bytes; None when Patroni says "unknown" or it is the leader
    lag: int | None = None
    api_url: str = ""
    pending_restart: bool = False

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES

    @property
    def is_sync(self) -> bool:
        return self.role in SYNC_ROLES

    @property
    def is_replica(self) -> bool:
        return self.role in REPLICA_ROLES

    @classmethod
    def from_json(cls, m: Mapping[str, Any]) -> Member:
        def number(v: Any) -> int | None:
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return cls(name=str(m["name"]), role=str(m.get("role", "")), state=str(m.get("state", "")),
                   host=str(m.get("host", "")), port=number(m.get("port")), api_url=str(m.get("api_url", "")),
                   timeline=number(m.get("timeline")), lag=number(m.get("lag")),
                   pending_restart=bool(m.get("pending_restart")))


def members(doc: Mapping[str, Any]) -> list[Member]:
    """The members of a ``GET /cluster`` document."""
    return [Member.from_json(m) for m in doc.get("members", [])]


def leaders(ms: Iterable[Member]) -> list[Member]:
    return [m for m in ms if m.is_leader]


def leader(ms: Iterable[Member]) -> Member | None:
    """The leader when there is one (the first, should members disagree)."""
    return next(iter(leaders(ms)), None)


class PatroniError(Exception):
    """Patroni answered, but not with success; ``status`` and ``body`` say what it answered."""

    def __init__(self, what: str, status: int, body: Any) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        super().__init__(f"{what} answered HTTP {status}: {text.strip()}")
        self.status, self.body, self.text = status, body, text.strip()


@dataclass(frozen=True)
class Client:
    """One member's REST API over HTTPS, verified against the cluster CA.

    ``auth`` (user, password) goes with every request that changes state;
    ``cert`` (certificate, key files) when the API asks for a client certificate.
    """

    url: str
    ca_file: str | None = None
    ca_data: str | None = None
    cert: tuple[str, str] | None = None
    auth: tuple[str, str] | None = None
    timeout: float = 10.0

    def at(self, url: str) -> Client:
        """The same credentials for another member (its ``api_url`` or base URL)."""
        return replace(self, url=url.removesuffix("/patroni"))

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.cert:
            ctx.load_cert_chain(*self.cert)
        return ctx

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        """(status, JSON body or text); HTTP errors are answers too, only the transport raises (OSError)."""
        headers = {"Content-Type": "application/json"}
        if self.auth and method != "GET":
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self._context(), timeout=timeout or self.timeout) as r:
                status, raw = r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read().decode(errors="replace")
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def status(self, path: str) -> int:
        """Just the status of a health endpoint (``/primary``, ``/health``, …)."""
        return self.request("GET", path)[0]

    def _ok(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        status, answer = self.request(method, path, body, timeout)
        if status != 200:
            raise PatroniError(f"{method} {path}", status, answer)
        return answer

    def cluster(self) -> list[Member]:
        doc = self._ok("GET", "/cluster")
        if not isinstance(doc, dict):
            raise PatroniError("GET /cluster", 200, doc)
        return members(doc)

    def config(self) -> dict[str, Any]:
        doc = self._ok("GET", "/config")
        if not isinstance(doc, dict):
            raise PatroniError("GET /config", 200, doc)
        return doc

    def patch_config(self, patch: Mapping[str, Any]) -> Any:
        return self._ok("PATCH", "/config", dict(patch))

    def switchover(self, leader: str, candidate: str | None = None, timeout: float = 60.0) -> Any:
        body = {"leader": leader, **({"candidate": candidate} if candidate else {})}
        return self._ok("POST", "/switchover", body, timeout)

    def restart(self, pending_only: bool = True, timeout: float = 300.0) -> Any:
        return self._ok("POST", "/restart", {"restart_pending": True} if pending_only else {}, timeout)


def rest_credentials(patroni_yml: str) -> tuple[str, str]:
    """(username, password) of ``restapi.authentication`` in the patroni.yml the deploy renders.

    The deploy writes both as JSON strings (``tojson``), so reading them needs
    no YAML library (nodes have only the standard library for pgfleet's code).
    """
    found: dict[str, str] = {}
    section = None
    for line in patroni_yml.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            section = line.split(":", 1)[0]
        elif section == "restapi":
            key, _, value = line.strip().partition(":")
            if key in ("username", "password") and key not in found:
                found[key] = json.loads(value.strip())
    if set(found) != {"username", "password"}:
        raise ValueError("patroni.yml has no restapi.authentication username and password")
    return found["username"], found["password"]


def local(cfg: NodeConfig, with_auth: bool = False) -> Client:
    """This node's Patroni; with the REST credentials from its patroni.yml when state is to change."""
    auth = None
    if with_auth:
        with open(cfg.patroni_config) as f:
            auth = rest_credentials(f.read())
    return Client(cfg.patroni_url, ca_file=cfg.ca_file, auth=auth)
