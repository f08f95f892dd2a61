"""Unit tests: how pgfleet reaches a node over SSH (pgfleet/remote.py)."""

from __future__ import annotations

from deploy_fixtures import fake_inventory
from pgfleet import remote, spec


def test_pinned_host_keys_key_file_port_and_user() -> None:
    inv = fake_inventory(spec.load("lab"), "lab").model_copy(update={"ssh_key_file": "/k/id", "known_hosts_file": "/k/known"})
    h = inv.hosts[0].model_copy(update={"ssh_port": 2222})
    argv = remote.ssh_argv(inv, h, "true")
    assert argv[0] == "ssh" and argv[-2:] == [f"{h.ssh_user}@{h.public_ip}", "true"]
    assert "BatchMode=yes" in argv and ["-p", "2222"] == argv[argv.index("-p"):argv.index("-p") + 2]
    assert ["-i", "/k/id"] == argv[argv.index("-i"):argv.index("-i") + 2]
    assert "UserKnownHostsFile=/k/known" in argv and "StrictHostKeyChecking=yes" in argv


def test_argv_commands_are_quoted_once() -> None:
    assert remote.command_line(["psql", "-c", "SELECT 'a b'"]) == "psql -c 'SELECT '\"'\"'a b'\"'\"''"
    assert remote.command_line("systemctl start x && echo ok") == "systemctl start x && echo ok"


def test_without_pinned_keys_no_known_hosts_option() -> None:
    inv = fake_inventory(spec.load("dev"), "dev").model_copy(update={"ssh_key_file": None, "known_hosts_file": None})
    argv = remote.ssh_argv(inv, inv.hosts[0], "true")
    assert not any(a.startswith("UserKnownHostsFile") for a in argv) and "-i" not in argv
