"""Runs the real Pulumi program (``__main__.py``) under Pulumi mocks: no engine, no Hetzner API.

The mocks answer each resource registration with plausible outputs (public
addresses from TEST-NET-3, 203.0.113.0/24) and record what the program asked
for. Everything they invent is derived from the resource's type and name, so
two runs of one stack register exactly the same inputs (the golden snapshot
relies on it; see tests/golden.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
import runpy
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from pgfleet import ROOT
from pgfleet.secrets import S3_KEYS, Secrets

SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"
PLACEMENT_GROUP = "hcloud:index/placementGroup:PlacementGroup"
LOAD_BALANCER = "hcloud:index/loadBalancer:LoadBalancer"
LB_NETWORK = "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork"
LB_SERVICE = "hcloud:index/loadBalancerService:LoadBalancerService"
LB_TARGET = "hcloud:index/loadBalancerTarget:LoadBalancerTarget"
PASSWORD = "random:index/randomPassword:RandomPassword"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
CERT = "tls:index/selfSignedCert:SelfSignedCert"

#: What `pulumi config set --secret pgfleet:s3_…` gives the program on a real stack.
S3_TEST_KEYS = {"s3_access_key": "TESTACCESSKEY", "s3_secret_key": "test-secret-key-value"}


def issued_id(value: str | float) -> str:
    """Ids as the mocks issued them: numbers in inputs arrive as floats after serialisation."""
    return str(int(float(value)))


def _fake_hex(typ: str, name: str) -> str:
    """64 hex digits that look random but are the same for the same resource on every run."""
    return hashlib.sha256(f"{typ}::{name}".encode()).hexdigest()


@dataclass
class Created:
    typ: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class FleetMocks(pulumi.runtime.Mocks):
    """Answers like Hetzner/random/tls would, and remembers every resource asked for."""

    def __init__(self) -> None:
        self.created: list[Created] = []
        self._ids = itertools.count(1001)
        self._public = (str(ipaddress.ip_address("203.0.113.10") + i) for i in itertools.count())

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        rid = str(next(self._ids))  # numeric, as Hetzner ids are
        outputs = dict(args.inputs)
        fake = _fake_hex(args.typ, args.name)
        if args.typ == SERVER:
            outputs["ipv4Address"] = next(self._public)
        elif args.typ == LOAD_BALANCER:
            outputs["ipv4"] = next(self._public)
        elif args.typ == PASSWORD:
            outputs["result"] = fake[:32]
        elif args.typ == PRIVATE_KEY:
            outputs["privateKeyPem"] = f"-----BEGIN EC PRIVATE KEY-----\n{fake}\n-----END EC PRIVATE KEY-----\n"
            outputs["privateKeyPemPkcs8"] = f"-----BEGIN PRIVATE KEY-----\n{fake}\n-----END PRIVATE KEY-----\n"
        elif args.typ == CERT:
            outputs["certPem"] = f"-----BEGIN CERTIFICATE-----\n{fake}\n-----END CERTIFICATE-----\n"
        self.created.append(Created(args.typ, args.name, rid, dict(args.inputs), outputs))
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, None]:
        return {}, None


@dataclass
class Run:
    stack: str
    created: list[Created]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    urns: list[str] = field(default_factory=list)
    #: URN -> id of every registered resource (components included)
    urn_ids: dict[str, str] = field(default_factory=dict)

    def of(self, typ: str) -> list[Created]:
        return [c for c in self.created if c.typ == typ]

    def by_id(self, rid: str | float) -> Created:
        return next(c for c in self.created if c.id == issued_id(rid))

    def secret_values(self) -> list[str]:
        """Every generated secret: password values and private key PEMs."""
        s = Secrets.model_validate(self.outputs["secrets"])
        return [*s.passwords.values(), s.ca_key_pem]


def run_program(stack: str, mocks: FleetMocks | None = None) -> Run:
    """Run ``__main__.py`` for ``stack`` in a fresh mocked Pulumi runtime.

    Pulumi's settings are process-global: every run gets its own event loop,
    root stack resource and mocks, so runs do not see each other.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = mocks or FleetMocks()
    result = Run(stack, mocks.created)
    try:
        pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
        pulumi.runtime.set_mocks(mocks, project="pgfleet", stack=stack, preview=False)
        pulumi.runtime.set_all_config({f"pgfleet:{k}": S3_TEST_KEYS[k] for k in S3_KEYS}, secret_keys=[f"pgfleet:{k}" for k in S3_KEYS])
        root = pulumi_settings.get_root_resource()

        async def outputs() -> None:
            for name, value in root.outputs.items():  # type: ignore[union-attr]
                out = pulumi.Output.from_input(value)
                result.outputs[name] = await out.future()
                if await out.is_secret():
                    result.secret_outputs.add(name)

        def program() -> Any:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
            return outputs()

        _sync_await(run_pulumi_func(program))
        registered = pulumi_settings.SETTINGS.monitor.get_registered_resources()
        result.urns = list(registered)
        result.urn_ids = {urn: reg.id for urn, reg in registered.items()}
    finally:
        pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
        loop.close()
        asyncio.set_event_loop(None)
    return result
