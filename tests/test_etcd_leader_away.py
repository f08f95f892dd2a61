"""Unit tests: handing etcd's leadership away from the primary's node (pgfleet/node/etcd_leader_away.py)."""

from __future__ import annotations

import json

import pytest

from deploy_fixtures import host_datas
from pgfleet.node import etcd_leader_away as away
from roles import etcd

MEMBERS = [{"ID": "300", "name": "c"}, {"ID": "100", "name": "a"}, {"ID": "200", "name": "b"},
           {"ID": "400", "name": "", "isLearner": True}]


def status(me: str, leader: str) -> dict[str, object]:
    return {"header": {"member_id": me}, "leader": leader}


def test_moves_only_when_this_member_leads() -> None:
    assert away.targets(status("200", "100"), MEMBERS) == []
    assert away.targets(status("100", "100"), MEMBERS) == ["200", "300"]  # lowest other id first: every run agrees
    assert away.targets(status("300", "300"), MEMBERS) == ["100", "200"]


def test_never_to_an_unstarted_member_or_learner() -> None:
    assert away.targets(status("100", "100"), [{"ID": "100", "name": "a"}, {"ID": "400", "name": ""}]) == []
    assert away.targets(status("100", "100"), [{"ID": "100", "name": "a"}, {"ID": "500", "name": "e", "isLearner": True}]) == []


def test_once_leaves_etcd_alone_on_a_replica_node() -> None:
    class Replica:
        def is_primary(self) -> bool:
            return False

        def status(self) -> dict[str, object]:
            raise AssertionError("a replica's node must not even ask etcd")

    assert away.once(Replica()) is None  # type: ignore[arg-type]


class PrimaryLeadingEtcd:
    """This node runs the primary and leads etcd; ``down`` members refuse the transfer."""

    def __init__(self, down: tuple[str, ...] = ()) -> None:
        self.down = down
        self.tried: list[str] = []

    def is_primary(self) -> bool:
        return True

    def status(self) -> dict[str, object]:
        return status("100", "100")

    def members(self) -> list[dict[str, object]]:
        return MEMBERS

    def move_leader(self, to: str) -> None:
        self.tried.append(to)
        if to in self.down:  # e.g. the old primary's node, powered off
            raise TimeoutError("timed out")


def test_once_moves_leadership_off_the_primary() -> None:
    c = PrimaryLeadingEtcd()
    assert away.once(c) == "200" and c.tried == ["200"]  # type: ignore[arg-type]


def test_a_member_that_is_down_is_skipped() -> None:
    c = PrimaryLeadingEtcd(down=("200",))
    assert away.once(c) == "300" and c.tried == ["200", "300"]  # type: ignore[arg-type]


def test_no_member_takes_it_is_an_error_to_retry() -> None:
    c = PrimaryLeadingEtcd(down=("200", "300"))
    with pytest.raises(OSError, match="no member took etcd's leadership"):  # the service logs it and retries
        away.once(c)  # type: ignore[arg-type]


def test_deploy_config_names_the_local_member_and_stays_secret() -> None:
    s, inv, hd = host_datas("lab")
    d = hd["lab-main-2"]
    cfg = json.loads(etcd.leader_away_config(d, "ROOTPW"))
    assert cfg["etcd"] == f"https://{d['pgfleet_ip']}:2379" and cfg["patroni"] == "https://127.0.0.1:8008"
    assert cfg["root_password"] == "ROOTPW" and cfg["interval"] == 2
