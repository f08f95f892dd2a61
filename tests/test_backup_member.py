"""Unit tests: which member takes the backups (pgfleet/node/backup_member.py, also the nodes' guard)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgfleet.node import backup_member as member
from pgfleet.node.patroni import Member
from roles import node


def m(name: str, role: str, state: str, lag: int | str = 0) -> Member:
    return Member.from_json({"name": name, "role": role, "state": state, "lag": lag})


def guard(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The guard as a node runs it: the package copied as the deploy copies it, its launcher, a contract file
    whose Patroni does not answer (nothing listens on port 9 here)."""
    pkg = tmp_path / "pgfleet_node"
    pkg.mkdir(exist_ok=True)
    for name, text in node.package_files().items():
        (pkg / name).write_text(text)
    (tmp_path / "node.json").write_text(node.node_config().replace('"https://127.0.0.1:8008"', '"https://127.0.0.1:9"'))
    launcher = tmp_path / "backup-member"
    launcher.write_text(node.launcher("backup-member", str(tmp_path), str(tmp_path / "node.json")))
    return subprocess.run([sys.executable, str(launcher), *args], capture_output=True, text=True)


def test_an_asynchronous_streaming_replica_first() -> None:
    ms = [m("a", "leader", "running"), m("b", "sync_standby", "streaming"), m("c", "replica", "streaming", 100)]
    assert member.choose(ms) == "c"


def test_the_synchronous_standby_when_it_is_the_only_streaming_one() -> None:
    ms = [m("a", "leader", "running"), m("b", "sync_standby", "streaming"), m("c", "replica", "starting")]
    assert member.choose(ms) == "b"


def test_least_lag_then_name_so_every_member_agrees() -> None:
    ms = [m("a", "leader", "running"), m("c", "replica", "streaming", 5), m("b", "replica", "streaming", 5),
          m("d", "replica", "streaming", "unknown")]
    assert member.choose(ms) == "b"
    assert member.choose(list(reversed(ms))) == "b"


def test_the_leader_when_no_standby_streams() -> None:
    ms = [m("a", "replica", "stopped"), m("b", "leader", "running"), m("c", "replica", "starting")]
    assert member.choose(ms) == "b"


def test_no_leader_no_backup() -> None:
    with pytest.raises(member.NoLeader, match="no running leader"):
        member.choose([m("a", "replica", "streaming"), m("b", "leader", "stopped")])


def test_guard_refuses_without_a_command(tmp_path: Path) -> None:
    p = guard(tmp_path, "lab-main-1")
    assert p.returncode == 2 and "usage" in p.stderr, p.stderr


def test_guard_fails_when_patroni_does_not_answer(tmp_path: Path) -> None:
    # no Patroni on this machine: a scheduled backup must fail visibly, never pass as "skipped"
    p = guard(tmp_path, "lab-main-1", "true")
    assert p.returncode == 1 and "does not answer" in p.stderr and "skipped" not in p.stdout, (p.stdout, p.stderr)
