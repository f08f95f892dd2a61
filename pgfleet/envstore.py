"""Where environments' stack files live between jobs: a small store behind one interface.

The job that destroys ``pr-12`` when its pull request closes, and the nightly
janitor, run in fresh checkouts without ``stacks/Pulumi.pr-12.yaml`` (nor the
``encryptionsalt`` Pulumi wrote into it). So ``pgfleet env create`` keeps each
environment's stack file in the same self-hostable storage as Pulumi's state,
and ``env list`` / ``env gc`` read the store, never the working tree.

One URL names both, in Pulumi's own backend syntax (``PULUMI_BACKEND_URL``):

- ``file:///var/lib/pgfleet-state`` — a directory (one machine, or a shared mount);
- ``s3://BUCKET[/PREFIX]?endpoint=fsn1.your-objectstorage.com&region=fsn1&s3ForcePathStyle=true``
  — any S3-compatible object storage (Hetzner Object Storage, MinIO, …), keys from
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` as Pulumi reads them.

Stack files go under ``<prefix>/pgfleet/environments/Pulumi.<name>.yaml``, beside
(never inside) Pulumi's own ``.pulumi/`` tree.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from abc import ABC, abstractmethod
from pathlib import Path

from pgfleet.errors import PgfleetError

#: The store's URL; Pulumi's own backend URL when unset, so one setting serves both.
URL_ENV = "PGFLEET_ENV_BACKEND"
PULUMI_URL_ENV = "PULUMI_BACKEND_URL"
FOLDER = "pgfleet/environments"
_FILE = re.compile(r"^Pulumi\.([A-Za-z0-9_.-]+)\.yaml$")


class StoreError(PgfleetError):
    """The environment store cannot be reached or read, or holds no such environment; the message names the URL."""


class EnvironmentStore(ABC):
    """Stack files by environment name."""

    url: str

    @abstractmethod
    def put(self, name: str, text: str) -> None: ...

    @abstractmethod
    def get(self, name: str) -> str:
        """The stack file's text; :class:`StoreError` when there is none."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every environment in the store, sorted."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove it (no error when it is not there)."""

    def has(self, name: str) -> bool:
        return name in self.names()

    def _missing(self, name: str) -> StoreError:
        known = ", ".join(self.names()) or "none"
        return StoreError(f"no environment {name!r} in {self.url} (environments there: {known})")


def file_name(name: str) -> str:
    return f"Pulumi.{name}.yaml"


class FileStore(EnvironmentStore):
    """A directory; for one machine or a shared mount."""

    def __init__(self, root: Path, url: str) -> None:
        self.dir = root / FOLDER
        self.url = url

    def put(self, name: str, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{file_name(name)}.tmp"
        tmp.write_text(text)
        tmp.replace(self.dir / file_name(name))  # readers never see half a file

    def get(self, name: str) -> str:
        try:
            return (self.dir / file_name(name)).read_text()
        except FileNotFoundError:
            raise self._missing(name) from None

    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(m.group(1) for p in self.dir.iterdir() if (m := _FILE.match(p.name)))

    def delete(self, name: str) -> None:
        (self.dir / file_name(name)).unlink(missing_ok=True)


class S3Store(EnvironmentStore):
    """S3-compatible object storage (path-style addressing, as Hetzner's and MinIO's need)."""

    def __init__(self, bucket: str, prefix: str, url: str, *, endpoint: str | None, region: str | None,
                 insecure: bool = False) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = "/".join(p for p in (prefix.strip("/"), FOLDER) if p) + "/"
        self.url = url
        if endpoint and "://" not in endpoint:
            endpoint = ("http://" if insecure else "https://") + endpoint
        self._s3 = boto3.client("s3", endpoint_url=endpoint or None, region_name=region or None,
                                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                                              connect_timeout=5, read_timeout=30))

    def _call(self, what: str, fn, **kw):  # type: ignore[no-untyped-def]
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kw)
        except ClientError as e:
            err = e.response.get("Error", {})
            if err.get("Code") in ("NoSuchKey", "404"):
                raise
            raise StoreError(f"{what} in {self.url}: {err.get('Code', '?')}: {err.get('Message', e)}") from None
        except BotoCoreError as e:
            raise StoreError(f"{what} in {self.url}: {e}") from None

    def put(self, name: str, text: str) -> None:
        self._call(f"writing {file_name(name)}", self._s3.put_object, Key=self.prefix + file_name(name), Body=text.encode())

    def get(self, name: str) -> str:
        from botocore.exceptions import ClientError

        try:
            body = self._call(f"reading {file_name(name)}", self._s3.get_object, Key=self.prefix + file_name(name))["Body"]
        except ClientError:
            raise self._missing(name) from None
        return str(body.read().decode())

    def names(self) -> list[str]:
        out: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self._call("listing environments", self._s3.list_objects_v2, Prefix=self.prefix, **token)
            out += [m.group(1) for o in page.get("Contents", []) if (m := _FILE.match(o["Key"][len(self.prefix):]))]
            if not page.get("IsTruncated"):
                return sorted(out)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, name: str) -> None:
        self._call(f"deleting {file_name(name)}", self._s3.delete_object, Key=self.prefix + file_name(name))


def configured_url() -> str | None:
    return os.environ.get(URL_ENV) or os.environ.get(PULUMI_URL_ENV) or None


def open_store(url: str | None = None) -> EnvironmentStore:
    """The store at ``url`` (default: ``$PGFLEET_ENV_BACKEND``, else ``$PULUMI_BACKEND_URL``)."""
    url = url or configured_url()
    if not url:
        raise StoreError(f"no environment store: set {URL_ENV} (or {PULUMI_URL_ENV}) to the Pulumi backend that keeps "
                         "environments, e.g. s3://BUCKET?endpoint=fsn1.your-objectstorage.com&region=fsn1&s3ForcePathStyle=true "
                         "or file:///var/lib/pgfleet-state")
    u = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(u.query))
    if u.scheme == "file":
        path = urllib.parse.unquote(u.netloc + u.path)
        if not path.startswith("/"):
            raise StoreError(f"{url}: a file:// store needs an absolute path, e.g. file:///var/lib/pgfleet-state")
        return FileStore(Path(path), url)
    if u.scheme == "s3":
        if not u.netloc:
            raise StoreError(f"{url}: no bucket; write s3://BUCKET?endpoint=HOST&region=REGION")
        return S3Store(u.netloc, u.path, url, endpoint=q.get("endpoint"), region=q.get("region"),
                       insecure=q.get("disableSSL", "").lower() == "true")
    raise StoreError(f"{url}: environments need a self-hosted store, file:// or s3:// (Pulumi Cloud and other schemes "
                     "are not supported by pgfleet env)")
