"""Bucket setup against an S3 API (moto): create, claim, refuse foreign paths and bad keys."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from pgfleet.backup.bucket import BucketError, BucketTarget, ensure_bucket

OWNER = {"stack": "prod", "cluster": "main"}


def _target(**kw) -> BucketTarget:
    base = dict(endpoint="https://s3.eu-central-1.amazonaws.com", region="eu-central-1", bucket="pgfleet-test",
                repo_path="/pgbackrest/main", access_key="testing", secret_key="testing")
    return BucketTarget(**{**base, **kw})


@pytest.fixture
def s3():
    with mock_aws():
        yield boto3.client("s3", region_name="eu-central-1")


def test_creates_a_missing_bucket_and_claims_the_path(s3) -> None:
    assert ensure_bucket(_target(), OWNER) == "created bucket and claimed /pgbackrest/main"
    assert "pgfleet-test" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    marker = s3.get_object(Bucket="pgfleet-test", Key="pgbackrest/main/.pgfleet-owner.json")["Body"].read()
    assert b'"cluster": "main"' in marker


def test_second_run_changes_nothing(s3) -> None:
    ensure_bucket(_target(), OWNER)
    before = s3.list_objects_v2(Bucket="pgfleet-test")["KeyCount"]
    assert ensure_bucket(_target(), OWNER) == "/pgbackrest/main already belongs to this cluster"
    assert s3.list_objects_v2(Bucket="pgfleet-test")["KeyCount"] == before


def test_existing_bucket_is_reused(s3) -> None:
    s3.create_bucket(Bucket="pgfleet-test", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    assert ensure_bucket(_target(), OWNER) == "claimed /pgbackrest/main"


def test_refuses_a_path_that_belongs_to_another_cluster(s3) -> None:
    ensure_bucket(_target(), {"stack": "staging", "cluster": "main"})
    with pytest.raises(BucketError, match=r"already holds backups of .*staging.*own backups.path"):
        ensure_bucket(_target(), OWNER)


def test_other_paths_in_the_same_bucket_are_fine(s3) -> None:
    ensure_bucket(_target(), {"stack": "staging", "cluster": "main"})
    assert "claimed /pgbackrest/prod-main" in ensure_bucket(_target(repo_path="/pgbackrest/prod-main"), OWNER)


@mock_aws
@set_initial_no_auth_action_count(1)
def test_wrong_credentials_name_bucket_and_endpoint() -> None:
    # one unauthenticated call creates the bucket; after it moto checks keys like S3 does
    boto3.client("s3", region_name="eu-central-1").create_bucket(
        Bucket="pgfleet-test", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    with pytest.raises(BucketError, match=r"credentials are refused for bucket 'pgfleet-test' at https://s3.eu-central-1"):
        ensure_bucket(_target(access_key="AKIAWRONG", secret_key="nope"), OWNER)


@mock_aws
@set_initial_no_auth_action_count(0)
def test_deploy_with_refused_keys_stops_before_any_host_is_touched(monkeypatch) -> None:
    from deploy_fixtures import fake_inventory, fake_secrets
    from pgfleet import deployment, spec
    from pgfleet.providers.hcloud import HcloudProvider

    prod = spec.load("prod")
    # moto stands in for the object storage (an endpoint it intercepts); it checks keys like S3 does
    s = prod.model_copy(update={"backups": prod.backups.model_copy(update={"endpoint": "s3.eu-central-1.amazonaws.com",
                                                                            "region": "eu-central-1"})})
    monkeypatch.setattr(HcloudProvider, "inventory", lambda self: fake_inventory(s, "prod"))
    sec = fake_secrets(s)
    sec.passwords.update(s3_access_key="AKIAWRONGKEY", s3_secret_key="wrong")  # prod's come from Pulumi config secrets
    monkeypatch.setattr(HcloudProvider, "secrets", lambda self: sec)
    started: list[object] = []
    monkeypatch.setattr(deployment.subprocess, "Popen", lambda *a, **k: started.append(a))
    with pytest.raises(BucketError) as e:
        deployment.run("prod", s, echo=False)
    msg = str(e.value)
    assert "stopped at the backup bucket step, before any host was changed" in msg, msg
    assert f"bucket '{s.backups.bucket}'" in msg and "https://s3.eu-central-1.amazonaws.com" in msg, msg
    assert not started, "pyinfra must not run after the bucket step failed"
