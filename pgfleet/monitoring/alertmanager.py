"""alertmanager.yml: one route to every receiver the spec lists, announced within :data:`GROUP_WAIT` seconds.

Secrets (the SMTP password) are passed in by the caller from the stack's
encrypted state; the spec only names them, so host data never holds them.
"""

from __future__ import annotations

from typing import Any

import yaml

from pgfleet.schema import Spec

#: Seconds Alertmanager holds a new group before notifying (availability alerts: for ≤ 30 s + this ≤ a minute).
GROUP_WAIT = 10
RECEIVER = "pgfleet"


def config(spec: Spec, smtp_password: str | None = None) -> dict[str, Any]:
    r = spec.monitoring.receivers
    receiver: dict[str, Any] = {"name": RECEIVER}
    if r.webhooks:
        receiver["webhook_configs"] = [{"url": u, "send_resolved": True} for u in r.webhooks]
    if r.email is not None:
        e = r.email
        if e.password_secret and smtp_password is None:
            raise ValueError(f"monitoring.receivers.email needs the secret {e.password_secret!r}: pass its value")
        mail: dict[str, Any] = {"to": ", ".join(e.to), "from": e.sender, "smarthost": e.smarthost,
                                "require_tls": e.require_tls, "send_resolved": True}
        if e.username:
            mail |= {"auth_username": e.username, "auth_password": smtp_password}
        receiver["email_configs"] = [mail]
    return {
        "route": {"receiver": RECEIVER, "group_by": ["alertname", "cluster"], "group_wait": f"{GROUP_WAIT}s",
                  "group_interval": "1m", "repeat_interval": "4h"},
        # a critical alert silences the warning of the same name and cluster
        "inhibit_rules": [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                           "equal": ["alertname", "cluster"]}],
        "receivers": [receiver],
    }


def config_yaml(spec: Spec, smtp_password: str | None = None) -> str:
    return yaml.safe_dump(config(spec, smtp_password), sort_keys=False)
