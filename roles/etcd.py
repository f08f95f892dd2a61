"""etcd: the DCS. Three members, mutual TLS for peers and clients, authentication on.

The members start together (pyinfra runs an operation on all hosts at once),
which a new etcd cluster needs to form its first quorum. Authentication is
turned on once, from the first member, by a helper that reads the passwords
from a 0600 file (:func:`roles._common.converge`).
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from collections.abc import Callable

from pgfleet import contract, sizing
from pgfleet.inventory import ROLE_POSTGRES
from roles._common import HardNofile, ServiceActive, converge, data, put, render, secrets
from roles.node import program

LEADER_AWAY_UNIT = contract.LEADER_AWAY_UNIT

DEFAULTS = {
    "etcd_data_dir": "/var/lib/etcd/pgfleet",
    "etcd_service": contract.ETCD_UNIT,
}


@deploy("etcd", data_defaults=DEFAULTS)
def apply(node_changed: Callable[[], bool]) -> None:
    """``node_changed``: whether the node programs changed (:func:`roles.node.apply`)."""
    d = host.data
    was_running = host.get_fact(ServiceActive, unit=d.etcd_service)
    files.directory(name="etcd data directory", path=d.etcd_data_dir, user=contract.ETCD_OS_USER, group=contract.ETCD_OS_USER, mode="0700")
    env = put("etcd configuration", "/etc/default/etcd", render("etcd/etcd.env.j2", **data()))
    unit = put("etcd unit settings", f"/etc/systemd/system/{d.etcd_service}.d/pgfleet.conf",
               render("etcd/override.conf.j2", nofile=sizing.service_nofile(host.get_fact(HardNofile)), tls_group=d.tls_group))
    systemd.daemon_reload(name="systemd: reload units", _if=unit.did_change)
    systemd.service(name="etcd running", service=d.etcd_service, running=True, enabled=True)
    if was_running:
        # one member at a time: restarting them together would lose the quorum Patroni's leader lock lives in
        systemd.service(name="etcd restart (configuration changed)", service=d.etcd_service, restarted=True,
                        _if=lambda: env.did_change() or unit.did_change(), _serial=True)

    s = secrets()
    desired = json.dumps({"root_password": s.password("etcd_root"), "user": contract.ETCD_PATRONI_USER,
                          "user_password": s.password("etcd_patroni"), "prefix": contract.PATRONI_NAMESPACE}, sort_keys=True)
    converge("etcd-auth.json", desired, f"{program('etcd-auth')} {{desired}}", when=host.name == d.etcd_first_member)

    if ROLE_POSTGRES in d.pgfleet_roles:
        leader_away(s.password("etcd_root"), node_changed)


def leader_away_unit() -> str:
    return render("etcd/leader-away.service.j2", program=program("etcd-leader-away"), config=contract.ETCD_LEADER_AWAY_CONFIG)


def leader_away_config(d: dict, root_password: str) -> str:
    return json.dumps({
        "etcd": f"https://{d['pgfleet_ip']}:{contract.ETCD_CLIENT_PORT}", "patroni": contract.local_url(contract.PATRONI_REST_PORT),
        "ca_file": contract.CA_FILE, "cert_file": contract.HOST_CERT, "key_file": contract.HOST_KEY,
        "root_password": root_password, "interval": sizing.ETCD_LEADER_AWAY_INTERVAL,
    }, sort_keys=True, indent=1)


def leader_away(root_password: str, code_changed: Callable[[], bool]) -> None:
    """On a node that is both an etcd member and a Patroni member: keep etcd's leader off the primary."""
    conf = put("etcd-leader-away configuration", contract.ETCD_LEADER_AWAY_CONFIG, leader_away_config(data(), root_password), mode="0600")
    unit = put(f"Unit {LEADER_AWAY_UNIT}", f"/etc/systemd/system/{LEADER_AWAY_UNIT}",
               leader_away_unit())
    systemd.daemon_reload(name="systemd: reload units (etcd-leader-away)", _if=unit.did_change)
    started = systemd.service(name="etcd-leader-away running", service=LEADER_AWAY_UNIT, running=True, enabled=True)
    systemd.service(name="etcd-leader-away restart (changed)", service=LEADER_AWAY_UNIT, restarted=True,
                    _if=lambda: (code_changed() or conf.did_change() or unit.did_change()) and not started.did_change())
