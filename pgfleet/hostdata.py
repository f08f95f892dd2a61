"""Everything a role needs per host, computed from spec + inventory (+ secrets).

The pyinfra inventory file puts :func:`host_data` into each host's data; the
roles read it and nothing else, so what a host gets is decided here, in plain
Python that unit tests can call without any host. Keys carry their role's
prefix (``patroni_``, ``haproxy_`` …), as in each role's ``DEFAULTS``.

Secrets are not host data (pyinfra can print host data): they travel beside
it in the deploy's hand-off file (:mod:`pgfleet.handoff`), roles get them
through one accessor, and templates get them passed explicitly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from pgfleet import contract, secrets, sizing
from pgfleet.monitoring import alertmanager, prometheus, rules
from pgfleet.providers import provider_class
from pgfleet.inventory import ROLE_CLIENT, ROLE_ETCD, ROLE_MONITOR, ROLE_POSTGRES, Inventory, InventoryHost
from pgfleet.server_types import DEBIAN13_EXTENSIONS
from pgfleet.spec import ClusterSpec, Spec
from pgfleet.tls import Names

ETCD_PACKAGES = ["etcd-server", "etcd-client"]
BASE_PACKAGES = ["ca-certificates", "curl", "nftables", "ssl-cert", "python3", "python3-yaml"]
CLIENT_PACKAGES = ["postgresql-client"]
#: Debian 13's exporters: node_exporter on every database and etcd host, the rest beside PostgreSQL.
NODE_EXPORTER_PACKAGES = ["prometheus-node-exporter"]
POSTGRES_EXPORTER_PACKAGES = ["prometheus-postgres-exporter", "prometheus-pgbouncer-exporter"]
PGBACKREST_EXPORTER_PACKAGES = ["prometheus-pgbackrest-exporter"]
#: The monitoring host: Prometheus, Alertmanager, and what pgfleet's probe imports (hosts cannot pip install).
MONITOR_PACKAGES = ["prometheus", "prometheus-alertmanager", "python3-prometheus-client", "python3-psycopg"]


def cluster_members(inv: Inventory, cluster: str) -> list[InventoryHost]:
    return inv.cluster_members(cluster)


def member_ips(inv: Inventory) -> list[str]:
    """Addresses of the database and etcd machines: the cluster's members (not the lab client, not the monitoring host)."""
    return sorted({h.private_ip for h in inv.hosts if {ROLE_POSTGRES, ROLE_ETCD} & set(h.roles)}, key=ipaddress.ip_address)


def tls_names(spec: Spec, inv: Inventory, host: InventoryHost) -> Names:
    """SANs for a host: for database nodes, every address and name a client may dial."""
    dns = [host.name, "localhost"]
    ips = [host.private_ip, host.public_ip, "127.0.0.1"]
    if host.cluster is not None:
        c = spec.cluster(host.cluster)
        for m in cluster_members(inv, host.cluster):
            dns.append(m.name)
            ips += [m.private_ip, m.public_ip]
        if host.cluster in inv.load_balancers:
            ips.append(inv.load_balancers[host.cluster])
        dns.append(f"{spec.environment}-{c.name}")
        if c.dns_name:
            dns.append(c.dns_name)
    return Names.of(dns, ips)


def postgres_packages(major: int) -> list[str]:
    """What a database node runs: PostgreSQL of the cluster's major (and pgvector for it) and the stack around it."""
    return [contract.postgres_package(major), contract.postgres_package(major, DEBIAN13_EXTENSIONS["vector"]),
            "patroni", "python3-etcd", "pgbouncer", "haproxy", "pgbackrest"]


def packages(spec: Spec, host: InventoryHost) -> list[str]:
    out = list(BASE_PACKAGES)
    if ROLE_POSTGRES in host.roles and host.cluster is not None:
        out += postgres_packages(spec.cluster(host.cluster).postgres_major)
    if ROLE_ETCD in host.roles:
        out += ETCD_PACKAGES
    if ROLE_CLIENT in host.roles:
        out += CLIENT_PACKAGES
    out += [p for name in exporters(spec, host) for p in EXPORTER_PACKAGES[name]]
    if ROLE_MONITOR in host.roles:
        out += MONITOR_PACKAGES
    return out


