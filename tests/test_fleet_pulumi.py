"""The real Pulumi program (``__main__.py``) run against every stack under Pulumi mocks.

No Pulumi engine and no Hetzner API: the mocks (tests/pulumi_harness.py) answer
each resource registration with plausible outputs (public addresses from
TEST-NET-3, 203.0.113.0/24) and record what the program asked for. The
assertions are on those recorded inputs, i.e. on what would be sent to Hetzner.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from pgfleet import ROOT
from pgfleet.errors import PgfleetError
from pgfleet.fleet import policy
from pgfleet.inventory import Inventory
from pgfleet.secrets import Secrets, password_names, s3_key_names
from pgfleet.spec import Spec, config_from_yaml, load, parse
from pulumi_harness import (
    CERT,
    FIREWALL,
    LB_NETWORK,
    LB_SERVICE,
    LB_TARGET,
    LOAD_BALANCER,
    PASSWORD,
    PLACEMENT_GROUP,
    S3_TEST_KEYS,
    SERVER,
    FleetMocks,
    Run,
    run_program,
)
from pulumi_harness import issued_id as _id

#: Ports that must never be open to the whole internet (client endpoints and cluster ports).
DATABASE_PORTS = set(range(5000, 5004)) | {5432, 6432, 8008, 2379, 2380}
WHOLE_INTERNET = {"0.0.0.0/0", "::/0"}


STATIC_STACK = """\
config:
  pgfleet:provider: static
  pgfleet:admin_cidrs: ["203.0.113.0/24"]
  pgfleet:client_cidrs: ["198.51.100.0/24"]
  pgfleet:clusters:
    - name: main
      nodes: 3
      server_type: ccx23
      hosts:
        - {name: bm-1, public_ip: 203.0.113.21, private_ip: 10.42.1.21}
        - {name: bm-2, public_ip: 203.0.113.22, private_ip: 10.42.1.22}
        - {name: bm-3, public_ip: 203.0.113.23}
  pgfleet:monitoring:
    host: {name: bm-monitor, public_ip: 203.0.113.24, private_ip: 10.42.1.24}
