"""etcd's v3 JSON gateway over HTTPS with this host's certificate (etcd asks every client for one)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

#: etcd's own name for its administrator: ``auth enable`` requires a user called root.
ROOT_USER = "root"


class Transport(Protocol):
    def __call__(self, path: str, body: Mapping[str, Any], token: str | None) -> dict[str, Any]: ...


class Gateway:
    """POST a JSON body to one etcd member; an answer with an error is returned, not raised."""

    def __init__(self, url: str, ca_file: str, cert_file: str, key_file: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = url, timeout
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.ctx.load_cert_chain(cert_file, key_file)

    def __call__(self, path: str, body: Mapping[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", **({"Authorization": token} if token else {})}
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=self.timeout) as r:
                return dict(json.loads(r.read() or b"{}"))
        except urllib.error.HTTPError as e:
            out = dict(json.loads(e.read() or b"{}"))
            if e.code >= 500 and not out:
                raise
            return out


def error(answer: Mapping[str, Any]) -> str | None:
    """The error etcd put in an answer, if any."""
    return answer.get("error") or answer.get("message") or None


def authenticate(call: Transport, password: str) -> str:
    """A token for etcd's root user."""
    answer = call("/v3/auth/authenticate", {"name": ROOT_USER, "password": password}, None)
    if error(answer):
        raise OSError(f"etcd authentication as {ROOT_USER} failed: {error(answer)}")
    return str(answer["token"])
