"""Environments from templates: ``pgfleet env create | list | destroy | gc``.

An environment (``pr-12``, ``alice-test``) is a stack made like another
(``--like staging``): production off, backups under its own path, an owner
and an expiry that become labels on every cloud resource, the runner's range
added to its admin and client ranges, and any ``--set`` overrides. Every input
is checked, and the result validated as a whole, before anything is written.

Its stack file lives in the environment store (:mod:`pgfleet.envstore`) so
that the jobs that destroy it later — in fresh checkouts — find it (and the
``encryptionsalt`` Pulumi writes into it) there; ``list`` and ``gc`` read
the store only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from pgfleet import envstore
from pgfleet import spec as spec_mod
from pgfleet.automation import PulumiError, StackMissing, Workspace
from pgfleet.envstore import EnvironmentStore
from pgfleet.errors import PgfleetError, SpecError
from pgfleet.schema import _NAME, NAMESPACE, Spec

DEFAULT_TTL = "24h"
#: Longer than this is not an ephemeral environment: make a stack file of its own.
MAX_TTL = dt.timedelta(days=90)
#: Ranges the CI runner connects from (comma or space separated): added to non-production environments only.
RUNNER_CIDRS_ENV = "PGFLEET_RUNNER_CIDRS"
#: ``--set`` may not touch these: env create owns them.
OWNED_KEYS = {"environment": "it is the NAME argument", "production": "environments are never production",
              "ephemeral": "env create writes it (use --ttl and --owner)"}
#: Top-level keys of a Pulumi stack file that belong to one stack's secrets and must not be copied.
STACK_OWN_KEYS = ("encryptionsalt", "secretsprovider", "encryptedkey")
_TTL = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class EnvironmentError(PgfleetError):
    """An environment cannot be created, found or destroyed as asked; the message says what to change."""


# --------------------------------------------------------------------------- input


def parse_ttl(text: str) -> dt.timedelta:
    """``24h``, ``90m``, ``3d``, ``1h30m``: a positive duration of at most :data:`MAX_TTL`."""
    t = text.strip().lower()
    parts = _TTL.findall(t)
    if not t or "".join(n + u for n, u in parts) != t:
        raise EnvironmentError(f"--ttl {text!r} is not a duration: write a number and a unit (s, m, h, d, w), "
                               "e.g. 24h, 90m, 3d or 1h30m")
    ttl = sum((dt.timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), dt.timedelta())
    if ttl <= dt.timedelta(0):
        raise EnvironmentError(f"--ttl {text!r} is zero: give the environment some time, e.g. --ttl 24h")
    if ttl > MAX_TTL:
        raise EnvironmentError(f"--ttl {text!r} is longer than {MAX_TTL.days} days: an environment that lives that long "
                               "deserves its own stack file (stacks/Pulumi.NAME.yaml), not an expiry")
    return ttl


def check_name(name: str, stacks: Path) -> None:
    """A name Pulumi and Hetzner accept (the derived names are checked with the whole spec) and no checked-in stack's."""
    if not re.fullmatch(_NAME, name):
        raise EnvironmentError(f"environment name {name!r} is refused: it names servers and Pulumi stacks, so it must be "
                               "1-32 lowercase letters, digits and '-', starting with a letter and not ending with '-' "
                               "(e.g. pr-12)")
    own = stacks / envstore.file_name(name)
    if own.is_file() and "ephemeral" not in spec_mod.config_from_yaml(own.read_text(), str(own)):
        raise EnvironmentError(f"{name!r} is a checked-in stack ({own}), not an environment: pick another name")


def label_value(text: str) -> str:
    """``text`` made into a Hetzner label value (owner names come from CI variables: ``dependabot[bot]``)."""
    v = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-_.")
    return v or "unknown"


def default_owner() -> str:
    return label_value(os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or "unknown")


def runner_cidrs(given: list[str] | None = None) -> list[str]:
    """``--runner-cidr`` values, else ``$PGFLEET_RUNNER_CIDRS``; each a valid network."""
    raw = list(given or []) or re.split(r"[,\s]+", os.environ.get(RUNNER_CIDRS_ENV, "").strip())
    out = []
    for c in (c for c in raw if c):
        try:
            out.append(str(ipaddress.ip_network(c, strict=True)))
        except ValueError as e:
            raise EnvironmentError(f"runner range {c!r} ({RUNNER_CIDRS_ENV} or --runner-cidr) is not a network ({e}): "
                                   "write ADDRESS/PREFIX, e.g. 198.51.100.7/32") from None
    return out