"""


@pytest.fixture(scope="module")
def shipped() -> dict[str, Run]:
    """One mocked run per shipped Hetzner stack (they are deterministic apart from mock secrets)."""
    return {stack: run_program(stack) for stack in ("dev", "staging", "prod")}


@pytest.fixture
def static_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    (tmp_path / "Pulumi.bare.yaml").write_text(STATIC_STACK)
    monkeypatch.setenv("PGFLEET_STACKS_DIR", str(tmp_path))
    return run_program("bare")


HCLOUD_STACKS = ["dev", "staging", "prod"]


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_every_cloud_resource_belongs_to_a_component(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    # A URN's type part is "PARENT_TYPE$TYPE" (the mock monitor, like the engine, names the direct parent).
    pairs = [urn.split("::")[2].split("$")[-2:] for urn in run.urns]
    custom = [(parent, typ) for parent, typ in pairs if not typ.startswith(("pgfleet:", "pulumi:"))]
    assert len(custom) > 10
    assert all(parent.startswith("pgfleet:fleet:") for parent, _ in custom), custom
    components = {typ for _, typ in pairs if typ.startswith("pgfleet:fleet:")}
    expected = {"FleetNetwork", "FleetAccess", "ClusterSecrets", "DatabaseCluster", "MonitoringHost"}
    expected |= {"ClusterLoadBalancer"} if load(stack).load_balancer.enabled else set()
    assert components == {f"pgfleet:fleet:{c}" for c in expected}


# --------------------------------------------------------------------------- servers


@pytest.mark.parametrize("stack,count,server_type", [("dev", 1, "cx23"), ("staging", 3, "cpx32"), ("prod", 3, "ccx23")])
def test_servers_count_and_type(shipped: dict[str, Run], stack: str, count: int, server_type: str) -> None:
    servers = _database_servers(shipped[stack])
    assert len(servers) == count
    assert {s.inputs["serverType"] for s in servers} == {server_type}
    spec = load(stack)
    assert {s.inputs["location"] for s in servers} == {spec.location}


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_servers_run_debian13_on_local_disk(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    assert {s.inputs["image"] for s in run.of(SERVER)} == {"debian-13"}
    assert not [c for c in run.created if c.typ.startswith("hcloud:index/volume")], "data belongs on the local NVMe disk"
    for s in run.of(SERVER):
        assert s.inputs["publicNets"] == [{"ipv4Enabled": True, "ipv6Enabled": True}]
        assert s.inputs["labels"]["environment"] == stack
    for s in _database_servers(run):
        assert s.inputs["labels"]["cluster"] == "main"


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_one_spread_group_per_cluster_holds_every_server(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    groups = run.of(PLACEMENT_GROUP)
    assert len(groups) == len(load(stack).clusters) + 1  # and the monitoring host's
    assert {g.inputs["type"] for g in groups} == {"spread"}
    for s in run.of(SERVER):
        assert run.by_id(s.inputs["placementGroupId"]).typ == PLACEMENT_GROUP


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_servers_get_planned_private_ips(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    network = next(c for c in run.created if c.typ == "hcloud:index/network:Network")
    got = {s.inputs["name"]: s.inputs["networks"] for s in run.of(SERVER)}
    expected_ips = [f"10.42.1.{11 + i}" for i in range(len(got))]
    assert sorted(n[0]["ip"] for n in got.values()) == expected_ips
    for nets in got.values():
        assert len(nets) == 1 and _id(nets[0]["networkId"]) == network.id
    subnet = next(c for c in run.created if c.typ == "hcloud:index/networkSubnet:NetworkSubnet")
    assert (subnet.inputs["ipRange"], subnet.inputs["networkZone"]) == ("10.42.1.0/24", load(stack).network_zone)


def _database_servers(run: Run) -> list:
    return [s for s in run.of(SERVER) if s.inputs["labels"]["role"].startswith("postgres")]


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_monitoring_host_in_the_private_network_reachable_by_admins_only(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    (mon,) = [s for s in run.of(SERVER) if s.inputs["labels"]["role"] == "monitor"]
    spec = load(stack)
    assert (mon.inputs["name"], mon.inputs["serverType"]) == (f"{stack}-monitor", spec.monitoring.server_type)
    assert mon.inputs["networks"][0]["ip"] == f"10.42.1.{11 + spec.clusters[0].nodes}"  # after every database node
    (fw,) = [run.by_id(i) for i in mon.inputs["firewallIds"]]
    # SSH and Prometheus/Alertmanager from the admin ranges; the exporters it scrapes are on the private network
    assert sorted((r["port"], tuple(r["sourceIps"])) for r in fw.inputs["rules"]) == sorted(
        [("22", tuple(spec.admin_cidrs)), ("9090", tuple(spec.admin_cidrs)), ("9093", tuple(spec.admin_cidrs))])


# --------------------------------------------------------------------------- firewalls


def _rules(run: Run) -> list[dict]:
    return [r for fw in run.of(FIREWALL) for r in fw.inputs["rules"]]


def _ports(rule: dict) -> set[int]:
    lo, _, hi = rule["port"].partition("-")
    return set(range(int(lo), int(hi or lo) + 1))


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_no_database_or_cluster_port_open_to_the_internet(shipped: dict[str, Run], stack: str) -> None:
    rules = _rules(shipped[stack])
    assert rules, "a firewall with rules must exist"
    for rule in rules:
        assert rule["direction"] == "in"
        if _ports(rule) & DATABASE_PORTS:
            assert not WHOLE_INTERNET & set(rule["sourceIps"]), rule
    spec = load(stack)
    for rule in rules:  # direct PostgreSQL/PgBouncer, stats and Patroni REST: admin ranges only (contract.PORT_MATRIX)
        if _ports(rule) & {5432, 6432, 7000, 8008}:
            assert rule["sourceIps"] == spec.admin_cidrs, rule
    opened = set().union(*(_ports(r) for r in rules))
    assert not opened & {2379, 2380, 8432}, "etcd and pgBackRest's TLS server travel on the private network only"


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_ssh_from_admins_and_endpoints_from_clients_only(shipped: dict[str, Run], stack: str) -> None:
    spec = load(stack)
    rules = _rules(shipped[stack])
    ssh = [r for r in rules if 22 in _ports(r)]
    assert len(ssh) == 2 and {r["port"] for r in ssh} == {"22"} and all(r["sourceIps"] == spec.admin_cidrs for r in ssh)
    endpoints = [r for r in rules if _ports(r) & {5000, 5001, 5002, 5003}]
    assert [(r["port"], r["sourceIps"]) for r in endpoints] == [("5000-5003", spec.client_cidrs)]


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_every_server_is_born_behind_its_firewall(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    for s in run.of(SERVER):
        assert [run.by_id(i).typ for i in s.inputs["firewallIds"]] == [FIREWALL]


# --------------------------------------------------------------------------- user data and secrets


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_user_data_holds_no_secret(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    values = run.secret_values()
    spec = load(stack)
    assert len(values) == len(password_names(spec)) + len(s3_key_names(spec)) + 1
    for s in run.of(SERVER):
        user_data = s.inputs["userData"]
        assert user_data.startswith("#cloud-config\n")
        assert "ssh_pwauth: false" in user_data
        for word in ("password", "private key", "BEGIN"):
            assert word not in user_data.lower() and word not in user_data
        for value in values:
            assert value not in user_data


def test_ssh_key_comes_from_the_spec(shipped: dict[str, Run]) -> None:
    run = shipped["prod"]
    (key,) = run.of("hcloud:index/sshKey:SshKey")
    assert key.inputs["publicKey"] == load("prod").ssh_public_key
    assert {tuple(s.inputs["sshKeys"]) for s in run.of(SERVER)} == {(key.id,)}


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_secrets_output_is_a_secret_with_every_password(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    assert "secrets" in run.secret_outputs
    assert "inventory" not in run.secret_outputs
    s = Secrets.model_validate(run.outputs["secrets"])
    spec = load(stack)
    assert sorted(s.passwords) == sorted(password_names(spec) + s3_key_names(spec))
    assert len(run.of(PASSWORD)) == len(password_names(spec))
    # object storage keys come from the stack's config secrets, not from a generator
    for k in s3_key_names(spec):
        assert s.passwords[k] == S3_TEST_KEYS[k]
    assert bool(s3_key_names(spec)) == spec.backups.enabled
    assert "PRIVATE KEY" in s.ca_key_pem and "CERTIFICATE" in s.ca_cert_pem
    (cert,) = run.of(CERT)
    assert cert.inputs["isCaCertificate"] is True


# --------------------------------------------------------------------------- load balancer


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_no_load_balancer_unless_enabled(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    assert not [c for c in run.created if c.typ.startswith("hcloud:index/loadBalancer")]
    assert run.outputs["inventory"]["load_balancers"] == {}


def test_prod_load_balancer_checks_patroni_over_the_private_network(shipped: dict[str, Run]) -> None:
    run = shipped["prod"]
    (lb,) = run.of(LOAD_BALANCER)
    assert lb.inputs["loadBalancerType"] == "lb11"
    (attachment,) = run.of(LB_NETWORK)
    assert attachment.inputs["enablePublicInterface"] is False, "Hetzner cannot firewall a load balancer"
    services = {s.inputs["listenPort"]: s.inputs for s in run.of(LB_SERVICE)}
    assert sorted(services) == [5000, 5001]
    for port, path in ((5000, "/primary"), (5001, "/replica")):
        svc = services[port]
        assert (svc["protocol"], svc["destinationPort"]) == ("tcp", port)
        check = svc["healthCheck"]
        assert (check["protocol"], check["port"]) == ("http", 8008)
        assert check["http"]["path"] == path and check["http"]["tls"] is True
    targets = run.of(LB_TARGET)
    servers = {s.id for s in _database_servers(run)}
    assert len(targets) == 3 and {_id(t.inputs["serverId"]) for t in targets} == servers
    assert all(t.inputs["usePrivateIp"] is True for t in targets)
    assert run.outputs["inventory"]["load_balancers"] == {"main": attachment.inputs["ip"]}
    assert ipaddress.ip_address(attachment.inputs["ip"]) in ipaddress.ip_network("10.42.1.0/24")


# --------------------------------------------------------------------------- inventory


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_inventory_output_is_the_inventory_shape(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    inv = Inventory.model_validate(run.outputs["inventory"])
    spec = load(stack)
    assert (inv.stack, inv.provider, inv.ssh_key_file, inv.known_hosts_file) == (stack, "hcloud", None, None)
    n = spec.clusters[0].nodes
    assert [h.name for h in inv.hosts] == [f"{stack}-main-{i}" for i in range(1, n + 1)] + [f"{stack}-monitor"]
    assert [h.private_ip for h in inv.hosts] == [f"10.42.1.{10 + i}" for i in range(1, n + 2)]
    etcd = spec.etcd.members
    assert [h.roles for h in inv.hosts] == [["postgres", "etcd"]] * etcd + [["postgres"]] * (n - etcd) + [["monitor"]]
    public = {s.inputs["name"]: s.outputs["ipv4Address"] for s in run.of(SERVER)}
    assert {h.name: h.public_ip for h in inv.hosts} == public
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("203.0.113.0/24") for ip in public.values())
    assert {h.server_type for h in inv.hosts[:n]} == {spec.clusters[0].server_type}
    assert inv.hosts[n].server_type == spec.monitoring.server_type


# --------------------------------------------------------------------------- other providers and refusals


@pytest.mark.parametrize("stack", HCLOUD_STACKS)
def test_endpoints_output_carries_dead_peer_detection_and_no_secret(shipped: dict[str, Run], stack: str) -> None:
    run = shipped[stack]
    assert "endpoints" not in run.secret_outputs and "ca_cert" not in run.secret_outputs
    inv = Inventory.model_validate(run.outputs["inventory"])
    values = run.secret_values()
    for c in load(stack).clusters:
        got = run.outputs["endpoints"][c.name]
        assert sorted(got) == ["libpq15", "libpq16"]
        assert sorted(got["libpq16"]) == ["direct-ro", "direct-rw", "ro", "rw"]
        for version, dsns in got.items():
            for kind, dsn in dsns.items():
                assert "sslmode=verify-full" in dsn and "tcp_user_timeout=" in dsn and "keepalives=1" in dsn, dsn
                assert "passfile" not in dsn and "sslrootcert" not in dsn and not any(v in dsn for v in values)
                hosts = dsn.split("host=", 1)[1].split()[0].split(",")
                many = len(hosts) > 1
                assert ("load_balance_hosts=random" in dsn) == (version == "libpq16" and many), dsn
                assert hosts == ([inv.load_balancers[c.name]] if c.name in inv.load_balancers
                                 else [h.public_ip for h in inv.by_role("postgres", c.name)])
    assert "BEGIN CERTIFICATE" in run.outputs["ca_cert"]


def test_static_stack_creates_secrets_but_no_cloud_resources(static_run: Run) -> None:
    assert not [c for c in static_run.created if c.typ.startswith("hcloud:")]
    assert "secrets" in static_run.secret_outputs
    assert len(static_run.of(PASSWORD)) == len(Secrets.model_validate(static_run.outputs["secrets"]).passwords)
    inv = Inventory.model_validate(static_run.outputs["inventory"])
    assert inv.provider == "static" and inv.stack == "bare"
    assert [(h.name, h.public_ip, h.private_ip) for h in inv.hosts] == [
        ("bm-1", "203.0.113.21", "10.42.1.21"),
        ("bm-2", "203.0.113.22", "10.42.1.22"),
        ("bm-3", "203.0.113.23", "203.0.113.23"),
        ("bm-monitor", "203.0.113.24", "10.42.1.24"),
    ]


def test_lab_stack_is_refused_with_the_command_to_use() -> None:
    with pytest.raises(pulumi.RunError, match="pgfleet lab up"):
        run_program("lab")


def _write_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **config: Any) -> None:
    """A copy of the dev stack as ``stacks/Pulumi.NAME.yaml`` in tmp_path; None removes a key."""
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    for key, value in config.items():
        doc["config"].pop(f"pgfleet:{key}", None)
        if value is not None:
            doc["config"][f"pgfleet:{key}"] = value
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("PGFLEET_STACKS_DIR", str(tmp_path))


def test_dedicated_etcd_nodes_get_their_own_spread_group_and_ssh_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_variant(tmp_path, monkeypatch, "split", clusters=[{"name": "main", "nodes": 3, "server_type": "ccx13"}],
                   etcd={"placement": "dedicated", "members": 3, "server_type": "cx23"})
    run = run_program("split")
    servers = {s.inputs["name"]: s for s in run.of(SERVER)}
    etcd = [f"split-etcd-{i}" for i in (1, 2, 3)]
    assert sorted(servers) == sorted([f"split-main-{i}" for i in (1, 2, 3)] + etcd + ["split-monitor"])
    assert {servers[n].inputs["serverType"] for n in etcd} == {"cx23"}
    assert len(run.of(PLACEMENT_GROUP)) == 3  # databases, etcd, monitoring
    etcd_groups = {_id(servers[n].inputs["placementGroupId"]) for n in etcd}
    db_groups = {_id(s.inputs["placementGroupId"]) for n, s in servers.items() if n.startswith("split-main-")}
    assert len(etcd_groups) == 1 and len(db_groups) == 1 and etcd_groups != db_groups
    (etcd_firewall,) = {_id(i) for n in etcd for i in servers[n].inputs["firewallIds"]}
    assert [r["port"] for r in run.by_id(etcd_firewall).inputs["rules"]] == ["22"]
    inv = Inventory.model_validate(run.outputs["inventory"])
    assert [(h.name, h.cluster, h.roles) for h in inv.hosts if h.name in etcd] == [(n, None, ["etcd"]) for n in etcd]
    assert all(h.roles == ["postgres"] for h in inv.hosts if h.name.startswith("split-main-"))


def test_hcloud_without_ssh_key_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_variant(tmp_path, monkeypatch, "nokey", ssh_public_key=None)
    mocks = FleetMocks()
    with pytest.raises(pulumi.RunError, match="pgfleet:ssh_public_key") as e:
        run_program("nokey", mocks)
    assert "is not set" in str(e.value)
    assert not mocks.created, "refused before any resource (or secret) is created"


def test_endpoints_open_to_the_world_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_variant(tmp_path, monkeypatch, "open", client_cidrs=["0.0.0.0/0"])
    with pytest.raises(pulumi.RunError, match=r"client_cidrs\[0\].*whole internet"):
        run_program("open")


# --------------------------------------------------------------------------- policy without an engine


def _dev_spec(**changes: Any) -> Spec:
    data = config_from_yaml((ROOT / "stacks" / "Pulumi.dev.yaml").read_text(), "dev")
    return parse({**data, "environment": "dev", **changes})


def test_user_data_gives_another_ssh_user_the_key_and_sudo() -> None:
    spec = _dev_spec(ssh_user="ops")
    text = policy.user_data(spec)
    doc = yaml.safe_load(text)
    (user,) = doc["users"]
    assert (user["name"], user["ssh_authorized_keys"], doc["disable_root"]) == ("ops", [spec.ssh_public_key], True)
    assert "password" not in text.lower()
    assert "users" not in yaml.safe_load(policy.user_data(_dev_spec())), "root gets the key from Hetzner's ssh_keys"


def test_load_balancer_addresses_stay_clear_of_host_addresses() -> None:
    three = [{"name": "main", "nodes": 3, "server_type": "cx23"}]
    spec = _dev_spec(clusters=three, etcd={"members": 3}, load_balancer={"enabled": True})
    policy.check_hcloud(spec)
    assert policy.load_balancer_ip(spec, 0) == "10.42.1.254"
    small = {"ip_range": "10.42.0.0/16", "subnet": "10.42.1.0/28"}  # hosts .11-.14, the balancer would take .14
    with pytest.raises(PgfleetError, match="network.subnet"):
        policy.check_hcloud(_dev_spec(clusters=[{**three[0], "nodes": 4}], etcd={"members": 3},
                                      load_balancer={"enabled": True}, network=small))
