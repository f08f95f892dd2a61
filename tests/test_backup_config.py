"""Unit tests: what the deploy renders for backups, per stack (no hosts needed)."""

from __future__ import annotations

import configparser

import pytest

from deploy_fixtures import host_datas
from pgfleet import contract, hostdata, spec
from pgfleet.backup import repo
from roles import pgbackrest

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
        assert ini[c.name]["pg1-path"] == d["patroni_data_dir"]


@pytest.mark.parametrize("stack", BACKUP_STACKS)
def test_backups_reach_the_other_members_through_their_tls_servers(stack: str) -> None:
    s, inv, hd = host_datas(stack)
    for h in inv.by_role("postgres"):
        d = hd[h.name]
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(pgbackrest.config(d, "AKIDSECRET", "SKSECRET", "CIPHERSECRET"))
        c = s.cluster(h.cluster)
        others = [m for m in hostdata.cluster_members(inv, c.name) if m.name != h.name]
        # pg1 is always the local PostgreSQL (archive-push, restore, check use only it) ...
        assert "pg1-host" not in ini[c.name] and not any(k.startswith("pg2") for k in ini[c.name])
        # ... the backup command alone knows the others, by private address, over TLS with the client identity
        b = ini[f"{c.name}:backup"]
        assert b["backup-standby"] == "prefer"
        assert sorted(b[f"pg{i}-host"] for i in range(2, len(others) + 2)) == sorted(m.private_ip for m in others)
        for i in range(2, len(others) + 2):
            assert b[f"pg{i}-host-type"] == "tls" and b[f"pg{i}-host-port"] == str(contract.PGBACKREST_TLS_PORT)
            assert b[f"pg{i}-host-cert-file"] == contract.PGBACKREST_CLIENT_CERT and b[f"pg{i}-host-key-file"] == contract.PGBACKREST_CLIENT_KEY
            assert b[f"pg{i}-host-ca-file"] == f"{contract.TLS_DIR}/ca.crt"
        srv = ini["global:server"]
        assert srv["tls-server-address"] == h.private_ip and srv["tls-server-port"] == str(contract.PGBACKREST_TLS_PORT)
        # only the members' client certificate, and only for this cluster's stanza
        assert srv["tls-server-auth"] == f"{repo.CLIENT_CN}={c.name}"
        assert srv["tls-server-cert-file"] == f"{contract.TLS_DIR}/host.crt"


def test_pgbackrest_tls_server_port_open_to_members_only() -> None:
    from roles import firewall

    s, inv, hd = host_datas("prod")
    rules = firewall.ruleset(hd[inv.by_role("postgres")[0].name])
    port = str(contract.PGBACKREST_TLS_PORT)
    for line in rules.splitlines():
        if port in line:
            assert "@members4" in line, line
    assert any(port in line for line in rules.splitlines())
    off = firewall.ruleset({**hd[inv.by_role("postgres")[0].name], "pgbackrest_enabled": False})
    assert port not in off


def test_client_certificate_has_the_cn_the_servers_authorise() -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from deploy_fixtures import fake_secrets
    from pgfleet import tls

    sec = fake_secrets(spec.load("lab"))
    name = pgbackrest.client_key_name("lab-main-1")
    pem = tls.issue(sec.ca_cert_pem, sec.ca_key_pem, name, tls.Names((), ()), common_name=repo.CLIENT_CN)
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [repo.CLIENT_CN]
    # its own key, not the host key that serves PostgreSQL and etcd
    assert cert.public_key() == tls.host_key(sec.ca_key_pem, name).public_key()
    assert cert.public_key() != tls.host_key(sec.ca_key_pem, "lab-main-1").public_key()
    assert tls.why_reissue(pem, sec.ca_cert_pem, sec.ca_key_pem, name, tls.Names((), ()), common_name=repo.CLIENT_CN) is None
    assert "subject changed" in tls.why_reissue(pem, sec.ca_cert_pem, sec.ca_key_pem, name, tls.Names((), ()))


@pytest.mark.parametrize("stack", BACKUP_STACKS)
def test_timers_follow_the_spec_and_run_through_the_backup_member_guard(stack: str) -> None:
    s, inv, hd = host_datas(stack)
    d = hd[inv.by_role("postgres")[0].name]
    units = pgbackrest.units(d)
    assert set(units) == {"pgbackrest-full.service", "pgbackrest-full.timer", "pgbackrest-diff.service", "pgbackrest-diff.timer"}
    assert f"OnCalendar={s.backups.full_schedule}\n" in units["pgbackrest-full.timer"]
    assert f"OnCalendar={s.backups.diff_schedule}\n" in units["pgbackrest-diff.timer"]
    for kind in ("full", "diff"):
        svc = units[f"pgbackrest-{kind}.service"]
        assert (f"ExecStart=/usr/local/lib/pgfleet/backup-member {d['patroni_name']} /usr/bin/pgbackrest "
                f"--stanza={d['pgbackrest_stanza']} --type={kind} backup") in svc
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
    from pgfleet.backup.commands import parse_target, pgbackrest_time

    t = parse_target("2026-11-25T09:15:00.123456+01:00")
    assert pgbackrest_time(t) == "2026-11-25 08:15:00.123456+00"
    assert parse_target("latest") is None
    with pytest.raises(catalog.RestoreRefused):
        parse_target("yesterday")
    assert parse_target("2026-11-25 08:15:00+00:00") == dt.datetime(2026, 11, 25, 8, 15, tzinfo=dt.timezone.utc)


def test_restore_options_latest_and_to_a_moment() -> None:
    import datetime as dt

    from pgfleet.backup.commands import restore_args

    # pgBackRest refuses --target-action without a target type (found by bench/backup.py's restore --to latest)
    assert restore_args(None) == ["--delta", "--type=default"]
    t = dt.datetime(2026, 11, 25, 8, 15, tzinfo=dt.timezone.utc)
    assert restore_args(t) == ["--delta", "--type=time", "--target=2026-11-25 08:15:00.000000+00", "--target-action=promote"]
