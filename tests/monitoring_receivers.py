"""Real receivers on the lab's bridge for the monitoring host to send to: a webhook, an SMTP server, a remote_write Prometheus.

Their addresses are the lab stack's (stacks/Pulumi.lab.yaml ``monitoring``); each records what arrives with the
time it arrived, and is stopped by the fixture that started it (the Prometheus by its PID).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from pgfleet.schema import Spec


def _host_port(url: str) -> tuple[str, int]:
    u = urllib.parse.urlsplit(url if "://" in url else f"x://{url}")
    assert u.hostname and u.port, url
    return u.hostname, u.port


@dataclass
class Notification:
    at: float
    status: str
    alerts: list[dict[str, Any]]

    def names(self, status: str = "firing") -> set[str]:
        return {a["labels"]["alertname"] for a in self.alerts if a["status"] == status}


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: every POSTed notification, in order."""

    received: list[Notification] = field(default_factory=list)

    def start(self, spec: Spec) -> Webhook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.received.append(Notification(time.time(), doc["status"], doc["alerts"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(_host_port(spec.monitoring.receivers.webhooks[0]), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, alert: str, *, since: float, timeout: float) -> Notification:
        """The first notification after ``since`` in which ``alert`` fires (AssertionError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in list(self.received):
                if n.at >= since and alert in n.names():
                    return n
            time.sleep(1)
        raise AssertionError(f"no notification of {alert} within {timeout:.0f} s; received: "
                             f"{[(round(n.at - since), n.status, sorted(n.names())) for n in self.received]}")


class Mailbox:
    """An SMTP server (aiosmtpd) that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((time.time(), message_from_bytes(envelope.content)))
        return "250 OK"

    def start(self, spec: Spec) -> Mailbox:
        email = spec.monitoring.receivers.email
        assert email is not None
        host, port = _host_port(email.smarthost)
        self._controller = Controller(self, hostname=host, port=port)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def subjects(self, since: float) -> list[str]:
        return [str(m["Subject"]) for at, m in self.messages if at >= since]


class RemoteWriteStore:
    """A second Prometheus with ``--web.enable-remote-write-receiver``: the store a user already runs."""

    def start(self, spec: Spec) -> RemoteWriteStore:
        assert spec.monitoring.remote_write_url
        host, port = _host_port(spec.monitoring.remote_write_url)
        self.url = f"http://{host}:{port}"
        self._dir = tempfile.TemporaryDirectory(prefix="pgfleet-remote-write-")
        cfg = Path(self._dir.name) / "prometheus.yml"
        cfg.write_text("global: {}\n")
        self._proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={self._dir.name}/data",
             f"--web.listen-address={host}:{port}", "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).read()
                return self
            except OSError:
                assert self._proc.poll() is None, "the remote_write Prometheus exited"
                assert time.monotonic() < deadline, "the remote_write Prometheus did not get ready within 30 s"
                time.sleep(0.5)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        return list(json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"])

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._dir.cleanup()
