"""PostgreSQL under Patroni 4: the only thing that starts, stops or configures PostgreSQL.

Host settings (addresses, TLS files, pg_hba, credentials) live in
/etc/patroni/patroni.yml and apply with a reload. Cluster-wide settings
(timing, synchronous mode, PostgreSQL parameters) live in etcd: written at
bootstrap, converged on later deploys by a helper that PATCHes only what
differs and restarts members in a safe order, saying which ones.
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from pgfleet import contract, sizing
from pgfleet.secrets import Secrets
from roles._common import HardNofile, ServiceActive, converge, data, in_container, note, put, render, secrets
from roles.node import program

DEFAULTS = {
    "patroni_namespace": contract.PATRONI_NAMESPACE,
    "patroni_config": contract.PATRONI_CONFIG,
    "patroni_start_timeout": 240,
}


def callbacks(d: dict) -> dict[str, str]:
    """Patroni's ``postgresql.callbacks`` (it appends ACTION ROLE SCOPE and runs them off its HA loop): the tuned
    profiles prewarm a promoted member's vector indexes (pgfleet/node/prewarm.py). pgfleet sets no other callback."""
    return {"on_role_change": program("prewarm")} if d["patroni_prewarm"] else {}


def config(d: dict, s: Secrets, container: bool) -> str:
    """patroni.yml for a host (``d``: its host data with these defaults)."""
    return render(
        "patroni/patroni.yml.j2", **d,
        patroni_watchdog="off" if container else "automatic", patroni_callbacks=callbacks(d),
        rest_user=contract.PATRONI_REST_USER, rest_password=s.password("patroni_rest"),
        etcd_user=contract.ETCD_PATRONI_USER, etcd_password=s.password("etcd_patroni"),
        superuser=contract.PG_SUPERUSER, superuser_password=s.password("superuser"),
        replication_user=contract.PG_REPLICATION, replication_password=s.password("replication"),
        rewind_user=contract.PG_REWIND, rewind_password=s.password("rewind"),
    )


def unit_file(d: dict, hard_nofile: int) -> str:
    """patroni.service for a host (``d``: its host data with these defaults)."""
    return render("patroni/patroni.service.j2", patroni_scope=d["patroni_scope"], tls_group=d["tls_group"],
                  patroni_config=d["patroni_config"], etcd_local="etcd" in d["pgfleet_roles"],
                  nofile=sizing.service_nofile(hard_nofile))


@deploy("Patroni", data_defaults=DEFAULTS)
def apply(tls_reissued: bool = False) -> None:
    """``tls_reissued``: the host certificate was replaced (roles/tls.py), so a running Patroni reloads."""
    d = host.data
    s = secrets()
    was_running = host.get_fact(ServiceActive, unit=contract.PATRONI_UNIT)
    container = in_container()
    if container:
        note(f"inside a {container} container there is no /dev/watchdog: Patroni's watchdog is off")

    pg = contract.POSTGRES_OS_USER
    files.directory(name="PostgreSQL home", path=d.patroni_postgres_home, user=pg, group=pg, mode="0755")
    files.directory(name="PostgreSQL data directory", path=d.patroni_data_dir, user=pg, group=pg, mode="0700")
    files.directory(name="Patroni configuration directory", path=contract.PATRONI_CONFIG_DIR, user="root", group=pg, mode="0750")
    conf = put("Patroni configuration", d.patroni_config, config(data(), s, bool(container)), mode="0640", group=pg)
    unit = put("Patroni unit", f"/etc/systemd/system/{contract.PATRONI_UNIT}", unit_file(data(), host.get_fact(HardNofile)))
    systemd.daemon_reload(name="systemd: reload units", _if=unit.did_change)

    if not was_running:
        # before the first start only: on a running member the validator finds its own ports in use
        server.shell(name="Patroni configuration check", _if=conf.did_change,
                     commands=[f"runuser -u {pg} -- patroni --validate-config {d.patroni_config}"])
    systemd.service(name="Patroni running", service=contract.PATRONI_UNIT, running=True, enabled=True)
    if was_running:
        systemd.service(name="Patroni reload (host configuration changed)", service=contract.PATRONI_UNIT, reloaded=True,
                        _if=lambda: conf.did_change() or tls_reissued)
    server.shell(name="Wait for PostgreSQL under Patroni", commands=[f"{program('wait-member')} {d.patroni_start_timeout}"],
                 _if=lambda: not was_running or conf.did_change())

    converge("patroni-dynamic.json", json.dumps(d.patroni_dynamic, sort_keys=True, indent=1),
             f"{program('patroni-config')} {{desired}}", when=host.name == d.patroni_first_member)
