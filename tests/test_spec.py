"""The environment spec: shipped stacks load, every bad input is named with its fix."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pgfleet import spec as spec_mod
from pgfleet.errors import SpecError, StackNotFound

STACKS = ["dev", "staging", "prod", "lab"]


def _config(stack: str) -> dict:
    doc = yaml.safe_load(spec_mod.stack_path(stack).read_text())
    return doc["config"]


def _problems(config: dict, name: str = "bad") -> list:
    with pytest.raises(SpecError) as e:
        spec_mod.parse({**spec_mod.config_from_yaml(yaml.safe_dump({"config": config}), name), "environment": name}, name)
    return e.value.problems


def _fields(problems: list) -> list[str]:
    return [p.field for p in problems]


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_load(stack: str) -> None:
    s = spec_mod.load(stack)
    assert s.environment == stack
    assert s.clusters


def test_shipped_stacks_have_the_promised_shapes() -> None:
    dev, staging, prod, lab = (spec_mod.load(s) for s in STACKS)
    assert dev.clusters[0].nodes == 1 and not dev.clusters[0].synchronous
    assert staging.clusters[0].nodes == 3
    assert prod.production and prod.clusters[0].nodes == 3 and prod.clusters[0].synchronous
    assert prod.clusters[0].server.dedicated and prod.clusters[0].server_type.startswith("ccx")
    assert prod.load_balancer.enabled
    # the lab mirrors prod's topology
    assert lab.provider == "lab" and lab.clusters[0].nodes == 3 and lab.clusters[0].synchronous
    assert lab.etcd.members == prod.etcd.members


def test_settings_outside_the_namespace_and_secure_values_are_ignored() -> None:
    cfg = _config("lab")
    cfg["hcloud:token"] = "x"
    cfg["pgfleet:s3_access_key"] = {"secure": "v1:abc"}  # a Pulumi config secret: the program's, not the spec's
    s = spec_mod.parse({**spec_mod.config_from_yaml(yaml.safe_dump({"config": cfg}), "t"), "environment": "t"})
    assert s.provider == "lab"


def _prod() -> dict:
    return copy.deepcopy(_config("prod"))


def _set(cfg: dict, key: str, value) -> dict:
    cfg[f"pgfleet:{key}"] = value
    return cfg


def _cluster(cfg: dict, **changes) -> dict:
    cfg["pgfleet:clusters"][0].update(changes)
    return cfg


BAD_INPUTS = [
    # (description, mutate, expected field, words expected in message or fix)
    ("unknown server type", lambda c: _cluster(c, server_type="cx99"), "pgfleet:clusters[0].server_type", "ccx13"),
    ("deprecated server type", lambda c: _cluster(c, server_type="cx22"), "pgfleet:clusters[0].server_type", "cx23"),
    ("unknown location", lambda c: _set(c, "location", "mars1"), "pgfleet:location", "fsn1"),
    ("even etcd members", lambda c: _set(c, "etcd", {"members": 2}), "pgfleet:etcd.members", "odd"),
    ("one etcd member for HA", lambda c: _set(c, "etcd", {"members": 1}), "pgfleet:etcd.members", "at least 3"),
    ("zero nodes", lambda c: _cluster(c, nodes=0), "pgfleet:clusters[0].nodes", "at least one"),
    ("sync on one node", lambda c: _set(_cluster(c, nodes=1, synchronous=True), "production", False) and _set(c, "etcd", {"members": 1}),
     "pgfleet:clusters[0].synchronous", "standby"),
    ("pools over max_connections", lambda c: _set(c, "pgbouncer", {"default_pool_size": 500}), "pgfleet:pgbouncer.default_pool_size", "max_connections"),
    ("malformed CIDR", lambda c: _set(c, "client_cidrs", ["10.42.0.0/33"]), "pgfleet:client_cidrs[0]", "ADDRESS/PREFIX"),
    ("CIDR with host bits", lambda c: _set(c, "admin_cidrs", ["203.0.113.7/24"]), "pgfleet:admin_cidrs[0]", "host bits"),
    ("overlapping CIDRs", lambda c: _set(c, "client_cidrs", ["10.42.0.0/16", "10.42.5.0/24"]), "pgfleet:client_cidrs[1]", "overlaps"),
    ("subnet outside the network", lambda c: _set(c, "network", {"ip_range": "10.42.0.0/16", "subnet": "10.43.1.0/24"}), "pgfleet:network.subnet", "ip_range"),
    ("prod without admin CIDRs", lambda c: _set(c, "admin_cidrs", []), "pgfleet:admin_cidrs", "admin ranges"),
    ("prod SSH open to the world", lambda c: _set(c, "admin_cidrs", ["0.0.0.0/0"]), "pgfleet:admin_cidrs[0]", "whole internet"),
    ("backups without endpoint", lambda c: _set(c, "backups", {"enabled": True, "bucket": "b"}), "pgfleet:backups.endpoint", "endpoint"),
    ("backups without bucket", lambda c: _set(c, "backups", {"enabled": True, "endpoint": "e"}), "pgfleet:backups.bucket", "bucket"),
    ("extension Debian does not ship", lambda c: _cluster(c, databases=[{"name": "app", "owner": "app", "extensions": ["timescaledb"]}]),
     "pgfleet:clusters[0].databases[0].extensions[0]", "pg_trgm"),
    ("pgvector settings without pgvector", lambda c: _cluster(c, databases=[{"name": "app", "owner": "app", "extensions": [], "vector": {"ef_search": 80}}]),
     "pgfleet:clusters[0].databases[0].vector", "vector extension"),
    ("unknown key", lambda c: _set(c, "replicas", 3), "pgfleet:replicas", "spelling"),
    ("wrong type", lambda c: _cluster(c, nodes="three"), "pgfleet:clusters[0].nodes", "correct"),
    ("bad provider", lambda c: _set(c, "provider", "aws"), "pgfleet:provider", "hcloud"),
    ("patroni ttl below 20", lambda c: _set(c, "failover", {"ttl": 10}), "pgfleet:failover.ttl", "20"),
    ("patroni loop_wait + 2 retry > ttl", lambda c: _set(c, "failover", {"ttl": 20, "loop_wait": 10, "retry_timeout": 10}), "pgfleet:failover", "loop_wait + 2"),
    ("load balancer on the lab", lambda c: _set(_set(_set(c, "provider", "lab"), "network", {"ip_range": "198.18.0.0/24", "subnet": "198.18.0.0/24"}),
                                                "load_balancer", {"enabled": True}), "pgfleet:load_balancer.enabled", "hcloud"),
    ("lab off its network", lambda c: _set(_set(c, "provider", "lab"), "load_balancer", {"enabled": False}), "pgfleet:network.subnet", "198.18.0.0/24"),
    ("static without hosts", lambda c: _set(_set(c, "provider", "static"), "load_balancer", {"enabled": False}), "pgfleet:clusters[0].hosts", "existing hosts"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_field_and_fix(case) -> None:
    _, mutate, field, words = case
    cfg = _prod()
    mutate(cfg)
    problems = _problems(cfg)
    matching = [p for p in problems if p.field == field]
    assert matching, f"expected a problem on {field}, got {_fields(problems)}"
    text = " ".join(f"{p.message} {p.fix}" for p in matching)
    assert words in text
    assert all(p.fix for p in problems)


@pytest.mark.parametrize("major", [16, 18])
def test_a_major_debian_13_does_not_ship_is_pgfleets_own_problem(major: int) -> None:
    problems = [p for p in _problems(_cluster(_prod(), postgres_major=major)) if p.field == "pgfleet:clusters[0].postgres_major"]
    assert [(p.value, f"{p.message}; {p.fix}") for p in problems] == [
        (major, "Debian 13 ships PostgreSQL 17 only; set postgres_major: 17")]


def test_every_problem_is_reported_at_once() -> None:
    cfg = _prod()
    _cluster(cfg, server_type="cx22")
    _set(cfg, "location", "nowhere")
    _set(cfg, "etcd", {"members": 4})
    _set(cfg, "admin_cidrs", [])
    fields = _fields(_problems(cfg))
    for f in ("pgfleet:clusters[0].server_type", "pgfleet:location", "pgfleet:etcd.members", "pgfleet:admin_cidrs"):
        assert f in fields


def test_static_hosts_become_node_names() -> None:
    cfg = _prod()
    _set(cfg, "provider", "static")
    _set(cfg, "load_balancer", {"enabled": False})
    _cluster(cfg, hosts=[{"name": f"db{i}", "public_ip": f"203.0.113.{i}", "private_ip": f"10.42.1.{i}"} for i in (1, 2, 3)])
    _set(cfg, "monitoring", {"host": {"name": "mon", "public_ip": "203.0.113.9"}})
    s = spec_mod.parse({**spec_mod.config_from_yaml(yaml.safe_dump({"config": cfg}), "s"), "environment": "static1"})
    assert s.node_names(s.clusters[0]) == ["db1", "db2", "db3"]


def test_static_stack_needs_its_monitoring_host_and_others_must_not_list_one() -> None:
    cfg = _prod()
    _set(cfg, "provider", "static")
    _set(cfg, "load_balancer", {"enabled": False})
    _cluster(cfg, hosts=[{"name": f"db{i}", "public_ip": f"203.0.113.{i}"} for i in (1, 2, 3)])
    with pytest.raises(SpecError, match=r"pgfleet:monitoring\.host.*set host: \{name, public_ip, private_ip\}"):
        spec_mod.parse({**spec_mod.config_from_yaml(yaml.safe_dump({"config": cfg}), "s"), "environment": "static1"})
    cfg = _prod()
    _set(cfg, "monitoring", {"host": {"name": "mon", "public_ip": "203.0.113.9"}})
    with pytest.raises(SpecError, match=r"pgfleet:monitoring\.host.*only for provider static"):
        spec_mod.parse({**spec_mod.config_from_yaml(yaml.safe_dump({"config": cfg}), "s"), "environment": "p"})


def test_unknown_stack_names_the_known_ones() -> None:
    with pytest.raises(StackNotFound, match="known stacks: dev, lab, prod, staging"):
        spec_mod.load("nope")


def test_not_yaml_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "Pulumi.x.yaml"
    f.write_text("config: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        spec_mod.load(str(f))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgfleet.cli", *args], capture_output=True, text=True)


def test_cli_validate_ok() -> None:
    r = _cli("validate", "prod")
    assert r.returncode == 0, r.stderr
    assert "ok prod" in r.stdout


def _stack_file(tmp_path: Path, cfg: dict) -> Path:
    """A stack file holding ``cfg``, for the CLI to read."""
    f = tmp_path / "Pulumi.broken.yaml"
    f.write_text(yaml.safe_dump({"config": cfg}))
    return f


def test_cli_validate_prints_every_problem_without_traceback(tmp_path: Path) -> None:
    cfg = _prod()
    _cluster(cfg, server_type="cx32", nodes=1)
    _set(cfg, "etcd", {"members": 2})
    f = _stack_file(tmp_path, cfg)
    r = _cli("validate", str(f))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "pgfleet:clusters[0].server_type: 'cx32'" in r.stderr and "cx33" in r.stderr
    assert "pgfleet:etcd.members: 2" in r.stderr
    assert "pgfleet:clusters[0].nodes: 1" in r.stderr


def test_cli_inventory_validates_first(tmp_path: Path) -> None:
    cfg = _prod()
    _set(cfg, "location", "atlantis")
    f = _stack_file(tmp_path, cfg)
    r = _cli("inventory", str(f))
    assert r.returncode == 2 and "pgfleet:location" in r.stderr


def _structural_and_semantic(cfg: dict) -> None:
    """The brief's case: a Literal mismatch (load balancer) beside two semantic problems."""
    _cluster(cfg, server_type="cx22")
    _set(cfg, "location", "mars1")
    cfg["pgfleet:load_balancer"]["type"] = "lb99"


