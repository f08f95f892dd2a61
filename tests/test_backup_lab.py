"""End-to-end: backups and point-in-time restore of the lab cluster, through ``pgfleet`` as a user runs it.

The cluster archives WAL to the lab's object store (moto behind TLS) with
pgBackRest. These tests restore it in place to a recorded moment and check
the rows one by one, rebuild a replica from the repository, keep backing up
after a switchover, and lose the object store while the database serves.
Every test leaves the cluster healthy (1 leader, 2 streaming, one
synchronous): later tests (drills) use the same cluster. The commands are
the ones in runbooks/restore-point-in-time.md, rebuild-replica.md and
archiving-stuck.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from pgfleet import cluster as cluster_mod
from pgfleet import lab as lab_mod
from pgfleet.backup.commands import START_PATRONI
from pgfleet.lab import objectstore
from pgfleet.lab.layout import Layout

pytestmark = pytest.mark.lab
PGFLEET = [str(Path(sys.executable).with_name("pgfleet"))]
DATA_DIR = "/var/lib/postgresql/17/data"


def pgfleet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([*PGFLEET, *args], capture_output=True, text=True, timeout=1800)
    if check and p.returncode != 0:
        raise AssertionError(f"pgfleet {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def healthy(lab, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    ms = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets, timeout=300)
    assert sorted(m.role for m in ms) == ["leader", "replica", "sync_standby"], ms
    return ms


def leader_of(ms):  # type: ignore[no-untyped-def]
    return cluster_mod.leader(ms)


def backup_labels() -> list[str]:
    out = pgfleet("backups", "lab").stdout
    return [line.split()[0] for line in out.splitlines() if line[:8].isdigit()]


@pytest.fixture()
def ready(deployed, lab, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    """A healthy cluster with at least one full backup."""
    healthy(lab, lab_spec, lab_secrets)
    if not backup_labels():
        pgfleet("backup", "lab", "--type", "full")
    return lab


def test_point_in_time_restore_brings_back_exactly_the_rows_committed_before_t(ready, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    lab = ready
    dsn = pgfleet("dsn", "lab").stdout.strip()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS pitr_rows")
        c.execute("CREATE TABLE pitr_rows (id int PRIMARY KEY, note text NOT NULL)")
    pgfleet("backup", "lab", "--type", "full")
    before: set[tuple[int, str]] = set()
    with psycopg.connect(dsn, autocommit=True) as c:
        for i in range(1, 41):  # one transaction per row: each commit is its own moment
            c.execute("INSERT INTO pitr_rows VALUES (%s, %s)", (i, f"before-{i}"))
            before.add((i, f"before-{i}"))
        t = c.execute("SELECT clock_timestamp()").fetchone()[0]
        time.sleep(1.5)
        for i in range(41, 81):
            c.execute("INSERT INTO pitr_rows VALUES (%s, %s)", (i, f"after-{i}"))
        c.execute("UPDATE pitr_rows SET note = 'changed-after' WHERE id <= 10")
        c.execute("DROP TABLE pitr_rows")
    target = t.astimezone(dt.timezone.utc).isoformat()
    tl_before = leader_of(healthy(lab, lab_spec, lab_secrets)).timeline

    # refusals touch nothing: without --yes it says what is lost; outside the window it names the window
    p = pgfleet("restore", "lab", "--to", target, check=False)
    assert p.returncode != 0 and "is lost" in p.stderr and "--yes" in p.stderr, p.stderr
    p = pgfleet("restore", "lab", "--to", "2001-01-01T00:00:00+00:00", "--yes", check=False)
    assert p.returncode != 0 and "before the earliest backup" in p.stderr and "Restorable: from" in p.stderr, p.stderr
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    p = pgfleet("restore", "lab", "--to", future, "--yes", check=False)
    assert p.returncode != 0 and "no WAL archived that far" in p.stderr and "Restorable: from" in p.stderr, p.stderr
    ms = healthy(lab, lab_spec, lab_secrets)
    assert leader_of(ms).timeline == tl_before, "a refused restore must not touch the cluster"

    out = pgfleet("restore", "lab", "--to", target, "--yes").stdout
    assert "all 3 members streaming" in out, out
    ms = healthy(lab, lab_spec, lab_secrets)
    assert leader_of(ms).timeline > tl_before, ms
    assert pgfleet("dsn", "lab").stdout.strip() == dsn, "the application DSN must not change"
    with psycopg.connect(dsn) as c:
        rows = set(c.execute("SELECT id, note FROM pitr_rows").fetchall())
    assert rows == before, f"missing {sorted(before - rows)[:5]}, unexpected {sorted(rows - before)[:5]}"
    # the restored cluster archives and backs up again on its new timeline
    assert pgfleet("check-backups", "lab").returncode == 0


def test_every_members_data_lost_then_restore_latest_brings_back_every_archived_commit(ready, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    lab = ready
    dsn = pgfleet("dsn", "lab").stdout.strip()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS lost_all")
        c.execute("CREATE TABLE lost_all (id int PRIMARY KEY)")
        c.execute("INSERT INTO lost_all SELECT generate_series(1, 500)")
    # runbooks/archiving-stuck.md: check-backups pushes the current WAL ('pgbackrest check'): what it reports is restorable
    assert pgfleet("check-backups", "lab").returncode == 0
    # runbooks/restore-after-losing-every-node.md: every member's data is gone and nobody answers
    for m in cluster_mod.members(lab, "main", lab_secrets):
        lab_mod.run(lab_spec, m.name, f"systemctl stop patroni && find {DATA_DIR} -mindepth 1 -delete")
    out = pgfleet("restore", "lab", "--to", "latest", "--yes").stdout
    assert "all 3 members streaming" in out, out
    healthy(lab, lab_spec, lab_secrets)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*), min(id), max(id) FROM lost_all").fetchone() == (500, 1, 500)
    assert pgfleet("check-backups", "lab").returncode == 0


def test_replica_rebuilt_from_the_backup_repository_not_the_primary(ready, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    lab = ready
    ms = healthy(lab, lab_spec, lab_secrets)
    victim = next(m.name for m in ms if m.role == "replica")
    since = lab_mod.run(lab_spec, victim, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    # runbooks/rebuild-replica.md
    lab_mod.run(lab_spec, victim, f"systemctl stop patroni && find {DATA_DIR} -mindepth 1 -delete && {START_PATRONI}")
    healthy(lab, lab_spec, lab_secrets)
    log = lab_mod.run(lab_spec, victim, f"journalctl -u patroni --no-pager --since '{since}'").stdout
    assert "replica has been created using pgbackrest" in log, log[-3000:]
    assert "created using basebackup" not in log
    restore_log = lab_mod.run(lab_spec, victim, "tail -n 30 /var/log/pgbackrest/main-restore.log").stdout
    assert "restore command end: completed successfully" in restore_log, restore_log


def test_after_a_switchover_archiving_and_scheduled_backups_continue_under_the_new_leader(ready, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    lab = ready
    ms = healthy(lab, lab_spec, lab_secrets)
    old = leader_of(ms)
    new = next(m for m in ms if m.role == "sync_standby")
    auth = base64.b64encode(f"patroni:{lab_secrets.password('patroni_rest')}".encode()).decode()
    req = urllib.request.Request(f"https://{old.host}:8008/switchover", method="POST",
                                 data=json.dumps({"leader": old.name, "candidate": new.name}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cadata=lab_secrets.ca_cert_pem), timeout=60) as r:
        assert r.status == 200
    deadline = time.monotonic() + 120
    while leader_of(cluster_mod.members(lab, "main", lab_secrets)).name != new.name:
        assert time.monotonic() < deadline, "switchover did not happen"
        time.sleep(1)
    healthy(lab, lab_spec, lab_secrets)

    assert pgfleet("check-backups", "lab").returncode == 0
    labels = backup_labels()
    # every member's scheduled unit runs; exactly one backs up: a streaming standby of the new leader
    ran, skipped = [], []
    for m in cluster_mod.members(lab, "main", lab_secrets):
        out = lab_mod.run(lab_spec, m.name, "systemctl start pgbackrest-diff.service && "
                          "journalctl -u pgbackrest-diff --no-pager -o cat -n 40").stdout
        last = out[out.rindex("Starting pgbackrest-diff.service"):]
        (skipped if "skipped here" in last else ran).append((m, last))
    assert len(ran) == 1 and len(skipped) == 2, [(m.name, o) for m, o in ran + skipped]
    taker, log = ran[0]
    assert taker.role in ("replica", "sync_standby") and taker.name != new.name, (taker, log)
    assert "replay on the standby reached" in log and "backup command end: completed successfully" in log, log
    after = backup_labels()
    assert len(after) == len(labels) + 1 and after[-1].endswith("D"), (labels, after)
    assert pgfleet("check-backups", "lab").returncode == 0


def test_backups_come_from_a_standby_through_the_members_tls_servers(ready, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    lab = ready
    ms = healthy(lab, lab_spec, lab_secrets)
    out = pgfleet("backup", "lab", "--type", "incr").stdout
    taker = next(m for m in ms if f"taken on {m.name}, a standby" in out)
    assert taker.role == "replica", (taker, out)  # the asynchronous one: a backup never slows synchronous commits
    assert "replay on the standby reached" in out, out
    ld = leader_of(ms)
    probe = ("runuser -u postgres -- pgbackrest --stanza=main --log-level-console=warn --pg1-host={ip} --pg1-host-type=tls "
             "--pg1-host-port=8432 --pg1-host-ca-file=/etc/pgfleet/tls/ca.crt --pg1-path=" + DATA_DIR +
             " --pg1-host-cert-file={cert} --pg1-host-key-file={key} check")
    # the members' client identity is accepted ...
    ok = lab_mod.run(lab_spec, taker.name, probe.format(ip=ld.host, cert="/etc/pgbackrest/client.crt",
                                                        key="/etc/pgbackrest/client.key"), check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # ... another certificate from the same CA (the host's, no CN) is not
    bad = lab_mod.run(lab_spec, taker.name, probe.format(ip=ld.host, cert="/etc/pgfleet/tls/host.crt",
                                                         key="/etc/pgfleet/tls/host.key"), check=False)
    assert bad.returncode != 0 and "unable to check pg1" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    # and the port is closed to anything but members
    p = lab_mod.run(lab_spec, "lab-client", f"timeout 3 bash -c 'echo > /dev/tcp/{ld.host}/8432'", check=False)
    assert p.returncode != 0


def test_object_store_unreachable_fails_the_backup_visibly_while_the_database_serves(ready, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    lab = ready
    layout = Layout.of(lab_spec)
    proxy = objectstore.daemons(lab_spec, layout)[1]
    ld = leader_of(healthy(lab, lab_spec, lab_secrets)).name
    bm = lab_mod.run(lab_spec, ld, "/usr/local/lib/pgfleet/backup-member --which").stdout.strip()  # whose timer backs up
    dsn = pgfleet("dsn", "lab").stdout.strip()
    assert proxy.stop(), "the object store's proxy was not running"
    try:
        p = lab_mod.run(lab_spec, bm, "systemctl start pgbackrest-diff.service", check=False, timeout=600)
        assert p.returncode != 0
        state = lab_mod.run(lab_spec, bm, "systemctl is-failed pgbackrest-diff.service", check=False).stdout.strip()
        assert state == "failed", state
        log = lab_mod.run(lab_spec, bm, "journalctl -u pgbackrest-diff --no-pager -n 30").stdout
        assert "ERROR" in log, log
        with psycopg.connect(dsn, autocommit=True) as c:  # the database keeps serving
            c.execute("CREATE TABLE IF NOT EXISTS store_down (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
            c.execute("INSERT INTO store_down DEFAULT VALUES")
        chk = pgfleet("check-backups", "lab", check=False)
        assert chk.returncode != 0, chk.stdout
        assert "repository does not answer" in chk.stdout, chk.stdout
        assert f"scheduled backup failed on {bm}: pgbackrest-diff.service" in chk.stdout, chk.stdout
    finally:
        objectstore.ensure(lab_spec, layout)
        # runbooks/archiving-stuck.md: once the store is back, clear the failed unit and check again
        lab_mod.run(lab_spec, bm, "systemctl reset-failed pgbackrest-diff.service", check=False)
    deadline = time.monotonic() + 120
    while (chk := pgfleet("check-backups", "lab", check=False)).returncode != 0:
        assert time.monotonic() < deadline, chk.stdout
        time.sleep(5)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM store_down").fetchone()[0] >= 1
    healthy(lab, lab_spec, lab_secrets)
