"""pgfleet's one deploy: every role, applied to each host by its groups.

    PGFLEET_STACK=lab pyinfra -y pyinfra_inventory.py deploy.py   (or: pgfleet deploy lab)

Order matters and is the same on every host: packages and kernel first, then
the firewall (so no service is ever reachable more widely than it should be),
TLS, pgfleet's node programs, etcd (the DCS Patroni needs), PostgreSQL under Patroni, the databases on
the leader, the backup repository (stanza, timers), then PgBouncer and HAProxy in front of them, the
exporters, and last the monitoring host (Prometheus, Alertmanager, the recall probe) that scrapes them.

Roles pass results explicitly (``tls.apply()`` says whether the host
certificate was replaced; the roles that reload for it get that); what failed
where goes back to ``pgfleet deploy`` as records (:mod:`roles.results`).
"""

from pyinfra import host
from pyinfra.context import state

from roles import base, databases, etcd, exporters, firewall, haproxy, monitor, node, patroni, pgbackrest, pgbouncer, results, tls

results.register(state)

base.apply()
firewall.apply()
tls_reissued = tls.apply()
if "etcd" in host.groups or "postgres" in host.groups or "monitor" in host.groups:
    node_changed = node.apply()
if "etcd" in host.groups:
    etcd.apply(node_changed)
if "postgres" in host.groups:
    patroni.apply(tls_reissued=tls_reissued)
    databases.apply()
    pgbackrest.apply(tls_reissued=tls_reissued)
    pgbouncer.apply(tls_reissued=tls_reissued)
    haproxy.apply(tls_reissued=tls_reissued)
if "etcd" in host.groups or "postgres" in host.groups or "monitor" in host.groups:
    exporters.apply(tls_reissued=tls_reissued)
if "monitor" in host.groups:
    monitor.apply(tls_reissued=tls_reissued)
