"""The environment spec: one validated model per ``stacks/Pulumi.<env>.yaml``.

The stack file is a Pulumi stack config file; pgfleet's settings live under the
``pgfleet:`` namespace (``pgfleet:provider``, ``pgfleet:clusters`` …). Schema
problems (types, ranges, unknown keys) are found by pydantic; cross-field
problems by :func:`_semantic_problems`. Both are reported together, each
naming the field, the bad value and the fix, before anything is touched.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pgfleet import ROOT, contract
from pgfleet import sizing
from pgfleet.errors import Problem, SpecError, StackNotFound
from pgfleet.server_types import DEBIAN13_EXTENSIONS, DEPRECATED, LOCATIONS, SERVER_TYPES
from pgfleet.schema import (  # noqa: F401  (the models are part of this module's interface)
    NAMESPACE, LAB_SUBNET, _NAME, _IDENT, _Model, DatabaseSpec, StaticHostSpec, ClusterSpec, PgBouncerSpec, EtcdSpec, BackupSpec, LoadBalancerSpec, FailoverSpec, NetworkSpec, LabSpec, Spec,
    SmtpSpec, ReceiversSpec, VectorIndexWatchSpec, MonitoringSpec,
)


# --------------------------------------------------------------------------- loading


def stacks_dir() -> Path:
    return Path(os.environ.get("PGFLEET_STACKS_DIR", ROOT / "stacks"))


def stack_path(stack: str) -> Path:
    """``lab`` -> ``stacks/Pulumi.lab.yaml``; a path to a file is taken as it is."""
    p = Path(stack)
    if p.suffix in (".yaml", ".yml") or os.sep in stack:
        if not p.is_file():
            raise StackNotFound(f"no stack file at {p}")
        return p
    p = stacks_dir() / f"Pulumi.{stack}.yaml"
    if not p.is_file():
        known = sorted(f.name[len("Pulumi.") : -len(".yaml")] for f in stacks_dir().glob("Pulumi.*.yaml"))
        raise StackNotFound(f"no stack {stack!r}: {p} does not exist (known stacks: {', '.join(known) or 'none'})")
    return p


def environment_of(path: Path) -> str:
    m = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", path.name)
    return m.group(1) if m else path.stem


def stack_name(stack: str) -> str:
    """The stack's name from a command-line STACK: a name as given, or a stack file's environment."""
    p = Path(stack)
    return environment_of(p) if p.suffix in (".yaml", ".yml") else stack


def config_from_yaml(text: str, source: str) -> dict[str, Any]:
    """The ``pgfleet:`` keys of a Pulumi stack file, namespace stripped."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise SpecError(source, [Problem("(file)", "", f"not valid YAML: {e}", "fix the YAML syntax")]) from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise SpecError(source, [Problem("config", None, "no 'config:' mapping", "put pgfleet settings under config: as pgfleet:KEY")])
    out: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        # `pulumi config set --secret` values ({secure: …}) are for the Pulumi
        # program only (e.g. S3 keys): encrypted, and never part of the spec.
        if ns == NAMESPACE and name and not (isinstance(value, dict) and set(value) == {"secure"}):
            out[name] = value
    return out


def load(stack: str) -> Spec:
    """Load and fully validate a stack; raises :class:`SpecError` listing every problem."""
    path = stack_path(stack)
    data = config_from_yaml(path.read_text(), str(path))
    data.setdefault("environment", environment_of(path))
    return parse(data, str(path))