EXPORTER_PACKAGES = {"node": NODE_EXPORTER_PACKAGES, "postgres": POSTGRES_EXPORTER_PACKAGES[:1],
                     "pgbouncer": POSTGRES_EXPORTER_PACKAGES[1:], "pgbackrest": PGBACKREST_EXPORTER_PACKAGES}


def exporters(spec: Spec, host: InventoryHost) -> list[str]:
    """The exporters a database, etcd or monitoring host runs (none with monitoring off)."""
    if not spec.monitoring.enabled or not {ROLE_POSTGRES, ROLE_ETCD, ROLE_MONITOR} & set(host.roles):
        return []
    out = ["node"]
    if ROLE_POSTGRES in host.roles:
        out += ["postgres", "pgbouncer"] + (["pgbackrest"] if spec.backups.enabled else [])
    return out


def scrape_targets(spec: Spec, inv: Inventory) -> list[prometheus.Target]:
    """What the monitoring host scrapes: every database and etcd host, and itself (node_exporter)."""
    return [prometheus.Target(h.name, h.private_ip, h.cluster, postgres=ROLE_POSTGRES in h.roles, etcd=ROLE_ETCD in h.roles,
                              pgbouncer_processes=sizing.pgbouncer_processes(spec.cluster(h.cluster)) if h.cluster else 1)
            for h in inv.hosts if {ROLE_POSTGRES, ROLE_ETCD, ROLE_MONITOR} & set(h.roles)]


def monitor_data(spec: Spec, inv: Inventory) -> dict[str, Any]:
    """The monitoring host's configuration files (no secrets: the SMTP password and the probe's are the role's)."""
    email = spec.monitoring.receivers.email
    return {
        "monitor_prometheus_config": prometheus.config_yaml(spec, scrape_targets(spec, inv), tls=prometheus.TlsFiles(key=contract.MONITOR_KEY)),
        "monitor_prometheus_flags": prometheus.storage_flags(spec),
        "monitor_rules": rules.rules_yaml(spec),
        "monitor_alertmanager": alertmanager.without_secrets(spec),
        "monitor_smtp_password_secret": email.password_secret if email else None,
        "monitor_probe_watches": probe_watches(spec, inv),
    }


def probe_watches(spec: Spec, inv: Inventory) -> list[dict[str, Any]]:
    """The recall probe's watches: the spec's, with the cluster's node addresses and the application role
    (the database's owner, whose settings the ANN query must run with); its password is the role's to add."""
    out = []
    for w in spec.monitoring.vector_indexes:
        c = spec.watched_cluster(w)
        owner = next(d.owner for d in c.databases if d.name == w.database)
        out.append({**w.model_dump(), "cluster": c.name, "hosts": [h.private_ip for h in inv.cluster_members(c.name)],
                    "user": owner, "password_name": secrets.owner_password_name(owner)})
    return out


def pgbouncer_databases(cluster: ClusterSpec) -> list[dict[str, str]]:
    """The spec's databases as PgBouncer defines them: each server connection it opens runs ``connect_query``
    first, the database's pgvector settings. A changed query is a changed definition, so a reload retires the
    server connections opened with the old settings as they are released (no waiting for ``server_lifetime``)."""
    out = []
    for db in cluster.databases:
        query = "; ".join(f"SET {k} = {v}" for k, v in sizing.database_settings(db).items())
        out.append({"name": db.name, "options": f" connect_query='{query}'" if query else ""})
    return out


def ports() -> dict[str, int]:
    """The contract's ports, as templates name them (``pgfleet_ports.patroni_rest``)."""
    return {"postgres": contract.POSTGRES_PORT, "pgbouncer": contract.PGBOUNCER_PORT, "patroni_rest": contract.PATRONI_REST_PORT,
            "etcd_client": contract.ETCD_CLIENT_PORT, "etcd_peer": contract.ETCD_PEER_PORT,
            "haproxy_stats": contract.HAPROXY_STATS_PORT, "pgbackrest_tls": contract.PGBACKREST_TLS_PORT,
            "haproxy_metrics": contract.HAPROXY_METRICS_PORT, "etcd_metrics": contract.ETCD_METRICS_PORT}


