"""What ``pgfleet backup | backups | restore | check-backups`` do to the cluster's pgBackRest repository.

Every command runs pgBackRest on the database nodes over SSH (as the
``postgres`` user; the keys stay in the nodes' 0640 pgbackrest.conf and never
appear on a command line). The command line (options, help) is pgfleet/cli/backup.py.

``restore`` is an in-place point-in-time restore of the whole cluster:

1. the target is checked against the restorable window (after pushing the
   current WAL to the repository) and refused, with the window, before
   anything is touched; without ``--yes`` it says what would be lost;
2. Patroni is stopped on every member (replicas first) and the cluster's
   state in etcd is removed (``patronictl remove``);
3. one member is restored (``pgbackrest restore --type=time``), recovered by
   PostgreSQL itself to the target and promoted onto a new timeline, then
   handed back to Patroni, which makes it the leader;
4. a full backup of the new timeline is taken, and the other members are
   wiped and started: Patroni re-creates them from that backup
   (``create_replica_methods``: pgbackrest first), then they stream.

The application DSN does not change: HAProxy follows Patroni's leader.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
import time
from dataclasses import dataclass

from pgfleet import cluster as cluster_mod
from pgfleet import contract
from pgfleet import remote
from pgfleet import sizing
from pgfleet.backup import catalog, repo
from pgfleet.node import backup_member as member
from pgfleet.errors import ClusterError, PgfleetError
from pgfleet.inventory import Inventory, InventoryHost
from pgfleet.secrets import Secrets
from pgfleet.spec import ClusterSpec, Spec
from pgfleet.stack import Stack


#: Start Patroni, once more after a short pause if systemd could not spawn it: right after a stop
#: that happens on container hosts (the lab: "Job for patroni.service failed because of unavailable
#: resources"); a second failure is reported with its output.
START_PATRONI = (f"systemctl start {contract.PATRONI_UNIT} || {{ sleep 3; systemctl reset-failed {contract.PATRONI_UNIT}; "
                 f"systemctl start {contract.PATRONI_UNIT}; }}")
#: Grace on top of the longest gap between scheduled backups before the newest one counts as too old.
BACKUP_AGE_GRACE = dt.timedelta(seconds=sizing.BACKUP_AGE_GRACE)
#: WAL segments waiting for the archiver beyond which archiving counts as stuck.
ARCHIVE_BACKLOG_MAX = sizing.ARCHIVE_BACKLOG_MAX


class BackupError(PgfleetError):
    """A backup command failed; the message names the host, the step and its output."""


@dataclass
class Ctx:
    stack: str
    spec: Spec
    cluster: ClusterSpec
    inv: Inventory
    secrets: Secrets

    @property
    def stanza(self) -> str:
        return self.cluster.name

    @property
    def data_dir(self) -> str:
        return contract.data_dir(self.cluster.postgres_major)

    @property
    def bin_dir(self) -> str:
        return contract.bin_dir(self.cluster.postgres_major)

    @property
    def hosts(self) -> list[InventoryHost]:
        return self.inv.cluster_members(self.cluster.name)

    def host(self, name: str) -> InventoryHost:
        return self.inv.host(name)


def context(stack: str, cluster: str | None) -> Ctx:
    st = Stack.open(stack)
    if not st.spec.backups.enabled:
        raise PgfleetError(f"stack {stack}: backups are not enabled (pgfleet:backups.enabled)")
    return Ctx(st.name, st.spec, st.cluster(cluster), st.inventory(), st.secrets)


# ---- commands on nodes


def run(ctx: Ctx, h: InventoryHost, argv: list[str] | str, step: str, *, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command on a node; BackupError names host, step and output on failure."""
    command = remote.command_line(argv)
    try:
        p = remote.run(ctx.inv, h, command, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{h.name}: {step} did not finish within {timeout:.0f} s ({command})") from None
    if check and p.returncode != 0:
        out = (p.stdout + p.stderr).strip()
        raise BackupError(f"{h.name}: {step} failed (exit {p.returncode}): {command}\n{out[-3000:]}")
    return p


def pgbackrest(ctx: Ctx, h: InventoryHost, *args: str, step: str, timeout: float = 3600,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(ctx, h, repo.pgbackrest(ctx.stanza, *args), step, timeout=timeout, check=check)


def psql(ctx: Ctx, h: InventoryHost, sql: str, *, check: bool = True) -> str:
    argv = ["runuser", "-u", contract.POSTGRES_OS_USER, "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return run(ctx, h, argv, f"query {sql!r}", timeout=60, check=check).stdout.strip()


def leader(ctx: Ctx) -> InventoryHost:
    ms = cluster_mod.members(ctx.inv, ctx.cluster.name, ctx.secrets)
    ld = cluster_mod.leader(ms)
    if ld is None:
        raise ClusterError(f"cluster {ctx.cluster.name!r} has no leader: {ms}")
    return ctx.host(ld.name)


def backup_member(ctx: Ctx) -> tuple[InventoryHost, bool]:
    """The member that takes backups now (the scheduled units' rule) and whether it is a standby."""
    ms = cluster_mod.members(ctx.inv, ctx.cluster.name, ctx.secrets)
    try:
        name = member.choose(ms)
    except member.NoLeader as e:
        raise ClusterError(f"cluster {ctx.cluster.name!r}: {e}") from None
    return ctx.host(name), next(m for m in ms if m.name == name).is_replica


# ---- catalog and window


def info(ctx: Ctx, h: InventoryHost) -> catalog.Catalog:
    p = pgbackrest(ctx, h, "--output=json", "info", step="pgbackrest info", timeout=120)
    return catalog.parse_info(p.stdout, ctx.stanza)


def last_archived(ctx: Ctx, h: InventoryHost) -> dt.datetime | None:
    v = psql(ctx, h, "SELECT coalesce(extract(epoch FROM last_archived_time)::text, '') FROM pg_stat_archiver")
    return dt.datetime.fromtimestamp(float(v), tz=dt.timezone.utc) if v else None


def parse_target(text: str) -> dt.datetime | None:
    """``latest`` (None) or an ISO 8601 time with a zone."""
    if text == "latest":
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace(" ", "T", 1) if re.match(r"\d{4}-\d\d-\d\d \d", text) else text)
    except ValueError:
        raise catalog.RestoreRefused(f"restore target {text!r} is not a time: give ISO 8601 with a zone "
                                     "(e.g. 2026-11-25T08:15:00+00:00) or 'latest'") from None
    return t


def pgbackrest_time(t: dt.datetime) -> str:
    """pgBackRest's (and PostgreSQL's) time format: ``YYYY-MM-DD HH:MM:SS.ffffff+00``, in UTC."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _t(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00")


# ---- the commands


def backup(stack: str, type_: str = "full", cluster: str | None = None) -> None:
    """Take a backup now on the backup member: a streaming standby, the leader when none is (as the scheduled units do)."""
    if type_ not in repo.TYPES:
        raise PgfleetError(f"--type {type_!r}: choose one of {', '.join(repo.TYPES)}")
    ctx = context(stack, cluster)
    h, standby = backup_member(ctx)
    p = pgbackrest(ctx, h, f"--type={type_}", "backup", step=f"{type_} backup")
    cat = info(ctx, h)
    newest = max(cat.backups, key=lambda b: b.stop)
    source = "a standby: the primary only started and stopped it" if standby else "the leader: no standby was streaming"
    print(f"{ctx.stack} / {ctx.cluster.name}: {type_} backup {newest.label} taken on {h.name}, {source} "
          f"({_size(newest.size)}, {_size(newest.repo_size)} in the repository)")
    for line in p.stdout.splitlines():
        if any(k in line for k in ("backup command end", "new backup label", "replay on the standby")):
            print("  " + line.strip())


def backups(stack: str, cluster: str | None = None) -> None:
    """The repository's backups (times, sizes, WAL range) and the restorable window."""
    ctx = context(stack, cluster)
    h = leader(ctx)
    cat = info(ctx, h)
    w = catalog.window(cat, last_archived(ctx, h))
    rows = [("label", "type", "start", "stop", "size", "repo size", "WAL start", "WAL stop")]
    rows += [(b.label, b.type, _t(b.start), _t(b.stop), _size(b.size), _size(b.repo_size), b.wal_start, b.wal_stop)
             for b in sorted(cat.backups, key=lambda b: b.stop)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"{ctx.stack} / {ctx.cluster.name}: stanza {cat.stanza} ({cat.status_message})")
    for r in rows:
        print("  ".join(v.ljust(wd) for v, wd in zip(r, widths)).rstrip())
    print(f"archived WAL: {cat.wal_min or '-'} .. {cat.wal_max or '-'}")
    print(f"earliest restorable: {_t(w.earliest) if w.earliest else '-'}")
    print(f"latest restorable:   {_t(w.latest) if w.latest else '-'}")


def restore(stack: str, to: str, yes: bool = False, cluster: str | None = None) -> None:
    """Point-in-time restore of the whole cluster in place; every member is rebuilt."""
    ctx = context(stack, cluster)
    target = parse_target(to)
    try:
        ld = cluster_mod.leader(cluster_mod.members(ctx.inv, ctx.cluster.name, ctx.secrets))
    except ClusterError:
        ld = None  # every member down (e.g. after losing them all): restore onto the first
    first = ctx.host(ld.name) if ld else ctx.hosts[0]
    if ld is not None:
        # push the WAL written so far to the repository, so "now" is restorable
        pgbackrest(ctx, first, "--archive-timeout=60", "check", step="pushing the current WAL (pgbackrest check)", timeout=180)
    cat = info(ctx, first)
    w = catalog.window(cat, last_archived(ctx, first) if ld else None)
    if target is not None:
        catalog.check_target(w, target)
    elif w.earliest is None:
        raise catalog.RestoreRefused(f"cannot restore: {w}")
    moment = "the last archived WAL" if target is None else target.isoformat(timespec="seconds")
    if not yes:
        raise PgfleetError(
            f"this replaces the data of cluster {ctx.cluster.name!r} on all {len(ctx.hosts)} members "
            f"({', '.join(h.name for h in ctx.hosts)}) with its state at {moment}: every change committed after "
            f"that moment is lost, and clients are disconnected while it runs. Restorable: {w}. Re-run with --yes to do it")
    started = time.monotonic()
    say = _say(started)
    say(f"restoring {ctx.stack} / {ctx.cluster.name} to {moment} on {first.name} (restorable: {w})")
    order = [h for h in ctx.hosts if h.name != first.name] + [first]
    for h in order:
        run(ctx, h, f"systemctl stop {contract.PATRONI_UNIT}", "stopping Patroni", timeout=300)
        say(f"{h.name}: Patroni and PostgreSQL stopped")
    run(ctx, first, f"printf '%s\\nYes I am aware\\n' {shlex.quote(ctx.cluster.name)} | "
        f"patronictl -c {contract.PATRONI_CONFIG} remove {shlex.quote(ctx.cluster.name)}", "removing the cluster's state from etcd")
    say(f"cluster state removed from etcd (patronictl remove {ctx.cluster.name})")
    pgbackrest(ctx, first, *restore_args(target), "restore", step="pgbackrest restore")
    say(f"{first.name}: restored from the repository, recovering")
    recover_and_promote(ctx, first)
    tl = start_as_leader(ctx, first)
    say(f"{first.name}: leader again under Patroni, timeline {tl}")
    # the new timeline's WAL and a backup on it must be in the repository before any replica restores from it:
    # otherwise a replica replays the old timeline's segment past the branch point and cannot stream
    pgbackrest(ctx, first, "--archive-timeout=60", "check", step="archiving the new timeline's WAL", timeout=180)
    # the other members are stopped: back up from the new leader itself
    pgbackrest(ctx, first, "--type=full", "--backup-standby=n", "backup", step="full backup of the new timeline")
    say(f"{first.name}: full backup of the new timeline taken (replicas are rebuilt from it)")
    for h in order[:-1]:
        run(ctx, h, f"find {ctx.data_dir} -mindepth 1 -delete && {START_PATRONI}", "wiping and starting the replica")
        say(f"{h.name}: data wiped, Patroni re-creates it from the backup repository")
    cluster_mod.wait_healthy(ctx.inv, ctx.cluster, ctx.secrets, timeout=900)
    say(f"done: {ctx.cluster.name} restored to {moment}; all {len(ctx.hosts)} members streaming; DSN unchanged")


def restore_args(target: dt.datetime | None) -> list[str]:
    """pgBackRest restore options: to a moment and promote there, or (``latest``) replay every archived WAL.

    Without a target PostgreSQL ends recovery by itself when the archive runs
    out; pgBackRest refuses ``--target-action`` then.
    """
    if target is None:
        return ["--delta", "--type=default"]
    return ["--delta", "--type=time", f"--target={pgbackrest_time(target)}", "--target-action=promote"]


def _say(started: float):
    def say(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {msg}", flush=True)
    return say


def recover_and_promote(ctx: Ctx, h: InventoryHost, timeout: float = 3600) -> None:
    """Let PostgreSQL replay to the target and promote, outside Patroni; then stop it and drop the recovery settings."""
    pg_ctl = f"runuser -u {contract.POSTGRES_OS_USER} -- {ctx.bin_dir}/pg_ctl -D {ctx.data_dir}"
    log = "/var/log/postgresql/pgfleet-restore.log"
    # not checked: pg_ctl gives up waiting after 60 s while a long replay goes on; the loop below tells
    # a recovering server (keep waiting) from one that exited (fail with its log)
    run(ctx, h, f"install -o {contract.POSTGRES_OS_USER} -g {contract.POSTGRES_OS_USER} -m 0640 /dev/null {log} && {pg_ctl} -l {log} -w -t 60 start",
        "starting PostgreSQL for recovery", timeout=120, check=False)
    deadline = time.monotonic() + timeout
    while True:
        if psql(ctx, h, "SELECT pg_is_in_recovery()", check=False) == "f":
            break
        alive = run(ctx, h, f"{pg_ctl} status", "pg_ctl status", timeout=30, check=False).returncode == 0
        if not alive or time.monotonic() > deadline:
            tail = run(ctx, h, f"tail -n 40 {log}", "reading the recovery log", timeout=30, check=False).stdout
            raise BackupError(f"{h.name}: recovery did not reach the target and promote "
                              f"({'PostgreSQL exited' if not alive else 'timed out'}); {log}:\n{tail}")
        time.sleep(1)
    run(ctx, h, f"{pg_ctl} -m fast -w -t 300 stop", "stopping the recovered PostgreSQL", timeout=330)
    # pgBackRest wrote the recovery target into postgresql.auto.conf: it must not outlive this restore
    run(ctx, h, f"sed -i -e '/^# Recovery settings generated by pgBackRest/d' -e '/^restore_command/d' "
        f"-e '/^recovery_target/d' {ctx.data_dir}/postgresql.auto.conf", "removing the recovery settings")


def start_as_leader(ctx: Ctx, h: InventoryHost, timeout: float = 300) -> int | None:
    """Start Patroni on the restored member; wait until it leads read-write. Returns its timeline."""
    run(ctx, h, START_PATRONI, "starting Patroni on the restored member")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ld = cluster_mod.leader(cluster_mod.members(ctx.inv, ctx.cluster.name, ctx.secrets))
        except ClusterError:
            ld = None
        if ld is not None and ld.name == h.name and ld.state == "running":
            # Patroni reports the leader running while it still promotes the restored data: wait for read-write
            if psql(ctx, h, "SELECT pg_is_in_recovery()", check=False) == "f":
                return cluster_mod.leader(cluster_mod.members(ctx.inv, ctx.cluster.name, ctx.secrets)).timeline
        time.sleep(1)
    log = run(ctx, h, f"journalctl -u {contract.PATRONI_UNIT} -n 40 --no-pager", "reading Patroni's log", check=False).stdout
    raise BackupError(f"{h.name}: Patroni did not take the restored data as leader within {timeout:.0f} s:\n{log}")


# ---- check-backups


def schedule_gap(ctx: Ctx, h: InventoryHost) -> dt.timedelta:
    """The longest time between two scheduled backups (full and diff together), from systemd's own calendar."""
    times: list[dt.datetime] = []
    horizon: list[dt.datetime] = []
    for sched in (ctx.spec.backups.full_schedule, ctx.spec.backups.diff_schedule):
        found = len(times)
        out = run(ctx, h, ["systemd-analyze", "calendar", "--iterations=10", sched], "reading the backup schedule", timeout=30).stdout
        # the host's zone is UTC (its lines then carry no separate "(in UTC)" one)
        for m in re.finditer(r"(?:Next elapse|Iteration #\d+|\(in UTC\)): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out):
            times.append(dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc))
        if len(times) > found:
            horizon.append(max(times[found:]))
    # only as far as both schedules were listed (ten daily runs end long before ten weekly ones)
    times = sorted({t for t in times if not horizon or t <= min(horizon)})
    if len(times) < 2:
        raise BackupError(f"cannot read the backup schedules {ctx.spec.backups.full_schedule!r}, {ctx.spec.backups.diff_schedule!r}")
    return max(b - a for a, b in zip(times, times[1:]))


def problems(ctx: Ctx) -> tuple[list[str], list[str]]:
    """(what is fine, what is wrong) about the cluster's backups."""
    ok: list[str] = []
    bad: list[str] = []
    h = leader(ctx)
    a = psql(ctx, h, "SELECT json_build_object('archived', archived_count, 'last_wal', last_archived_wal, "
                     "'last_archived', extract(epoch FROM last_archived_time), 'failed', failed_count, "
                     "'last_failed_wal', last_failed_wal, 'last_failed', extract(epoch FROM last_failed_time)) FROM pg_stat_archiver")
    st = json.loads(a)
    la, lf = st["last_archived"], st["last_failed"]
    if lf is not None and (la is None or lf >= la):
        bad.append(f"WAL archiving is failing on {h.name}: {st['failed']} failure(s), last for {st['last_failed_wal']} at "
                   f"{_t(dt.datetime.fromtimestamp(lf, dt.timezone.utc))}, last success "
                   f"{_t(dt.datetime.fromtimestamp(la, dt.timezone.utc)) if la else 'never'} (see runbooks/archiving-stuck.md)")
    else:
        ok.append(f"WAL archiving flows on {h.name}: {st['archived']} archived, last {st['last_wal']}")
    ready = run(ctx, h, f"find {ctx.data_dir}/pg_wal/archive_status -name '*.ready' | wc -l", "counting WAL waiting to be archived").stdout
    backlog = int(ready.strip() or 0)
    (bad if backlog > ARCHIVE_BACKLOG_MAX else ok).append(f"{backlog} WAL segment(s) waiting to be archived on {h.name}")
    s3_host, s3_port = repo.endpoint(ctx.spec)
    # a store that refuses or drops connections is named at once; pgBackRest itself would retry for minutes
    tcp = run(ctx, h, f"timeout 5 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{s3_host}/{s3_port}')}",
              "connecting to the object storage", timeout=30, check=False)
    if tcp.returncode != 0:
        reachable, detail = False, f"no TCP connection to {s3_host}:{s3_port} from {h.name} " \
                                   f"({(tcp.stdout + tcp.stderr).strip()[-200:] or 'timed out'})"
    else:
        try:
            chk = pgbackrest(ctx, h, "--archive-timeout=20", "--io-timeout=10", "check", step="pgbackrest check", timeout=120, check=False)
            reachable = chk.returncode == 0
            err = [line.strip() for line in (chk.stdout + chk.stderr).splitlines() if "ERROR" in line or "WARN" in line]
            detail = " ".join(err[-3:]) or str(chk.returncode)
        except BackupError as e:  # a store that accepts connections but never answers keeps pgBackRest retrying
            reachable, detail = False, str(e)
    if not reachable:
        bad.append(f"the repository does not answer 'pgbackrest check' from {h.name}: {detail}")
    else:
        ok.append(f"the repository is reachable and takes WAL ('pgbackrest check' on {h.name})")
    for m in ctx.hosts:  # the backup member may be any of them, and change with the roles
        p = run(ctx, m, "systemctl list-units --state=failed --no-legend --plain 'pgbackrest-*' | awk '{print $1}'",
                "listing failed backup units", timeout=30, check=False)
        if p.returncode != 0:
            bad.append(f"cannot see the backup units on {m.name}: {(p.stdout + p.stderr).strip()[-300:]}")
        elif failed := p.stdout.split():
            bad.append(f"scheduled backup failed on {m.name}: {', '.join(failed)} (journalctl -u {failed[0]})")
    if reachable:
        cat = info(ctx, h)
        if not cat.backups:
            bad.append("the repository has no backup yet ('pgfleet backup STACK')")
        else:
            newest = max(cat.backups, key=lambda b: b.stop)
            age = dt.datetime.now(dt.timezone.utc) - newest.stop
            allowed = schedule_gap(ctx, h) + BACKUP_AGE_GRACE
            msg = f"newest backup {newest.label} ({newest.type}) is {_age(age)} old (allowed: {_age(allowed)})"
            (bad if age > allowed else ok).append(msg)
    return ok, bad


def _age(d: dt.timedelta) -> str:
    s = int(d.total_seconds())
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s"


def check_backups(stack: str, cluster: str | None = None) -> None:
    """Archiving flowing, repository reachable, newest backup recent enough; exit 1 with the reasons otherwise."""
    ctx = context(stack, cluster)
    ok, bad = problems(ctx)
    for line in ok:
        print(f"ok    {line}")
    for line in bad:
        print(f"FAIL  {line}")
    if bad:
        raise PgfleetError(f"backups of {ctx.stack} / {ctx.cluster.name} need attention: {len(bad)} problem(s)")