@dataclass(frozen=True)
class Setting:
    """One ``--set KEY=VALUE``: a path into the ``pgfleet:`` settings and a YAML value."""

    key: str
    path: tuple[str | int, ...]
    value: Any


def parse_set(item: str) -> Setting:
    key, eq, raw = item.partition("=")
    key = key.strip().removeprefix(f"{NAMESPACE}:")
    if not eq or not key:
        raise EnvironmentError(f"--set {item!r}: write KEY=VALUE, e.g. --set clusters[0].server_type=cpx22")
    path: list[str | int] = []
    for part in key.split("."):
        m = re.fullmatch(r"([a-z_][a-z0-9_]*)((?:\[\d+\])*)", part)
        if not m:
            raise EnvironmentError(f"--set {item!r}: {part!r} is not a key; keys look like location, "
                                   "backups.retention_full or clusters[0].server_type")
        path.append(m.group(1))
        path += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return Setting(key, tuple(path), value)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def check_key(setting: Setting, config: dict[str, Any]) -> None:
    """Refuse a key the stack schema does not have (or env create owns), naming the keys that exist there."""
    head = setting.path[0]
    if head in OWNED_KEYS:
        raise EnvironmentError(f"--set {setting.key}: not settable ({OWNED_KEYS[str(head)]})")
    kind: Any = Spec
    data: Any = config
    where = ""
    for part in setting.path:
        kind = _unwrap(kind)
        origin = typing.get_origin(kind)
        if isinstance(part, int):
            if origin is not list:
                raise EnvironmentError(f"--set {setting.key}: {where or 'it'} is not a list")
            if not isinstance(data, list) or part >= len(data):
                have = len(data) if isinstance(data, list) else 0
                raise EnvironmentError(f"--set {setting.key}: the template has no {where}[{part}] ({have} item(s)); "
                                       f"use an index below {have}")
            kind, data, where = typing.get_args(kind)[0], data[part], f"{where}[{part}]"
        elif origin is dict:
            kind, data, where = typing.get_args(kind)[1], (data or {}).get(part) if isinstance(data, dict) else None, f"{where}.{part}"
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            fields = kind.model_fields
            if part not in fields:
                hint = ""
                if kind is Spec and part in spec_mod.ClusterSpec.model_fields:
                    hint = f" ({part} is a cluster setting: --set clusters[0].{part}=…)"
                raise EnvironmentError(f"--set {setting.key}: unknown key {part!r}{' in ' + where if where else ''}{hint}. "
                                       f"Known keys there: {', '.join(k for k in fields if k not in OWNED_KEYS)}")
            kind, data, where = fields[part].annotation, data.get(part) if isinstance(data, dict) else None, \
                (f"{where}.{part}" if where else part)
        else:
            raise EnvironmentError(f"--set {setting.key}: {where} is a single value, it has no {part!r}")


def _apply(config: dict[str, Any], setting: Setting) -> None:
    node: Any = config
    for part in setting.path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            node = node[part]
    node[setting.path[-1]] = setting.value


# --------------------------------------------------------------------------- the stack file


@dataclass(frozen=True)
class Draft:
    name: str
    text: str
    spec: Spec
    renewed: bool = False


def render(name: str, template: str, template_text: str, *, owner: str, expires: dt.datetime, sets: list[Setting],
           runner: list[str], previous: str | None = None) -> Draft:
    """The environment's stack file from the template's, validated as a whole (SpecError lists every problem).

    ``previous``: the environment's stored file when it exists already (a pull request updated): its Pulumi
    encryption salt and secret config are kept, so the stack stays readable; the rest is made afresh.
    """
    doc = yaml.safe_load(template_text) or {}
    raw = doc.get("config") or {}
    config: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    for key, value in raw.items():
        ns, _, sub = str(key).partition(":")
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue  # encrypted with the template's salt: unreadable in another stack
        if ns == NAMESPACE:
            config[sub] = value
        else:
            plain[key] = value
    config["production"] = False
    config["ephemeral"] = {"template": template, "owner": owner, "expires": expires.isoformat()}
    if isinstance(config.get("backups"), dict) and config["backups"].get("enabled"):
        config["backups"] = {**config["backups"], "path": f"/environments/{name}"}
    for fname in ("admin_cidrs", "client_cidrs"):
        have = list(config.get(fname) or [])
        config[fname] = have + [c for c in runner if not _covered(c, have)]
    for s in sets:
        check_key(s, config)
    for s in sets:
        _apply(config, s)
    header = {k: v for k, v in yaml.safe_load(previous).items() if k in STACK_OWN_KEYS} if previous else {}
    kept = {k: v for k, v in (yaml.safe_load(previous).get("config") or {}).items()
            if isinstance(v, dict) and set(v) == {"secure"}} if previous else {}
    out = {**header, "config": {**plain, **{f"{NAMESPACE}:{k}": v for k, v in config.items()}, **kept}}
    text = (f"# environment {name}: made by 'pgfleet env create {name} --like {template}'; "
            "kept in the environment store, not in git\n" + yaml.safe_dump(out, sort_keys=False, width=10_000))
    spec = spec_mod.parse({**spec_mod.config_from_yaml(text, name), "environment": name}, f"environment {name}")
    return Draft(name, text, spec, renewed=previous is not None)


