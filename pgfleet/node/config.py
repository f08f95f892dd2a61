"""The node's contract values, from the JSON file the deploy writes (no secrets)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class NodeConfig:
    """Where this node's services answer and what they are called (:mod:`pgfleet.contract` decides)."""

    patroni_url: str
    etcd_url: str
    ca_file: str
    cert_file: str
    key_file: str
    patroni_config: str
    patroni_unit: str
    postgres_user: str

    @classmethod
    def load(cls, path: str) -> NodeConfig:
        with open(path) as f:
            doc = json.load(f)
        return cls(**{f.name: doc[f.name] for f in fields(cls)})

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1) + "\n"


def json_argument(argv: list[str], program: str, what: str = "DESIRED.json") -> dict | None:
    """The one JSON file a node program takes as its only argument; None (after printing the usage) otherwise."""
    if len(argv) != 1:
        print(f"usage: {program} {what}", file=sys.stderr)
        return None
    with open(argv[0]) as f:
        return dict(json.load(f))
