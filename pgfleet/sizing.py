"""Every number pgfleet derives from the spec, computed in one place.

PostgreSQL memory and parallelism come from the spec's *server type* (never
from what a host reports: lab hosts see the whole machine), connection and
pool limits from those, and failover timing from the spec's ``failover``
section with a fast default profile inside Patroni's own limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgfleet import contract, oncalendar
from pgfleet.schema import ClusterSpec, DatabaseSpec, Spec

#: Connections kept free of PgBouncer pools: superuser_reserved_connections (3)
#: plus Patroni, monitoring, pgBackRest and admins on the direct endpoints.
RESERVED_CONNECTIONS = 3 + 12


def _clamp(v: float, lo: float, hi: float) -> int:
    return int(max(lo, min(hi, v)))


def max_connections(cluster: ClusterSpec) -> int:
    if "max_connections" in cluster.parameters:
        return int(cluster.parameters["max_connections"])
    return _clamp(cluster.server.cores * 25, 100, 400)


def default_pool_size(spec: Spec, cluster: ClusterSpec) -> int:
    """Server connections per (database, user): a few per core, enough for bursts."""
    if spec.pgbouncer.default_pool_size is not None:
        return spec.pgbouncer.default_pool_size
    return _clamp(cluster.server.cores * 4, 10, 100)


def pgbouncer_processes(cluster: ClusterSpec) -> int:
    """PgBouncer processes per node, all on one port (``so_reuseport``: the kernel spreads new connections).

    PgBouncer is single-threaded: one process tops out at one core (bench/pooler.py measured one process
    at about 8 000 select-only TPS on a 2-core cx23, with PostgreSQL on the same cores). One process per
    two cores leaves the rest to PostgreSQL; at least two, so a process that restarts (or crashes) leaves
    another accepting; at most :data:`~pgfleet.contract.PGBOUNCER_MAX_PROCESSES` (their exporters' ports
    are reserved).
    """
    return _clamp(cluster.server.cores // 2, 2, contract.PGBOUNCER_MAX_PROCESSES)


@dataclass(frozen=True)
class PoolFit:
    #: server connections per (database, user) on the node, all processes together
    pool_size: int
    max_connections: int
    reserved: int

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved

    needed: int = 0
    processes: int = 1
    #: what each process's ``default_pool_size`` / ``reserve_pool_size`` is: the node's, split
    process_pool_size: int = 0
    process_reserve_pool_size: int = 0


def _split(total: int, parts: int) -> int:
    return -(-total // parts)


def pool_fit(spec: Spec, cluster: ClusterSpec) -> PoolFit:
    """The node's pools, split over its PgBouncer processes (each process has pools of its own)."""
    pool = default_pool_size(spec, cluster)
    n = pgbouncer_processes(cluster)
    per, reserve = _split(pool, n), _split(spec.pgbouncer.reserve_pool_size, n)
    needed = len(cluster.databases) * n * (per + reserve)
    return PoolFit(pool_size=pool, max_connections=max_connections(cluster), reserved=RESERVED_CONNECTIONS, needed=needed,
                   processes=n, process_pool_size=per, process_reserve_pool_size=reserve)


#: ``vm.overcommit_ratio`` (:func:`kernel_sysctls`): with ``vm.overcommit_memory=2`` the kernel refuses any
#: allocation past this share of RAM (Hetzner's servers have no swap), so a query gets "out of memory" instead of
#: the OOM killer ending the postmaster. :func:`memory_budget` keeps PostgreSQL's planned peak under it.
OVERCOMMIT_RATIO = 90
#: Planning figures (MiB; a lab check of ``Committed_AS`` under the benchmark confirms them): what the other
#: services of a database node commit (etcd, Patroni, PgBouncer, HAProxy, exporters), and a backend's own
#: memory beside work_mem (catalog caches, plans, libpq buffers).
SERVICES_MIB = 768
BACKEND_MIB = 4
#: PostgreSQL's own default (the ``stock`` profile leaves it), also ``autovacuum_max_workers``'s.
AUTOVACUUM_MAX_WORKERS = 3
#: What PostgreSQL 17 uses when postgresql.conf does not say (``stock``): its built-in defaults, which Debian's
#: generated postgresql.conf and Patroni's initdb keep (initdb only probes shared_buffers up to 128MB).
POSTGRES_DEFAULTS = {"shared_buffers": "128MB", "effective_cache_size": "4GB", "maintenance_work_mem": "64MB", "work_mem": "4MB"}


