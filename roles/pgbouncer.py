"""PgBouncer (port :data:`~pgfleet.contract.PGBOUNCER_PORT`): transaction pooling in front of the local PostgreSQL.

Several processes per node (:func:`pgfleet.sizing.pgbouncer_processes`), one
systemd instance each (``pgbouncer@1`` …), all listening on the one port with
``so_reuseport``: the kernel spreads new connections over them, so pooling is
no longer bound to one core. Each has its own Unix socket directory (its stats
console; the exporters read every process there) and a ``peer_id``: a
client's cancel request, a new connection that may land on another process,
is forwarded to the process that owns the query (PgBouncer's ``[peers]``).
Debian's single ``pgbouncer.service`` is stopped and masked.

Passwords are looked up with ``auth_query`` through a low-privilege user that
authenticates by peer over PostgreSQL's Unix socket, so no password file
exists; the monitoring user is listed only as a SCRAM verifier for the stats
console. Limits come from :func:`pgfleet.sizing.service_limits` (:func:`limits`):
the pool figures in host data and the host's real open-files limit.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from pgfleet import contract, scram, sizing
from roles._common import HardNofile, ServiceActive, data, put, render, secrets

DEFAULTS: dict[str, object] = {}


def limits(d: dict, nofile: int) -> dict[str, int]:
    """PgBouncer's and HAProxy's limits on a host whose services may open ``nofile`` files."""
    return sizing.service_limits(nofile, d["pgbouncer_pool_connections"], d["pgbouncer_client_limit"])


def processes(d: dict) -> list[int]:
    return contract.pgbouncer_processes(d["pgbouncer_processes"])


def ini(d: dict, max_client_conn: int, process: int = 1) -> str:
    """Process ``process``'s configuration: the shared settings, its own socket and peer id, and every peer."""
    peers = [{"id": p, "socket_dir": contract.pgbouncer_socket_dir(p)} for p in processes(d)]
    return render("pgbouncer/pgbouncer.ini.j2", **d, max_client_conn=max_client_conn, process=process,
                  processes=d["pgbouncer_processes"], socket_dir=contract.pgbouncer_socket_dir(process), peers=peers,
                  pooler_auth=contract.PG_POOLER_AUTH, monitor=contract.PG_MONITOR)


def unit(d: dict, nofile: int) -> str:
    """The template unit every process runs from (``%i`` is the process number)."""
    return render("pgbouncer/pgbouncer@.service.j2", port=contract.PGBOUNCER_PORT, user=contract.POSTGRES_OS_USER,
                  config=contract.pgbouncer_config("%i"), runtime_dir=contract.pgbouncer_socket_dir("%i").removeprefix("/run/"),
                  nofile=nofile, tls_group=d["tls_group"])


def userlist(monitor_password: str) -> str:
    """The stats console's one user, as a SCRAM verifier (PgBouncer verifies SCRAM against it)."""
    return f'"{contract.PG_MONITOR}" "{scram.verifier(contract.PG_MONITOR, monitor_password)}"\n'


@deploy("PgBouncer", data_defaults=DEFAULTS)
def apply(tls_reissued: bool = False) -> None:
    """``tls_reissued``: the host certificate was replaced (roles/tls.py), so running processes reload."""
    nofile = sizing.service_nofile(host.get_fact(HardNofile))
    lim = limits(data(), nofile)
    # Debian's own unit would hold the port without so_reuseport: stopped, and masked so nothing starts it again
    systemd.service(name="Debian's single PgBouncer stopped", service=contract.PGBOUNCER_PACKAGE_UNIT, running=False, enabled=False)
    masked = files.link(name="Debian's single PgBouncer masked", path=f"/etc/systemd/system/{contract.PGBOUNCER_PACKAGE_UNIT}",
                        target="/dev/null")
    monitor_pw = secrets().password("monitor")
    users = put("PgBouncer stats user (SCRAM verifier)", "/etc/pgbouncer/userlist.txt",
                userlist(monitor_pw), mode="0640", group=contract.POSTGRES_OS_USER)
    template = put("PgBouncer unit (one instance per process)", f"/etc/systemd/system/{contract.PGBOUNCER_TEMPLATE_UNIT}",
                   unit(data(), min(nofile, lim["pgbouncer_nofile"])))
    systemd.daemon_reload(name="systemd: reload units", _if=lambda: template.did_change() or masked.did_change())
    for p in processes(data()):
        name = contract.pgbouncer_unit(p)
        was_running = host.get_fact(ServiceActive, unit=name)
        conf = put(f"PgBouncer {p} configuration", contract.pgbouncer_config(p), ini(data(), lim["pgbouncer_max_client_conn"], p),
                   mode="0640", group=contract.POSTGRES_OS_USER)
        systemd.service(name=f"PgBouncer {p} running", service=name, running=True, enabled=True)
        if was_running:
            # one process at a time: the others keep accepting on the shared port meanwhile
            systemd.service(name=f"PgBouncer {p} restart (unit changed)", service=name, restarted=True, _if=template.did_change)
            systemd.service(name=f"PgBouncer {p} reload (configuration changed)", service=name, reloaded=True,
                            _if=lambda conf=conf: (conf.did_change() or users.did_change() or tls_reissued) and not template.did_change())
    for p in range(data()["pgbouncer_processes"], contract.PGBOUNCER_MAX_PROCESSES):
        # a smaller server type runs fewer processes: the ones beyond stop (their clients reconnect to the others)
        systemd.service(name=f"PgBouncer {p + 1} stopped (not needed)", service=contract.pgbouncer_unit(p + 1), running=False, enabled=False)
        files.file(name=f"PgBouncer {p + 1} configuration removed", path=contract.pgbouncer_config(p + 1), present=False)
