"""pgBackRest on every database node: the S3 repository, the stanza, scheduled backups.

The configuration holds the object storage keys and the repository
passphrase, so it is uploaded from memory as 0640 root:postgres and the
commands here never carry them. WAL archiving itself is wired through
Patroni (``archive_command`` in the dynamic configuration, ``restore_command``
and ``create_replica_methods`` in patroni.yml); this role makes the
repository ready for it: the stanza is created once, on the leader, and
``pgbackrest check`` proves a WAL segment reaches the repository.

Backups run from systemd timers present on every member; the unit goes
through the backup-member guard (:mod:`pgfleet.node.backup_member`), so exactly
one node backs up: a streaming standby, which reads the data files locally
and reaches the primary through pgBackRest's TLS server (pgbackrest.service,
port 8432, open to members only, accepting only the members' client
certificate); the leader itself when no standby streams. A failure fails the
unit visibly.
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from pgfleet import contract, tls
from pgfleet.backup import repo
from roles import tls as tls_role
from roles._common import converge, data, put, render, secrets
from roles.node import program

DEFAULTS = {
    "pgbackrest_enabled": False,
    "pgbackrest_spool": contract.PGBACKREST_SPOOL,
    "pgbackrest_config": contract.PGBACKREST_CONFIG,
}

SCHEDULED = ("full", "diff")


def client_key_name(host_name: str) -> str:
    """The derived-key name of a member's pgBackRest client identity (distinct from its host key)."""
    return f"{host_name}/pgbackrest-client"


def config(d: dict, s3_key: str, s3_key_secret: str, cipher_pass: str) -> str:
    return render("pgbackrest/pgbackrest.conf.j2", **d, s3_key=s3_key, s3_key_secret=s3_key_secret, cipher_pass=cipher_pass)


def units(d: dict) -> dict[str, str]:
    """``pgbackrest-<kind>.service`` / ``.timer`` contents for the scheduled kinds."""
    out = {}
    for kind in SCHEDULED:
        ctx = {**d, "kind": kind, "schedule": d["pgbackrest_schedules"][kind], "backup_member": program("backup-member")}
        out[contract.backup_unit(kind)] = render("pgbackrest/backup.service.j2", **ctx)
        out[f"pgbackrest-{kind}.timer"] = render("pgbackrest/backup.timer.j2", **ctx)
    return out


def stanza_identity(d: dict) -> str:
    """What the stanza was created for: a new repository (endpoint, bucket, path) creates it again."""
    keys = ("pgbackrest_stanza", "pgbackrest_s3_endpoint", "pgbackrest_s3_port", "pgbackrest_s3_bucket", "pgbackrest_repo_path")
    return json.dumps({k: d[k] for k in keys}, sort_keys=True)


@deploy("pgBackRest", data_defaults=DEFAULTS)
def apply(tls_reissued: bool = False) -> None:
    """``tls_reissued``: the host certificate was replaced (roles/tls.py), so the TLS server restarts."""
    d = host.data
    if not d.pgbackrest_enabled:
        return
    s = secrets()
    pg = contract.POSTGRES_OS_USER
    files.directory(name="pgBackRest configuration directory", path=contract.PGBACKREST_CONFIG_DIR, user="root", group=pg, mode="0750")
    for path in ("/var/log/pgbackrest", d.pgbackrest_spool):
        files.directory(name=f"pgBackRest {path}", path=path, user=pg, group=pg, mode="0750")
    conf = put("pgBackRest configuration", d.pgbackrest_config,
               config(data(), s.password("s3_access_key"), s.password("s3_secret_key"), s.password("backup_cipher")),
               mode="0640", group=pg)

    # the client identity the other members' TLS servers accept (CN-authorised, hence not the host certificate)
    key_name = client_key_name(host.name)
    put("pgBackRest client key", d.pgbackrest_client_key, tls.key_pem(tls.host_key(s.ca_key_pem, key_name)),
        mode="0640", group=pg)
    tls_role.certificate("pgBackRest client certificate", d.pgbackrest_client_cert, key_name, tls.Names((), ()),
                         common_name=d.pgbackrest_client_cn)
    # Debian's pgbackrest.service runs `pgbackrest server` as postgres; it reads its TLS settings at start
    started = systemd.service(name="pgBackRest TLS server running", service=contract.PGBACKREST_UNIT, running=True, enabled=True)
    systemd.service(name="pgBackRest TLS server restart (configuration or host certificate changed)",
                    service=contract.PGBACKREST_UNIT, restarted=True,
                    _if=lambda: (conf.did_change() or tls_reissued) and not started.did_change())

    stanza = d.pgbackrest_stanza
    pgbr = f"runuser -u {pg} -- pgbackrest --stanza={stanza}"
    # on every member: the leader creates the stanza, the others record that the leader did
    converge("pgbackrest-stanza.json", stanza_identity(data()),
             f"{program('on-leader')} sh -c '{pgbr} stanza-create && {pgbr} check'")

    changed = []
    for name, text in units(data()).items():
        changed.append(put(f"Unit {name}", f"/etc/systemd/system/{name}", text))
    systemd.daemon_reload(name="systemd: reload units (backup timers)", _if=lambda: any(c.did_change() for c in changed))
    for kind in SCHEDULED:
        systemd.service(name=f"Timer pgbackrest-{kind}", service=f"pgbackrest-{kind}.timer", running=True, enabled=True)
    # a new repository gets its first full backup now, not at the first timer: the restorable window starts at
    # deploy, and monitoring never sees a cluster without any backup. Every member starts the unit; its guard
    # backs up on the backup member only.
    converge("pgbackrest-first-backup.json", stanza_identity(data()),
             f"{program('first-backup')} {stanza} {contract.backup_unit('full')}")