def parse(data: dict[str, Any], source: str = "<spec>") -> Spec:
    """Validate ``data``; a schema error in one field must not hide the cross-field problems of others."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        structural = [_problem_from_pydantic(err, data) for err in e.errors()]
        best, pruned = _best_effort(data, e)
        semantic = _semantic_problems(best) if best is not None else []
        taken = [p.field for p in structural] + pruned
        raise SpecError(source, structural + [p for p in semantic if not any(_related(p.field, t) for t in taken)]) from None
    problems = _semantic_problems(spec)
    if problems:
        raise SpecError(source, problems)
    if spec.provider != "lab" and spec.lab.client_host:
        # the lab section means nothing outside the lab: no client host is planned for other stacks
        spec = spec.model_copy(update={"lab": LabSpec(client_host=False)})
    return spec


_DROP = object()  # marks a value to remove; marking (not deleting) keeps the other errors' paths valid
#: Stands in for a required name that breaks its pattern, so one bad name does not empty its list.
_PLACEHOLDER = "placeholder"


def _best_effort(data: dict[str, Any], error: ValidationError, rounds: int = 5) -> tuple[Spec | None, list[str]]:
    """A valid spec with the offending values removed (defaults apply), and the fields removed.

    Removing a required value only moves the error up (to its mapping or list
    item), so this repeats a few times; ``None`` when even the top level fails.
    """
    work: Any = copy.deepcopy(data)
    pruned: list[str] = []
    for _ in range(rounds):
        for err in error.errors():
            path = _present(work, tuple(p for p in err["loc"] if not str(p).startswith("function-")))
            if not path:
                return None, pruned
            parent = _at(work, path[:-1])
            if parent is _DROP or _at(work, path) is _DROP:
                continue  # inside something already removed
            if err["type"] == "string_pattern_mismatch" and len(path) == len(err["loc"]):
                parent[path[-1]] = _PLACEHOLDER
            else:
                parent[path[-1]] = _DROP
                # a removed list item shifts its siblings: the whole list is suspect
                pruned.append(f"{NAMESPACE}:{_loc(path[:-1] if isinstance(parent, list) else path)}")
        work = _without_dropped(work)
        try:
            return Spec.model_validate(work), pruned
        except ValidationError as e:
            error = e
    return None, pruned


def _present(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The longest prefix of ``loc`` that exists in ``data``: the bad value, or the mapping lacking a key."""
    path: tuple[Any, ...] = ()
    for part in loc:
        if (isinstance(data, dict) and part in data) or (isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)):
            data, path = data[part], (*path, part)
        else:
            break
    return path


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        if data is _DROP:
            return _DROP
        data = data[part]
    return data


def _without_dropped(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_dropped(v) for k, v in data.items() if v is not _DROP}
    if isinstance(data, list):
        return [_without_dropped(v) for v in data if v is not _DROP]
    return data


def _related(a: str, b: str) -> bool:
    """Same field, or one inside the other: a problem on ``b`` is a follow-on of a problem on ``a``."""
    short, long = sorted((a, b), key=len)
    return long == short or long.startswith((short + ".", short + "["))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _problem_from_pydantic(err: Any, data: dict[str, Any]) -> Problem:
    field = _loc(tuple(p for p in err["loc"] if not str(p).startswith("function-")))
    msg = str(err["msg"]).removeprefix("Value error, ")
    message, _, fix = msg.partition(" — Fix: ")
    if not fix:
        fix = {
            "extra_forbidden": "remove it, or check its spelling against the spec",
            "missing": "add it",
            "literal_error": "use one of the values named",
            "string_pattern_mismatch": "use lowercase letters, digits and '-' (names) or '_' (SQL identifiers)",
        }.get(err["type"], "correct the value")
    value = err.get("input")
    if err["type"] == "missing":
        value = None
    return Problem(f"pgfleet:{field}", value, message, fix)


