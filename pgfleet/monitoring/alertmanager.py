"""alertmanager.yml: one route to every receiver the spec lists, announced within :data:`GROUP_WAIT` seconds.

Secrets (the SMTP password) are passed in by the caller from the stack's
encrypted state; the spec only names them, so host data never holds them.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from pgfleet.schema import Spec

#: Seconds Alertmanager holds a new group before notifying (availability alerts: for ≤ 30 s + this ≤ a minute).
GROUP_WAIT = 10
#: Seconds between two notifications of a group that changed (a resolution is announced after at most this).
GROUP_INTERVAL = 60
REPEAT_INTERVAL = "1h"
RECEIVER = "pgfleet"


def config(spec: Spec, smtp_password: str | None = None) -> dict[str, Any]:
    """The document; ``smtp_password`` is the value of the secret the spec names (the deploy passes it)."""
    e = spec.monitoring.receivers.email
    if e is not None and e.password_secret and smtp_password is None:
        raise ValueError(f"monitoring.receivers.email needs the secret {e.password_secret!r}: pass its value")
    return with_smtp_password(without_secrets(spec), smtp_password)


def without_secrets(spec: Spec) -> dict[str, Any]:
    """The document without the SMTP password (what host data may carry)."""
    r = spec.monitoring.receivers
    receiver: dict[str, Any] = {"name": RECEIVER}
    if r.webhooks:
        receiver["webhook_configs"] = [{"url": u, "send_resolved": True} for u in r.webhooks]
    if r.email is not None:
        e = r.email
        mail: dict[str, Any] = {"to": ", ".join(e.to), "from": e.sender, "smarthost": e.smarthost,
                                "require_tls": e.require_tls, "send_resolved": True}
        if e.username:
            mail["auth_username"] = e.username
        receiver["email_configs"] = [mail]
    return {
        "route": {"receiver": RECEIVER, "group_by": ["alertname", "cluster"], "group_wait": f"{GROUP_WAIT}s",
                  "group_interval": f"{GROUP_INTERVAL}s",
                  # Alertmanager never repeats what it announced within this, even when the resolution could not be
                  # delivered (a receiver down): the same alert firing again that soon is not announced; 1h bounds that
                  "repeat_interval": REPEAT_INTERVAL},
        # a critical alert silences the warning of the same name and cluster
        "inhibit_rules": [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                           "equal": ["alertname", "cluster"]}],
        "receivers": [receiver],
    }


def with_smtp_password(doc: dict[str, Any], smtp_password: str | None) -> dict[str, Any]:
    """``doc`` with the password set on every e-mail receiver that authenticates."""
    out = copy.deepcopy(doc)
    for r in out["receivers"]:
        for mail in r.get("email_configs", []):
            if "auth_username" in mail and smtp_password is not None:
                mail["auth_password"] = smtp_password
    return out


def config_yaml(spec: Spec, smtp_password: str | None = None) -> str:
    return yaml.safe_dump(config(spec, smtp_password), sort_keys=False)
