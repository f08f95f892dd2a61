"""A firing and a quiet case for every alert, as promtool input series (tests/test_monitoring_rules.py runs them).

The rules come from the lab stack with one watched vector index; its nodes are
``lab-main-1`` (primary) .. ``lab-main-3``. Each case gives the series, and the
labels the firing alert carries besides ``alertname`` and ``severity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

N1, N2 = "lab-main-1", "lab-main-2"
C = {"cluster": "main"}


def s(metric: str, values: str, **labels: str) -> dict[str, str]:
    """One input series; every series carries ``cluster="main"``."""
    lab = {**C, **labels}
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in lab.items()) + "}", "values": values}


def flat(v: float | str) -> str:
    return f"{v}x100"


@dataclass(frozen=True)
class Case:
    firing: list[dict[str, str]]
    quiet: list[dict[str, str]]
    labels: dict[str, str]
    eval_time: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def node(name: str = N2) -> dict[str, str]:
    return {**C, "node": name}


def _lag(replica_pos: str, replica_metric: str, extra: list[dict[str, str]]) -> list[dict[str, str]]:
    return [s("patroni_xlog_location", flat(100_000_000), node=N1), s("patroni_xlog_location", flat(0), node=N2),
            s(replica_metric, flat(0), node=N1), s(replica_metric, replica_pos, node=N2),
            s("patroni_replica", flat(0), node=N1), s("patroni_replica", flat(1), node=N2), *extra]


def _up(job: str, value: int, name: str = N2) -> dict[str, str]:
    return s("up", flat(value), job=job, instance=f"{name}:1", node=name)


def _by_node(metric: str, bad: float, good: float, **labels: str) -> tuple[list, list]:
    return [s(metric, flat(bad), node=N2, **labels)], [s(metric, flat(good), node=N2, **labels)]


def _case(metric: str, bad: float, good: float, labels: dict[str, str], **series_labels: str) -> Case:
    firing, quiet = _by_node(metric, bad, good, **series_labels)
    return Case(firing, quiet, labels)


_WATCH = {"database": "app", "table": "items", "column": "embedding"}
_FSYNC_SLOW = [s("etcd_disk_wal_fsync_duration_seconds_bucket", "0+0x100", node=N2, le=le) for le in ("0.001", "0.1")] + \
    [s("etcd_disk_wal_fsync_duration_seconds_bucket", "0+10x100", node=N2, le=le) for le in ("1", "+Inf")]
_FSYNC_FAST = [s("etcd_disk_wal_fsync_duration_seconds_bucket", "0+10x100", node=N2, le=le) for le in ("0.001", "0.1", "1", "+Inf")]
_FS = {"fstype": "ext4", "mountpoint": "/", "device": "/dev/sda1"}
_FULLS = [s("pgbackrest_backup_info", flat(1), node=N1, backup_type="full", backup_name=b) for b in ("20250101-010000F", "20250108-010000F")]

CASES: dict[str, Case] = {
    "PostgresNoPrimary": Case([s("patroni_primary", flat(0), node=N1), s("patroni_primary", flat(0), node=N2)],
                              [s("patroni_primary", flat(1), node=N1), s("patroni_primary", flat(0), node=N2)], C),
    "PostgresMultiplePrimaries": Case([s("patroni_primary", flat(1), node=N1), s("patroni_primary", flat(1), node=N2)],
                                      [s("patroni_primary", flat(1), node=N1), s("patroni_primary", flat(0), node=N2)], C),
    "PostgresFailover": Case([s("patroni_postgres_timeline", "1x5 2x195", node=N1)], [s("patroni_postgres_timeline", flat(1), node=N1)], C),
    "ReplicaLagBytes": Case(_lag(flat(90_000_000), "patroni_xlog_received_location", []),
                            _lag(flat(99_999_000), "patroni_xlog_received_location", []), node()),
    # quiet: the last replayed commit is old, but nothing is pending (an idle primary)
    "ReplicaLagTime": Case(_lag(flat(90_000_000), "patroni_xlog_replayed_location", [s("patroni_xlog_replayed_timestamp", flat(1), node=N2)]),
                           _lag(flat(100_000_000), "patroni_xlog_replayed_location", [s("patroni_xlog_replayed_timestamp", flat(1), node=N2)]), node()),
    "ReplicaNotStreaming": Case([s("patroni_replica", flat(1), node=N2), s("patroni_postgres_streaming", flat(0), node=N2)],
                                [s("patroni_replica", flat(1), node=N2), s("patroni_postgres_streaming", flat(1), node=N2)], node()),
    "PatroniMemberDown": Case([_up("patroni", 0)], [_up("patroni", 1)], {**node(), "job": "patroni", "instance": f"{N2}:1"}),
    "PostgresNotRunning": _case("patroni_postgres_running", 0, 1, node()),
    "PatroniPaused": _case("patroni_is_paused", 1, 0, C),
    "PatroniFailsafeActive": _case("patroni_failsafe_mode_is_active", 1, 0, C),
    "PatroniPendingRestart": _case("patroni_pending_restart", 1, 0, node()),
    "PgBouncerDown": _case("pgbouncer_up", 0, 1, node()),
    "PgBouncerClientsWaiting": _case("pgbouncer_pools_client_waiting_connections", 3, 0, {**node(), "database": "app"}, database="app", user="app"),
    "PgBouncerMaxWait": _case("pgbouncer_pools_client_maxwait_seconds", 10, 0, {**node(), "database": "app"}, database="app", user="app"),
    "PostgresConnectionsNearMax": Case([s("pg_stat_database_numbackends", flat(95), node=N2, datname="app"),
                                        s("pg_stat_database_numbackends", flat(5), node=N2, datname="postgres")],
                                       [s("pg_stat_database_numbackends", flat(40), node=N2, datname="app"),
                                        s("pg_stat_database_numbackends", flat(5), node=N2, datname="postgres")], node()),
    "HAProxyPrimaryBackendDown": _case("haproxy_backend_active_servers", 0, 1, {**node(), "proxy": "pgbouncer_primary"}, proxy="pgbouncer_primary"),
    "HAProxyReplicaBackendDown": _case("haproxy_backend_active_servers", 0, 2, {**node(), "proxy": "pgbouncer_replicas"}, proxy="pgbouncer_replicas"),
    "SyncStandbyMissing": Case([s("patroni_primary", flat(1), node=N1), s("patroni_sync_standby", flat(0), node=N1), s("patroni_sync_standby", flat(0), node=N2)],
                               [s("patroni_primary", flat(1), node=N1), s("patroni_sync_standby", flat(0), node=N1), s("patroni_sync_standby", flat(1), node=N2)], C),
    "BackupFullTooOld": _case("pgbackrest_backup_since_last_completion_seconds", 700_000, 100_000, C, backup_type="full", stanza="main"),
    "BackupTooOld": Case([s("pgbackrest_backup_since_last_completion_seconds", flat(v), node=N1, backup_type=t) for t, v in (("full", 700_000), ("diff", 100_000))],
                         [s("pgbackrest_backup_since_last_completion_seconds", flat(v), node=N1, backup_type=t) for t, v in (("full", 700_000), ("diff", 3600))], C),
    "BackupRepositoryError": Case([s("pgbackrest_stanza_status", flat(2), node=N1), s("pgbackrest_exporter_status", flat(1), node=N1)],
                                  [s("pgbackrest_stanza_status", flat(0), node=N1), s("pgbackrest_exporter_status", flat(1), node=N1)], C),
    "WalArchivingFailing": Case([s("pg_stat_archiver_failed_count", "0+1x100", node=N1), s("pg_stat_archiver_archived_count", flat(5), node=N1)],
                                [s("pg_stat_archiver_failed_count", flat(3), node=N1), s("pg_stat_archiver_archived_count", "5+1x100", node=N1)], node(N1)),
    "WalArchiveBacklog": Case(*_by_node("pgfleet_wal_ready_segments", 100, 3), node()),
    # quiet: the window is short only because the cluster is new (retention has not expired anything yet)
    "BackupRestorableWindowShort": Case([s("pgfleet_backup_restorable_window_seconds", flat(86400)), *_FULLS],
                                        [s("pgfleet_backup_restorable_window_seconds", flat(86400)), _FULLS[0]], C),
    "VectorRecallBelowTarget": _case("pgfleet_vector_recall", 0.5, 0.99, {**C, **_WATCH}, k="10", **_WATCH),
    "VectorProbeFailing": _case("pgfleet_vector_probe_success", 0, 1, {**C, **_WATCH}, **_WATCH),
    "NodeMetricsFailing": _case("pgfleet_node_metrics_errors", 2, 0, node()),
    "VectorIndexExceedsSharedBuffers": _case("pgfleet_vector_index_size_bytes", 2e9, 1e8, C, **_WATCH),
    "VectorIndexExceedsMemory": _case("pgfleet_vector_index_size_bytes", 5e9, 1e8, C, **_WATCH),
    "ExporterDown": Case([_up("node", 0)], [_up("node", 1)], {**node(), "job": "node", "instance": f"{N2}:1"}),
    "EtcdMemberDown": Case([_up("etcd", 0)], [_up("etcd", 1)], {**node(), "job": "etcd", "instance": f"{N2}:1"}),
    "EtcdNoLeader": _case("etcd_server_has_leader", 0, 1, node()),
    "EtcdSlowFsync": Case(_FSYNC_SLOW, _FSYNC_FAST, node()),
    "DiskAlmostFull": Case([s("node_filesystem_avail_bytes", flat(5), node=N2, **_FS), s("node_filesystem_size_bytes", flat(100), node=N2, **_FS)],
                           [s("node_filesystem_avail_bytes", flat(50), node=N2, **_FS), s("node_filesystem_size_bytes", flat(100), node=N2, **_FS)],
                           {**node(), "mountpoint": "/"}),
    "DiskFillingUp": Case([s("node_filesystem_avail_bytes", "100000-1000x100", node=N2, **_FS)], [s("node_filesystem_avail_bytes", flat(100000), node=N2, **_FS)],
                          {**node(), "mountpoint": "/"}),
    "CertificateExpiringSoon": _case("pgfleet_certificate_expiry_timestamp_seconds", 10 * 86400, 100 * 86400, {**node(), "endpoint": "postgres"}, endpoint="postgres"),
}