def test_a_structural_error_does_not_hide_semantic_problems() -> None:
    cfg = _prod()
    _structural_and_semantic(cfg)
    problems = _problems(cfg)
    by_field = {p.field: p for p in problems}
    assert set(by_field) == {"pgfleet:clusters[0].server_type", "pgfleet:location", "pgfleet:load_balancer.type"}
    assert "cx23" in by_field["pgfleet:clusters[0].server_type"].fix
    assert "fsn1" in by_field["pgfleet:location"].fix
    assert "lb11" in by_field["pgfleet:load_balancer.type"].message
    assert all(p.fix for p in problems)


def test_cli_validate_reports_structural_and_semantic_problems_together(tmp_path: Path) -> None:
    cfg = _prod()
    _structural_and_semantic(cfg)
    f = _stack_file(tmp_path, cfg)
    r = _cli("validate", str(f))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "pgfleet:clusters[0].server_type: 'cx22'" in r.stderr and "cx23" in r.stderr
    assert "pgfleet:location: 'mars1'" in r.stderr
    assert "pgfleet:load_balancer.type: 'lb99'" in r.stderr
    assert r.stderr.count("Fix:") == 3


def test_unknown_key_beside_a_cross_field_problem_in_another_section() -> None:
    cfg = _prod()
    cfg["pgfleet:backups"]["retention_ful"] = 4
    _set(cfg, "etcd", {"members": 2})
    fields = _fields(_problems(cfg))
    assert sorted(fields) == ["pgfleet:backups.retention_ful", "pgfleet:etcd.members"]


def test_no_follow_on_problems_from_the_removed_value() -> None:
    cfg = _prod()
    _set(cfg, "failover", {"ttl": "ten", "loop_wait": 30})  # ttl's default would make loop_wait look wrong
    assert _fields(_problems(cfg)) == ["pgfleet:failover.ttl"]


def test_without_a_best_effort_spec_the_structural_problems_stand_alone() -> None:
    cfg = _prod()
    del cfg["pgfleet:clusters"]
    _set(cfg, "location", "mars1")
    assert _fields(_problems(cfg)) == ["pgfleet:clusters"]
