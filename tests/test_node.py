"""Unit tests of the node programs (pgfleet/node/), without any host, and of their import contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy_fixtures import fixed_secrets, host_datas
from pgfleet.node import etcd_auth, on_leader, patroni, patroni_config, wait_member
from pgfleet.node.patroni import Member
from roles import patroni as patroni_role

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def member(name: str, role: str, state: str = "streaming", **kw: Any) -> Member:
    return Member(name=name, role=role, state=state, **kw)


# ---- one rule set


def test_leader_and_synchronous_roles_are_one_rule() -> None:
    assert all(member("a", r).is_leader for r in ("leader", "standby_leader", "master"))
    assert all(member("a", r).is_sync and member("a", r).is_replica for r in ("sync_standby", "quorum_standby"))
    assert not member("a", "replica").is_sync and member("a", "replica").is_replica
    doc = {"members": [{"name": "b", "role": "replica", "state": "streaming", "lag": "unknown"},
                       {"name": "a", "role": "leader", "state": "running", "timeline": 4, "pending_restart": True}]}
    ms = patroni.members(doc)
    assert patroni.leader(ms) == ms[1] and ms[1].pending_restart and ms[1].timeline == 4 and ms[0].lag is None


def test_rest_credentials_are_read_from_the_patroni_yml_the_deploy_renders() -> None:
    s, _, hd = host_datas("lab")
    sec = fixed_secrets(s)
    text = patroni_role.config(hd["lab-main-1"], sec, container=True)
    assert patroni.rest_credentials(text) == ("patroni", sec.password("patroni_rest"))


# ---- patroni-config: what to patch, restart order


def test_patch_holds_differences_and_removes_parameters_no_longer_wanted() -> None:
    have = {"ttl": 30, "postgresql": {"parameters": {"max_connections": "100", "work_mem": "4MB", "old": "1"}}}
    want = {"ttl": 30, "postgresql": {"parameters": {"max_connections": 200, "work_mem": "4MB"}}}
    assert patroni_config.patch_for(want, have) == {"postgresql": {"parameters": {"max_connections": 200, "old": None}}}
    assert patroni_config.patch_for(have, have) == {}


@pytest.mark.parametrize(("changed", "old", "primary_first"), [
    ({"max_connections": 200}, {"max_connections": "100"}, False),  # values grow: replicas first
    ({"shared_buffers": "1GB"}, {"shared_buffers": "2GB"}, True),  # a value shrinks: primary first
    ({"max_connections": 200, "shared_buffers": "1GB"}, {"max_connections": "100", "shared_buffers": "2GB"}, True),
    ({"max_locks_per_transaction": None}, {"max_locks_per_transaction": "128"}, True),  # removed: back to the default
])
def test_restart_order_replicas_first_when_values_grow(changed: dict, old: dict, primary_first: bool) -> None:
    assert patroni_config.primary_first(sorted(changed), changed, old) is primary_first
    pending = [member("n1", "sync_standby"), member("n2", "leader", "running"), member("n3", "replica")]
    order = [m.name for m in patroni_config.restart_order(pending, primary_first)]
    assert order == (["n2", "n1", "n3"] if primary_first else ["n1", "n3", "n2"])


# ---- on-leader, wait-member


def test_on_leader_runs_on_the_primary_and_names_the_leader_elsewhere() -> None:
    ms = [member("n1", "leader", "running"), member("n2", "replica")]
    assert on_leader.decide(True, []) == ("run", "")
    assert on_leader.decide(False, ms) == ("skip", "skipped here: n1 is the leader and applies it")
    assert on_leader.decide(False, [member("n2", "replica")])[0] == "fail"


def test_wait_member_needs_a_running_member_and_a_leader_and_gives_up_on_a_crashing_patroni() -> None:
    ms = [member("n1", "standby_leader", "running")]
    assert wait_member.decide(True, ms, 0, 0) == "done"
    assert wait_member.decide(True, [member("n2", "replica")], 0, 0) == "wait"
    assert wait_member.decide(False, ms, 2, 0) == "wait"
    assert wait_member.decide(False, [], 5, 2) == "failing"


# ---- etcd-auth: the request sequence


class FakeEtcd:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []

    def __call__(self, path: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
        self.calls.append((path, body, token))
        if path == "/v3/auth/status":
            return {"enabled": self.enabled}
        if path == "/v3/auth/authenticate":
            return {"token": "T"}
        if path.endswith("/add") and self.enabled:
            return {"error": "etcdserver: user name already exists"}
        return {}


WANT = {"root_password": "R", "user": "patroni", "user_password": "P", "prefix": "/service/"}


def test_etcd_auth_first_run_creates_users_then_enables() -> None:
    fake = FakeEtcd(enabled=False)
    assert etcd_auth.converge(fake, WANT) == "etcd authentication enabled; users: root, patroni"
    assert [c[0] for c in fake.calls] == ["/v3/auth/status", "/v3/auth/role/add", "/v3/auth/user/add", "/v3/auth/user/grant",
                                          "/v3/auth/role/add", "/v3/auth/role/grant", "/v3/auth/user/add",
                                          "/v3/auth/user/changepw", "/v3/auth/user/grant", "/v3/auth/enable"]
    assert all(token is None for _, _, token in fake.calls)
    grant = fake.calls[5][1]["perm"]
    assert (grant["key"], grant["range_end"]) == (etcd_auth.b64("/service/"), etcd_auth.b64("/service0"))


def test_etcd_auth_again_authenticates_and_keeps_existing_users() -> None:
    fake = FakeEtcd(enabled=True)
    assert etcd_auth.converge(fake, WANT) == "etcd authentication already on; user patroni converged"
    assert fake.calls[1][0] == "/v3/auth/authenticate" and all(t == "T" for _, _, t in fake.calls[2:])
    assert "/v3/auth/enable" not in [c[0] for c in fake.calls]


def test_etcd_auth_stops_on_an_unexpected_error() -> None:
    def failing(path: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
        return {"error": "permission denied"} if path == "/v3/auth/user/grant" else {}

    with pytest.raises(SystemExit, match="etcd /v3/auth/user/grant: permission denied"):
        etcd_auth.converge(failing, WANT)


# ---- the import contract: pgfleet.node is standard library only


def lint_imports(config: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(cwd)})


def test_node_package_imports_only_the_standard_library() -> None:
    p = lint_imports(ROOT / "pyproject.toml")
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_import_contract_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "pgfleet", tmp_path / "pgfleet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "pgfleet" / "node" / "bad.py").write_text("from pgfleet import contract\nimport yaml\n")
    p = lint_imports(tmp_path / "pyproject.toml", cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "pgfleet.node.bad -> pgfleet.contract" in p.stdout and "pgfleet.node.bad -> yaml" in p.stdout, p.stdout


def test_the_contract_forbids_every_other_part_of_pgfleet() -> None:
    import tomllib

    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    parts = {f"pgfleet.{p.stem}" for p in (ROOT / "pgfleet").iterdir()
             if p.name not in ("node", "__init__.py", "__pycache__") and (p.suffix == ".py" or p.is_dir())}
    assert parts <= set(contract["forbidden_modules"]), sorted(parts - set(contract["forbidden_modules"]))


def test_node_metrics_reads_certificates_backlog_and_restorable_window(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time as time_mod

    from pgfleet import secrets as secrets_mod
    from pgfleet import tls as tls_mod
    from pgfleet.node import node_metrics

    cert, key = secrets_mod.new_ca("test CA")
    (tmp_path / "ca.crt").write_text(cert)
    status = tmp_path / "data" / "pg_wal" / "archive_status"
    status.mkdir(parents=True)
    for name in ("000000010000000000000001.ready", "000000010000000000000002.ready", "000000010000000000000003.done"):
        (status / name).write_text("")
    conf = {"certificates": {"ca": str(tmp_path / "ca.crt"), "missing": str(tmp_path / "nope.crt")},
            "data_dir": str(tmp_path / "data"), "stanza": "", "postgres_user": "postgres"}
    text, errors = node_metrics.collect(conf, time_mod.time())
    not_after = tls_mod.x509.load_pem_x509_certificate(cert.encode()).not_valid_after_utc.timestamp()
    assert f'pgfleet_certificate_expiry_timestamp_seconds{{endpoint="ca"}} {float(int(not_after))}' in text
    assert "pgfleet_wal_ready_segments 2\n" in text
    assert len(errors) == 1 and "missing" in errors[0] and "pgfleet_node_metrics_errors 1\n" in text
    info = [{"backup": [{"timestamp": {"start": 900, "stop": 1000}}, {"timestamp": {"start": 4900, "stop": 5000}}]}]
    assert node_metrics.restorable_window(info, 8000) == 7000
    assert node_metrics.restorable_window([{"backup": []}], 8000) is None
    out = tmp_path / "pgfleet.prom"
    node_metrics.write_atomically(str(out), text)
    assert out.read_text() == text and not list(tmp_path.glob("*.tmp"))


def test_first_backup_only_when_the_repository_has_none() -> None:
    from pgfleet.node import first_backup

    assert not first_backup.has_backup([{"name": "main", "backup": []}])
    assert first_backup.has_backup([{"name": "main", "backup": [{"label": "20261201-010000F"}]}])


# ---- prewarm: Patroni's on_role_change callback


def test_prewarm_runs_on_promotion_only() -> None:
    from pgfleet.node import prewarm

    assert prewarm.should_prewarm(["on_role_change", "primary", "main"])
    assert prewarm.should_prewarm(["on_role_change", "master", "main"])  # Patroni 3's word
    assert prewarm.should_prewarm(["now"])
    assert not prewarm.should_prewarm(["on_role_change", "replica", "main"])
    assert not prewarm.should_prewarm(["on_start", "primary", "main"])  # restarts are autoprewarm's
    assert not prewarm.should_prewarm([])


def test_prewarm_fills_shared_buffers_smallest_first_and_reads_the_rest_into_the_page_cache() -> None:
    from pgfleet.node.prewarm import Index, plan, prewarm_statements

    mib = 2**20
    ixs = [Index("app", 20, "public.big", 700 * mib, True), Index("app", 10, "public.small", 100 * mib, True),
           Index("other", 30, "public.mid", 300 * mib, True), Index("noext", 40, "public.x", mib, False)]
    steps = plan(ixs, shared_buffers=1024 * mib)  # 768 MiB for indexes
    assert [(ix.name, mode) for ix, mode in steps] == [("public.small", "buffer"), ("public.mid", "buffer"), ("public.big", "read")]
    assert prewarm_statements([s for s in steps if s[0].database == "app"]) == [
        "SELECT pg_prewarm(10::regclass, 'buffer')", "SELECT pg_prewarm(20::regclass, 'read')"]


def test_prewarm_runs_psql_as_postgres_and_finds_vector_indexes() -> None:
    from pgfleet.node import prewarm

    argv = prewarm.psql_argv("postgres", "postgres", "it's", ["SELECT 1", "SELECT 2"])
    assert argv[:1] == ["psql"] and argv[argv.index("-d") + 1] == "dbname='it\\'s'"
    assert argv[-4:] == ["-c", "SELECT 1", "-c", "SELECT 2"] and "ON_ERROR_STOP=1" in argv
    assert prewarm.psql_argv("postgres", "root", "app", ["SELECT 1"])[:5] == ["runuser", "-u", "postgres", "--", "psql"]
    assert "a.amname IN ('hnsw', 'ivfflat') AND i.indisvalid" in prewarm.INDEXES_SQL
    out = f"16390{prewarm.SEP}public.\"Items_idx\"{prewarm.SEP}8192{prewarm.SEP}t\n"
    assert prewarm.parse_indexes("app", out) == [prewarm.Index("app", 16390, 'public."Items_idx"', 8192, True)]


def test_patroni_calls_prewarm_on_role_change_in_the_tuned_profiles() -> None:
    import yaml

    from roles.node import program

    s, _, hd = host_datas("lab")
    conf = yaml.safe_load(patroni_role.config(hd["lab-main-1"], fixed_secrets(s), container=True))
    assert conf["postgresql"]["callbacks"] == {"on_role_change": program("prewarm")}
    stock = {**hd["lab-main-1"], "patroni_prewarm": False}
    assert "callbacks" not in yaml.safe_load(patroni_role.config(stock, fixed_secrets(s), container=True))["postgresql"]


def test_prewarm_main_prewarms_each_database_and_reports_blocks(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pgfleet.node import prewarm
    from pgfleet.node.config import NodeConfig

    sep = prewarm.SEP
    calls: list[tuple[str, tuple[str, ...]]] = []

    class FakePsql:
        def __init__(self, user: str) -> None:
            assert user == "postgres"

        def __call__(self, database: str, *statements: str) -> str:
            calls.append((database, statements))
            if statements == (prewarm.SHARED_BUFFERS_SQL,):
                return "1073741824\n"
            if statements == (prewarm.DATABASES_SQL,):
                return "app\npostgres\n"
            if statements == (prewarm.INDEXES_SQL,):
                return f"16400{sep}public.items_embedding_idx{sep}8192000{sep}t\n" if database == "app" else ""
            return "1000\n"

    monkeypatch.setattr(prewarm, "Psql", FakePsql)
    cfg = NodeConfig("u", "u", "ca", "crt", "key", "/etc/patroni/patroni.yml", "patroni.service", "postgres")
    assert prewarm.main(["on_role_change", "replica", "main"], cfg) == 0 and not calls
    assert prewarm.main(["on_role_change", "primary", "main"], cfg) == 0
    assert calls[-1] == ("app", ("SELECT pg_prewarm(16400::regclass, 'buffer')",))
    assert "prewarm: app public.items_embedding_idx: 1000 blocks (buffer)" in capsys.readouterr().out
    assert prewarm.main(["bogus"], cfg) == 2
