"""etcd-auth DESIRED.json: turn on etcd authentication and give Patroni its own user (idempotent).

DESIRED.json (0600) holds the root and Patroni passwords, the user and its key
prefix; the passwords travel in request bodies, never on a command line. Talks
to the local member over its JSON gateway with this host's certificate. Safe
to run again: existing users and roles are kept, passwords set to the desired ones.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from . import etcd
from .config import NodeConfig, json_argument

EXISTS = ("already exists",)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def prefix_end(prefix: str) -> str:
    """The end of etcd's key range for everything under ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def converge(call: etcd.Transport, want: Mapping[str, Any]) -> str:
    """The request sequence; returns the line to print. Raises SystemExit on an unexpected etcd error."""
    def req(path: str, body: Mapping[str, Any], token: str | None, ok: tuple[str, ...] = ()) -> dict[str, Any]:
        out = call(path, body, token)
        err = etcd.error(out)
        if err and not any(s in err for s in ok):
            raise SystemExit(f"etcd {path}: {err}")
        return out

    root, root_pw, user, user_pw, prefix = etcd.ROOT_USER, want["root_password"], want["user"], want["user_password"], want["prefix"]
    enabled = bool(req("/v3/auth/status", {}, None).get("enabled"))
    token = req("/v3/auth/authenticate", {"name": root, "password": root_pw}, None)["token"] if enabled else None
    req("/v3/auth/role/add", {"name": root}, token, EXISTS)
    req("/v3/auth/user/add", {"name": root, "password": root_pw}, token, EXISTS)
    req("/v3/auth/user/grant", {"user": root, "role": root}, token)
    req("/v3/auth/role/add", {"name": user}, token, EXISTS)
    req("/v3/auth/role/grant", {"name": user, "perm": {"permType": "READWRITE", "key": b64(prefix), "range_end": b64(prefix_end(prefix))}}, token)
    req("/v3/auth/user/add", {"name": user, "password": user_pw}, token, EXISTS)
    req("/v3/auth/user/changepw", {"name": user, "password": user_pw}, token)
    req("/v3/auth/user/grant", {"user": user, "role": user}, token)
    if enabled:
        return f"etcd authentication already on; user {user} converged"
    req("/v3/auth/enable", {}, None)
    return f"etcd authentication enabled; users: {root}, {user}"


def main(argv: list[str], cfg: NodeConfig) -> int:
    want = json_argument(argv, "etcd-auth", "DESIRED.json")
    if want is None:
        return 2
    print(converge(etcd.Gateway(cfg.etcd_url, cfg.ca_file, cfg.cert_file, cfg.key_file), want))
    return 0