def etcd_hosts(inv: Inventory) -> list[InventoryHost]:
    return inv.etcd_hosts()


def pg_hba(spec: Spec, inv: Inventory) -> list[str]:
    """pg_hba.conf lines, deny by default: the first match wins, the last lines reject.

    PgBouncer reaches PostgreSQL over the Unix socket as the ``postgres`` OS
    user; its auth user is mapped by peer, and every other role still proves
    its password (SCRAM, passed through by PgBouncer).
    """
    members = member_ips(inv)
    lines = [
        f"local   all          {contract.PG_SUPERUSER:<15} peer",
        f"local   all          {contract.PG_POOLER_AUTH:<15} peer map=pooler",
        "local   replication  all             reject",
        "local   all          all             scram-sha-256",
        # the superuser never logs in over the network
        f"host    all          {contract.PG_SUPERUSER:<15} all  reject",
    ]
    for ip in members:
        lines.append(f"hostssl replication  {contract.PG_REPLICATION:<15} {ip}/32  scram-sha-256")
    # Patroni reads a crashed member's timeline over a local replication
    # connection (to localhost) before deciding on pg_rewind; without this a
    # member that lost power never rejoins
    lines.append(f"hostssl replication  {contract.PG_REPLICATION:<15} 127.0.0.1/32  scram-sha-256")
    lines.append("host    replication  all             all  reject")
    lines.append("hostssl all          all             127.0.0.1/32  scram-sha-256")
    for ip in members:
        lines.append(f"hostssl all          all             {ip}/32  scram-sha-256")
    for cidr in [spec.network.subnet, *spec.client_cidrs]:
        lines.append(f"hostssl all          all             {cidr}  scram-sha-256")
    lines += ["host    all          all             all  reject"]
    return lines


def dynamic_config(spec: Spec, cluster: ClusterSpec) -> dict[str, Any]:
    """Patroni's cluster-wide (DCS) configuration: bootstrap once, converge on every deploy."""
    t = sizing.patroni_timing(spec)
    lim = sizing.patroni_limits(spec)
    return {
        "ttl": t.ttl,
        "loop_wait": t.loop_wait,
        "retry_timeout": t.retry_timeout,
        "maximum_lag_on_failover": lim["maximum_lag_on_failover"],
        "primary_start_timeout": lim["primary_start_timeout"],
        "synchronous_mode": cluster.synchronous,
        "synchronous_mode_strict": spec.failover.synchronous_mode_strict if cluster.synchronous else False,
        "failsafe_mode": True,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {**sizing.postgres_parameters(spec, cluster), **archive_parameters(spec, cluster)},
        },
    }


def archive_parameters(spec: Spec, cluster: ClusterSpec) -> dict[str, str]:
    """WAL archiving to the cluster's pgBackRest repository (asynchronous: pgBackRest queues and pushes in parallel)."""
    if not spec.backups.enabled:
        return {}
    return {"archive_mode": "on", "archive_command": f'pgbackrest --stanza={cluster.name} archive-push "%p"'}


