"""Unit tests: which member takes the backups (pgfleet/backup/member.py, also the nodes' guard)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgfleet.backup import member


def m(name: str, role: str, state: str, lag: int | str = 0) -> dict[str, object]:
    return {"name": name, "role": role, "state": state, "lag": lag}


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


def test_guard_refuses_without_a_command() -> None:
    p = subprocess.run([sys.executable, member.__file__, "lab-main-1"], capture_output=True, text=True)
    assert p.returncode == 2 and "usage" in p.stderr, p.stderr


def test_guard_fails_when_patroni_does_not_answer() -> None:
    # no Patroni on this machine: a scheduled backup must fail visibly, never pass as "skipped"
    p = subprocess.run([sys.executable, member.__file__, "lab-main-1", "true"], capture_output=True, text=True)
    assert p.returncode == 1 and "does not answer" in p.stderr and "skipped" not in p.stdout, (p.stdout, p.stderr)
