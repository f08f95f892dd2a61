"""Where a cluster's pgBackRest repository lives, and the commands that reach it.

One definition used by the deploy (host data, bucket claim) and the CLI, so
the repository a backup is written to is the one a restore reads.
"""

from __future__ import annotations

from pathlib import Path

from pgfleet import contract
from pgfleet.backup import bucket
from pgfleet.backup.bucket import BucketTarget
from pgfleet.secrets import Secrets
from pgfleet.spec import ClusterSpec, Spec

#: The CommonName of the members' pgBackRest client certificate, the one identity the TLS servers accept.
CLIENT_CN = "pgfleet-pgbackrest"
#: Backup kinds and their systemd units (timers for full and diff; incr on demand).
TYPES = ("full", "diff", "incr")


def repo_path(spec: Spec, cluster: ClusterSpec) -> str:
    """``<backups.path>/<environment>-<cluster>``: one repository per cluster, never shared."""
    return f"/{spec.backups.path.strip('/')}/{spec.environment}-{cluster.name}"


def endpoint(spec: Spec) -> tuple[str, int]:
    """(host, port) of the S3 endpoint; https on 443 unless a port is given."""
    raw = (spec.backups.endpoint or "").removeprefix("https://").rstrip("/")
    host, _, port = raw.partition(":")
    return host, int(port) if port else 443


def bucket_target(spec: Spec, cluster: ClusterSpec, secrets: Secrets, ca_file: Path | None) -> BucketTarget:
    host, port = endpoint(spec)
    return BucketTarget(endpoint=f"{host}:{port}", region=spec.backups.region, bucket=spec.backups.bucket or "",
                        repo_path=repo_path(spec, cluster), access_key=secrets.password("s3_access_key"),
                        secret_key=secrets.password("s3_secret_key"), ca_file=str(ca_file) if ca_file else None)


def claim_buckets(stack: str, spec: Spec, sec: Secrets) -> list[str]:
    """Create or claim each cluster's repository path in the bucket (deploy runs this before touching hosts)."""
    from pgfleet import cluster as cluster_mod
    from pgfleet.providers import provider_class

    ca = cluster_mod.ca_file(stack, sec) if provider_class(spec).object_store_uses_cluster_ca else None
    out = []
    for c in spec.clusters:
        t = bucket_target(spec, c, sec, ca)
        try:
            done = bucket.ensure_bucket(t, {"stack": stack, "cluster": c.name})
        except bucket.BucketError as e:
            raise bucket.BucketError(f"deploy of {stack} stopped at the backup bucket step, before any host was changed: {e}") from None
        out.append(f"backups: {c.name}: bucket {t.bucket!r} at {t.url}: {done}")
    return out


def pgbackrest(stanza: str, *args: str) -> list[str]:
    """A pgBackRest command line as the postgres user (keys come from its configuration, never from here)."""
    return ["runuser", "-u", contract.POSTGRES_OS_USER, "--", "pgbackrest", f"--stanza={stanza}", *args]
