"""The numbers the deploy adds to sizing: open-files limits, etcd and Patroni timing, kernel settings, SCRAM."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from pgfleet import scram, sizing, spec


@pytest.mark.parametrize("nofile", [1024, 20000, 65536, 1 << 20])
def test_connection_limits_fit_the_host_open_files_limit(nofile: int) -> None:
    s = spec.load("lab")
    c = s.clusters[0]
    lim = sizing.connection_limits(sizing.service_nofile(nofile), s, c)
    service = sizing.service_nofile(nofile)
    assert service <= nofile
    # HAProxy needs ~2 descriptors per connection, PgBouncer one per client plus its pools
    assert 2 * lim["haproxy_maxconn"] + 100 <= service
    assert lim["pgbouncer_max_client_conn"] + sizing.pool_fit(s, c).needed <= lim["pgbouncer_nofile"] <= service
    assert lim["pgbouncer_max_client_conn"] > 0


def test_lab_limits_under_the_sandbox_hard_limit() -> None:
    s = spec.load("lab")
    lim = sizing.connection_limits(sizing.service_nofile(20000), s, s.clusters[0])
    assert lim["haproxy_maxconn"] == 4000 and lim["pgbouncer_max_client_conn"] == 2000


def test_etcd_elects_within_one_patroni_retry() -> None:
    for retry in (3, 5, 10):
        et = sizing.etcd_timing(sizing.PatroniTiming(ttl=30, loop_wait=5, retry_timeout=retry))
        assert et.election_timeout >= 5 * et.heartbeat_interval
        assert et.election_timeout < retry * 1000


def test_patroni_limits_follow_timing() -> None:
    s = spec.load("prod")
    lim = sizing.patroni_limits(s)
    assert lim["maximum_lag_on_failover"] == 1024 * 1024
    assert lim["primary_start_timeout"] == sizing.patroni_timing(s).ttl


def test_kernel_settings_from_peers() -> None:
    k = sizing.kernel_sysctls(spec.load("prod").clusters[0])
    assert k["vm.swappiness"] == "1" and k["vm.overcommit_memory"] == "2"
    assert int(k["vm.dirty_background_bytes"]) == 64 * 1024 * 1024
    assert all(key.startswith(("vm.", "kernel.")) for key in k)
    assert all(key.startswith("net.") for key in sizing.network_sysctls())


def test_scram_verifier_is_what_postgres_checks() -> None:
    v = scram.verifier("app", "s3cret")
    assert v == scram.verifier("app", "s3cret") and v != scram.verifier("app", "other")
    head, keys = v.split("$", 1)[1].split("$")
    iterations, salt = head.split(":")
    stored, server = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", b"s3cret", base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64decode(stored) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server) == hmac.new(salted, b"Server Key", hashlib.sha256).digest()


def test_fast_profile_notices_a_crashed_postmaster_within_two_seconds() -> None:
    """Patroni notices a dead postmaster only on its next loop: loop_wait bounds the postgres-crash outage."""
    t = sizing.patroni_timing(spec.load("prod"))
    assert (t.ttl, t.loop_wait, t.retry_timeout) == (20, 2, 5)
    assert t.loop_wait + 2 * t.retry_timeout <= t.ttl
    # Patroni's etcd client splits retry_timeout over the members: each gets ≥ 1 s before the next is tried
    assert t.retry_timeout / 3 >= 1


def test_haproxy_routes_a_new_primary_within_half_a_second_and_drops_a_dead_one_quickly() -> None:
    t = sizing.patroni_timing(spec.load("prod"))
    h = sizing.haproxy_timing(t)
    assert h.rise == 1 and h.downinter <= 500  # one /primary 200 from Patroni is authoritative
    assert h.fall >= 2  # one lost check (a busy REST API) never drops the primary
    assert h.inter + h.fall * h.fastinter <= t.loop_wait * 1000 + 1000
    assert h.check <= h.inter  # a check that hangs (dead host) ends before the next one starts
    # the old timing (autobase: inter 3 s, rise 4) would fail these
    assert not (3000 + 3 * 1000 <= t.loop_wait * 1000 + 1000)


def test_computed_node_loss_gap_is_ttl_plus_patronis_probe_plus_promotion_and_routing() -> None:
    s = spec.load("prod")
    t = sizing.patroni_timing(s)
    lo, hi = sizing.node_loss_write_gap(t, sizing.haproxy_timing(t), sizing.etcd_timing(t))
    assert lo == t.ttl - t.loop_wait + sizing.PATRONI_MEMBER_PROBE_TIMEOUT == 20
    # measured 22.0-23.1 s (bench/results/drills.json): the goal of 22 s sits inside this range, not above it
    assert hi == t.ttl + sizing.PATRONI_MEMBER_PROBE_TIMEOUT + 1.0 + 0.5 == 23.5
    slow = sizing.PatroniTiming(ttl=30, loop_wait=10, retry_timeout=10)
    assert sizing.node_loss_write_gap(slow, sizing.haproxy_timing(slow), sizing.etcd_timing(slow))[1] > hi
