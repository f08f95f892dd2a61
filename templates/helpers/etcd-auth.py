#!/usr/bin/python3
"""pgfleet: turn on etcd authentication and give Patroni its own user (idempotent).

Usage: etcd-auth.py DESIRED.json  (0600: root and patroni passwords, key prefix)

Talks to the local member over its JSON gateway with this host's client
certificate; passwords travel in request bodies read from the 0600 file,
never on a command line. Safe to run again: existing users and roles are
kept, passwords are set to the desired ones.
"""

import base64
import json
import ssl
import sys
import urllib.error
import urllib.request

TLS = "/etc/pgfleet/tls"
URL = "https://127.0.0.1:2379"


def context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=f"{TLS}/ca.crt")
    ctx.load_cert_chain(f"{TLS}/host.crt", f"{TLS}/host.key")
    return ctx


CTX = context()


def call(path: str, body: dict, token: str | None = None, ok_errors: tuple[str, ...] = ()) -> dict:
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})})
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=10) as r:
            out = json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        out = json.loads(e.read() or b"{}")
        if e.code >= 500 and not out:
            raise
    err = out.get("error") or out.get("message")
    if err:
        if any(s in err for s in ok_errors):
            return out
        raise SystemExit(f"etcd {path}: {err}")
    return out


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def main() -> None:
    want = json.load(open(sys.argv[1]))
    root_pw, user, user_pw, prefix = want["root_password"], want["user"], want["user_password"], want["prefix"]
    status = call("/v3/auth/status", {})
    token = None
    if status.get("enabled"):
        token = call("/v3/auth/authenticate", {"name": "root", "password": root_pw})["token"]
    exists = ("already exists",)
    call("/v3/auth/role/add", {"name": "root"}, token, exists)
    call("/v3/auth/user/add", {"name": "root", "password": root_pw}, token, exists)
    call("/v3/auth/user/grant", {"user": "root", "role": "root"}, token)
    call("/v3/auth/role/add", {"name": user}, token, exists)
    call("/v3/auth/role/grant", {"name": user, "perm": {"permType": "READWRITE", "key": b64(prefix), "range_end": b64(prefix_end(prefix))}}, token)
    call("/v3/auth/user/add", {"name": user, "password": user_pw}, token, exists)
    call("/v3/auth/user/changepw", {"name": user, "password": user_pw}, token)
    call("/v3/auth/user/grant", {"user": user, "role": user}, token)
    if not status.get("enabled"):
        call("/v3/auth/enable", {})
        print("etcd authentication enabled; users: root, " + user)
    else:
        print("etcd authentication already on; user " + user + " converged")


if __name__ == "__main__":
    main()
