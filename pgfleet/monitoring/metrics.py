"""The catalogue of every metric name pgfleet's alert rules and dashboards use.

A ``promtool test rules`` run on invented series cannot catch a renamed metric
(``patroni_master`` vanished in Patroni 4 and a peer's no-leader rule went
silent), so rules and panels take names from here only (tests check it), and
the lab checks that each name not marked ``fault_only`` exists in a live
Prometheus. Versions are the Debian 13 packages the nodes run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["node_exporter", "postgres_exporter", "pgbouncer_exporter", "pgbackrest_exporter",
                 "patroni", "haproxy", "etcd", "prometheus", "pgfleet"]

#: What each source is, as a reader of an alert wants to know (version = the Debian 13 package).
SOURCES: dict[Source, str] = {
    "node_exporter": "prometheus-node-exporter 1.9",
    "postgres_exporter": "prometheus-postgres-exporter 0.17 (role with pg_monitor)",
    "pgbouncer_exporter": "prometheus-pgbouncer-exporter 0.10 (prometheus-community)",
    "pgbackrest_exporter": "prometheus-pgbackrest-exporter 0.19 (woblerr)",
    "patroni": "Patroni 4 REST API /metrics",
    "haproxy": "HAProxy 3.0 built-in prometheus-exporter",
    "etcd": "etcd 3.5 /metrics",
    "prometheus": "Prometheus itself (synthetic series)",
    "pgfleet": "pgfleet's probe exporter on the monitoring host",
}


@dataclass(frozen=True)
class Metric:
    name: str
    source: Source
    help: str
    #: True when the series exists only while something is wrong (a live Prometheus need not have it).
    fault_only: bool = False


def _m(source: Source, *rows: tuple[str, str] | tuple[str, str, bool]) -> list[Metric]:
    return [Metric(r[0], source, r[1], *r[2:]) for r in rows]


CATALOGUE: tuple[Metric, ...] = tuple([
    *_m("prometheus",
        ("up", "1 when the last scrape of a target succeeded")),
    *_m("patroni",
        ("patroni_primary", "1 on the member that holds the leader lock (Patroni 4; patroni_master is gone)"),
        ("patroni_replica", "1 on a replica"),
        ("patroni_sync_standby", "1 on the synchronous standby"),
        ("patroni_postgres_running", "1 while PostgreSQL runs under this Patroni"),
        ("patroni_postgres_streaming", "1 while a replica streams WAL from its upstream"),
        ("patroni_postgres_timeline", "PostgreSQL timeline of the member; a promotion increments it"),
        ("patroni_xlog_location", "primary's WAL position in bytes (0 on replicas)"),
        ("patroni_xlog_received_location", "replica's received WAL position in bytes (0 on the primary)"),
        ("patroni_xlog_replayed_location", "replica's replayed WAL position in bytes (0 on the primary)"),
        ("patroni_xlog_replayed_timestamp", "commit time of the last replayed transaction (epoch s)"),
        ("patroni_cluster_unlocked", "1 when nobody holds the leader lock"),
        ("patroni_failsafe_mode_is_active", "1 while the primary runs on failsafe (etcd unreachable)"),
        ("patroni_pending_restart", "1 when a changed parameter waits for a restart"),
        ("patroni_is_paused", "1 in maintenance mode (no automatic failover)"),
        ("patroni_dcs_last_seen", "last successful contact with etcd (epoch s)")),
    *_m("postgres_exporter",
        ("pg_up", "1 when the exporter could connect to PostgreSQL"),
        ("pg_settings_max_connections", "PostgreSQL's max_connections"),
        ("pg_stat_database_numbackends", "backends connected to a database"),
        ("pg_stat_database_xact_commit", "committed transactions (counter)"),
        ("pg_stat_database_xact_rollback", "rolled back transactions (counter)"),
        ("pg_stat_database_blks_hit", "buffer cache hits (counter)"),
        ("pg_stat_database_blks_read", "blocks read from disk (counter)"),
        ("pg_stat_database_deadlocks", "deadlocks (counter)"),
        ("pg_database_size_bytes", "size of a database"),
        ("pg_stat_archiver_archived_count", "WAL segments archived (counter, from pg_stat_archiver)"),
        ("pg_stat_archiver_failed_count", "failed WAL archive attempts (counter)"),
        ("pg_stat_archiver_last_archive_age", "seconds since the last successful archive")),
    *_m("pgbouncer_exporter",
        ("pgbouncer_up", "1 when the exporter could query PgBouncer's console"),
        ("pgbouncer_pools_client_active_connections", "clients linked to a server connection"),
        ("pgbouncer_pools_client_waiting_connections", "clients waiting for a server connection"),
        ("pgbouncer_pools_client_maxwait_seconds", "age of the oldest waiting client"),
        ("pgbouncer_pools_server_active_connections", "server connections in use"),
        ("pgbouncer_pools_server_idle_connections", "idle server connections"),
        ("pgbouncer_stats_sql_transactions_pooled_total", "transactions pooled (counter)"),
        ("pgbouncer_stats_client_wait_seconds_total", "time clients waited for a server (counter)"),
        ("pgbouncer_config_max_client_connections", "PgBouncer's max_client_conn")),
    *_m("pgbackrest_exporter",
        ("pgbackrest_exporter_status", "1 when the exporter could read pgbackrest info"),
        ("pgbackrest_stanza_status", "0 ok; 2 no valid backups; other values: a broken stanza"),
        ("pgbackrest_backup_since_last_completion_seconds", "seconds since the newest backup of a type (full; diff counts full; incr counts any)"),
        ("pgbackrest_backup_info", "1 per backup in the repository (labels: backup_name, backup_type)"),
        ("pgbackrest_backup_last_duration_seconds", "duration of the newest backup of a type"),
        ("pgbackrest_backup_last_repo_size_bytes", "repository size of the newest backup of a type")),
    *_m("haproxy",
        ("haproxy_backend_active_servers", "servers of a backend that pass their health check"),
        ("haproxy_frontend_current_sessions", "open client sessions of a frontend"),
        ("haproxy_backend_current_sessions", "open sessions of a backend"),
        ("haproxy_frontend_connections_total", "connections accepted by a frontend (counter)")),
    *_m("etcd",
        ("etcd_server_has_leader", "1 when the member sees a raft leader"),
        ("etcd_server_is_leader", "1 on the raft leader"),
        ("etcd_server_leader_changes_seen_total", "leader changes this member saw (counter)"),
        ("etcd_disk_wal_fsync_duration_seconds_bucket", "WAL fsync latency histogram"),
        ("etcd_disk_backend_commit_duration_seconds_bucket", "backend commit latency histogram"),
        ("etcd_mvcc_db_total_size_in_bytes", "size of the etcd database")),
    *_m("node_exporter",
        ("node_filesystem_avail_bytes", "bytes available to unprivileged users"),
        ("node_filesystem_size_bytes", "filesystem size"),
        ("node_cpu_seconds_total", "CPU time by mode (counter)"),
        ("node_memory_MemAvailable_bytes", "memory available without swapping"),
        ("node_memory_MemTotal_bytes", "total memory"),
        ("node_load1", "1-minute load average")),
    *_m("pgfleet",
        ("pgfleet_vector_recall", "recall@k of the ANN query against the exact top-k, per watched index"),
        ("pgfleet_vector_ann_seconds", "mean latency of the ANN query with the application role's settings"),
        ("pgfleet_vector_exact_seconds", "mean latency of the exact (no index) query"),
        ("pgfleet_vector_rows", "rows in the watched table"),
        ("pgfleet_vector_index_size_bytes", "size of the watched vector index"),
        ("pgfleet_vector_index_fits_shared_buffers", "1 when the watched index is no larger than shared_buffers"),
        ("pgfleet_vector_index_fits_memory", "1 when the watched index is no larger than effective_cache_size"),
        ("pgfleet_vector_recall_target", "the recall a watched index is expected to keep (the spec's target_recall)"),
        ("pgfleet_vector_probe_success", "1 when the probe's last measurement of a watch succeeded (0: its other series are absent)"),
        ("pgfleet_vector_probe_last_success_timestamp_seconds", "when the probe last measured a watch successfully (epoch s)"),
        ("pgfleet_certificate_expiry_timestamp_seconds", "notAfter of the certificate an endpoint serves (epoch s)"),
        ("pgfleet_node_metrics_errors", "measurements of pgfleet's node-metrics that failed in its last run"),
        ("pgfleet_wal_ready_segments", "WAL segments waiting for the archiver (pg_ls_archive_statusdir, pg_monitor)"),
        ("pgfleet_backup_restorable_window_seconds", "now minus the stop time of the oldest backup in the repository")),
])

BY_NAME: dict[str, Metric] = {m.name: m for m in CATALOGUE}
assert len(BY_NAME) == len(CATALOGUE), "a metric is listed twice"
