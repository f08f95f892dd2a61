"""Prometheus alert rules, generated from the spec: thresholds come from sizing, the backup schedule and retention.

Every alert names its runbook page (``runbooks/alerts/<slug>.md``); availability
alerts wait at most :data:`AVAILABILITY_MAX_FOR` seconds so that, with
Alertmanager's ``group_wait`` (:mod:`.alertmanager`), a failure is announced
within a minute. Series carry the scrape labels ``cluster`` and ``node``
(:mod:`.prometheus`); metric names come from :mod:`.metrics` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from pgfleet import contract, sizing
from pgfleet.schema import ClusterSpec, Spec

Severity = Literal["critical", "warning"]
RUNBOOKS = "runbooks/alerts"
#: Longest ``for:`` of an availability alert (s): fault → notification stays under a minute.
AVAILABILITY_MAX_FOR = 30
#: How often the rule groups are evaluated (s); also Prometheus' scrape interval.
EVALUATION_INTERVAL = 10
#: A replica whose replay is this far behind (s) serves stale reads; counted only while WAL is really pending.
REPLICA_LAG_SECONDS = 60
#: A client waiting this long (s) for a server connection is about to time out in the application.
POOL_MAX_WAIT_SECONDS = 5
#: Share of max_connections in use beyond which new sessions are at risk.
CONNECTIONS_NEAR_MAX = 0.9
#: Warn this many days before a certificate expires.
CERT_EXPIRY_DAYS = 21
#: Free space share below which a filesystem counts as full now.
DISK_FREE_MIN = 0.10
#: How far ahead (s) predict_linear looks for a filesystem running out.
DISK_PREDICT_SECONDS = 4 * 3600
#: WAL that changes since this long ago (s) counts as a failover (timeline change).
FAILOVER_WINDOW = "5m"
#: Window (a PromQL range) in which archive_command failed and nothing was archived: WAL archiving is failing.
#: Two minutes holds several retries of pgBackRest's (each waits up to its archive-timeout) and an idle
#: primary's archive_timeout switch, so one transient failure followed by a success never pages.
ARCHIVING_WINDOW = "2m"
#: A probe that failed this long (s; three measurements) is broken, not between two tries.
PROBE_FAILING_FOR = 3 * contract.PROBE_INTERVAL
#: Filesystems that are memory, not disk.
_REAL_FS = 'fstype!~"tmpfs|ramfs"'


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    #: ``for:`` in seconds
    for_s: int
    severity: Severity
    summary: str
    description: str
    #: An outage of the service (not only of redundancy or hygiene): announced within a minute.
    availability: bool = False

    @property
    def slug(self) -> str:
        """``PostgresNoPrimary`` -> ``postgres-no-primary`` (the runbook's file name)."""
        words = self.name.replace("PgBouncer", "Pgbouncer").replace("HAProxy", "Haproxy")
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", words).lower()

    @property
    def runbook(self) -> str:
        return f"{RUNBOOKS}/{self.slug}.md"

    def rule(self) -> dict[str, Any]:
        return {"alert": self.name, "expr": self.expr, "for": f"{self.for_s}s", "labels": {"severity": self.severity},
                "annotations": {"summary": self.summary, "description": self.description, "runbook_url": self.runbook}}


def _eq(label: str, value: object) -> str:
    return f'{label}="{value}"'


def _re(label: str, pattern: str) -> str:
    return f'{label}=~"{pattern}"'


def _sel(metric: str, *matchers: str) -> str:
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def _bytes_behind(cluster: str, position: str) -> str:
    """Per replica (cluster, node): the primary's WAL position minus the replica's ``position`` metric, in bytes."""
    c = f'cluster="{cluster}"'
    return (f"((max by (cluster) ({_sel('patroni_xlog_location', c)}) - on (cluster) group_right "
            f"max by (cluster, node) ({_sel(position, c)})) and on (cluster, node) ({_sel('patroni_replica', c)} == 1))")


def cluster_alerts(spec: Spec, cluster: ClusterSpec) -> list[Alert]:
    """The alerts about one database cluster (Patroni, PostgreSQL, PgBouncer, HAProxy, backups, vector indexes)."""
    n = cluster.name
    c = f'cluster="{n}"'
    on = "{{ $labels.node }}"
    out = [
        Alert("PostgresNoPrimary", f"sum by (cluster) ({_sel('patroni_primary', c)}) < 1 or absent({_sel('patroni_primary', c)})",
              15, "critical", f"cluster {n} has no primary", "No Patroni member holds the leader lock: writes fail.", True),
        Alert("PostgresMultiplePrimaries", f"sum by (cluster) ({_sel('patroni_primary', c)}) > 1", 15, "critical",
              f"cluster {n} has more than one primary", "Two members report themselves primary: writes may diverge.", True),
        Alert("PostgresFailover",
              f"max by (cluster) ({_sel('patroni_postgres_timeline', c)}) > max by (cluster) ({_sel('patroni_postgres_timeline', c)} offset {FAILOVER_WINDOW})",
              0, "warning", f"cluster {n} failed over (new timeline)",
              f"The timeline rose within {FAILOVER_WINDOW}: a replica was promoted. Clients saw a write gap; find out why.", True),
        Alert("ReplicaLagBytes", f"{_bytes_behind(n, 'patroni_xlog_received_location')} > {sizing.MAXIMUM_LAG_ON_FAILOVER}", 60, "warning",
              f"replica {on} of {n} is more than {sizing.MAXIMUM_LAG_ON_FAILOVER} bytes behind",
              "Beyond maximum_lag_on_failover Patroni will not promote this replica.", False),
        Alert("ReplicaLagTime",
              f"(time() - max by (cluster, node) ({_sel('patroni_xlog_replayed_timestamp', c)} > 0)) > {REPLICA_LAG_SECONDS} "
              f"and on (cluster, node) ({_bytes_behind(n, 'patroni_xlog_replayed_location')} > 0)",
              60, "warning", f"replica {on} of {n} replays more than {REPLICA_LAG_SECONDS} s behind",
              "Its last replayed commit is old while WAL is pending (an idle primary does not count): reads there are stale.", False),
        Alert("ReplicaNotStreaming",
              f"(max by (cluster, node) ({_sel('patroni_replica', c)}) == 1) and on (cluster, node) (max by (cluster, node) ({_sel('patroni_postgres_streaming', c)}) == 0)",
              30, "warning", f"replica {on} of {n} is not streaming", "The replica receives no WAL from the primary: it falls behind and cannot take over.", True),
        Alert("PatroniMemberDown", f"{_sel('up', _eq('job', 'patroni'), c)} == 0", 15, "critical", f"Patroni on {on} ({n}) does not answer",
              "Its REST API is unreachable: the member is down, or the monitoring host cannot reach it.", True),
        Alert("PostgresNotRunning", f"max by (cluster, node) ({_sel('patroni_postgres_running', c)}) == 0", 15, "critical",
              f"PostgreSQL is not running on {on} ({n})", "Patroni answers but its PostgreSQL is down.", True),
        Alert("PatroniPaused", f"max by (cluster) ({_sel('patroni_is_paused', c)}) == 1", 600, "warning", f"Patroni is paused in {n}",
              "Maintenance mode: no automatic failover while it lasts.", False),
        Alert("PatroniFailsafeActive", f"max by (cluster) ({_sel('patroni_failsafe_mode_is_active', c)}) == 1", 15, "critical",
              f"cluster {n} runs on Patroni failsafe", "Patroni lost etcd; the primary keeps running only while it sees every member.", True),
        Alert("PatroniPendingRestart", f"max by (cluster, node) ({_sel('patroni_pending_restart', c)}) == 1", 900, "warning",
              f"{on} ({n}) waits for a restart", "A changed parameter takes effect only after a restart.", False),
        # min over the node's processes: one process down fails the connections the kernel hands it
        Alert("PgBouncerDown", f"min by (cluster, node) ({_sel('pgbouncer_up', c)}) == 0", 15, "critical", f"PgBouncer on {on} ({n}) is down",
              "A PgBouncer process of this node is down: the pooled connections the kernel hands it fail.", True),
        Alert("PgBouncerClientsWaiting", f"sum by (cluster, node, database) ({_sel('pgbouncer_pools_client_waiting_connections', c)}) > 0", 120,
              "warning", f"clients wait for a server connection on {on} ({n})", "The pool for {{ $labels.database }} is too small for the load, or queries are slow.", False),
        Alert("PgBouncerMaxWait", f"max by (cluster, node, database) ({_sel('pgbouncer_pools_client_maxwait_seconds', c)}) > {POOL_MAX_WAIT_SECONDS}", 30,
              "critical", f"a client waited over {POOL_MAX_WAIT_SECONDS} s for a connection on {on} ({n})",
              "The oldest waiting client of {{ $labels.database }} is about to time out.", False),
        Alert("PostgresConnectionsNearMax",
              f"sum by (cluster, node) ({_sel('pg_stat_database_numbackends', c)}) > {int(sizing.max_connections(cluster) * CONNECTIONS_NEAR_MAX)}", 120,
              "warning", f"{on} ({n}) uses over {int(CONNECTIONS_NEAR_MAX * 100)} % of max_connections {sizing.max_connections(cluster)}",
              "New sessions will soon be refused.", False),
        Alert("HAProxyPrimaryBackendDown", f"max by (cluster, node, proxy) ({_sel('haproxy_backend_active_servers', c, _re('proxy', '.+_primary'))}) == 0", 10,
              "critical", f"HAProxy on {on} ({n}) has no primary for {{{{ $labels.proxy }}}}", "The read-write endpoint through this node fails.", True),
    ]
    if cluster.synchronous:
        out.append(Alert("SyncStandbyMissing",
                         f"(sum by (cluster) ({_sel('patroni_sync_standby', c)}) < 1) and on (cluster) (sum by (cluster) ({_sel('patroni_primary', c)}) == 1)",
                         15, "critical", f"cluster {n} has no synchronous standby",
                         "Synchronous mode is on but no standby is synchronous: commits are no longer on two nodes.", True))
    if cluster.nodes > 1:
        out.append(Alert("HAProxyReplicaBackendDown",
                         f"max by (cluster, node, proxy) ({_sel('haproxy_backend_active_servers', c, _re('proxy', '.+_replicas'))}) == 0", 30, "warning",
                         f"HAProxy on {on} ({n}) has no replica for {{{{ $labels.proxy }}}}", "Read-only traffic falls back to the primary.", True))
    if spec.backups.enabled:
        out += _backup_alerts(spec, n)
    out += _vector_alerts(spec, cluster)
    return out


def _backup_alerts(spec: Spec, n: str) -> list[Alert]:
    c = f'cluster="{n}"'
    ages = sizing.backup_ages(spec)
    return [
        Alert("BackupFullTooOld", f"min by (cluster) ({_sel('pgbackrest_backup_since_last_completion_seconds', c, _eq('backup_type', 'full'))}) > {ages.full_max_age}",
              300, "warning", f"the newest full backup of {n} is older than {ages.full_max_age // 3600} h",
              "A scheduled full backup did not complete (schedule + grace).", False),
        Alert("BackupTooOld", f"min by (cluster) ({_sel('pgbackrest_backup_since_last_completion_seconds', c)}) > {ages.any_max_age}",
              300, "critical", f"the newest backup of {n} is older than {ages.any_max_age // 3600} h",
              "No scheduled backup (full or differential) completed in time.", False),
        Alert("BackupRepositoryError",
              f"max by (cluster) ({_sel('pgbackrest_stanza_status', c)}) > 0 or min by (cluster) ({_sel('pgbackrest_exporter_status', c)}) == 0",
              900, "warning", f"the backup repository of {n} is not healthy", "pgbackrest info reports a problem with the stanza, or cannot be read.", False),
        Alert("WalArchivingFailing",
              f"(max by (cluster, node) (increase({_sel('pg_stat_archiver_failed_count', c)}[{ARCHIVING_WINDOW}])) > 0) "
              f"and on (cluster, node) (max by (cluster, node) (increase({_sel('pg_stat_archiver_archived_count', c)}[{ARCHIVING_WINDOW}])) == 0)",
              60, "critical", f"WAL archiving fails on {{{{ $labels.node }}}} ({n})", "archive_command fails and nothing was archived: point-in-time recovery stops here.", False),
        Alert("WalArchiveBacklog", f"max by (cluster, node) ({_sel('pgfleet_wal_ready_segments', c)}) > {sizing.ARCHIVE_BACKLOG_MAX}", 300,
              "critical", f"more than {sizing.ARCHIVE_BACKLOG_MAX} WAL segments wait for the archiver on {{{{ $labels.node }}}} ({n})",
              "Archiving falls behind; pg_wal fills up.", False),
        Alert("BackupRestorableWindowShort",
              f"(min by (cluster) ({_sel('pgfleet_backup_restorable_window_seconds', c)}) < {ages.restorable_window}) and on (cluster) "
              f"(count by (cluster) (count by (cluster, backup_name) ({_sel('pgbackrest_backup_info', c, _eq('backup_type', 'full'))})) >= {spec.backups.retention_full})",
              3600, "warning", f"{n} can be restored less far back than retention promises ({ages.restorable_window // 86400} days)",
              f"retention_full {spec.backups.retention_full} is reached, yet the oldest backup is younger than promised (extra full backups expire old ones).", False),
    ]


def _vector_alerts(spec: Spec, cluster: ClusterSpec) -> list[Alert]:
    n = cluster.name
    c = f'cluster="{n}"'
    watched = [w for w in spec.monitoring.vector_indexes if spec.watched_cluster(w).name == n]
    if not watched:
        return []
    recall = " or ".join(
        f"min by (cluster, database, table, column) ({_sel('pgfleet_vector_recall', c, _eq('database', w.database), _eq('table', w.table), _eq('column', w.column))}) < {w.target_recall}"
        for w in watched)
    shared = sizing.shared_buffers_bytes(spec, cluster)
    cache = sizing.effective_cache_size_bytes(spec, cluster)
    size = f"sum by (cluster) ({_sel('pgfleet_vector_index_size_bytes', c)})"
    where = "{{ $labels.database }}.{{ $labels.table }}.{{ $labels.column }}"
    return [
        Alert("VectorRecallBelowTarget", recall, 60, "warning", f"recall of {where} ({n}) is below its target",
              "The ANN query with the application's settings misses neighbours the exact query finds.", False),
        Alert("VectorProbeFailing", f"min by (cluster, database, table, column) ({_sel('pgfleet_vector_probe_success', c)}) == 0",
              PROBE_FAILING_FOR, "warning", f"the recall probe cannot measure {where} ({n})",
              "The probe's last measurements failed (table or index gone, role cannot log in, query cancelled): "
              "recall and index-fit alerts are blind meanwhile.", False),
        Alert("VectorIndexExceedsSharedBuffers", f"{size} > {shared}", 900, "warning", f"the watched vector indexes of {n} outgrow shared_buffers",
              f"Together they are larger than shared_buffers ({shared // 2**20} MiB): searches start reading from the page cache.", False),
        Alert("VectorIndexExceedsMemory", f"{size} > {cache}", 900, "critical", f"the watched vector indexes of {n} no longer fit in memory",
              f"Together they are larger than effective_cache_size ({cache // 2**20} MiB): searches read from disk.", False),
    ]


def node_alerts(spec: Spec) -> list[Alert]:
    """Alerts about hosts, exporters, etcd and certificates, for every cluster at once."""
    on = "{{ $labels.node }}"
    fsync = sizing.etcd_timing(sizing.patroni_timing(spec)).heartbeat_interval / 2 / 1000
    avail, size = _sel("node_filesystem_avail_bytes", _REAL_FS), _sel("node_filesystem_size_bytes", _REAL_FS)
    return [
        Alert("ExporterDown", _sel("up", 'job!~"patroni|etcd"') + " == 0", 30, "critical", "{{ $labels.job }} on " + on + " does not answer",
              "A scrape target is down: the service itself (HAProxy) or its exporter; its alerts are blind meanwhile.", True),
        Alert("EtcdMemberDown", _sel("up", 'job="etcd"') + " == 0", 15, "critical", f"etcd member {on} does not answer",
              "etcd keeps a quorum with one member lost of three; a second loss stops failover.", True),
        Alert("EtcdNoLeader", "max by (cluster, node) (etcd_server_has_leader) == 0", 10, "critical", f"etcd member {on} sees no leader",
              "Without a leader etcd takes no writes: Patroni cannot renew its lock.", True),
        Alert("EtcdSlowFsync",
              f"histogram_quantile(0.99, sum by (cluster, node, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m]))) > {fsync}",
              300, "warning", f"etcd on {on} syncs its WAL slowly", f"p99 fsync above {fsync} s, half the raft heartbeat: leader elections follow.", False),
        Alert("DiskAlmostFull", f"min by (cluster, node, mountpoint) ({avail} / {size}) < {DISK_FREE_MIN}", 60, "critical",
              f"{{{{ $labels.mountpoint }}}} on {on} is over {int(100 - DISK_FREE_MIN * 100)} % full", "PostgreSQL stops when its disk is full.", False),
        Alert("DiskFillingUp", f"min by (cluster, node, mountpoint) (predict_linear({avail}[1h], {DISK_PREDICT_SECONDS})) < 0", 600, "warning",
              f"{{{{ $labels.mountpoint }}}} on {on} fills up within {DISK_PREDICT_SECONDS // 3600} h", "At the last hour's rate the filesystem is full soon.", False),
        Alert("NodeMetricsFailing", "max by (cluster, node) (pgfleet_node_metrics_errors) > 0", 300, "warning",
              f"pgfleet's node metrics fail on {on}",
              "A certificate, the archive status or pgbackrest info could not be read: the certificate, archive-backlog and "
              "restorable-window alerts of this node are blind meanwhile (journalctl -u pgfleet-node-metrics says why).", False),
        Alert("CertificateExpiringSoon", f"min by (cluster, node, endpoint) (pgfleet_certificate_expiry_timestamp_seconds) - time() < {CERT_EXPIRY_DAYS * 86400}",
              600, "warning", f"the certificate of {{{{ $labels.endpoint }}}} on {on} expires within {CERT_EXPIRY_DAYS} days",
              "Clients with verify-full and members with mutual TLS refuse it once expired.", False),
    ]


def alerts(spec: Spec) -> list[Alert]:
    """Every alert of the environment: none when monitoring is off."""
    if not spec.monitoring.enabled:
        return []
    return [a for c in spec.clusters for a in cluster_alerts(spec, c)] + node_alerts(spec)


def rule_groups(spec: Spec) -> dict[str, Any]:
    """The rules file's document: one group per cluster, one for hosts."""
    groups = [{"name": f"pgfleet-{c.name}", "interval": f"{EVALUATION_INTERVAL}s", "rules": [a.rule() for a in cluster_alerts(spec, c)]}
              for c in spec.clusters]
    groups.append({"name": "pgfleet-nodes", "interval": f"{EVALUATION_INTERVAL}s", "rules": [a.rule() for a in node_alerts(spec)]})
    return {"groups": groups if spec.monitoring.enabled else []}


def rules_yaml(spec: Spec) -> str:
    return yaml.safe_dump(rule_groups(spec), sort_keys=False, width=1000, allow_unicode=True)
