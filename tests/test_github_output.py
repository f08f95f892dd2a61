"""GitHub step outputs and masks (pgfleet/github.py), and waiting for SSH on new servers (remote.wait_ssh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pgfleet import github, remote
from pgfleet.errors import ClusterError, PgfleetError
from pgfleet.inventory import Inventory, InventoryHost

PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\nAgEGCCqGSM49AwEHBG0w\n-----END PRIVATE KEY-----\n"


def test_every_line_of_a_multi_line_secret_is_masked_once() -> None:
    lines = github.mask_lines(["pw1", PEM, "pw1", ""])
    assert lines == ["::add-mask::pw1", "::add-mask::-----BEGIN PRIVATE KEY-----", "::add-mask::MIGHAgEAMBMGByqGSM49",
                     "::add-mask::AgEGCCqGSM49AwEHBG0w", "::add-mask::-----END PRIVATE KEY-----"]


def test_outputs_round_trip_through_githubs_format_multi_line_values_included(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("before=1\n")
    values = {"ca_cert": PEM.strip(), "dsn": "host=a,b port=5000 sslmode=verify-full", "empty": ""}
    github.write_outputs(f, values)
    assert github.parse_outputs(f.read_text()) == {"before": "1", **values}
    # the delimiter never occurs in the value it closes
    for block in f.read_text().split("<<")[1:]:
        delim = block.split("\n", 1)[0]
        assert block.count(delim) == 2


def test_output_path_needs_github_output() -> None:
    with pytest.raises(PgfleetError, match="GITHUB_OUTPUT"):
        github.output_path({})
    assert github.output_path({"GITHUB_OUTPUT": "/x/y"}) == Path("/x/y")


def _inventory() -> Inventory:
    hosts = [InventoryHost(name=f"n{i}", cluster="main", roles=["postgres"], public_ip=f"203.0.113.{i}",
                           private_ip=f"10.42.1.{i}", server_type="cx23") for i in (1, 2)]
    return Inventory(stack="t", provider="hcloud", hosts=hosts)


def test_wait_ssh_retries_each_host_until_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"n1": [255, 0], "n2": [255, 255, 0]}
    asked: list[str] = []

    def run(inv, h, command, *, timeout):  # type: ignore[no-untyped-def]
        asked.append(h.name)
        return subprocess.CompletedProcess([], answers[h.name].pop(0), "", "Connection refused")

    monkeypatch.setattr(remote, "run", run)
    said: list[str] = []
    remote.wait_ssh(_inventory(), timeout=60, interval=0, echo=said.append)
    assert asked == ["n1", "n2", "n1", "n2", "n2"]
    assert said == ["n1 (203.0.113.1): SSH answers", "n2 (203.0.113.2): SSH answers"]


def test_wait_ssh_names_the_silent_hosts_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(inv, h, command, *, timeout):  # type: ignore[no-untyped-def]
        if h.name == "n2":
            raise subprocess.TimeoutExpired("ssh", timeout)
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(remote, "run", run)
    with pytest.raises(ClusterError, match=r"no SSH after 0 s on n2 \(timed out\)"):
        remote.wait_ssh(_inventory(), timeout=0, interval=0)