def _covered(cidr: str, ranges: list[str]) -> bool:
    net = ipaddress.ip_network(cidr)
    for r in ranges:
        try:
            other = ipaddress.ip_network(r, strict=False)
        except ValueError:
            continue
        if net.version == other.version and net.subnet_of(other):  # type: ignore[arg-type]
            return True
    return False


def template_of(text: str, source: str) -> str | None:
    eph = spec_mod.config_from_yaml(text, source).get("ephemeral")
    return eph.get("template") if isinstance(eph, dict) else None


def create(name: str, like: str, *, ttl: str = DEFAULT_TTL, sets: list[str] = (), owner: str | None = None,  # type: ignore[assignment]
           runner: list[str] | None = None, store: EnvironmentStore | None = None,
           now: dt.datetime | None = None) -> Draft:
    """Check everything, then write ``stacks/Pulumi.NAME.yaml`` and put it in the store (in that order, nothing before)."""
    stacks = spec_mod.stacks_dir()
    check_name(name, stacks)
    duration = parse_ttl(ttl)
    settings = [parse_set(s) for s in sets]
    ranges = runner_cidrs(runner)
    owner_label = label_value(owner) if owner else default_owner()
    if like == name:
        raise EnvironmentError(f"an environment cannot be made like itself ({name!r}): name a template, e.g. --like staging")
    try:
        template_path = spec_mod.stack_path(like)
    except PgfleetError as e:
        raise EnvironmentError(f"unknown template --like {like!r}: {e}") from None
    template_text = template_path.read_text()
    tspec = spec_mod.load(str(template_path))
    if tspec.provider == "lab":
        raise EnvironmentError(f"--like {like!r}: lab stacks run on this machine, one at a time; environments are cloud "
                               "stacks (use --like staging or dev)")
    if tspec.ephemeral is not None:
        raise EnvironmentError(f"--like {like!r} is itself an environment: make it like its template "
                               f"{tspec.ephemeral.template!r}")
    st = store or envstore.open_store()
    previous = st.get(name) if st.has(name) else None
    if previous is not None and template_of(previous, name) != like:
        raise EnvironmentError(f"environment {name!r} exists already, made like {template_of(previous, name)!r}, not "
                               f"{like!r}: destroy it first (pgfleet env destroy {name} --yes) or pick another name")
    expires = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0) + duration
    draft = render(name, like, template_text, owner=owner_label, expires=expires, sets=settings, runner=ranges,
                   previous=previous)
    stacks.mkdir(parents=True, exist_ok=True)
    (stacks / envstore.file_name(name)).write_text(draft.text)
    st.put(name, draft.text)
    return draft


# --------------------------------------------------------------------------- reading the store


@dataclass(frozen=True)
class Environment:
    name: str
    template: str | None
    owner: str | None
    expires: dt.datetime | None
    production: bool
    problem: str | None = None  # the stored file does not validate

    def expired(self, now: dt.datetime) -> bool:
        return self.expires is not None and self.expires <= now


def read(name: str, text: str) -> Environment:
    try:
        s = spec_mod.parse({**spec_mod.config_from_yaml(text, name), "environment": name}, f"stored environment {name}")
    except SpecError as e:
        # unreadable or invalid: production unless it says otherwise, and no expiry, so gc never touches it
        try:
            raw = spec_mod.config_from_yaml(text, name)
        except SpecError:
            raw = {}
        eph = raw.get("ephemeral") if isinstance(raw.get("ephemeral"), dict) else {}
        return Environment(name, eph.get("template"), eph.get("owner"), None, raw.get("production") is not False,
                           problem=f"invalid stack file: {e}")
    e = s.ephemeral
    return Environment(name, e.template if e else None, e.owner if e else None, e.expires if e else None, s.production)


