"""HAProxy on every database node: the endpoints that never change.

5000/5001 reach PgBouncer on the primary / the replicas (the primary when no
replica is healthy), 5002/5003 the same for PostgreSQL itself, 7000 serves
stats and Prometheus metrics to admins; with monitoring on, a TLS frontend
(:data:`~pgfleet.contract.HAPROXY_METRICS_PORT`, client certificate required) serves HAProxy's and
Patroni's metrics to the monitoring host. Health comes from Patroni's REST API over
HTTPS (``/primary``, ``/replica``), with timing from
:func:`pgfleet.sizing.haproxy_timing` (host data ``haproxy_timing``) and ``maxconn`` from
:func:`pgfleet.sizing.service_limits` so it fits the host's open-files limit.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from pgfleet import contract, sizing
from roles._common import HardNofile, ServiceActive, data, put, render

DEFAULTS = {"haproxy_config": "/etc/haproxy/haproxy.cfg"}

ENDPOINTS = [
    {"name": "pooled_rw", "port": contract.HAPROXY_POOLED_RW, "backend": "pgbouncer_primary", "fallback": None, "what": "read-write, PgBouncer on the primary"},
    {"name": "pooled_ro", "port": contract.HAPROXY_POOLED_RO, "backend": "pgbouncer_replicas", "fallback": "pgbouncer_primary", "what": "read-only, PgBouncer on the replicas"},
    {"name": "direct_rw", "port": contract.HAPROXY_DIRECT_RW, "backend": "postgres_primary", "fallback": None, "what": "read-write, PostgreSQL on the primary (session features)"},
    {"name": "direct_ro", "port": contract.HAPROXY_DIRECT_RO, "backend": "postgres_replicas", "fallback": "postgres_primary", "what": "read-only, PostgreSQL on the replicas"},
]
BACKENDS = [
    {"name": "pgbouncer_primary", "port": contract.PGBOUNCER_PORT, "check": "/primary", "balance": None},
    {"name": "pgbouncer_replicas", "port": contract.PGBOUNCER_PORT, "check": "/replica", "balance": "roundrobin"},
    {"name": "postgres_primary", "port": contract.POSTGRES_PORT, "check": "/primary", "balance": None},
    {"name": "postgres_replicas", "port": contract.POSTGRES_PORT, "check": "/replica", "balance": "roundrobin"},
]


def config(d: dict, nofile: int) -> str:
    lim = sizing.service_limits(nofile, d["pgbouncer_pool_connections"], d["pgbouncer_client_limit"])
    return render("haproxy/haproxy.cfg.j2", **d, maxconn=lim["haproxy_maxconn"], timing=d["haproxy_timing"],
                  endpoints=ENDPOINTS, backends=BACKENDS)


@deploy("HAProxy", data_defaults=DEFAULTS)
def apply(tls_reissued: bool = False) -> None:
    """``tls_reissued``: the host certificate was replaced; the metrics frontend serves it, so HAProxy reloads."""
    d = host.data
    # HAProxy finds a certificate's key beside it as <crt>.key ("ssl-load-extra-files"); it reads both as root
    key_link = files.link(name="HAProxy: the host key beside the certificate", path=f"{contract.HOST_CERT}.key",
                          target=contract.HOST_KEY, present=d.haproxy_metrics)
    nofile = sizing.service_nofile(host.get_fact(HardNofile))
    was_running = host.get_fact(ServiceActive, unit=contract.HAPROXY_UNIT)
    cfg = put("HAProxy configuration", d.haproxy_config, config(data(), nofile))
    server.shell(name="HAProxy configuration check", commands=[f"haproxy -c -q -f {d.haproxy_config}"], _if=cfg.did_change)
    unit = put("HAProxy unit settings", f"/etc/systemd/system/{contract.HAPROXY_UNIT}.d/pgfleet.conf", render("haproxy/override.conf.j2", nofile=nofile))
    systemd.daemon_reload(name="systemd: reload units", _if=unit.did_change)
    systemd.service(name="HAProxy running", service=contract.HAPROXY_UNIT, running=True, enabled=True)
    if was_running:
        systemd.service(name="HAProxy restart (unit changed)", service=contract.HAPROXY_UNIT, restarted=True, _if=unit.did_change)
        systemd.service(name="HAProxy reload (configuration changed)", service=contract.HAPROXY_UNIT, reloaded=True,
                        _if=lambda: (cfg.did_change() or key_link.did_change() or (tls_reissued and d.haproxy_metrics))
                        and not unit.did_change())