def backup_data(spec: Spec, cluster: ClusterSpec) -> dict[str, Any]:
    """pgBackRest host data (no secrets): the repository, schedules, retention and how Patroni uses it."""
    from pgfleet.backup import repo

    b = spec.backups
    if not b.enabled:
        return {"pgbackrest_enabled": False, "patroni_restore_command": "", "patroni_create_replica_methods": ["basebackup"]}
    host, port = repo.endpoint(spec)
    stanza = cluster.name
    return {
        "pgbackrest_enabled": True,
        "pgbackrest_stanza": stanza,
        "pgbackrest_s3_endpoint": host,
        "pgbackrest_s3_port": port,
        "pgbackrest_s3_bucket": b.bucket,
        "pgbackrest_s3_region": b.region,
        "pgbackrest_repo_path": repo.repo_path(spec, cluster),
        "pgbackrest_ca_file": contract.CA_FILE if provider_class(spec).object_store_uses_cluster_ca else "",
        "pgbackrest_process_max": sizing.backup_process_max(cluster),
        "pgbackrest_io_timeout": sizing.BACKUP_IO_TIMEOUT,
        "pgbackrest_retention_full": b.retention_full,
        "pgbackrest_retention_diff": b.retention_diff,
        "pgbackrest_schedules": {"full": b.full_schedule, "diff": b.diff_schedule},
        "patroni_restore_command": f'pgbackrest --stanza={stanza} archive-get %f "%p"',
        # a new or rebuilt member restores from the repository (sparing the primary), basebackup if that fails
        "patroni_create_replica_methods": ["pgbackrest", "basebackup"],
        "patroni_pgbackrest_command": f"/usr/bin/pgbackrest --stanza={stanza} --delta restore --type=standby",
        "pgbackrest_server_port": contract.PGBACKREST_TLS_PORT,
        "pgbackrest_client_cn": repo.CLIENT_CN,
        "pgbackrest_client_cert": contract.PGBACKREST_CLIENT_CERT,
        "pgbackrest_client_key": contract.PGBACKREST_CLIENT_KEY,
    }


def backup_peers(members: list[InventoryHost], host: InventoryHost) -> list[dict[str, Any]]:
    """The other members as pgBackRest's pg2, pg3, … (pg1 is always the local PostgreSQL)."""
    others = [m for m in members if m.name != host.name]
    return [{"index": i, "name": m.name, "ip": m.private_ip} for i, m in enumerate(others, start=2)]


