"""The Prometheus HTTP API as ``pgfleet monitoring | alerts | top`` read it: HTTPS verified against the cluster CA.

Standard library only (urllib + ssl). The certificate is checked against the
given CA *and* the name dialled (an IP address in the URL must be one of the
certificate's IP SANs); no proxy from the environment is used, the monitoring
host is dialled directly. Every failure is a :class:`~pgfleet.errors.MonitoringError`
whose message names the URL: refused, no answer within the timeout, TLS not
verified, an HTTP error or an answer that is not the Prometheus API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from pgfleet.errors import MonitoringError

#: Seconds for connecting and for each read: a monitoring host that does not answer is reported, never waited on.
TIMEOUT = 5.0


@dataclass(frozen=True)
class Sample:
    """One series of an instant query's answer: its labels and its value (NaN and ±Inf are floats too)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Alert:
    """An alert as Prometheus' ``/api/v1/alerts`` lists it (state ``firing`` or ``pending``)."""

    name: str
    state: str
    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: dt.datetime | None
    value: str = ""

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    @property
    def critical(self) -> bool:
        return self.severity == "critical"


@dataclass(frozen=True)
class Target:
    """An active scrape target (``/api/v1/targets``): its job, instance, labels, ``up``/``down``/``unknown`` and last error."""

    job: str
    instance: str
    health: str
    last_error: str
    labels: dict[str, str] = field(default_factory=dict)
    scrape_url: str = ""

    @property
    def up(self) -> bool:
        return self.health == "up"


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def parse_time(text: str | None) -> dt.datetime | None:
    """Prometheus' RFC 3339 times (nanoseconds, ``Z``) as an aware datetime; None for none, the zero time or garbage."""
    m = _RFC3339.fullmatch(text or "")
    if not m or m.group(1).startswith("0001-"):
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return dt.datetime.fromisoformat(f"{m.group(1)}.{(m.group(2) or '0')[:6].ljust(6, '0')}{zone}")


class Prometheus:
    """Prometheus at ``url`` (``https://ADDRESS:9090``), its certificate verified against ``ca_pem``."""

    def __init__(self, url: str, ca_pem: str, *, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        try:
            self._context = ssl.create_default_context(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as e:
            raise MonitoringError(f"the CA given for {self.url} is not a PEM certificate: {e}") from None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._context))

    # ---- the API

    def query(self, promql: str) -> list[Sample]:
        """An instant query; a vector or scalar answer becomes samples (a scalar has no labels)."""
        data = self._get("/api/v1/query", {"query": promql})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector":
            return [Sample(dict(r.get("metric", {})), float(r["value"][1])) for r in result]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
        raise MonitoringError(f"{self.url}: query {promql!r} answered a {kind}, not an instant vector")

    def alerts(self) -> list[Alert]:
        """Every active alert: firing, and pending (its ``for:`` not yet over)."""
        data = self._get("/api/v1/alerts")
        return [Alert(name=a.get("labels", {}).get("alertname", "?"), state=a.get("state", ""), labels=dict(a.get("labels", {})),
                      annotations=dict(a.get("annotations", {})), active_at=parse_time(a.get("activeAt")), value=str(a.get("value", "")))
                for a in data.get("alerts", [])]

    def targets(self) -> list[Target]:
        """The active scrape targets with their health and last scrape error."""
        data = self._get("/api/v1/targets", {"state": "active"})
        return [Target(job=t.get("labels", {}).get("job", t.get("scrapePool", "")), instance=t.get("labels", {}).get("instance", ""),
                       health=t.get("health", "unknown"), last_error=t.get("lastError", ""), labels=dict(t.get("labels", {})),
                       scrape_url=t.get("scrapeUrl", ""))
                for t in data.get("activeTargets", [])]

    # ---- transport

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with self._opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise MonitoringError(f"Prometheus at {self.url} answered {path} with HTTP {e.code}: {_api_error(e.read()) or e.reason}") from None
        except urllib.error.URLError as e:
            raise MonitoringError(f"Prometheus at {self.url} cannot be reached: {_reason(e.reason, self.timeout)}") from None
        except (TimeoutError, socket.timeout):
            raise MonitoringError(f"Prometheus at {self.url} cannot be reached: no answer within {self.timeout:g} s") from None
        except ssl.SSLError as e:
            raise MonitoringError(f"Prometheus at {self.url} cannot be reached: TLS failed: {e}") from None
        except OSError as e:
            raise MonitoringError(f"Prometheus at {self.url} cannot be reached: {e}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise MonitoringError(f"{self.url}{path} did not answer JSON: is this Prometheus? ({raw[:80]!r})") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            error = doc.get("error") if isinstance(doc, dict) else None
            raise MonitoringError(f"Prometheus at {self.url} answered {path} with an error: {error or str(doc)[:200]}")
        return doc.get("data", {})


def _reason(reason: object, timeout: float) -> str:
    """What went wrong underneath urllib, in words an operator acts on."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        why = reason.verify_message or str(reason)
        hint = ("the certificate does not name the address dialled" if "mismatch" in why.lower()
                else "a wrong CA, or a certificate not issued by the stack's CA")
        return f"its TLS certificate is not verified against the stack's CA ({why}): {hint}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed: {reason}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (Prometheus not running, or the port not open to this machine)"
    if isinstance(reason, socket.gaierror):
        return f"name not resolved: {reason}"
    return str(reason)


def _api_error(body: bytes) -> str:
    """The ``error`` of Prometheus' JSON error answer (a bad query says what is wrong there)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip()
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""
