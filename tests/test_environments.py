"""``pgfleet env create | list | destroy | gc``: every bad input refused before anything is written, the production
guard, environments read from the store (S3 through moto, or a directory), never from the working tree."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws
from typer.testing import CliRunner

import automation_fakes
from pgfleet import ROOT, envstore
from pgfleet import environments as envs
from pgfleet import spec as spec_mod
from pgfleet.cli import app
from pgfleet.envstore import EnvironmentStore, StoreError

#: days before the real clock: the CLI (which reads the clock) sees environments made "then" with short TTLs as expired
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=5)
BUCKET = "pgfleet-state"


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout's stacks/ (the shipped stacks), so tests write nothing into the repository."""
    d = tmp_path / "stacks"
    shutil.copytree(ROOT / "stacks", d)
    monkeypatch.setenv("PGFLEET_STACKS_DIR", str(d))
    monkeypatch.delenv(envs.RUNNER_CIDRS_ENV, raising=False)
    monkeypatch.setenv("GITHUB_ACTOR", "octo-cat")
    return d


@pytest.fixture
def s3_url(monkeypatch: pytest.MonkeyPatch):
    """An S3 store (moto), in Pulumi's backend URL syntax."""
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-central-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        boto3.client("s3", region_name="eu-central-1").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        yield f"s3://{BUCKET}/team-a?region=eu-central-1&s3ForcePathStyle=true"