def environments(store: EnvironmentStore) -> list[Environment]:
    return [read(n, store.get(n)) for n in store.names()]


def pulumi_states(workspace: Workspace | None = None) -> dict[str, str] | str:
    """Each Pulumi stack's state in words, or why Pulumi could not be asked."""
    try:
        counts = (workspace or Workspace(echo=lambda _line: None)).resource_counts()
    except PulumiError as e:
        return str(e)
    return {n: ("no resources" if not c else f"{c} resources") if c is not None else "created" for n, c in counts.items()}


# --------------------------------------------------------------------------- destroying


def fetch(name: str, store: EnvironmentStore | None = None) -> Path:
    """The environment's stack file in this checkout, from the store when the checkout lacks it."""
    path = spec_mod.stacks_dir() / envstore.file_name(name)
    if not path.is_file():
        st = store or envstore.open_store()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(st.get(name))
    return path


def publish(name: str, store: EnvironmentStore | None = None) -> bool:
    """Put the local stack file back into the store if the store keeps ``name`` (Pulumi added its salt); True when done."""
    path = spec_mod.stacks_dir() / envstore.file_name(name)
    st = store or envstore.open_store()
    if not path.is_file() or not st.has(name):
        return False
    st.put(name, path.read_text())
    return True


def destroy(name: str, *, yes: bool, store: EnvironmentStore | None = None, workspace: Workspace | None = None,
            missing_ok: bool = False) -> bool:
    """``pulumi destroy`` and remove the stack, then forget the environment (store and checkout); False when
    ``missing_ok`` and there was no such environment. A stack Pulumi never created (``up`` failed before it) has
    nothing to destroy: the environment is forgotten all the same, so the janitor does not trip over it forever."""
    st = store or envstore.open_store()
    if missing_ok and not st.has(name):
        return False
    env = read(name, st.get(name))  # StoreError names the environments that exist
    if env.production:
        raise EnvironmentError(f"environment {name!r} is marked production: env destroy never touches it")
    if not yes:
        raise EnvironmentError(f"'pgfleet env destroy {name}' destroys its servers and data (backups under "
                               f"/environments/{name} stay): run it again with --yes")
    path = fetch(name, st)
    try:
        (workspace or Workspace()).destroy(name, path)
    except StackMissing as e:
        # forgotten only if Pulumi never made it: `up` stores the stack's salt back once Pulumi has touched it, so a
        # stored salt with no stack means this Pulumi backend is not the environment's (its servers may be running)
        if any("encryptionsalt" in (yaml.safe_load(text) or {}) for text in (st.get(name), path.read_text())):
            raise EnvironmentError(f"{e}, yet {name!r} was brought up (its stored stack has Pulumi's salt): is "
                                   "PULUMI_BACKEND_URL the backend it was made with? Nothing was deleted") from None
    st.delete(name)
    path.unlink(missing_ok=True)
    return True


@dataclass(frozen=True)
class GcAction:
    name: str
    action: str  # "destroyed", "would destroy", "kept", "skipped", "failed"
    why: str


def gc(*, dry_run: bool, store: EnvironmentStore | None = None, workspace: Workspace | None = None,
       now: dt.datetime | None = None) -> list[GcAction]:
    """Destroy every expired environment; never one marked production, never one without an expiry."""
    st = store or envstore.open_store()
    now = now or dt.datetime.now(dt.timezone.utc)
    out = []
    for env in environments(st):
        if env.problem:
            out.append(GcAction(env.name, "skipped", env.problem))
        elif env.production:
            out.append(GcAction(env.name, "skipped", "marked production: gc never touches it"))
        elif env.expires is None:
            out.append(GcAction(env.name, "skipped", "no expiry (not made by env create)"))
        elif not env.expired(now):
            out.append(GcAction(env.name, "kept", f"expires {env.expires.isoformat()}"))
        elif dry_run:
            out.append(GcAction(env.name, "would destroy", f"expired {env.expires.isoformat()}"))
        else:
            try:
                destroy(env.name, yes=True, store=st, workspace=workspace)
                out.append(GcAction(env.name, "destroyed", f"expired {env.expires.isoformat()}"))
            except PgfleetError as e:
                out.append(GcAction(env.name, "failed", str(e)))
    return out


__all__ = ["Draft", "Environment", "EnvironmentError", "GcAction", "create", "destroy", "environments", "gc",
           "parse_ttl", "publish", "fetch"]