def _cidr(value: str, field: str, problems: list[Problem]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        problems.append(Problem(field, value, f"not a valid network ({e})", "write it as ADDRESS/PREFIX with host bits zero, e.g. 203.0.113.0/24"))
        return None


def _semantic_problems(spec: Spec) -> list[Problem]:
    """Cross-field checks: everything a schema cannot say."""

    p: list[Problem] = []
    ns = "pgfleet:"

    if spec.location not in LOCATIONS:
        p.append(Problem(f"{ns}location", spec.location, "unknown Hetzner location", f"use one of {', '.join(LOCATIONS)}"))
    bad_type = False
    for i, c in enumerate(spec.clusters):
        if c.server_type in DEPRECATED:
            p.append(Problem(f"{ns}clusters[{i}].server_type", c.server_type, "deprecated by Hetzner in 2025, it can no longer be ordered",
                             f"use {DEPRECATED[c.server_type]!r}, its same-size successor"))
        elif c.server_type not in SERVER_TYPES:
            p.append(Problem(f"{ns}clusters[{i}].server_type", c.server_type, "unknown Hetzner server type", f"use one of {', '.join(SERVER_TYPES)}"))
        bad_type = bad_type or c.server_type not in SERVER_TYPES

    # networks
    ip_range = _cidr(spec.network.ip_range, f"{ns}network.ip_range", p)
    subnet = _cidr(spec.network.subnet, f"{ns}network.subnet", p)
    if ip_range is not None and subnet is not None and not subnet.subnet_of(ip_range):  # type: ignore[arg-type]
        p.append(Problem(f"{ns}network.subnet", spec.network.subnet, f"not inside network.ip_range {spec.network.ip_range}", "pick a subnet within ip_range"))
    for fname in ("admin_cidrs", "client_cidrs"):
        nets = []
        for i, c in enumerate(getattr(spec, fname)):
            n = _cidr(c, f"{ns}{fname}[{i}]", p)
            if n is not None:
                for j, other in nets:
                    if n.version == other.version and n.overlaps(other):
                        p.append(Problem(f"{ns}{fname}[{i}]", c, f"overlaps {fname}[{j}] {getattr(spec, fname)[j]}", "merge them into one range or remove the duplicate"))
                nets.append((i, n))
                if spec.production and n.prefixlen == 0:
                    p.append(Problem(f"{ns}{fname}[{i}]", c, "opens the cluster to the whole internet on a production stack", "list your office/VPN/CI ranges instead"))
    if spec.production and not spec.admin_cidrs and spec.provider != "lab":
        p.append(Problem(f"{ns}admin_cidrs", [], "a production stack needs the ranges allowed to SSH", "add your admin ranges, e.g. [203.0.113.10/32]"))

    if spec.provider == "lab" and spec.network.subnet != LAB_SUBNET:
        p.append(Problem(f"{ns}network.subnet", spec.network.subnet, "lab hosts live on the lab network only", f"set network: {{ip_range: {LAB_SUBNET}, subnet: {LAB_SUBNET}}}"))

    # clusters
    names = [c.name for c in spec.clusters]
    for i, c in enumerate(spec.clusters):
        f = f"{ns}clusters[{i}]"
        if names.count(c.name) > 1:
            p.append(Problem(f"{f}.name", c.name, "cluster names must be unique", "rename one of them"))
        if spec.provider == "static":
            if not c.hosts:
                p.append(Problem(f"{f}.hosts", [], "provider static needs the cluster's existing hosts", "list them as {name, public_ip, private_ip}"))
            elif c.nodes != len(c.hosts):
                p.append(Problem(f"{f}.nodes", c.nodes, f"does not match the {len(c.hosts)} hosts listed", f"set nodes: {len(c.hosts)}"))
        elif c.hosts:
            p.append(Problem(f"{f}.hosts", [h.name for h in c.hosts], f"hosts are only for provider static (this stack is {spec.provider})", "remove hosts, or set provider: static"))
        if c.nodes < 1:
            p.append(Problem(f"{f}.nodes", c.nodes, "a cluster needs at least one node", "set nodes: 1 (dev) or 3 (HA)"))
        if c.postgres_major not in contract.SUPPORTED_MAJORS:
            supported = " or ".join(map(str, contract.SUPPORTED_MAJORS))
            p.append(Problem(f"{f}.postgres_major", c.postgres_major, f"Debian 13 ships PostgreSQL {supported} only",
                             f"set postgres_major: {contract.POSTGRES_MAJOR}"))
        if c.synchronous and c.nodes < 2:
            p.append(Problem(f"{f}.synchronous", True, "synchronous replication needs a standby, and this cluster has 1 node", "set synchronous: false, or nodes: 3"))
        if spec.production and c.nodes < 3:
            p.append(Problem(f"{f}.nodes", c.nodes, "a production cluster needs 3 nodes to survive losing one", "set nodes: 3"))
        dbn = [d.name for d in c.databases]
        for j, d in enumerate(c.databases):
            if dbn.count(d.name) > 1:
                p.append(Problem(f"{f}.databases[{j}].name", d.name, "database names must be unique", "rename or remove the duplicate"))
            if d.name in ("postgres", "template0", "template1"):
                p.append(Problem(f"{f}.databases[{j}].name", d.name, "is a PostgreSQL system database", "pick another name"))
            if d.vector.model_dump(exclude_none=True) and "vector" not in d.extensions:
                p.append(Problem(f"{f}.databases[{j}].vector", d.vector.model_dump(exclude_none=True),
                                 "pgvector settings for a database without the vector extension", "add vector to its extensions, or remove these"))
            for k, ext in enumerate(d.extensions):
                if ext not in DEBIAN13_EXTENSIONS:
                    p.append(Problem(f"{f}.databases[{j}].extensions[{k}]", ext, f"not shipped by Debian 13's PostgreSQL {c.postgres_major} packages", f"use one of {', '.join(sorted(DEBIAN13_EXTENSIONS))}"))
        # pools must fit under max_connections
        if c.nodes >= 1 and not bad_type and not any(x.field.startswith(f) for x in p):
            fit = sizing.pool_fit(spec, c)
            if fit.needed > fit.available:
                p.append(Problem(
                    f"{ns}pgbouncer.default_pool_size", spec.pgbouncer.default_pool_size,
                    f"cluster {c.name!r} would need {fit.needed} server connections "
                    f"({len(c.databases)} database(s) × (pool {fit.pool_size} + reserve {spec.pgbouncer.reserve_pool_size})) "
                    f"but max_connections {fit.max_connections} leaves {fit.available} after {fit.reserved} reserved",
                    f"lower default_pool_size to at most {max(1, fit.available // max(1, len(c.databases)) - spec.pgbouncer.reserve_pool_size)}, or raise clusters[{i}].parameters.max_connections",
                ))

    # etcd
    ha = any(c.nodes > 1 for c in spec.clusters)
    m = spec.etcd.members
    if ha and (m < 3 or m % 2 == 0):
        p.append(Problem(f"{ns}etcd.members", m, "an HA cluster needs an odd etcd member count of at least 3 (an even count adds no fault tolerance)", "set members: 3 (or 5)"))
    if not ha and m not in (1, 3, 5):
        p.append(Problem(f"{ns}etcd.members", m, "etcd member count must be odd", "set members: 1"))
    if spec.etcd.placement == "colocated" and m > spec.clusters[0].nodes:
        p.append(Problem(f"{ns}etcd.members", m, f"colocated etcd runs on the first cluster's nodes, and it has only {spec.clusters[0].nodes}", f"set members: {spec.clusters[0].nodes if spec.clusters[0].nodes % 2 else 1}, or placement: dedicated"))
    if spec.etcd.placement == "dedicated" and spec.etcd.server_type not in SERVER_TYPES:
        fix = f"use {DEPRECATED[spec.etcd.server_type]!r}" if spec.etcd.server_type in DEPRECATED else "use e.g. cx23"
        p.append(Problem(f"{ns}etcd.server_type", spec.etcd.server_type, "unknown or deprecated Hetzner server type", fix))

    # failover timing (Patroni's own limits)
    t = sizing.patroni_timing(spec)
    if t.ttl < 20:
        p.append(Problem(f"{ns}failover.ttl", t.ttl, "Patroni refuses ttl below 20", "set ttl: 20 or more"))
    if t.loop_wait < 1:
        p.append(Problem(f"{ns}failover.loop_wait", t.loop_wait, "Patroni refuses loop_wait below 1", "set loop_wait: 1 or more"))
    if t.retry_timeout < 3:
        p.append(Problem(f"{ns}failover.retry_timeout", t.retry_timeout, "Patroni refuses retry_timeout below 3", "set retry_timeout: 3 or more"))
    if t.loop_wait + 2 * t.retry_timeout > t.ttl:
        p.append(Problem(f"{ns}failover", {"ttl": t.ttl, "loop_wait": t.loop_wait, "retry_timeout": t.retry_timeout},
                         "Patroni needs loop_wait + 2 × retry_timeout ≤ ttl", "lower loop_wait/retry_timeout or raise ttl"))

    # backups
    if spec.backups.enabled:
        for fname in ("endpoint", "bucket"):
            if not getattr(spec.backups, fname):
                p.append(Problem(f"{ns}backups.{fname}", None, "backups are enabled but this is not set", f"set backups.{fname} (e.g. endpoint: fsn1.your-objectstorage.com)"))

    # load balancer
    if spec.load_balancer.enabled and spec.provider != "hcloud":
        p.append(Problem(f"{ns}load_balancer.enabled", True, f"a Hetzner load balancer needs provider hcloud (this stack is {spec.provider})", "set load_balancer.enabled: false"))
    if spec.monitoring.enabled:
        p += _monitoring_problems(spec)
    p += _name_problems(spec)
    return p


#: RFC 1123 label: what Hetzner accepts as a server name and every host takes as its hostname.
RFC1123_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _name_problems(spec: Spec) -> list[Problem]:
    """Names derived from the environment and cluster names (``pgfleet-<env>-<cluster>``, ``<env>-<cluster>-<n>``)
    must each be an RFC 1123 label of at most 63 characters, or Hetzner refuses the resource half-way through ``up``."""
    too_long = [n for n in spec.resource_names() if not RFC1123_LABEL.fullmatch(n)]
    if not too_long:
        return []
    longest = max(spec.resource_names(), key=len)
    return [Problem("pgfleet:environment", spec.environment,
                    f"derived resource names are not RFC 1123 labels of at most 63 characters: {', '.join(too_long)}",
                    f"shorten the environment or cluster names by {max(0, len(longest) - 63)} or more characters")]


def _monitoring_problems(spec: Spec) -> list[Problem]:
    """The monitoring section against the rest: watched indexes exist, receivers reachable, thresholds computable."""
    p: list[Problem] = []
    f = "pgfleet:monitoring"
    m = spec.monitoring
    if spec.backups.enabled:
        try:
            sizing.backup_ages(spec)
        except ValueError as e:
            p.append(Problem("pgfleet:backups", {"full_schedule": spec.backups.full_schedule, "diff_schedule": spec.backups.diff_schedule},
                             f"the backup-age alerts cannot be computed: {e}", "write the schedules as 'DAYS *-*-* HH:MM:SS' (e.g. 'Sun *-*-* 01:00:00')"))
    if m.server_type not in SERVER_TYPES:
        fix = f"use {DEPRECATED[m.server_type]!r}" if m.server_type in DEPRECATED else "use e.g. cx23"
        p.append(Problem(f"{f}.server_type", m.server_type, "unknown or deprecated Hetzner server type", fix))
    if spec.provider == "static" and m.host is None:
        p.append(Problem(f"{f}.host", None, "provider static needs the existing machine that runs Prometheus and Alertmanager",
                         "set host: {name, public_ip, private_ip}, or enabled: false"))
    if spec.provider != "static" and m.host is not None:
        p.append(Problem(f"{f}.host", m.host.name, f"a listed monitoring host is only for provider static (this stack is {spec.provider})",
                         "remove host: pgfleet creates the monitoring host"))
    clusters = {c.name: (i, c) for i, c in enumerate(spec.clusters)}
    seen: set[tuple[str, str, str, str]] = set()
    for i, w in enumerate(m.vector_indexes):
        wf = f"{f}.vector_indexes[{i}]"
        if (w.cluster or spec.clusters[0].name) not in clusters:
            p.append(Problem(f"{wf}.cluster", w.cluster, "no cluster of that name", f"use one of {', '.join(clusters)}"))
            continue
        ci, c = clusters[spec.watched_cluster(w).name]
        dbs = {d.name: j for j, d in enumerate(c.databases)}
        if w.database not in dbs:
            p.append(Problem(f"{wf}.database", w.database, f"cluster {c.name!r} has no such database", f"use one of {', '.join(dbs)}"))
        elif "vector" not in c.databases[dbs[w.database]].extensions:
            p.append(Problem(f"{wf}.database", w.database, "the database does not have the vector extension",
                             f"add vector to pgfleet:clusters[{ci}].databases[{dbs[w.database]}].extensions"))
        key = (c.name, w.database, w.table, w.column)
        if key in seen:
            p.append(Problem(f"{wf}.column", w.column, "this index is watched twice", "remove the duplicate"))
        seen.add(key)
    email = m.receivers.email
    if email is not None and (email.username is None) != (email.password_secret is None):
        p.append(Problem(f"{f}.receivers.email", {"username": email.username, "password_secret": email.password_secret},
                         "SMTP authentication needs both a username and the name of the secret holding its password",
                         "set both (pulumi config set --secret pgfleet:smtp_password …; password_secret: smtp_password), or neither"))
    if spec.provider == "lab":
        # lab traffic goes to the lab's hosts and bridge only (DESIGN.md): receivers live on the bridge
        lab = ipaddress.ip_network(LAB_SUBNET)
        urls = [(f"{f}.receivers.webhooks[{i}]", u) for i, u in enumerate(m.receivers.webhooks)]
        urls += [(f"{f}.remote_write_url", m.remote_write_url)] if m.remote_write_url else []
        urls += [(f"{f}.receivers.email.smarthost", "smtp://" + email.smarthost)] if email else []
        for field, url in urls:
            host = re.sub(r"^\w+://", "", url).split("/")[0].rsplit(":", 1)[0]
            try:
                inside = ipaddress.ip_address(host) in lab
            except ValueError:
                inside = False
            if not inside:
                p.append(Problem(field, url, f"a lab stack sends nothing off the lab network {LAB_SUBNET}", "use an address on the lab's bridge, e.g. 198.18.0.1"))
    return p
