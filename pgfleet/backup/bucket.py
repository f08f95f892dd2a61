"""The backup bucket: created when missing, claimed per cluster, never shared by accident.

Each cluster's pgBackRest repository lives under ``<path>/<cluster>`` in the
bucket. A small owner marker there records which stack and cluster wrote it,
so a second environment pointed at the same bucket and path is refused
instead of silently mixing (or expiring) another cluster's backups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, SSLError

from pgfleet.errors import PgfleetError

MARKER = ".pgfleet-owner.json"


class BucketError(PgfleetError):
    """The backup bucket cannot be used: unreachable, wrong credentials, or owned by another cluster."""


@dataclass(frozen=True)
class BucketTarget:
    endpoint: str  # host[:port] or URL; https is assumed without a scheme
    region: str
    bucket: str
    repo_path: str  # e.g. /pgbackrest/main
    access_key: str
    secret_key: str
    ca_file: str | None = None  # a private CA (the lab's); None = system trust

    @property
    def url(self) -> str:
        return self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"

    @property
    def marker_key(self) -> str:
        return f"{self.repo_path.strip('/')}/{MARKER}"


def client(t: BucketTarget):
    return boto3.client(
        "s3",
        endpoint_url=t.url,
        region_name=t.region,
        aws_access_key_id=t.access_key,
        aws_secret_access_key=t.secret_key,
        verify=t.ca_file if t.ca_file else True,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}, connect_timeout=5, read_timeout=15),
    )


def _where(t: BucketTarget) -> str:
    return f"bucket {t.bucket!r} at {t.url}"


def ensure_bucket(t: BucketTarget, owner: dict[str, str]) -> str:
    """Make the bucket and the cluster's repository path ready; returns what was done.

    ``owner`` identifies the cluster (e.g. ``{"stack": "prod", "cluster": "main"}``).
    """
    s3 = client(t)
    created = False
    try:
        s3.head_bucket(Bucket=t.bucket)
    except SSLError as e:
        trust = f"the CA in {t.ca_file}" if t.ca_file else "the system's trusted CAs"
        raise BucketError(f"TLS verification failed for {_where(t)} against {trust}: {e}") from None
    except (EndpointConnectionError, BotoCoreError) as e:
        raise BucketError(f"cannot reach the object storage for {_where(t)}: {e}") from None
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            try:
                kwargs = {} if t.region in ("", "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": t.region}}
                s3.create_bucket(Bucket=t.bucket, **kwargs)
                created = True
            except ClientError as ce:
                raise BucketError(f"could not create {_where(t)}: {_error_text(ce)}") from None
        elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise BucketError(f"the credentials are refused for {_where(t)} ({code}): check the stack's S3 access key and secret") from None
        else:
            raise BucketError(f"cannot use {_where(t)}: {_error_text(e)}") from None

    try:
        body = s3.get_object(Bucket=t.bucket, Key=t.marker_key)["Body"].read()
        found = json.loads(body)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise BucketError(f"cannot read {t.marker_key} in {_where(t)}: {_error_text(e)}") from None
        found = None
    if found is not None and found != owner:
        raise BucketError(
            f"{_where(t)} path {t.repo_path} already holds backups of {found} (this is {owner}): "
            "give this cluster its own backups.path or bucket; pgfleet never shares a repository"
        )
    if found is None:
        s3.put_object(Bucket=t.bucket, Key=t.marker_key, Body=json.dumps(owner, sort_keys=True).encode())
        return ("created bucket and " if created else "") + f"claimed {t.repo_path}"
    return f"{t.repo_path} already belongs to this cluster"


def _error_text(e: ClientError) -> str:
    err = e.response.get("Error", {})
    return f"{err.get('Code', '?')}: {err.get('Message', str(e))}"
