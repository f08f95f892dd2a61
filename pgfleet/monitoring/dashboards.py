"""Five Grafana dashboards, generated with grafana-foundation-sdk from the same metric catalogue as the alerts.

Grafana is not in Debian: these are JSON files to import (Dashboards → New →
Import) with a Prometheus data source; Prometheus' own UI serves the lab. Every
query reads catalogue metrics only (tests/test_monitoring_dashboards.py) and
filters on the ``$cluster`` variable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
C = 'cluster=~"$cluster"'
RATE = "$__rate_interval"
#: The query of the ``$cluster`` variable (Grafana's label_values, not PromQL).
CLUSTER_VARIABLE = "label_values(patroni_primary, cluster)"


@dataclass(frozen=True)
class Panel:
    title: str
    #: (PromQL, legend)
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""


def _p(title: str, expr: str, legend: str, unit: str = "short", kind: str = "timeseries", description: str = "") -> Panel:
    return Panel(title, ((expr, legend),), unit, kind, description)


def _lag(position: str) -> str:
    """Bytes each replica is behind the primary (as the lag alerts compute it, for every selected cluster)."""
    return (f"(max by (cluster) (patroni_xlog_location{{{C}}}) - on (cluster) group_right "
            f"max by (cluster, node) ({position}{{{C}}})) and on (cluster, node) (patroni_replica{{{C}}} == 1)")

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "pgfleet-overview": ("pgfleet: cluster overview", [
        _p("Primary", f"max by (cluster, node) (patroni_primary{{{C}}}) == 1", "{{cluster}} {{node}}", kind="stat"),
        _p("Timeline", f"max by (cluster) (patroni_postgres_timeline{{{C}}})", "{{cluster}}", kind="stat",
           description="Rises by one with every promotion (failover)."),
        _p("Members answering", f"sum by (cluster) (up{{job=\"patroni\",{C}}})", "{{cluster}}", kind="stat"),
        _p("Transactions per second", f"sum by (cluster) (rate(pg_stat_database_xact_commit{{{C}}}[{RATE}]))", "{{cluster}}", "ops"),
        _p("Replica lag", _lag("patroni_xlog_received_location"), "{{node}}", "bytes"),
        _p("Newest backup age", f"min by (cluster) (pgbackrest_backup_since_last_completion_seconds{{{C}}})", "{{cluster}}", "s", "stat"),
        _p("Vector recall", f"min by (cluster, database, table, column) (pgfleet_vector_recall{{{C}}})", "{{database}}.{{table}}.{{column}}", "percentunit", "stat"),
        _p("Certificate days left", f"min by (node, endpoint) (pgfleet_certificate_expiry_timestamp_seconds{{{C}}} - time()) / 86400",
           "{{node}} {{endpoint}}", "d"),
        _p("CPU busy", f"1 - avg by (node) (rate(node_cpu_seconds_total{{mode=\"idle\",{C}}}[{RATE}]))", "{{node}}", "percentunit"),
        _p("Memory available", f"node_memory_MemAvailable_bytes{{{C}}} / node_memory_MemTotal_bytes{{{C}}}", "{{node}}", "percentunit"),
        _p("Load (1 min)", f"node_load1{{{C}}}", "{{node}}"),
        _p("Disk free", f"min by (node, mountpoint) (node_filesystem_avail_bytes{{fstype!~\"tmpfs|ramfs\",{C}}} / "
           f"node_filesystem_size_bytes{{fstype!~\"tmpfs|ramfs\",{C}}})", "{{node}} {{mountpoint}}", "percentunit"),
    ]),
    "pgfleet-postgresql": ("pgfleet: PostgreSQL", [
        Panel("Connections", ((f"sum by (node) (pg_stat_database_numbackends{{{C}}})", "{{node}}"),
                              (f"max by (node) (pg_settings_max_connections{{{C}}})", "max_connections {{node}}"))),
        Panel("Commits and rollbacks", ((f"sum by (node) (rate(pg_stat_database_xact_commit{{{C}}}[{RATE}]))", "commit {{node}}"),
                                        (f"sum by (node) (rate(pg_stat_database_xact_rollback{{{C}}}[{RATE}]))", "rollback {{node}}")), "ops"),
        _p("Cache hit ratio", f"sum by (node) (rate(pg_stat_database_blks_hit{{{C}}}[{RATE}])) / (sum by (node) (rate(pg_stat_database_blks_hit{{{C}}}[{RATE}])) "
           f"+ sum by (node) (rate(pg_stat_database_blks_read{{{C}}}[{RATE}])))", "{{node}}", "percentunit"),
        _p("Deadlocks", f"sum by (node) (increase(pg_stat_database_deadlocks{{{C}}}[{RATE}]))", "{{node}}"),
        _p("Database size", f"max by (datname) (pg_database_size_bytes{{{C}}})", "{{datname}}", "bytes"),
        _p("Replay lag", _lag("patroni_xlog_replayed_location"), "{{node}}", "bytes"),
        _p("Last replayed commit age", f"time() - max by (node) (patroni_xlog_replayed_timestamp{{{C}}} > 0)", "{{node}}", "s",
           description="Grows on an idle primary too; the alert counts it only while WAL is pending."),
        Panel("Member state", ((f"max by (node) (patroni_postgres_running{{{C}}})", "running {{node}}"),
                               (f"max by (node) (patroni_postgres_streaming{{{C}}})", "streaming {{node}}"),
                               (f"max by (node) (patroni_sync_standby{{{C}}})", "synchronous {{node}}"),
                               (f"max by (node) (pg_up{{{C}}})", "exporter connected {{node}}"))),
        Panel("Patroni flags", ((f"max by (cluster) (patroni_is_paused{{{C}}})", "paused"),
                                (f"max by (cluster) (patroni_failsafe_mode_is_active{{{C}}})", "failsafe"),
                                (f"max by (cluster) (patroni_cluster_unlocked{{{C}}})", "unlocked"),
                                (f"max by (node) (patroni_pending_restart{{{C}}})", "pending restart {{node}}"))),
        _p("Since Patroni last reached etcd", f"time() - max by (node) (patroni_dcs_last_seen{{{C}}})", "{{node}}", "s"),
        Panel("etcd", ((f"max by (node) (etcd_server_has_leader{{{C}}})", "has leader {{node}}"),
                       (f"max by (node) (etcd_server_is_leader{{{C}}})", "leader {{node}}"),
                       (f"sum by (node) (increase(etcd_server_leader_changes_seen_total{{{C}}}[{RATE}]))", "leader changes {{node}}"))),
        Panel("etcd fsync and commit p99", (
            (f"histogram_quantile(0.99, sum by (node, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket{{{C}}}[{RATE}])))", "wal fsync {{node}}"),
            (f"histogram_quantile(0.99, sum by (node, le) (rate(etcd_disk_backend_commit_duration_seconds_bucket{{{C}}}[{RATE}])))", "commit {{node}}")), "s"),
        _p("etcd database size", f"max by (node) (etcd_mvcc_db_total_size_in_bytes{{{C}}})", "{{node}}", "bytes"),
    ]),
    "pgfleet-pooling": ("pgfleet: PgBouncer and HAProxy", [
        Panel("PgBouncer clients", ((f"sum by (node) (pgbouncer_pools_client_active_connections{{{C}}})", "active {{node}}"),
                                    (f"sum by (node) (pgbouncer_pools_client_waiting_connections{{{C}}})", "waiting {{node}}"),
                                    (f"sum by (node) (pgbouncer_config_max_client_connections{{{C}}})", "max_client_conn {{node}}"))),
        _p("Longest client wait", f"max by (node, database) (pgbouncer_pools_client_maxwait_seconds{{{C}}})", "{{node}} {{database}}", "s"),
        Panel("PgBouncer server connections", ((f"sum by (node) (pgbouncer_pools_server_active_connections{{{C}}})", "active {{node}}"),
                                               (f"sum by (node) (pgbouncer_pools_server_idle_connections{{{C}}})", "idle {{node}}"))),
        _p("Pooled transactions per second", f"sum by (node) (rate(pgbouncer_stats_sql_transactions_pooled_total{{{C}}}[{RATE}]))", "{{node}}", "ops"),
        _p("Average wait per transaction", f"sum by (node) (rate(pgbouncer_stats_client_wait_seconds_total{{{C}}}[{RATE}])) / "
           f"sum by (node) (rate(pgbouncer_stats_sql_transactions_pooled_total{{{C}}}[{RATE}]))", "{{node}}", "s"),
        _p("PgBouncer up", f"min by (node) (pgbouncer_up{{{C}}})", "{{node}}", kind="stat"),
        _p("HAProxy servers per backend", f"max by (node, proxy) (haproxy_backend_active_servers{{{C}}})", "{{node}} {{proxy}}"),
        _p("HAProxy sessions per endpoint", f"sum by (proxy) (haproxy_frontend_current_sessions{{{C}}})", "{{proxy}}"),
        _p("HAProxy new connections", f"sum by (proxy) (rate(haproxy_frontend_connections_total{{{C}}}[{RATE}]))", "{{proxy}}", "ops"),
        _p("HAProxy backend sessions", f"sum by (proxy) (haproxy_backend_current_sessions{{{C}}})", "{{proxy}}"),
    ]),
    "pgfleet-backups": ("pgfleet: backups", [
        _p("Newest backup by type", f"min by (backup_type) (pgbackrest_backup_since_last_completion_seconds{{{C}}})", "{{backup_type}}", "s"),
        _p("Backups in the repository", f"count by (backup_type) (count by (backup_type, backup_name) (pgbackrest_backup_info{{{C}}}))", "{{backup_type}}", kind="stat"),
        _p("Restorable window", f"min by (cluster) (pgfleet_backup_restorable_window_seconds{{{C}}})", "{{cluster}}", "s", "stat"),
        Panel("Repository status", ((f"max by (cluster) (pgbackrest_stanza_status{{{C}}})", "stanza status (0 ok)"),
                                    (f"min by (cluster) (pgbackrest_exporter_status{{{C}}})", "exporter read it (1 ok)")), kind="stat"),
        _p("Last backup duration", f"max by (backup_type) (pgbackrest_backup_last_duration_seconds{{{C}}})", "{{backup_type}}", "s"),
        _p("Last backup size in the repository", f"max by (backup_type) (pgbackrest_backup_last_repo_size_bytes{{{C}}})", "{{backup_type}}", "bytes"),
        Panel("WAL archived and failed", ((f"sum by (node) (rate(pg_stat_archiver_archived_count{{{C}}}[{RATE}]))", "archived {{node}}"),
                                          (f"sum by (node) (rate(pg_stat_archiver_failed_count{{{C}}}[{RATE}]))", "failed {{node}}")), "ops"),
        _p("Since the last archived segment", f"min by (node) (pg_stat_archiver_last_archive_age{{{C}}})", "{{node}}", "s"),
        _p("WAL waiting for the archiver", f"max by (node) (pgfleet_wal_ready_segments{{{C}}})", "{{node}}"),
    ]),
    "pgfleet-vector": ("pgfleet: vector search", [
        Panel("Recall@k", ((f"min by (database, table, column) (pgfleet_vector_recall{{{C}}})", "{{database}}.{{table}}.{{column}}"),
                           (f"max by (database, table, column) (pgfleet_vector_recall_target{{{C}}})", "target {{database}}.{{table}}.{{column}}")),
              "percentunit"),
        Panel("Query latency", ((f"max by (database, table, column) (pgfleet_vector_ann_seconds{{{C}}})", "ANN {{table}}.{{column}}"),
                                (f"max by (database, table, column) (pgfleet_vector_exact_seconds{{{C}}})", "exact {{table}}.{{column}}")), "s"),
        _p("Rows", f"max by (database, table) (pgfleet_vector_rows{{{C}}})", "{{database}}.{{table}}"),
        _p("Index size", f"max by (database, table, column) (pgfleet_vector_index_size_bytes{{{C}}})", "{{table}}.{{column}}", "bytes"),
        Panel("Index fits", ((f"min by (database, table, column) (pgfleet_vector_index_fits_shared_buffers{{{C}}})", "shared_buffers {{table}}.{{column}}"),
                             (f"min by (database, table, column) (pgfleet_vector_index_fits_memory{{{C}}})", "memory {{table}}.{{column}}")), kind="stat",
              description="1: the index is no larger than shared_buffers / effective_cache_size on the replica measured."),
        _p("Probe measured", f"min by (database, table, column) (pgfleet_vector_probe_success{{{C}}})", "{{database}}.{{table}}.{{column}}", kind="stat",
           description="0: the last measurement failed (the error is in the probe's journal); the other vector series are absent meanwhile."),
        _p("Since the last measurement", f"time() - max by (database, table, column) (pgfleet_vector_probe_last_success_timestamp_seconds{{{C}}})",
           "{{database}}.{{table}}.{{column}}", "s", "stat"),
    ]),
}


def _panel(i: int, p: Panel) -> timeseries.Panel | stat.Panel:
    b = (stat.Panel() if p.kind == "stat" else timeseries.Panel()).id(i).title(p.title).unit(p.unit).datasource(DATASOURCE)
    b = b.height(4 if p.kind == "stat" else 8).span(6 if p.kind == "stat" else 12)
    if p.description:
        b = b.description(p.description)
    for ref, (expr, legend) in zip("ABCDEFGH", p.queries):
        b = b.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref))
    return b


def build(uid: str) -> dict[str, object]:
    """One dashboard as Grafana's JSON model."""
    title, panels = DASHBOARDS[uid]
    d = (dashboard.Dashboard(title).uid(uid).tags(["pgfleet"]).refresh("30s").time("now-3h", "now")
         .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
         .with_variable(dashboard.QueryVariable("cluster").label("Cluster").datasource(DATASOURCE).query(CLUSTER_VARIABLE)
                        .multi(True).include_all(True).all_value(".*").refresh(VariableRefresh.ON_DASHBOARD_LOAD)))
    for i, p in enumerate(panels, start=1):
        d = d.with_panel(_panel(i, p))
    return json.loads(json.dumps(d.build(), cls=JSONEncoder))


def queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, PromQL) for every query of every dashboard."""
    return [(uid, p.title, expr) for uid, (_, panels) in DASHBOARDS.items() for p in panels for expr, _ in p.queries]


#: What Grafana substitutes before Prometheus sees a query (tests run the panels' queries with these values).
GRAFANA_VARIABLES = {RATE: "1m", "$cluster": ".*"}


def concrete(expr: str) -> str:
    """A panel's query as Prometheus receives it from Grafana (variables replaced by fixed values)."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    if "$" in expr:
        raise ValueError(f"a Grafana variable is left in {expr!r}")
    return expr


def write(directory: Path) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` (for Grafana's import)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for uid in DASHBOARDS:
        path = directory / f"{uid}.json"
        path.write_text(json.dumps(build(uid), indent=2, sort_keys=True) + "\n")
        out.append(path)
    return out