@dataclass(frozen=True)
class MemoryBudget:
    """PostgreSQL's planned peak commit on a database node (MiB), against the kernel's commit limit.

    The peak: shared_buffers, one index build holding ``maintenance_work_mem`` (a serial HNSW build in its
    backend, a parallel one as one shared-memory area for all participants: pgvector src/hnswbuild.c,
    ``esthnswarea``), every autovacuum worker at ``autovacuum_work_mem``, every allowed connection at one
    ``work_mem`` plus :data:`BACKEND_MIB`, and :data:`SERVICES_MIB`. A query that sorts or hashes several
    times at once takes more; overcommit then fails that query, never the server.
    """

    commit_limit: int
    shared_buffers: int
    index_build: int
    autovacuum: int
    connections: int
    services: int = SERVICES_MIB

    @property
    def peak(self) -> int:
        return self.shared_buffers + self.index_build + self.autovacuum + self.connections + self.services


@dataclass(frozen=True)
class _Memory:
    shared_buffers: int
    maintenance: int
    autovacuum_work_mem: int
    work_mem: int
    budget: MemoryBudget


def _memory(cluster: ClusterSpec) -> _Memory:
    """Memory settings (MiB) of the tuned profiles.

    oltp: shared_buffers 25 % of RAM, PostgreSQL's documented starting point ("a reasonable starting value for
    shared_buffers is 25% of the memory", runtime-config-resource), which pgvector's README repeats (Tuning).

    vector: HNSW searches read index pages in random order, one buffer access per visited neighbour, so an
    index held in shared_buffers costs a buffer hit where one in the page cache costs a read() copy; the
    profile gives shared_buffers up to 40 % of RAM, the most PostgreSQL's documentation expects to help
    ("unlikely that an allocation of more than 40% of RAM to shared_buffers will work better"), never less
    than 25 %, and only what :class:`MemoryBudget` leaves after the rest: the 40 % is reached from 64 GiB
    (ccx43) up, about 30–39 % on 8–32 GiB types, 25 % on 4 GiB ones. ``maintenance_work_mem`` is 25 % of RAM
    (at most 16 GiB) so the HNSW graph fits during builds (pgvector README, Index Build Time: "Indexes build
    significantly faster when the graph fits into maintenance_work_mem"; otherwise "NOTICE: hnsw graph no
    longer fits into maintenance_work_mem"; "Do not set maintenance_work_mem so high that it exhausts the
    memory on the server": on 4 GiB types the budget lowers it). ``autovacuum_work_mem`` is set on its own,
    small: it would otherwise be that 25 % for each of 3 workers, and pgvector's HNSW vacuum does not use it
    (src/hnswvacuum.c); heap vacuum's dead-tuple store (PostgreSQL 17) grows only as dead tuples are found.
    """
    st = cluster.server
    ram = st.memory_mib
    conns = max_connections(cluster)
    vector = cluster.profile == "vector"
    commit = ram * OVERCOMMIT_RATIO // 100
    maintenance = _clamp(ram // 4 if vector else ram // 16, 64, 16384 if vector else 2048)
    # work_mem leaves two thirds of what shared_buffers (at 25 %) and one build leave to the page cache
    work_mem = _clamp((ram - ram // 4 - maintenance) / (conns * 3), 4, 256)
    autovacuum = _clamp(ram // 64, 64, 1024) if vector else maintenance
    fixed = AUTOVACUUM_MAX_WORKERS * autovacuum + conns * (work_mem + BACKEND_MIB) + SERVICES_MIB
    shared_buffers = ram // 4
    if vector:
        shared_buffers = _clamp(commit - fixed - maintenance, ram // 4, ram * 2 // 5)
        maintenance = _clamp(commit - fixed - shared_buffers, 64, maintenance)
    budget = MemoryBudget(commit_limit=commit, shared_buffers=shared_buffers, index_build=maintenance,
                          autovacuum=AUTOVACUUM_MAX_WORKERS * autovacuum, connections=conns * (work_mem + BACKEND_MIB))
    return _Memory(shared_buffers, maintenance, autovacuum, work_mem, budget)


def memory_budget(cluster: ClusterSpec) -> MemoryBudget:
    """The tuned profiles' :class:`MemoryBudget` (before the spec's ``parameters``, which may exceed it)."""
    return _memory(cluster).budget


def replication_parameters(spec: Spec, cluster: ClusterSpec) -> dict[str, str]:
    """What replication, failover and pgfleet itself need, in every profile (``stock`` too).

    max_connections is sized (PgBouncer's pools are sized under it: :func:`pool_fit`); pg_stat_statements is
    what pgfleet's monitoring reads; TLS and SCRAM are the security contract.
    """
    return {
        "max_connections": str(max_connections(cluster)),
        "wal_level": "replica",
        "wal_log_hints": "on",  # pg_rewind after a failover
        "max_wal_senders": str(cluster.nodes + 5),
        "max_replication_slots": str(cluster.nodes + 5),
        "hot_standby_feedback": "on",
        # a vanished synchronous standby stalls commits only this long (PostgreSQL's default: 60 s)
        "wal_sender_timeout": f"{wal_sender_timeout_ms(haproxy_timing(patroni_timing(spec)))}ms",
        "shared_preload_libraries": "pg_stat_statements",
        "password_encryption": "scram-sha-256",
        "ssl_min_protocol_version": "TLSv1.2",
    }


#: pg_prewarm's autoprewarm: a restarted PostgreSQL reloads the blocks it had in shared_buffers (the list is
#: dumped every ``autoprewarm_interval``, 300 s by default; PostgreSQL docs, pgprewarm.html).
PREWARM_LIBRARY = "pg_prewarm"


def prewarms(cluster: ClusterSpec) -> bool:
    """Whether the cluster keeps its cache warm across restarts (autoprewarm) and failovers (the
    ``prewarm`` node program as Patroni's on_role_change callback): the spec's ``prewarm``, else the tuned
    profiles do and ``stock`` does not."""
    return cluster.prewarm if cluster.prewarm is not None else cluster.profile != "stock"


def prewarm_parameters(cluster: ClusterSpec) -> dict[str, str]:
    """pg_prewarm's library and its autoprewarm worker when the cluster :func:`prewarms`."""
    if not prewarms(cluster):
        return {}
    return {"pg_prewarm.autoprewarm": "on", "pg_prewarm.autoprewarm_interval": "300s"}


def postgres_parameters(spec: Spec, cluster: ClusterSpec) -> dict[str, str]:
    """postgresql.conf parameters for one cluster; the spec's ``parameters`` win.

    Profiles (``clusters[].profile``):

    - ``vector`` (default): pgvector workloads, memory from :func:`_memory`; parallel HNSW builds (pgvector
      ≥ 0.6) with half the cores as ``max_parallel_maintenance_workers`` (at most 8): the leader builds too
      ("plus leader", pgvector README), so a build takes half the cores plus one and queries keep the rest;
      its workers come out of ``max_parallel_workers`` (all cores), itself out of ``max_worker_processes``
      (cores + 4: autoprewarm and the logical replication launcher keep theirs).
    - ``oltp``: the same with PostgreSQL's 25 % shared_buffers and smaller maintenance memory and parallelism.
    - ``stock``: PostgreSQL's defaults (what Debian's postgresql.conf leaves) plus only
      :func:`replication_parameters`: no memory, I/O, WAL or planner tuning, no prewarming. It exists so the
      benchmark compares tuned against stock on the same topology (same nodes, pooler, HAProxy, TLS); it is
      allowed anywhere but is a baseline, not a setting to run production on.

    Both tuned profiles assume NVMe (Hetzner's CCX/CX/CPX/CAX local disks): ``random_page_cost`` 1.1
    ("solid-state drives, might also be better modeled with a lower value for random_page_cost, e.g., 1.1"),
    ``effective_io_concurrency`` and ``maintenance_io_concurrency`` 200 ("SSDs and other memory-based storage
    can often process many concurrent requests, so the best value might be in the hundreds";
    runtime-config-query / runtime-config-resource).
    """
    params = replication_parameters(spec, cluster)
    if cluster.profile != "stock":
        params.update(_tuned_parameters(cluster))
    if prewarms(cluster):
        # pg_stat_statements for monitoring; pg_prewarm's autoprewarm worker (:data:`PREWARM_LIBRARY`)
        params["shared_preload_libraries"] = f"{params['shared_preload_libraries']},{PREWARM_LIBRARY}"
        params.update(prewarm_parameters(cluster))
    params.update({k: _pg_value(v) for k, v in cluster.parameters.items()})
    return params


def _tuned_parameters(cluster: ClusterSpec) -> dict[str, str]:
    st = cluster.server
    cores = st.cores
    vector = cluster.profile == "vector"
    mem = _memory(cluster)
    max_wal = _clamp(st.disk_gb * 1024 * 0.05, 1024, 16384)
    params = {
        "shared_buffers": f"{mem.shared_buffers}MB",
        "effective_cache_size": f"{st.memory_mib * 3 // 4}MB",
        "work_mem": f"{mem.work_mem}MB",
        "maintenance_work_mem": f"{mem.maintenance}MB",
        "huge_pages": "try",
        "max_worker_processes": str(max(8, cores + 4)),
        "max_parallel_workers": str(cores),
        "max_parallel_workers_per_gather": str(max(1, min(cores // (2 if vector else 4), 4))),
        "max_parallel_maintenance_workers": str(max(1, min(cores // 2 if vector else cores // 4, 8))),
        # NVMe: random reads cost about what sequential ones do
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "maintenance_io_concurrency": "200",
        "wal_compression": "zstd",
        "wal_buffers": "16MB",
        "min_wal_size": f"{max_wal // 4}MB",
        "max_wal_size": f"{max_wal}MB",
        "checkpoint_completion_target": "0.9",
        "pg_stat_statements.track": "all",
        "track_io_timing": "on",
        "jit": "off",
        "idle_in_transaction_session_timeout": "10min",
        "log_min_duration_statement": "1s",
        "log_lock_waits": "on",
        "log_temp_files": "0",
    }
    if vector:
        params["autovacuum_work_mem"] = f"{mem.autovacuum_work_mem}MB"
    return params


#: ``databases[].vector`` field -> pgvector's GUC.
VECTOR_SETTINGS = {"ef_search": "hnsw.ef_search", "iterative_scan": "hnsw.iterative_scan"}


def database_settings(db: DatabaseSpec) -> dict[str, str]:
    """pgvector's settings a database's sessions get (``databases[].vector`` in the spec), by GUC name;
    the GUCs of :data:`VECTOR_SETTINGS` missing here are left at pgvector's defaults (RESET)."""
    values = db.vector.model_dump()
    return {guc: str(values[key]) for key, guc in VECTOR_SETTINGS.items() if values[key] is not None}


def _pg_value(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


@dataclass(frozen=True)
class PatroniTiming:
    ttl: int
    loop_wait: int
    retry_timeout: int


#: Fast profile: the smallest ttl Patroni accepts (20); loop_wait 2 so a
#: crashed postmaster is noticed (and restarted in place) within 2 s and the
#: leader lease is refreshed often (a shorter loop never causes a failover; it
#: costs one etcd write per member per loop); retry_timeout 5 tolerates a slow
#: etcd for 5 s and gives each of 3 etcd members ~1.7 s before Patroni's client
#: tries the next one. 2 + 2 × 5 = 12 ≤ 20. runbooks/failover-tuning.md.
FAST = PatroniTiming(ttl=20, loop_wait=2, retry_timeout=5)


def patroni_timing(spec: Spec) -> PatroniTiming:
    f = spec.failover
    return PatroniTiming(
        ttl=f.ttl if f.ttl is not None else FAST.ttl,
        loop_wait=f.loop_wait if f.loop_wait is not None else FAST.loop_wait,
        retry_timeout=f.retry_timeout if f.retry_timeout is not None else FAST.retry_timeout,
    )


@dataclass(frozen=True)
class HaproxyTiming:
    """Health-check timing for HAProxy's Patroni REST checks, in milliseconds."""

    inter: int
    fastinter: int
    downinter: int
    fall: int
    rise: int
    #: Connection timeouts (ms): a check answers within ``check``; idle
    #: database sessions may sit for ``client``/``server`` (pools keep them long).
    connect: int = 2000
    check: int = 2000
    client: int = 30 * 60 * 1000
    server: int = 30 * 60 * 1000


def haproxy_timing(timing: PatroniTiming) -> HaproxyTiming:
    """Checks of Patroni's REST API: a promoted member is routed to within
    ``downinter`` (rise 1: Patroni answers /primary 200 only while it holds the
    leader key, so one answer is proof enough), a failed one leaves within
    ``inter`` + ``fall`` × ``fastinter``. Both stay well inside one loop_wait."""
    return HaproxyTiming(inter=min(2000, timing.loop_wait * 1000), fastinter=500, downinter=500, fall=2, rise=1)


@dataclass(frozen=True)
class ClientTiming:
    """Dead-peer detection for clients, in the keywords libpq takes (printed in every DSN).

    A client whose entry node (the HAProxy it dialled) dies without a word —
    power loss, a cut link — otherwise waits for the kernel's retransmission
    timeout, about 15 minutes.
    """

    #: s per host tried (libpq applies it to each host of a multi-host DSN; it rounds below 2 up to 2)
    connect_timeout: int
    #: ms that sent data may stay unacknowledged before the kernel drops the connection
    tcp_user_timeout: int
    #: s of silence before the first keepalive probe, s between probes, probes lost before giving up
    keepalives_idle: int
    keepalives_interval: int
    keepalives_count: int


def dead_peer_ms(haproxy: HaproxyTiming) -> int:
    """How long HAProxy takes to give up on a server that stopped answering: ``inter`` + ``fall`` × ``fastinter``.

    Clients and the primary's WAL senders give up on a silent peer after the
    same time, so every hop of the cluster agrees on when a node is gone.
    """
    return haproxy.inter + haproxy.fall * haproxy.fastinter


def client_timing(haproxy: HaproxyTiming) -> ClientTiming:
    """The DSN's dead-peer keywords, from :func:`dead_peer_ms` (3 s with the fast profile).

    A write in flight through a dead entry node fails after ``tcp_user_timeout``;
    an idle or waiting connection sends its first keepalive after
    ``keepalives_idle`` and fails once the probes are unanswered for
    ``tcp_user_timeout`` (Linux lets the user timeout override the probe count);
    the reconnect may first pick the dead node again (``load_balance_hosts=random``)
    and loses one ``connect_timeout`` there. Worst case for a client of a lost
    entry node: about 3 + 2 s plus the reconnect, within the 6 s goal.
    A long query is never cut by these: the peer's kernel acknowledges data and
    probes while the server works.
    """
    dead = dead_peer_ms(haproxy)
    return ClientTiming(connect_timeout=2, tcp_user_timeout=dead, keepalives_idle=1, keepalives_interval=1,
                        keepalives_count=max(1, dead // 1000 - 1))


def wal_sender_timeout_ms(haproxy: HaproxyTiming) -> int:
    """``wal_sender_timeout``: a synchronous standby that vanished (partition, power loss) stalls
    every commit until its WAL sender gives up on it (PostgreSQL's default: 60 s); only then does
    Patroni pick another synchronous standby (within a loop_wait). The same :func:`dead_peer_ms`
    as the clients and HAProxy; the standby answers the sender's keepalive (sent at half of it) at once."""
    return dead_peer_ms(haproxy)


#: Patroni asks every member it still sees, the dead leader too, for its state before it promotes;
#: the timeout of that request is fixed in Patroni (ha.py: fetch_node_status, timeout=2).
PATRONI_MEMBER_PROBE_TIMEOUT = 2.0


def node_loss_write_gap(timing: PatroniTiming, haproxy: HaproxyTiming, etcd: EtcdTiming) -> tuple[float, float]:
    """Computed bounds (s) of the write gap after the primary's host dies:
    its leader lease expires ttl − (time since its last refresh, up to
    loop_wait) after the kill; the candidate then waits for its probe of the
    dead leader to time out (:data:`PATRONI_MEMBER_PROBE_TIMEOUT`), promotes
    (~0.5–1 s measured) and HAProxy routes to it (≤ downinter). A host that
    also led etcd would add an election and a full lease renewal (etcd 3.5
    renews every lease on a leader change); pgfleet/node/etcd_leader_away.py keeps
    etcd's leader off the primary's node, so ``etcd`` only matters in the
    seconds right after a failover, before the new primary's node hands it away."""
    promote = 1.0
    low = timing.ttl - timing.loop_wait + PATRONI_MEMBER_PROBE_TIMEOUT
    high = timing.ttl + PATRONI_MEMBER_PROBE_TIMEOUT + promote + haproxy.downinter / 1000
    return low, high


def connection_limits(nofile: int, spec: Spec, cluster: ClusterSpec) -> dict[str, int]:
    """PgBouncer and HAProxy limits for a host whose services may open ``nofile`` files.

    HAProxy needs about two descriptors per proxied connection; PgBouncer one per
    client plus one per server connection. Both share the host's hard limit.
    """
    return service_limits(nofile, pool_fit(spec, cluster).needed, spec.pgbouncer.max_client_conn)


def service_limits(nofile: int, pool_connections: int, max_client_conn: int) -> dict[str, int]:
    """:func:`connection_limits` from the figures a host's data carries: the server connections
    PgBouncer's pools need and the spec's ``pgbouncer.max_client_conn``."""
    budget = max(200, nofile - 500)
    pgbouncer_clients = min(max_client_conn, (budget // 2) - pool_connections)
    haproxy_maxconn = min(pgbouncer_clients * 2, budget // 4)
    return {"pgbouncer_max_client_conn": pgbouncer_clients, "pgbouncer_nofile": budget // 2, "haproxy_maxconn": haproxy_maxconn}


#: A member this far behind (bytes) is never promoted (autobase's default).
MAXIMUM_LAG_ON_FAILOVER = 1024 * 1024
#: How many descriptors systemd gives our services at most; the host's hard
#: limit (20000 in the lab) lowers it.
SERVICE_NOFILE = 65536


def service_nofile(hard_limit: int) -> int:
    """``LimitNOFILE=`` for PostgreSQL, PgBouncer, HAProxy and etcd: never above the host's hard limit."""
    return min(SERVICE_NOFILE, hard_limit)


def patroni_limits(spec: Spec) -> dict[str, int]:
    """Patroni settings beside ttl/loop_wait/retry_timeout that decide how fast and how safely it fails over."""
    t = patroni_timing(spec)
    return {
        "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
        # a crashed primary gets one ttl to come back before a replica is promoted
        "primary_start_timeout": t.ttl,
        "master_stop_timeout": 0,
    }


@dataclass(frozen=True)
class EtcdTiming:
    heartbeat_interval: int  # ms
    election_timeout: int  # ms


def etcd_timing(timing: PatroniTiming) -> EtcdTiming:
    """etcd raft timing: a lost etcd leader is replaced well inside one Patroni retry_timeout.

    etcd's defaults (100 ms / 1000 ms) already fit; election must stay ≥ 5 × heartbeat.
    """
    election = min(1000, timing.retry_timeout * 1000 // 3)
    return EtcdTiming(heartbeat_interval=max(50, election // 10), election_timeout=election)


#: How often (s) a node that runs both the primary and etcd's leader hands etcd's leadership away
#: (pgfleet/node/etcd_leader_away.py): once per Patroni loop_wait.
ETCD_LEADER_AWAY_INTERVAL = 2


def kernel_sysctls(cluster: ClusterSpec) -> dict[str, str]:
    """Kernel settings for a database host (PEERS.md: what autobase/Pigsty ship)."""
    ram_mib = cluster.server.memory_mib
    return {
        "vm.swappiness": "1",
        "vm.dirty_background_bytes": str(64 * 1024 * 1024),
        "vm.dirty_bytes": str(min(512, max(64, ram_mib // 16)) * 1024 * 1024),
        "vm.overcommit_memory": "2",
        "vm.overcommit_ratio": str(OVERCOMMIT_RATIO),
        "kernel.sched_autogroup_enabled": "0",
    }


def network_sysctls() -> dict[str, str]:
    """Network settings; these are per network namespace, so they also apply inside the lab."""
    return {
        "net.core.somaxconn": "65535",
        "net.ipv4.tcp_max_syn_backlog": "8192",
        "net.ipv4.tcp_keepalive_time": "60",
        "net.ipv4.tcp_keepalive_intvl": "10",
        "net.ipv4.tcp_keepalive_probes": "6",
        "net.ipv4.ip_local_port_range": "10000 65000",
    }


def backup_process_max(cluster: ClusterSpec) -> int:
    """pgBackRest's parallel compress/transfer processes: half the cores, so PostgreSQL keeps the rest."""
    return max(1, cluster.server.cores // 2)


#: pgBackRest's io-timeout (s): one storage request's wait; retries make a dead store fail a backup in ~9x this.
BACKUP_IO_TIMEOUT = 20


#: Grace (s) on top of the longest gap between scheduled backups before the newest one counts as too old
#: (``pgfleet check-backups`` and the backup-age alerts).
BACKUP_AGE_GRACE = 2 * 3600
#: WAL segments waiting for the archiver beyond which archiving counts as stuck (check-backups and the backlog alert).
ARCHIVE_BACKLOG_MAX = 64


@dataclass(frozen=True)
class BackupAges:
    """What the backup schedule and retention promise, in seconds (the backup alerts' thresholds)."""

    #: The newest full backup may be this old: the longest gap between full runs, plus grace.
    full_max_age: int
    #: The newest backup of any type may be this old (as ``check-backups`` allows).
    any_max_age: int
    #: How far back a restore reaches at least, once retention has begun expiring backups:
    #: ``retention_full`` − 1 shortest full intervals, less grace.
    restorable_window: int


def backup_ages(spec: Spec) -> BackupAges:
    """Thresholds from ``backups.full_schedule``/``diff_schedule`` and ``retention_full``; ValueError if a schedule is unreadable."""
    b = spec.backups
    return BackupAges(
        full_max_age=oncalendar.longest_gap(b.full_schedule) + BACKUP_AGE_GRACE,
        any_max_age=oncalendar.longest_gap(b.full_schedule, b.diff_schedule) + BACKUP_AGE_GRACE,
        restorable_window=max(0, (b.retention_full - 1) * oncalendar.shortest_gap(b.full_schedule) - BACKUP_AGE_GRACE),
    )


def shared_buffers_bytes(spec: Spec, cluster: ClusterSpec) -> int:
    """shared_buffers as PostgreSQL gets it (the spec's parameters win, ``stock`` has PostgreSQL's default), in bytes."""
    return _setting_bytes(spec, cluster, "shared_buffers")


def effective_cache_size_bytes(spec: Spec, cluster: ClusterSpec) -> int:
    """effective_cache_size as PostgreSQL gets it, in bytes."""
    return _setting_bytes(spec, cluster, "effective_cache_size")


def _setting_bytes(spec: Spec, cluster: ClusterSpec, name: str) -> int:
    return _pg_bytes(postgres_parameters(spec, cluster).get(name, POSTGRES_DEFAULTS[name]))


def _pg_bytes(value: str) -> int:
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
    v = value.strip().lower()
    for unit, factor in units.items():
        if v.endswith(unit):
            return int(float(v[: -len(unit)]) * factor)
    return int(v) * 8192  # a bare number counts 8 kB buffers
