"""Derived numbers: computed from the spec's server type, in one place."""

from __future__ import annotations

import pytest

from pgfleet import contract, sizing
from pgfleet import spec as spec_mod
from pgfleet.inventory import ROLE_CLIENT, ROLE_ETCD, ROLE_POSTGRES, plan
from pgfleet.server_types import SERVER_TYPES


def _spec(server_type: str = "ccx23", profile: str = "vector", **extra) -> spec_mod.Spec:
    cluster = {"name": "main", "nodes": 3, "server_type": server_type, "profile": profile, **extra.pop("cluster", {})}
    return spec_mod.parse({"environment": "t", "provider": "hcloud", "clusters": [cluster], **extra})


def _mb(v: str) -> int:
    assert v.endswith("MB")
    return int(v[:-2])


@pytest.mark.parametrize("server_type", sorted(SERVER_TYPES))
def test_memory_is_sized_from_the_server_type(server_type: str) -> None:
    ram = SERVER_TYPES[server_type].memory_mib
    for profile in ("oltp", "vector"):
        s = _spec(server_type, profile)
        p = sizing.postgres_parameters(s, s.clusters[0])
        shared = _mb(p["shared_buffers"])
        # oltp: PostgreSQL's 25 %; vector: between that and the documented 40 % ceiling
        assert shared == ram // 4 if profile == "oltp" else ram // 4 <= shared <= ram * 2 // 5
        assert _mb(p["effective_cache_size"]) == ram * 3 // 4
        assert 4 <= _mb(p["work_mem"]) <= 256
        assert int(p["max_parallel_maintenance_workers"]) <= SERVER_TYPES[server_type].cores


@pytest.mark.parametrize("server_type", sorted(SERVER_TYPES))
def test_vector_memory_stays_under_the_kernels_commit_limit(server_type: str) -> None:
    """vm.overcommit_memory=2: shared_buffers, one HNSW build, autovacuum, every connection's work_mem and the
    other services together stay under overcommit_ratio % of RAM."""
    s = _spec(server_type, "vector")
    c = s.clusters[0]
    p, b = sizing.postgres_parameters(s, c), sizing.memory_budget(c)
    ram = SERVER_TYPES[server_type].memory_mib
    assert b.commit_limit == ram * int(sizing.kernel_sysctls(c)["vm.overcommit_ratio"]) // 100
    assert b.shared_buffers == _mb(p["shared_buffers"]) and b.index_build == _mb(p["maintenance_work_mem"])
    assert b.autovacuum == sizing.AUTOVACUUM_MAX_WORKERS * _mb(p["autovacuum_work_mem"])
    assert b.connections == int(p["max_connections"]) * (_mb(p["work_mem"]) + sizing.BACKEND_MIB)
    assert b.peak <= b.commit_limit, b
    if ram >= 64 * 1024:
        assert _mb(p["shared_buffers"]) == ram * 2 // 5


def test_vector_profile_gives_hnsw_builds_more_memory_and_workers() -> None:
    v, o = _spec("ccx33", "vector"), _spec("ccx33", "oltp")
    pv, po = sizing.postgres_parameters(v, v.clusters[0]), sizing.postgres_parameters(o, o.clusters[0])
    assert _mb(pv["maintenance_work_mem"]) == 32768 // 4 > _mb(po["maintenance_work_mem"])
    assert _mb(pv["shared_buffers"]) > _mb(po["shared_buffers"])
    # autovacuum's workers do not each get the HNSW build's memory
    assert _mb(pv["autovacuum_work_mem"]) < _mb(pv["maintenance_work_mem"]) and "autovacuum_work_mem" not in po
    assert int(pv["max_parallel_maintenance_workers"]) > int(po["max_parallel_maintenance_workers"])
    # a parallel build's workers (plus the leader) come out of max_parallel_workers and max_worker_processes
    assert int(pv["max_parallel_maintenance_workers"]) + 1 <= int(pv["max_parallel_workers"]) < int(pv["max_worker_processes"])


@pytest.mark.parametrize("profile", ["oltp", "vector"])
def test_tuned_profiles_preload_autoprewarm_beside_pg_stat_statements(profile: str) -> None:
    s = _spec(profile=profile)
    p = sizing.postgres_parameters(s, s.clusters[0])
    assert p["shared_preload_libraries"].split(",") == ["pg_stat_statements", "pg_prewarm"]
    assert p["pg_prewarm.autoprewarm"] == "on" and p["pg_prewarm.autoprewarm_interval"] == "300s"
    assert sizing.prewarms(s.clusters[0])


def test_stock_profile_is_postgres_defaults_plus_what_ha_needs() -> None:
    s, v = _spec(profile="stock"), _spec(profile="vector")
    p, pv = sizing.postgres_parameters(s, s.clusters[0]), sizing.postgres_parameters(v, v.clusters[0])
    assert p == sizing.replication_parameters(s, s.clusters[0])
    assert set(p) == {"max_connections", "wal_level", "wal_log_hints", "max_wal_senders", "max_replication_slots",
                      "hot_standby_feedback", "wal_sender_timeout", "shared_preload_libraries", "password_encryption",
                      "ssl_min_protocol_version"}
    # the same topology: connections (pools), replication and failover timing as the tuned profile
    assert all(p[k] == pv[k] for k in p if k != "shared_preload_libraries")
    assert p["shared_preload_libraries"] == "pg_stat_statements" and not sizing.prewarms(s.clusters[0])
    # what the monitoring compares against is PostgreSQL's default
    assert sizing.shared_buffers_bytes(s, s.clusters[0]) == 128 * 2**20
    assert sizing.effective_cache_size_bytes(s, s.clusters[0]) == 4 * 2**30
    # the spec's parameters still win
    t = _spec(profile="stock", cluster={"parameters": {"shared_buffers": "1GB"}})
    assert sizing.shared_buffers_bytes(t, t.clusters[0]) == 2**30


