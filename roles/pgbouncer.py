"""PgBouncer (port :data:`~pgfleet.contract.PGBOUNCER_PORT`): transaction pooling in front of the local PostgreSQL.

Passwords are looked up with ``auth_query`` through a low-privilege user that
authenticates by peer over the Unix socket, so no password file exists; the
monitoring user is listed only as a SCRAM verifier for the stats console.
Limits come from :func:`pgfleet.sizing.service_limits` (:func:`limits`): the
pool figures in host data and the host's real open-files limit.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from pgfleet import contract, scram, sizing
from roles._common import HardNofile, ServiceActive, data, put, render, secrets

DEFAULTS: dict[str, object] = {}


def limits(d: dict, nofile: int) -> dict[str, int]:
    """PgBouncer's and HAProxy's limits on a host whose services may open ``nofile`` files."""
    return sizing.service_limits(nofile, d["pgbouncer_pool_connections"], d["pgbouncer_client_limit"])


def ini(d: dict, max_client_conn: int) -> str:
    return render("pgbouncer/pgbouncer.ini.j2", **d, max_client_conn=max_client_conn,
                  pooler_auth=contract.PG_POOLER_AUTH, monitor=contract.PG_MONITOR)


def userlist(monitor_password: str) -> str:
    """The stats console's one user, as a SCRAM verifier (PgBouncer verifies SCRAM against it)."""
    return f'"{contract.PG_MONITOR}" "{scram.verifier(contract.PG_MONITOR, monitor_password)}"\n'


@deploy("PgBouncer", data_defaults=DEFAULTS)
def apply(tls_reissued: bool = False) -> None:
    """``tls_reissued``: the host certificate was replaced (roles/tls.py), so a running PgBouncer reloads."""
    d = host.data
    nofile = sizing.service_nofile(host.get_fact(HardNofile))
    lim = limits(data(), nofile)
    was_running = host.get_fact(ServiceActive, unit=contract.PGBOUNCER_UNIT)
    monitor_pw = secrets().password("monitor")
    users = put("PgBouncer stats user (SCRAM verifier)", "/etc/pgbouncer/userlist.txt",
                userlist(monitor_pw), mode="0640", group=contract.POSTGRES_OS_USER)
    conf = put("PgBouncer configuration", "/etc/pgbouncer/pgbouncer.ini", ini(data(), lim["pgbouncer_max_client_conn"]),
               mode="0640", group=contract.POSTGRES_OS_USER)
    unit = put("PgBouncer unit settings", f"/etc/systemd/system/{contract.PGBOUNCER_UNIT}.d/pgfleet.conf",
               render("pgbouncer/override.conf.j2", nofile=min(nofile, lim["pgbouncer_nofile"]), tls_group=d.tls_group))
    systemd.daemon_reload(name="systemd: reload units", _if=unit.did_change)
    systemd.service(name="PgBouncer running", service=contract.PGBOUNCER_UNIT, running=True, enabled=True)
    if was_running:
        systemd.service(name="PgBouncer restart (unit changed)", service=contract.PGBOUNCER_UNIT, restarted=True, _if=unit.did_change)
        systemd.service(name="PgBouncer reload (configuration changed)", service=contract.PGBOUNCER_UNIT, reloaded=True,
                        _if=lambda: (conf.did_change() or users.did_change() or tls_reissued) and not unit.did_change())
