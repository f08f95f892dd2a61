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
