"""pgfleet's one deploy: every role, applied to each host by its groups.

    PGFLEET_STACK=lab pyinfra -y pyinfra_inventory.py deploy.py   (or: pgfleet deploy lab)

Order matters and is the same on every host: packages and kernel first, then
the firewall (so no service is ever reachable more widely than it should be),
TLS, pgfleet's node programs, etcd (the DCS Patroni needs), PostgreSQL under Patroni, the databases on
the leader, the backup repository (stanza, timers), then PgBouncer and HAProxy in front of them.
"""

from pyinfra import host

from roles import base, databases, etcd, firewall, haproxy, node, patroni, pgbackrest, pgbouncer, tls

base.apply()
firewall.apply()
tls.apply()
if "etcd" in host.groups or "postgres" in host.groups:
    node_changed = node.apply()
if "etcd" in host.groups:
    etcd.apply(node_changed)
if "postgres" in host.groups:
    patroni.apply()
    databases.apply()
    pgbackrest.apply()
    pgbouncer.apply()
    haproxy.apply()
