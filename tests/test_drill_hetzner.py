"""Unit tests: drill faults on Hetzner stacks (pgfleet/providers/hetzner.py). No request leaves this machine."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pgfleet.providers import hetzner


class FakeHetzner:
    """Answers like Hetzner's API for one server; records what was asked."""

    def __init__(self, final: str = "success") -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.final = final

    def __call__(self, req, timeout):  # type: ignore[no-untyped-def]
        self.calls.append((req.get_method(), req.full_url, req.get_header("Authorization")))
        url = req.full_url.removeprefix(hetzner.API)
        if url.startswith("/servers?"):
            body = {"servers": [{"id": 42, "name": "staging-main-1"}]}
        elif url == "/servers/42/actions/poweroff":
            body = {"action": {"id": 7, "status": "running"}}
        elif url == "/actions/7":
            body = {"action": {"id": 7, "status": self.final, "error": {"code": "x"} if self.final == "error" else None}}
        else:
            raise AssertionError(url)
        return io.BytesIO(json.dumps(body).encode())


def test_power_off_finds_the_server_by_name_and_waits_for_the_action() -> None:
    fake = FakeHetzner()
    hetzner.Api("TOKEN", opener=fake).action("staging-main-1", "poweroff")
    assert [(m, u.removeprefix(hetzner.API)) for m, u, _ in fake.calls] == [
        ("GET", "/servers?name=staging-main-1"), ("POST", "/servers/42/actions/poweroff"), ("GET", "/actions/7")]
    assert all(auth == "Bearer TOKEN" for _, _, auth in fake.calls)


def test_a_failed_action_is_an_error_naming_the_server() -> None:
    with pytest.raises(hetzner.HetznerError, match="poweroff of staging-main-1 .server 42. failed"):
        hetzner.Api("TOKEN", opener=FakeHetzner(final="error")).action("staging-main-1", "poweroff")


def test_no_token_says_where_to_get_one(monkeypatch) -> None:
    monkeypatch.delenv(hetzner.TOKEN_ENV, raising=False)
    with pytest.raises(hetzner.HetznerError, match="HCLOUD_TOKEN"):
        hetzner.token()


def test_partition_rules_cut_only_the_private_range(tmp_path: Path) -> None:
    rules = hetzner.partition_rules("10.42.0.0/16")
    assert "ip saddr 10.42.0.0/16 drop" in rules and "ip daddr 10.42.0.0/16 drop" in rules
    f = tmp_path / "drill.nft"
    f.write_text(rules)
    cp = subprocess.run([shutil.which("nft") or "/usr/sbin/nft", "-c", "-f", str(f)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    assert hetzner.heal_script() == f"nft delete table inet {hetzner.DRILL_TABLE}"


def test_static_stacks_cannot_be_powered_off() -> None:
    from deploy_fixtures import fake_inventory, fake_secrets
    from pgfleet import spec
    from pgfleet.drill.control import DrillNotWired, PatroniControl

    s = spec.load("dev").model_copy(update={"provider": "static"})
    c = PatroniControl("dev", s, s.clusters[0], fake_inventory(s, "dev"), fake_secrets(s))
    with pytest.raises(DrillNotWired, match="static hosts have no API"):
        c.power_off("dev-main-1")
