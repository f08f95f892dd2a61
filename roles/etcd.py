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

from pgfleet import sizing
from pgfleet.hostdata import ETCD_PATRONI_USER, PATRONI_NAMESPACE, secrets_for
from roles._common import HELPERS_DIR, HardNofile, ServiceActive, converge, data, helper, put, render

DEFAULTS = {
    "etcd_data_dir": "/var/lib/etcd/pgfleet",
    "etcd_service": "etcd.service",
}


@deploy("etcd", data_defaults=DEFAULTS)
def apply() -> None:
    d = host.data
    was_running = host.get_fact(ServiceActive, unit=d.etcd_service)
    files.directory(name="etcd data directory", path=d.etcd_data_dir, user="etcd", group="etcd", mode="0700")
    env = put("etcd configuration", "/etc/default/etcd", render("etcd/etcd.env.j2", **data()))
    unit = put("etcd unit settings", "/etc/systemd/system/etcd.service.d/pgfleet.conf",
               render("etcd/override.conf.j2", nofile=sizing.service_nofile(host.get_fact(HardNofile)), tls_group=d.tls_group))
    systemd.daemon_reload(name="systemd: reload units", _if=unit.did_change)
    systemd.service(name="etcd running", service=d.etcd_service, running=True, enabled=True)
    if was_running:
        systemd.service(name="etcd restart (configuration changed)", service=d.etcd_service, restarted=True,
                        _if=lambda: env.did_change() or unit.did_change())

    helper("etcd auth helper", "etcd-auth.py")
    s = secrets_for(d.pgfleet_stack)
    desired = json.dumps({"root_password": s.password("etcd_root"), "user": ETCD_PATRONI_USER,
                          "user_password": s.password("etcd_patroni"), "prefix": PATRONI_NAMESPACE}, sort_keys=True)
    converge("etcd-auth.json", desired, f"{HELPERS_DIR}/etcd-auth.py {{desired}}", when=host.name == d.etcd_first_member)