def host_data(spec: Spec, inv: Inventory, host: InventoryHost) -> dict[str, Any]:
    """Host data for one host of the inventory (no secrets)."""
    etcd = etcd_hosts(inv)
    d: dict[str, Any] = {
        "pgfleet_stack": inv.stack,
        "pgfleet_environment": spec.environment,
        "pgfleet_provider": inv.provider,
        "pgfleet_roles": list(host.roles),
        "pgfleet_cluster": host.cluster,
        "pgfleet_ip": host.private_ip,
        "base_packages": packages(spec, host),
        # an apt proxy for hosts without one; the lab's hosts already use the lab's
        "base_apt_proxy": "",
        "base_network_sysctls": sizing.network_sysctls(),
        # every role reads the host's TLS files from here
        "tls_dir": contract.TLS_DIR,
        "tls_group": contract.TLS_GROUP,
        # every port a template names comes from the contract
        "pgfleet_ports": ports(),
        "tls_dns_names": list(tls_names(spec, inv, host).dns),
        "tls_ip_addresses": list(tls_names(spec, inv, host).ips),
        "firewall_admin_cidrs": list(spec.admin_cidrs),
        "firewall_client_cidrs": list(spec.client_cidrs),
        "firewall_member_ips": member_ips(inv),
        "firewall_postgres": ROLE_POSTGRES in host.roles,
        "firewall_etcd": ROLE_ETCD in host.roles,
        "firewall_monitor": ROLE_MONITOR in host.roles,
        "firewall_monitor_ips": [h.private_ip for h in inv.by_role(ROLE_MONITOR)],
        "etcd_endpoints": [f"https://{h.private_ip}:{contract.ETCD_CLIENT_PORT}" for h in etcd],
        "exporters": exporters(spec, host),
        # only the monitoring host's certificate may scrape (its SANs: its name)
        "exporters_allowed_sans": [h.name for h in inv.by_role(ROLE_MONITOR)],
        "etcd_metrics": spec.monitoring.enabled,
        "haproxy_metrics": spec.monitoring.enabled,
    }
    if ROLE_MONITOR in host.roles:
        d.update(monitor_data(spec, inv))
    if host.cluster is not None:
        c = spec.cluster(host.cluster)
        d["base_kernel_sysctls"] = sizing.kernel_sysctls(c)
    else:
        d["base_kernel_sysctls"] = {}
    if ROLE_ETCD in host.roles:
        et = sizing.etcd_timing(sizing.patroni_timing(spec))
        d.update({
            "etcd_name": host.name,
            "etcd_initial_cluster": ",".join(f"{h.name}=https://{h.private_ip}:{contract.ETCD_PEER_PORT}" for h in etcd),
            "etcd_initial_cluster_token": f"pgfleet-{spec.environment}",
            "etcd_first_member": etcd[0].name,
            "etcd_heartbeat_interval": et.heartbeat_interval,
            "etcd_election_timeout": et.election_timeout,
        })
    if ROLE_POSTGRES in host.roles and host.cluster is not None:
        c = spec.cluster(host.cluster)
        members = cluster_members(inv, host.cluster)
        fit = sizing.pool_fit(spec, c)
        d.update({
            "patroni_postgres_major": c.postgres_major,
            "patroni_postgres_home": contract.postgres_home(c.postgres_major),
            "patroni_data_dir": contract.data_dir(c.postgres_major),
            "patroni_bin_dir": contract.bin_dir(c.postgres_major),
            "pgbackrest_pg_path": contract.data_dir(c.postgres_major),
            "patroni_scope": c.name,
            "patroni_name": host.name,
            "patroni_members": [{"name": m.name, "ip": m.private_ip} for m in members],
            "patroni_first_member": members[0].name,
            "patroni_etcd_hosts": [f"{h.private_ip}:{contract.ETCD_CLIENT_PORT}" for h in etcd],
            "patroni_dynamic": dynamic_config(spec, c),
            # the tuned profiles prewarm a promoted member's vector indexes (roles/patroni.py) in every database (roles/databases.py)
            "patroni_prewarm": sizing.prewarms(c),
            "patroni_pg_hba": pg_hba(spec, inv),
            "patroni_pg_ident": [f"pooler  {contract.POSTGRES_OS_USER}  {contract.PG_POOLER_AUTH}"],
            # each with the pgvector settings its sessions get (sizing.database_settings), by GUC
            "databases": [{**d_.model_dump(), "settings": sizing.database_settings(d_)} for d_ in c.databases],
            "pgbouncer_pool_mode": spec.pgbouncer.pool_mode,
            "pgbouncer_processes": fit.processes,
            "pgbouncer_default_pool_size": fit.process_pool_size,
            "pgbouncer_reserve_pool_size": fit.process_reserve_pool_size,
            "pgbouncer_databases": pgbouncer_databases(c),
            # what the roles size PgBouncer's and HAProxy's limits from, with the host's open-files limit
            "pgbouncer_pool_connections": fit.needed,
            "pgbouncer_client_limit": spec.pgbouncer.max_client_conn,
            "haproxy_timing": dataclasses.asdict(sizing.haproxy_timing(sizing.patroni_timing(spec))),
            "haproxy_members": [{"name": m.name, "ip": m.private_ip} for m in members],
            **backup_data(spec, c),
            "pgbackrest_peers": backup_peers(members, host),
        })
    return d


def ssh_data(inv: Inventory, host: InventoryHost) -> dict[str, Any]:
    """How pyinfra reaches a host: its public address, the stack's key and recorded host keys."""
    d: dict[str, Any] = {"ssh_hostname": host.public_ip, "ssh_user": host.ssh_user, "ssh_port": host.ssh_port}
    if inv.ssh_key_file:
        d.update({"ssh_key": inv.ssh_key_file, "ssh_allow_agent": False, "ssh_look_for_keys": False})
    if inv.known_hosts_file:
        d.update({"ssh_known_hosts_file": inv.known_hosts_file, "ssh_strict_host_key_checking": "yes"})
    return d


def pyinfra_groups(spec: Spec, inv: Inventory) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """pyinfra groups (one per inventory role) of ``(host name, host data)``."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {ROLE_POSTGRES: [], ROLE_ETCD: [], ROLE_CLIENT: [], ROLE_MONITOR: []}
    for h in inv.hosts:
        hd = {**ssh_data(inv, h), **host_data(spec, inv, h)}
        for role in h.roles:
            groups.setdefault(role, []).append((h.name, hd))
    return groups