@pytest.fixture(params=["s3", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path, stacks: Path, monkeypatch: pytest.MonkeyPatch) -> EnvironmentStore:
    url = request.getfixturevalue("s3_url") if request.param == "s3" else f"file://{tmp_path / 'state'}"
    monkeypatch.setenv(envstore.URL_ENV, url)
    return envstore.open_store(url)


@pytest.fixture
def pulumi(monkeypatch: pytest.MonkeyPatch) -> automation_fakes.FakeBackend:
    return automation_fakes.install(monkeypatch)


def snapshot(stacks: Path, store: EnvironmentStore) -> tuple[dict[str, str], list[str]]:
    return {p.name: p.read_text() for p in stacks.iterdir()}, store.names()


def create(name: str = "pr-12", like: str = "staging", store: EnvironmentStore | None = None, **kw) -> envs.Draft:
    return envs.create(name, like, store=store, now=NOW, **kw)


# --------------------------------------------------------------------------- create


def test_create_writes_the_stack_file_and_the_store(stacks: Path, store: EnvironmentStore) -> None:
    d = create(store=store, ttl="48h", sets=["clusters[0].server_type=cpx22", "clusters[0].nodes=3"],
               runner=["198.51.100.7/32"])
    local = (stacks / "Pulumi.pr-12.yaml").read_text()
    assert store.get("pr-12") == local == d.text
    s = spec_mod.load("pr-12")  # the written file validates on its own
    assert s.production is False and s.provider == "hcloud"
    assert s.ephemeral is not None and s.ephemeral.template == "staging" and s.ephemeral.owner == "octo-cat"
    assert s.ephemeral.expires == NOW + dt.timedelta(hours=48)
    assert s.clusters[0].server_type == "cpx22"
    assert s.backups.enabled and s.backups.path == "/environments/pr-12"
    staging = spec_mod.load("staging")
    assert s.backups.bucket == staging.backups.bucket and staging.backups.path != s.backups.path
    assert s.admin_cidrs == [*staging.admin_cidrs, "198.51.100.7/32"]
    assert s.client_cidrs == [*staging.client_cidrs, "198.51.100.7/32"]


def test_like_prod_turns_production_off_and_takes_the_runner_range_from_the_environment(
        stacks: Path, store: EnvironmentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(envs.RUNNER_CIDRS_ENV, "198.51.100.0/28, 192.0.2.5/32")
    s = create("try-prod", "prod", store=store).spec
    assert spec_mod.load("prod").production is True
    assert s.production is False
    assert "198.51.100.0/28" in s.admin_cidrs and "192.0.2.5/32" in s.admin_cidrs
    # the checked-in production stack is untouched: the runner never reaches prod's SSH
    assert "198.51.100.0/28" not in spec_mod.load("prod").admin_cidrs


def test_a_runner_range_already_covered_is_not_added_twice(stacks: Path, store: EnvironmentStore) -> None:
    s = create(store=store, runner=["203.0.113.7/32"]).spec  # inside staging's 203.0.113.0/24
    assert s.admin_cidrs == spec_mod.load("staging").admin_cidrs


def test_template_secrets_are_not_copied(stacks: Path, store: EnvironmentStore) -> None:
    """Pulumi secrets are encrypted with the template's salt: unreadable in another stack, so they are left out."""
    doc = yaml.safe_load((stacks / "Pulumi.staging.yaml").read_text())
    doc["encryptionsalt"] = "v1:templatesalt"
    doc["config"]["pgfleet:s3_access_key"] = {"secure": "v1:abc"}
    doc["config"]["hcloud:token"] = {"secure": "v1:def"}
    (stacks / "Pulumi.staging.yaml").write_text(yaml.safe_dump(doc))
    text = create(store=store).text
    assert "secure" not in text and "templatesalt" not in text and "hcloud:token" not in text


BAD_INPUT = {
    "unknown template": (dict(like="nope"), r"unknown template --like 'nope'.*known stacks: dev, lab, prod, staging"),
    "template is the lab": (dict(like="lab"), r"lab stacks run on this machine"),
    "uppercase name": (dict(name="PR-12"), r"name 'PR-12' is refused"),
    "underscore in name": (dict(name="pr_12"), r"name 'pr_12' is refused"),
    "name ends with -": (dict(name="pr-"), r"name 'pr-' is refused"),
    "name too long for Pulumi and Hetzner": (dict(name="p" * 33), r"1-32 lowercase"),
    "name of a checked-in stack": (dict(name="prod"), r"'prod' is a checked-in stack"),
    "ttl without a unit": (dict(ttl="24"), r"--ttl '24' is not a duration"),
    "ttl with a bad unit": (dict(ttl="24x"), r"--ttl '24x' is not a duration"),
    "ttl negative": (dict(ttl="-1h"), r"is not a duration"),
    "ttl zero": (dict(ttl="0h"), r"is zero"),
    "ttl too long": (dict(ttl="91d"), r"longer than 90 days"),
    "--set unknown top-level key": (dict(sets=["servertype=cpx22"]), r"unknown key 'servertype'.*Known keys there: provider"),
    "--set a cluster key at the top": (dict(sets=["server_type=cpx22"]), r"--set clusters\[0\]\.server_type"),
    "--set unknown nested key": (dict(sets=["backups.retention=3"]), r"unknown key 'retention' in backups.*retention_full"),
    "--set index past the list": (dict(sets=["clusters[1].nodes=1"]), r"no clusters\[1\] \(1 item\(s\)\)"),
    "--set below a single value": (dict(sets=["location.city=x"]), r"location is a single value"),
    "--set production": (dict(sets=["production=true"]), r"environments are never production"),
    "--set ephemeral": (dict(sets=["ephemeral.expires=2099-01-01T00:00:00Z"]), r"not settable"),
    "--set without =": (dict(sets=["location"]), r"write KEY=VALUE"),
    "runner range not a network": (dict(runner=["198.51.100.7/33"]), r"runner range '198.51.100.7/33'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_refused_before_anything_is_written(case: str, stacks: Path, store: EnvironmentStore) -> None:
    kw, message = BAD_INPUT[case]
    before = snapshot(stacks, store)
    with pytest.raises(envs.EnvironmentError, match=message):
        create(store=store, **{"name": "pr-12", "like": "staging", **kw})
    assert snapshot(stacks, store) == before


@pytest.mark.parametrize("sets, field, message", [
    # 32-character environment + a 31-character cluster: pgfleet-<env>-<cluster> is 72 characters
    (["clusters[0].name=" + "c" * 31], "pgfleet:environment", r"pgfleet-p{31}x-c{31}.*shorten .* by 9 or more"),
    (["clusters[0].server_type=cx99"], "pgfleet:clusters[0].server_type", "unknown Hetzner server type"),
    (["clusters[0].nodes=two"], "pgfleet:clusters[0].nodes", "integer"),
])
def test_values_that_break_the_spec_are_refused_with_the_field_and_nothing_is_written(
        sets: list[str], field: str, message: str, stacks: Path, store: EnvironmentStore) -> None:
    before = snapshot(stacks, store)
    with pytest.raises(envs.SpecError) as e:
        create("p" * 31 + "x", store=store, sets=sets)
    assert any(p.field == field for p in e.value.problems), e.value
    assert __import__("re").search(message, str(e.value)), str(e.value)
    assert snapshot(stacks, store) == before


def test_derived_names_are_checked_on_every_stack_too(stacks: Path) -> None:
    """`pgfleet validate` refuses the same over-long derived names in a checked-in stack."""
    text = (stacks / "Pulumi.staging.yaml").read_text().replace("- name: main", "- name: " + "c" * 31)
    (stacks / ("Pulumi." + "s" * 32 + ".yaml")).write_text(text)
    with pytest.raises(envs.SpecError, match="RFC 1123"):
        spec_mod.load("s" * 32)


def test_an_environment_made_like_another_template_is_refused(stacks: Path, store: EnvironmentStore) -> None:
    create(store=store)
    before = snapshot(stacks, store)
    with pytest.raises(envs.EnvironmentError, match=r"exists already, made like 'staging', not 'dev'"):
        create(like="dev", store=store)
    assert snapshot(stacks, store) == before


def test_creating_it_again_renews_it_and_keeps_what_pulumi_wrote(stacks: Path, store: EnvironmentStore) -> None:
    """A pull request updated: the same command renews the expiry and keeps the stack's salt and secrets."""
    first = create(store=store)
    doc = yaml.safe_load(first.text)
    doc["encryptionsalt"] = "v1:prsalt"
    doc["config"]["pgfleet:s3_access_key"] = {"secure": "v1:xyz"}
    store.put("pr-12", yaml.safe_dump(doc))
    later = envs.create("pr-12", "staging", store=store, now=NOW + dt.timedelta(hours=5), ttl="24h")
    assert later.renewed
    stored = yaml.safe_load(store.get("pr-12"))
    assert stored["encryptionsalt"] == "v1:prsalt" and stored["config"]["pgfleet:s3_access_key"] == {"secure": "v1:xyz"}
    assert later.spec.ephemeral is not None and later.spec.ephemeral.expires == NOW + dt.timedelta(hours=29)


def test_no_store_configured_is_refused(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(envstore.URL_ENV, raising=False)
    monkeypatch.delenv(envstore.PULUMI_URL_ENV, raising=False)
    with pytest.raises(StoreError, match="PGFLEET_ENV_BACKEND"):
        create()
    assert not (stacks / "Pulumi.pr-12.yaml").exists()


@pytest.mark.parametrize("url, message", [("https://app.pulumi.com", "self-hosted store"), ("file://relative/dir", "absolute path"),
                                          ("s3://?region=x", "no bucket")])
def test_store_urls_pgfleet_cannot_use_are_refused(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        envstore.open_store(url)


# --------------------------------------------------------------------------- the store, not the working tree


def test_the_s3_store_keeps_stack_files_beside_pulumis_state(stacks: Path, s3_url: str) -> None:
    store = envstore.open_store(s3_url)
    create(store=store)
    keys = [o["Key"] for o in boto3.client("s3", region_name="eu-central-1").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["team-a/pgfleet/environments/Pulumi.pr-12.yaml"]
    store.delete("pr-12")
    assert store.names() == []
    with pytest.raises(StoreError, match=r"no environment 'pr-12' in s3://"):
        store.get("pr-12")


def test_list_reads_the_store_not_the_working_tree(stacks: Path, store: EnvironmentStore,
                                                   pulumi: automation_fakes.FakeBackend) -> None:
    create(store=store, owner="alice")
    create("pr-13", "dev", store=store, ttl="1h")
    (stacks / "Pulumi.pr-12.yaml").unlink()  # a fresh checkout has no environment files
    (stacks / "Pulumi.pr-99.yaml").write_text((stacks / "Pulumi.pr-13.yaml").read_text())  # only in this checkout
    pulumi.stacks["pr-12"] = {"inventory": ({}, False), "secrets": ({}, True)}
    r = CliRunner().invoke(app, ["env", "list"])
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0]: ln.split() for ln in r.output.splitlines()[1:] if ln.strip()}
    assert set(lines) == {"pr-12", "pr-13"}
    assert lines["pr-12"][1:3] == ["staging", "alice"] and lines["pr-12"][-2:] == ["2", "resources"]
    assert lines["pr-13"][1] == "dev" and lines["pr-13"][-2:] == ["not", "created"]
    assert lines["pr-13"][4] == "expired"  # made at NOW with 1h, long past


# --------------------------------------------------------------------------- destroy and gc


def test_destroy_in_a_fresh_checkout_fetches_the_stack_file_from_the_store(
        stacks: Path, store: EnvironmentStore, pulumi: automation_fakes.FakeBackend) -> None:
    create(store=store)
    (stacks / "Pulumi.pr-12.yaml").unlink()
    pulumi.stacks["pr-12"] = {"inventory": ({}, False)}
    r = CliRunner().invoke(app, ["env", "destroy", "pr-12", "--yes"])
    assert r.exit_code == 0, r.output
    destroyed = [c for c in pulumi.calls if c[0] == "destroy"]
    assert destroyed and destroyed[0][1] == "pr-12"
    assert destroyed[0][2]["config_file"] == str(stacks / "Pulumi.pr-12.yaml")
    assert ("remove_stack", "pr-12", {}) in pulumi.calls and "pr-12" not in pulumi.stacks
    assert store.names() == [] and not (stacks / "Pulumi.pr-12.yaml").exists()


def test_destroy_needs_yes_and_an_environment_that_exists(stacks: Path, store: EnvironmentStore,
                                                          pulumi: automation_fakes.FakeBackend) -> None:
    create(store=store)
    with pytest.raises(envs.EnvironmentError, match="--yes"):
        envs.destroy("pr-12", yes=False, store=store)
    with pytest.raises(StoreError, match=r"no environment 'pr-7'.*environments there: pr-12"):
        envs.destroy("pr-7", yes=True, store=store)
    assert store.names() == ["pr-12"] and not [c for c in pulumi.calls if c[0] == "destroy"]


def mark_production(store: EnvironmentStore, name: str) -> None:
    doc = yaml.safe_load(store.get(name))
    doc["config"]["pgfleet:production"] = True
    store.put(name, yaml.safe_dump(doc))


def test_gc_destroys_expired_environments_only_and_never_a_production_stack(
        stacks: Path, store: EnvironmentStore, pulumi: automation_fakes.FakeBackend) -> None:
    create("pr-1", store=store, ttl="1h")
    create("pr-2", store=store, ttl="3d")
    create("pr-3", store=store, ttl="1h")
    mark_production(store, "pr-3")  # someone promoted it by hand
    store.put("broken", "config: [not, a, mapping\n")
    for n in ("pr-1", "pr-2", "pr-3"):
        pulumi.stacks[n] = {"inventory": ({}, False)}
    later = NOW + dt.timedelta(hours=2)

    dry = {a.name: a.action for a in envs.gc(dry_run=True, store=store, now=later)}
    assert dry == {"pr-1": "would destroy", "pr-2": "kept", "pr-3": "skipped", "broken": "skipped"}
    assert not [c for c in pulumi.calls if c[0] == "destroy"] and len(store.names()) == 4

    done = {a.name: a.action for a in envs.gc(dry_run=False, store=store, now=later)}
    assert done == {"pr-1": "destroyed", "pr-2": "kept", "pr-3": "skipped", "broken": "skipped"}
    assert [c[1] for c in pulumi.calls if c[0] == "destroy"] == ["pr-1"]
    assert store.names() == ["broken", "pr-2", "pr-3"]
    with pytest.raises(envs.EnvironmentError, match="marked production"):
        envs.destroy("pr-3", yes=True, store=store)


def test_gc_reports_a_failed_destroy_and_goes_on(stacks: Path, store: EnvironmentStore,
                                                 pulumi: automation_fakes.FakeBackend) -> None:
    create("pr-1", store=store, ttl="1h")
    create("pr-2", store=store, ttl="1h")
    pulumi.stacks |= {"pr-1": {}, "pr-2": {}}
    pulumi.fail["pr-1"] = "error: 403 token has no write access"
    r = CliRunner().invoke(app, ["env", "gc"])
    assert r.exit_code == 1
    assert "pr-1: failed" in r.output and "403 token has no write access" in r.output and "pr-2: destroyed" in r.output
    assert store.names() == ["pr-1"]  # kept for the next run


def test_the_cli_refuses_bad_input_with_exit_1_and_names_the_fix(stacks: Path, store: EnvironmentStore) -> None:
    r = CliRunner().invoke(app, ["env", "create", "pr-12", "--like", "staging", "--ttl", "1y"])
    assert r.exit_code == 1 and isinstance(r.exception, envs.EnvironmentError) and "e.g. 24h" in str(r.exception)
    r = CliRunner().invoke(app, ["env", "create", "pr-12", "--like", "staging", "--set", "clusters[0].server_type=cpx22",
                                 "--owner", "dependabot[bot]"])
    assert r.exit_code == 0, r.output
    assert "owner dependabot-bot" in r.output


# --------------------------------------------------------------------------- what reaches Hetzner (Pulumi mocks)


def test_every_hetzner_resource_of_an_environment_carries_owner_and_expiry_labels(
        stacks: Path, store: EnvironmentStore) -> None:
    """The real program under Pulumi mocks: every hcloud resource type that takes labels gets them (prod has them all)."""
    import inspect

    import pulumi_hcloud

    from pulumi_harness import run_program

    d = create("pr-12", "prod", store=store, owner="octo-cat", ttl="24h", runner=["198.51.100.7/32"])
    run = run_program("pr-12")
    expires = (NOW + dt.timedelta(hours=24)).strftime("%Y%m%dT%H%M%SZ")
    labelled: set[str] = set()
    for c in run.created:
        if not c.typ.startswith("hcloud:"):
            continue
        args = getattr(pulumi_hcloud, c.typ.rsplit(":", 1)[1] + "Args")  # the resource's own __init__ is overloaded
        if "labels" in inspect.signature(args.__init__).parameters:
            labelled.add(c.typ.rsplit(":", 1)[1])
            assert c.inputs.get("labels", {}).items() >= {"owner": "octo-cat", "expires": expires, "template": "prod",
                                                          "environment": "pr-12"}.items(), (c.typ, c.name, c.inputs.get("labels"))
    assert labelled >= {"Server", "Firewall", "PlacementGroup", "Network", "SshKey", "LoadBalancer"}
    # production off: servers can be deleted by env destroy / gc
    assert all(c.inputs["deleteProtection"] is False for c in run.of("hcloud:index/server:Server"))
    assert d.spec.production is False
    # the runner reaches SSH (admin) and the endpoints (clients), on this environment only
    rules = [r for f in run.of("hcloud:index/firewall:Firewall") for r in f.inputs["rules"]]
    assert any(r["port"] == "22" and "198.51.100.7/32" in r["sourceIps"] for r in rules)


def test_checked_in_stacks_get_no_owner_or_expiry_labels(stacks: Path) -> None:
    from pulumi_harness import run_program

    run = run_program("staging")
    assert all("expires" not in c.inputs.get("labels", {}) for c in run.created)


def test_an_expiry_without_a_timezone_is_refused_and_gc_leaves_that_file_alone(
        stacks: Path, store: EnvironmentStore, pulumi: automation_fakes.FakeBackend) -> None:
    create("pr-1", store=store, ttl="1h")
    doc = yaml.safe_load(store.get("pr-1"))
    doc["config"]["pgfleet:ephemeral"]["expires"] = "2020-01-01T00:00:00"  # which 00:00? every janitor would differ
    store.put("pr-1", yaml.safe_dump(doc))
    (action,) = envs.gc(dry_run=False, store=store)
    assert action.action == "skipped" and "timezone" in action.why
    assert store.names() == ["pr-1"] and not pulumi.calls


def test_an_environment_pulumi_never_created_is_forgotten_and_a_missing_one_is_fine_with_missing_ok(
        stacks: Path, store: EnvironmentStore, pulumi: automation_fakes.FakeBackend) -> None:
    create(store=store)  # `up` never ran (or failed before Pulumi made the stack)
    assert envs.destroy("pr-12", yes=True, store=store) is True
    assert store.names() == [] and not [c for c in pulumi.calls if c[0] == "destroy"]
    r = CliRunner().invoke(app, ["env", "destroy", "pr-12", "--yes", "--missing-ok"])
    assert r.exit_code == 0 and "nothing to destroy" in r.output
    r = CliRunner().invoke(app, ["env", "destroy", "pr-12", "--yes"])
    assert r.exit_code == 1 and "no environment 'pr-12'" in str(r.exception)


def test_an_environment_that_was_brought_up_but_has_no_stack_here_is_not_forgotten(
        stacks: Path, store: EnvironmentStore, pulumi: automation_fakes.FakeBackend) -> None:
    """A stored salt means Pulumi made the stack: missing from this backend, its servers may still run elsewhere."""
    create(store=store)
    doc = yaml.safe_load(store.get("pr-12"))
    doc["encryptionsalt"] = "v1:prsalt"  # what `up` stores back once Pulumi touched the stack
    store.put("pr-12", yaml.safe_dump(doc))
    with pytest.raises(envs.EnvironmentError, match="PULUMI_BACKEND_URL"):
        envs.destroy("pr-12", yes=True, store=store)
    assert store.names() == ["pr-12"]