def test_nvme_and_safety_defaults() -> None:
    s = _spec()
    p = sizing.postgres_parameters(s, s.clusters[0])
    assert p["random_page_cost"] == "1.1"
    assert int(p["effective_io_concurrency"]) >= 200
    assert p["password_encryption"] == "scram-sha-256"
    assert "pg_stat_statements" in p["shared_preload_libraries"]
    assert p["jit"] == "off"


def test_spec_parameters_win_over_derived_ones() -> None:
    s = _spec(cluster={"parameters": {"work_mem": "64MB", "max_connections": 300, "jit": True}})
    p = sizing.postgres_parameters(s, s.clusters[0])
    assert p["work_mem"] == "64MB" and p["max_connections"] == "300" and p["jit"] == "on"
    assert sizing.pool_fit(s, s.clusters[0]).max_connections == 300


def test_pool_fits_under_max_connections_for_every_type() -> None:
    for st in SERVER_TYPES:
        s = _spec(st)
        fit = sizing.pool_fit(s, s.clusters[0])
        assert fit.needed <= fit.available, st


def test_patroni_timing_defaults_are_fast_and_within_patroni_limits() -> None:
    t = sizing.patroni_timing(_spec())
    assert t.ttl >= 20 and t.loop_wait >= 1 and t.retry_timeout >= 3
    assert t.loop_wait + 2 * t.retry_timeout <= t.ttl
    assert t.ttl <= 30  # faster than autobase's 30 s default


def test_patroni_timing_from_spec() -> None:
    t = sizing.patroni_timing(_spec(failover={"ttl": 30, "loop_wait": 10, "retry_timeout": 10}))
    assert (t.ttl, t.loop_wait, t.retry_timeout) == (30, 10, 10)


def test_connection_limits_fit_the_open_files_limit() -> None:
    s = _spec("ccx63")
    lim = sizing.connection_limits(20000, s, s.clusters[0])
    # HAProxy needs ~2 descriptors per connection
    assert lim["haproxy_maxconn"] * 2 <= 20000
    assert lim["pgbouncer_max_client_conn"] + sizing.pool_fit(s, s.clusters[0]).needed <= lim["pgbouncer_nofile"] <= 20000


def test_plan_assigns_roles_and_addresses() -> None:
    lab = spec_mod.load("lab")
    hosts = plan(lab)
    assert [h.name for h in hosts] == ["lab-main-1", "lab-main-2", "lab-main-3", "lab-client", "lab-monitor"]
    assert [h.private_ip for h in hosts] == ["198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14", "198.18.0.15"]
    assert all(ROLE_POSTGRES in h.roles and ROLE_ETCD in h.roles for h in hosts[:3])
    assert hosts[3].roles == (ROLE_CLIENT,) and hosts[4].roles == ("monitor",)


def test_plan_with_dedicated_etcd() -> None:
    s = _spec(etcd={"placement": "dedicated", "members": 3})
    hosts = plan(s)
    etcd = [h for h in hosts if h.roles == (ROLE_ETCD,)]
    assert [h.name for h in etcd] == ["t-etcd-1", "t-etcd-2", "t-etcd-3"]
    assert not any(ROLE_ETCD in h.roles for h in hosts if h.cluster)
    assert len({h.private_ip for h in hosts}) == len(hosts)


@pytest.mark.parametrize("server_type", sorted(SERVER_TYPES))
def test_pgbouncer_processes_split_the_nodes_pools(server_type: str) -> None:
    """Each process has its own pools: the node's pool and reserve are split, never multiplied."""
    s = _spec(server_type)
    c = s.clusters[0]
    fit = sizing.pool_fit(s, c)
    n = sizing.pgbouncer_processes(c)
    assert 2 <= n <= contract.PGBOUNCER_MAX_PROCESSES and fit.processes == n
    assert n == max(2, min(contract.PGBOUNCER_MAX_PROCESSES, SERVER_TYPES[server_type].cores // 2))
    assert fit.process_pool_size * n >= fit.pool_size > (fit.process_pool_size - 1) * n
    assert fit.needed == len(c.databases) * n * (fit.process_pool_size + fit.process_reserve_pool_size)


def test_database_settings_come_from_the_spec() -> None:
    s = _spec(cluster={"databases": [{"name": "app", "owner": "app", "vector": {"ef_search": 120, "iterative_scan": "relaxed_order"}},
                                     {"name": "plain", "owner": "app"}]})
    app, plain = s.clusters[0].databases
    assert sizing.database_settings(app) == {"hnsw.ef_search": "120", "hnsw.iterative_scan": "relaxed_order"}
    assert sizing.database_settings(plain) == {}


def test_prewarm_follows_the_profile_unless_the_spec_says() -> None:
    tuned, stock = _spec(), _spec(profile="stock")
    off, on = _spec(cluster={"prewarm": False}), _spec(profile="stock", cluster={"prewarm": True})
    for s, expected in ((tuned, True), (stock, False), (off, False), (on, True)):
        c = s.clusters[0]
        p = sizing.postgres_parameters(s, c)
        assert sizing.prewarms(c) is expected
        assert ("pg_prewarm" in p["shared_preload_libraries"]) is expected and ("pg_prewarm.autoprewarm" in p) is expected
        assert "pg_stat_statements" in p["shared_preload_libraries"]
