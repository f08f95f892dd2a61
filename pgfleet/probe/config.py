"""The probe's configuration: one JSON file the deploy writes (0640: it holds the application roles' passwords).

:func:`build` is what the deploy calls to produce that document, so the
connection strings the probe uses are written by the same code the unit
tests check; :meth:`ProbeConfig.loads` reads it back on the monitoring host.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: pgvector's distance operators; the operator is written into the SQL text, so only these are accepted.
OPERATORS = ("<->", "<=>", "<#>", "<+>")
#: Prometheus scrapes the probe over loopback on the monitoring host (pgfleet.contract.PGFLEET_EXPORTER_PORT).
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9188
DEFAULT_INTERVAL = 60.0
CONNECT_TIMEOUT = 5


class ConfigError(ValueError):
    """The configuration file is not what the probe can run with."""


@dataclass(frozen=True)
class Watch:
    """One watched vector index and the two ways to reach its cluster as the application role."""

    cluster: str
    database: str
    #: ``table`` or ``schema.table``
    table: str
    column: str
    #: a unique column: each query's own row is left out of both top-k lists
    key: str
    operator: str
    k: int
    sample_size: int
    target_recall: float
    #: the read-only direct endpoint (HAProxy → PostgreSQL on a replica), as the application role: the ANN query
    #: runs with the settings that role gets at login, then the exact query (index scans off) on the same replica,
    #: so both sides read the same data even while another replica lags or is rebuilt
    dsn: str

    def __post_init__(self) -> None:
        for name in ("cluster", "database", "table", "column", "key", "dsn"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"watch {self.name}: {name} must be a non-empty string")
        if any(not part for part in self.table.split(".")) or self.table.count(".") > 1:
            raise ConfigError(f"watch {self.name}: table must be 'table' or 'schema.table'")
        if self.operator not in OPERATORS:
            raise ConfigError(f"watch {self.name}: operator {self.operator!r} is not one of {', '.join(OPERATORS)}")
        for name in ("k", "sample_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"watch {self.name}: {name} must be a positive integer")
        if not isinstance(self.target_recall, (int, float)) or not 0 < self.target_recall <= 1:
            raise ConfigError(f"watch {self.name}: target_recall must be in (0, 1]")

    @property
    def name(self) -> str:
        return f"{self.cluster}/{self.database}/{self.table}.{self.column}"

    @property
    def labels(self) -> dict[str, str]:
        """The series labels that tell watches apart."""
        return {"cluster": self.cluster, "database": self.database, "table": self.table, "column": self.column}


@dataclass(frozen=True)
class ProbeConfig:
    watches: tuple[Watch, ...]
    listen_address: str = DEFAULT_ADDRESS
    listen_port: int = DEFAULT_PORT
    #: seconds between the starts of two measurements of every watch
    interval: float = DEFAULT_INTERVAL
    #: the CA every DSN's sslrootcert names (kept here for operators reading the file)
    ca_file: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.listen_port, int) or not 0 < self.listen_port < 65536:
            raise ConfigError("listen_port must be a TCP port")
        if not isinstance(self.interval, (int, float)) or not math.isfinite(self.interval) or self.interval <= 0:
            raise ConfigError("interval must be a positive number of seconds")
        seen = [tuple(w.labels.values()) for w in self.watches]
        if len(seen) != len(set(seen)):
            raise ConfigError("two watches have the same cluster, database, table and column")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ProbeConfig:
        unknown = set(doc) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown keys: {', '.join(sorted(unknown))}")
        watches = []
        for i, w in enumerate(doc.get("watches", [])):
            names = {f.name for f in fields(Watch)}
            if not isinstance(w, Mapping) or set(w) != names:
                got = set(w) if isinstance(w, Mapping) else set()
                raise ConfigError(f"watches[{i}]: missing {sorted(names - got)}, unknown {sorted(got - names)}")
            watches.append(Watch(**w))
        rest = {k: v for k, v in doc.items() if k != "watches"}
        return cls(watches=tuple(watches), **rest)

    @classmethod
    def loads(cls, text: str) -> ProbeConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str) -> ProbeConfig:
        with open(path) as f:
            return cls.loads(f.read())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "watches": [asdict(w) for w in self.watches]}

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"


def quote(value: str) -> str:
    """A libpq conninfo value, always in single quotes (inside them ``\\`` escapes ``'`` and ``\\``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(**params: str | int) -> str:
    """``key='value' …`` in the given order (libpq's keyword/value form)."""
    return " ".join(f"{k}={quote(str(v))}" for k, v in params.items())


def dsn(*, hosts: Iterable[str], port: int, dbname: str, user: str, password: str, ca_file: str,
        statement_timeout_ms: int | None = None) -> str:
    """A connection to whichever of ``hosts`` answers on ``port`` (HAProxy runs on every node), verifying its certificate;
    ``statement_timeout_ms`` bounds every query (the exact side's sequential scans must not load a replica for long)."""
    host_list = list(hosts)
    if not host_list or any(not h or "," in h for h in host_list):
        raise ConfigError(f"hosts must be non-empty addresses without commas: {host_list}")
    timeout = {"options": f"-c statement_timeout={statement_timeout_ms}"} if statement_timeout_ms else {}
    return conninfo(host=",".join(host_list), port=port, dbname=dbname, user=user, password=password, sslmode="verify-full",
                    sslrootcert=ca_file, connect_timeout=CONNECT_TIMEOUT, target_session_attrs="any", **timeout)


#: What each watch given to :func:`build` holds: the spec's watch fields (cluster resolved) and how to log in.
WATCH_KEYS = ("cluster", "database", "table", "column", "key", "operator", "k", "sample_size", "target_recall",
              "hosts", "user", "password")


def build(watches: Iterable[Mapping[str, Any]], *, ca_file: str, port: int, listen_port: int,
          interval: float, statement_timeout_ms: int, listen_address: str = DEFAULT_ADDRESS) -> dict[str, Any]:
    """The probe's JSON document (validated by loading it back, so the deploy never writes one the probe refuses).

    Each watch is the spec's watch (``VectorIndexWatchSpec.model_dump()`` with ``cluster`` filled in) plus
    ``hosts`` (the cluster's node addresses), ``user`` (the database's owner) and its ``password``;
    ``port`` is the direct read-only endpoint.
    """
    out = []
    for w in watches:
        missing = [k for k in WATCH_KEYS if k not in w]
        if missing:
            raise ConfigError(f"watch {dict((k, w[k]) for k in ('database', 'table') if k in w)}: missing {missing}")
        login = {"hosts": w["hosts"], "dbname": w["database"], "user": w["user"], "password": w["password"], "ca_file": ca_file}
        out.append({**{k: w[k] for k in WATCH_KEYS[:9]},
                    "dsn": dsn(port=port, statement_timeout_ms=statement_timeout_ms, **login)})
    doc = {"listen_address": listen_address, "listen_port": listen_port, "interval": interval, "ca_file": ca_file, "watches": out}
    ProbeConfig.from_dict(doc)
    return doc
