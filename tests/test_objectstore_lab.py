"""The lab's object store: moto behind TLS on the bridge, reachable by hosts, gone after stop."""

from __future__ import annotations

import pytest

from pgfleet import lab as lab_mod
from pgfleet import secrets
from pgfleet.backup.bucket import BucketTarget, ensure_bucket
from pgfleet.lab import objectstore
from pgfleet.lab.layout import Layout
from pgfleet.spec import BackupSpec

pytestmark = pytest.mark.lab


@pytest.fixture
def backup_spec(lab_spec):  # type: ignore[no-untyped-def]
    """The lab stack with backups on (whatever the stack file says), the store stopped afterwards."""
    spec = lab_spec.model_copy(update={"backups": BackupSpec(enabled=True, endpoint="198.18.0.1:9000", bucket="pgfleet-lab-test")})
    yield spec
    objectstore.stop(spec, Layout.of(spec))


def test_store_serves_s3_over_tls_signed_by_the_lab_ca(lab, backup_spec, tmp_path):  # type: ignore[no-untyped-def]
    layout = Layout.of(backup_spec)
    objectstore.ensure(backup_spec, layout)
    assert objectstore.ensure(backup_spec, layout) is False, "a second ensure must change nothing"
    ca = tmp_path / "ca.pem"
    ca.write_text(secrets.load_or_create_local(backup_spec.environment, backup_spec).ca_cert_pem)
    target = BucketTarget(endpoint="198.18.0.1:9000", region=backup_spec.backups.region, bucket="pgfleet-lab-test",
                          repo_path="/pgbackrest/main", access_key="lab", secret_key="lab", ca_file=str(ca))
    assert ensure_bucket(target, {"stack": "lab", "cluster": "main"}).startswith("created bucket")
    # a client that does not trust the lab CA is refused at the TLS handshake
    from pgfleet.backup.bucket import BucketError

    with pytest.raises(BucketError):
        ensure_bucket(BucketTarget(**{**target.__dict__, "ca_file": None}), {"stack": "lab", "cluster": "main"})
    # hosts reach it on the bridge; moto itself listens on loopback only
    for h in lab.hosts:
        cp = lab_mod.run(backup_spec, h.name, "timeout 3 bash -c '</dev/tcp/198.18.0.1/9000' && echo open", check=False)
        assert "open" in cp.stdout, f"{h.name} cannot reach the object store: {cp.stderr}"
        cp = lab_mod.run(backup_spec, h.name, f"timeout 3 bash -c '</dev/tcp/198.18.0.1/{objectstore.MOTO_PORT}' && echo open", check=False)
        assert "open" not in cp.stdout, "moto must not be reachable from the hosts"


def test_stop_leaves_no_process(lab, backup_spec):  # type: ignore[no-untyped-def]
    layout = Layout.of(backup_spec)
    objectstore.ensure(backup_spec, layout)
    assert len(objectstore.running_pids(backup_spec, layout)) == 2
    objectstore.stop(backup_spec, layout)
    assert objectstore.running_pids(backup_spec, layout) == []
    assert not any("object store" in x for x in lab_mod.leftovers(backup_spec))
