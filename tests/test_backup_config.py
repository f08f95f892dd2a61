"""Unit tests: what the deploy renders for backups, per stack (no hosts needed)."""

from __future__ import annotations

import configparser

import pytest

from deploy_fixtures import host_datas
from pgfleet import hostdata, spec
from pgfleet.backup import repo
from roles import patroni, pgbackrest

BACKUP_STACKS = [s for s in ("lab", "dev", "staging", "prod") if spec.load(s).backups.enabled]


def test_lab_and_prod_back_up():
    assert "lab" in BACKUP_STACKS and "prod" in BACKUP_STACKS


@pytest.mark.parametrize("stack", BACKUP_STACKS)
def test_pgbackrest_conf_per_stack(stack: str) -> None:
    s, inv, hd = host_datas(stack)
    for h in inv.by_role("postgres"):
        d = hd[h.name]
        c = s.cluster(h.cluster)
        text = pgbackrest.config(d, "AKIDSECRET", "SKSECRET", "CIPHERSECRET")
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(text)
        g = ini["global"]
        host, port = repo.endpoint(s)
        assert g["repo1-type"] == "s3" and g["repo1-s3-endpoint"] == host and g["repo1-storage-port"] == str(port)
        assert g["repo1-s3-bucket"] == s.backups.bucket and g["repo1-s3-region"] == s.backups.region
        assert g["repo1-path"] == f"/{s.backups.path.strip('/')}/{s.environment}-{c.name}"
        assert g["repo1-s3-uri-style"] == "path"
        assert g["repo1-cipher-type"] == "aes-256-cbc" and g["repo1-cipher-pass"] == "CIPHERSECRET"
        assert g["compress-type"] == "zst" and g["archive-async"] == "y"
        assert g["repo1-retention-full"] == str(s.backups.retention_full)
        assert g["repo1-retention-diff"] == str(s.backups.retention_diff)
        assert int(g["process-max"]) == max(1, c.server.cores // 2)
        # the lab's store has a cluster-CA certificate; cloud object storage a public one
        assert ("repo1-storage-ca-file" in g) == (s.provider == "lab")
        assert ini[c.name]["pg1-path"] == patroni.DEFAULTS["patroni_data_dir"]


@pytest.mark.parametrize("stack", BACKUP_STACKS)
def test_timers_follow_the_spec_and_run_through_the_leader_guard(stack: str) -> None:
    s, inv, hd = host_datas(stack)
    d = hd[inv.by_role("postgres")[0].name]
    units = pgbackrest.units(d)
    assert set(units) == {"pgbackrest-full.service", "pgbackrest-full.timer", "pgbackrest-diff.service", "pgbackrest-diff.timer"}
    assert f"OnCalendar={s.backups.full_schedule}\n" in units["pgbackrest-full.timer"]
    assert f"OnCalendar={s.backups.diff_schedule}\n" in units["pgbackrest-diff.timer"]
    for kind in ("full", "diff"):
        svc = units[f"pgbackrest-{kind}.service"]
        assert f"ExecStart=/usr/local/lib/pgfleet/on-leader.sh /usr/bin/pgbackrest --stanza={d['pgbackrest_stanza']} --type={kind} backup" in svc
        assert "Type=oneshot" in svc and "User=postgres" in svc
        # no key or passphrase in a unit (they are world-readable)
        assert "SECRET" not in svc


@pytest.mark.parametrize("stack", BACKUP_STACKS)
def test_archiving_and_replica_creation_wired_through_patroni(stack: str) -> None:
    s, inv, hd = host_datas(stack)
    c = s.clusters[0]
    params = hostdata.dynamic_config(s, c)["postgresql"]["parameters"]
    assert params["archive_mode"] == "on"
    assert params["archive_command"] == f'pgbackrest --stanza={c.name} archive-push "%p"'
    d = hd[inv.by_role("postgres")[0].name]
    assert d["patroni_create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert d["patroni_restore_command"] == f'pgbackrest --stanza={c.name} archive-get %f "%p"'


def test_no_backups_no_archiving() -> None:
    s = spec.load("lab").model_copy(update={"backups": spec.BackupSpec()})
    assert "archive_command" not in hostdata.dynamic_config(s, s.clusters[0])["postgresql"]["parameters"]
    assert hostdata.backup_data(s, s.clusters[0])["patroni_create_replica_methods"] == ["basebackup"]


def test_restore_target_formats() -> None:
    import datetime as dt

    from pgfleet.backup import catalog
    from pgfleet.backup.cli import parse_target, pgbackrest_time

    t = parse_target("2026-11-25T09:15:00.123456+01:00")
    assert pgbackrest_time(t) == "2026-11-25 08:15:00.123456+00"
    assert parse_target("latest") is None
    with pytest.raises(catalog.RestoreRefused):
        parse_target("yesterday")
    assert parse_target("2026-11-25 08:15:00+00:00") == dt.datetime(2026, 11, 25, 8, 15, tzinfo=dt.timezone.utc)
