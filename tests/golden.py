"""Golden snapshots: what pgfleet produces for each shipped stack, as one stable JSON document.

A refactor must not change what reaches hosts or Hetzner unless it means to.
The snapshot of a stack holds

* ``hosts``: every host's data as the roles see it, and every file the roles
  render for it (keyed by the function or template that produces it), with the
  inputs a deploy would otherwise take from the host or the stack's state
  fixed: deterministic secrets (``fixed_secrets`` in tests/deploy_fixtures.py), a hard
  open-files limit of :data:`HARD_NOFILE`, and the container kind the stack's
  hosts really report (lab: systemd-nspawn, Hetzner: none);
* ``pulumi`` (not for the lab, which the program refuses): every resource the
  real Pulumi program registers under the mocks of tests/pulumi_harness.py,
  by URN, with its inputs; ids in inputs are replaced by the resource they
  name, so the snapshot does not depend on the order of registration.

Left out because they are time-dependent or random by design: host and
pgBackRest client *certificates* (validity starts "now", random serial;
their names are in the host data as ``tls_dns_names``/``tls_ip_addresses``).
Left out because it is an input, not an output: the CA certificate the tls
role copies verbatim from the stack's secrets (the derived host keys are in).
Left out because they are inline in a role's ``apply()`` rather than produced
by a function: the apt proxy and locale one-liners, and the converge inputs
``etcd-auth.json`` (passwords only) and ``patroni-dynamic.json`` (the host
data's ``patroni_dynamic`` as JSON).

``PGFLEET_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` rewrites the files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from deploy_fixtures import fixed_secrets, host_datas
from pgfleet import sizing
from pgfleet import tls as tls_mod
from pgfleet.inventory import ROLE_ETCD, ROLE_MONITOR, ROLE_POSTGRES
from pgfleet.secrets import Secrets
from pulumi_harness import Run, issued_id, run_program
from roles import databases, etcd, exporters, firewall, haproxy, monitor, node, patroni, pgbackrest, pgbouncer
from roles._common import render

STACKS = ("dev", "staging", "prod", "lab")
GOLDEN_DIR = Path(__file__).parent / "golden"
#: The hosts' hard open-files limit (``ulimit -Hn``), as the lab's hosts have it.
HARD_NOFILE = 20000
#: What ``systemd-detect-virt --container`` reports on the stack's hosts (None: not a container).
CONTAINER = {"lab": "systemd-nspawn"}
DIFF_LINES = 200
REGENERATE = "PGFLEET_UPDATE_GOLDEN=1 pytest tests/test_golden.py"


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def host_files(name: str, d: dict[str, Any], sec: Secrets, container: str | None) -> dict[str, str]:
    """Every file the roles write for host ``name`` (data ``d``), in deploy.py's order and under its conditions.

    Where a role renders a template inline in ``apply()``, the same call is made
    here with the same arguments; everything else goes through the roles' own functions.
    """
    roles = d["pgfleet_roles"]
    nofile = sizing.service_nofile(HARD_NOFILE)
    out: dict[str, str] = {}

    # base
    out["base/createcluster.conf.j2"] = render("base/createcluster.conf.j2")
    out["base/limits.conf.j2"] = render("base/limits.conf.j2", nofile=nofile)
    sysctls = {**d["base_network_sysctls"], **({} if container else d["base_kernel_sysctls"])}
    out["base/sysctl.conf.j2"] = render("base/sysctl.conf.j2", sysctls=sysctls)
    if not container:
        out["base/thp.service.j2"] = render("base/thp.service.j2")
        out["base/nvme-scheduler.rules.j2"] = render("base/nvme-scheduler.rules.j2")
    # firewall, tls
    out["roles.firewall.ruleset"] = firewall.ruleset(d)
    out["pgfleet.tls.host_key"] = tls_mod.key_pem(tls_mod.host_key(sec.ca_key_pem, name))

    # node programs: the package's modules by digest (code, not configuration), launchers and contract file in full
    if ROLE_ETCD in roles or ROLE_POSTGRES in roles or ROLE_MONITOR in roles:
        for filename, text in node.package_files().items():
            out[f"node {filename}"] = _digest(text)
        for program in node.node.PROGRAMS:
            out[f"roles.node.launcher {program}"] = node.launcher(program)
        out["roles.node.node_config"] = node.node_config()

    if ROLE_ETCD in roles:
        out["etcd/etcd.env.j2"] = render("etcd/etcd.env.j2", **d)
        out["etcd/override.conf.j2"] = render("etcd/override.conf.j2", nofile=nofile, tls_group=d["tls_group"])
        if ROLE_POSTGRES in roles:
            out["roles.etcd.leader_away_config"] = etcd.leader_away_config(d, sec.password("etcd_root"))
            out["etcd/leader-away.service.j2"] = etcd.leader_away_unit()
    # exporters (every host but the lab's client), then the monitoring host
    if d["exporters"]:
        out["roles.exporters.web_config"] = exporters.web_config(d)
        out["roles.exporters.override"] = exporters.override(d)
        for exporter in d["exporters"]:
            for unit, process in exporters.instances(d, exporter):
                out[f"roles.exporters.default_file {unit}"] = exporters.default_file(d, exporter, sec.password("monitor"), process)
        if "pgbouncer" in d["exporters"]:
            out["roles.exporters.pgbouncer_exporter_unit"] = exporters.pgbouncer_exporter_unit()
        out["roles.exporters.node_metrics_config"] = exporters.node_metrics_config(d)
        for unit, text in exporters.node_metrics_units().items():
            out[f"roles.exporters.node_metrics_units {unit}"] = text
    if ROLE_MONITOR in roles:
        md = {**monitor.DEFAULTS, **d}
        out["pgfleet.tls.host_key monitor copy"] = tls_mod.key_pem(tls_mod.host_key(sec.ca_key_pem, name))
        out["roles.monitor.web_config"] = monitor.web_config()
        out["monitor_rules"] = d["monitor_rules"]
        out["monitor_prometheus_config"] = d["monitor_prometheus_config"]
        out["roles.monitor.prometheus_default"] = monitor.prometheus_default(md)
        out["monitor/prometheus-override.conf.j2"] = monitor.prometheus_override()
        out["roles.monitor.alertmanager_yaml"] = monitor.alertmanager_yaml(d["monitor_alertmanager"], d["monitor_smtp_password_secret"], sec)
        out["roles.monitor.alertmanager_default"] = monitor.alertmanager_default(md)
        for filename, text in monitor.probe_files().items():
            out[f"probe {filename}"] = _digest(text)
        out["roles.monitor.probe_launcher"] = monitor.probe_launcher()
        out["roles.monitor.probe_config"] = monitor.probe_config(d["monitor_probe_watches"], sec)
        out["roles.monitor.probe_unit"] = monitor.probe_unit()
    if ROLE_POSTGRES not in roles:
        return out

    # patroni, databases
    out["roles.patroni.config"] = patroni.config(d, sec, bool(container))
    out["patroni/patroni.service.j2"] = patroni.unit_file(d, HARD_NOFILE)
    out["roles.databases.setup_sql"] = databases.setup_sql(d, sec.passwords)
    # pgbackrest
    if d["pgbackrest_enabled"]:
        out["roles.pgbackrest.config"] = pgbackrest.config(d, sec.password("s3_access_key"), sec.password("s3_secret_key"),
                                                           sec.password("backup_cipher"))
        out["pgfleet.tls.host_key pgbackrest client"] = tls_mod.key_pem(tls_mod.host_key(sec.ca_key_pem, pgbackrest.client_key_name(name)))
        out["roles.pgbackrest.stanza_identity"] = pgbackrest.stanza_identity(d)
        for unit, text in pgbackrest.units(d).items():
            out[f"roles.pgbackrest.units {unit}"] = text
    # pgbouncer, haproxy
    lim = pgbouncer.limits(d, nofile)
    out["roles.pgbouncer.userlist"] = pgbouncer.userlist(sec.password("monitor"))
    for p in pgbouncer.processes(d):
        out[f"roles.pgbouncer.ini {p}"] = pgbouncer.ini(d, lim["pgbouncer_max_client_conn"], p)
    out["roles.pgbouncer.unit"] = pgbouncer.unit(d, min(nofile, lim["pgbouncer_nofile"]))
    out["roles.haproxy.config"] = haproxy.config(d, nofile)
    out["haproxy/override.conf.j2"] = render("haproxy/override.conf.j2", nofile=nofile)
    return out


def hosts_snapshot(stack: str) -> dict[str, Any]:
    """Every host of ``stack``: its data and its files, as lists of lines so a diff shows the line that changed."""
    s, _, datas = host_datas(stack)
    sec = fixed_secrets(s)
    return {name: {"data": d, "files": {k: text.split("\n") for k, text in host_files(name, d, sec, CONTAINER.get(stack)).items()}}
            for name, d in datas.items()}


_ID_KEY = re.compile(r"(Id|Ids|sshKeys)$")


def _refs(value: Any, names: dict[str, str], key: str = "") -> Any:
    """``value`` with every id under an id-like key replaced by the name of the resource it identifies."""
    if isinstance(value, dict):
        return {k: _refs(v, names, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_refs(v, names, key) for v in value]
    if _ID_KEY.search(key) and isinstance(value, (str, float, int)) and not isinstance(value, bool):
        return f"<id of {names[issued_id(value)]}>"
    return value


def pulumi_snapshot(run: Run) -> dict[str, Any]:
    """Every resource the program registered (components too), by URN: type, name and inputs."""
    urns = {rid: urn for urn, rid in run.urn_ids.items()}
    names = {c.id: f"{c.typ}::{c.name}" for c in run.created}
    return {urns[c.id]: {"type": c.typ, "name": c.name, "inputs": _refs(c.inputs, names)} for c in run.created}


def snapshot(stack: str) -> dict[str, Any]:
    """The stack's snapshot as plain JSON data (tuples become lists, as in the golden file)."""
    snap: dict[str, Any] = {"stack": stack, "hosts": hosts_snapshot(stack)}
    if stack != "lab":  # the Pulumi program refuses the lab (its hosts are made by `pgfleet lab up`)
        snap["pulumi"] = pulumi_snapshot(run_program(stack))
    return json.loads(dumps(snap))


def dumps(snap: dict[str, Any]) -> str:
    """The one text form of a snapshot: sorted keys, indent 1, a final newline."""
    return json.dumps(snap, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def golden_path(stack: str) -> Path:
    return GOLDEN_DIR / f"{stack}.json"


def diff(expected: str, snap: dict[str, Any], label: str = "golden") -> list[str]:
    """Unified diff lines from the golden text to ``snap`` (none when they agree)."""
    return list(difflib.unified_diff(expected.splitlines(), dumps(snap).splitlines(),
                                     fromfile=f"{label} (expected)", tofile=f"{label} (now)", lineterm=""))


def changed_paths(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two snapshots differ, as ``hosts » lab-main-1 » files » roles.pgbouncer.ini`` (a diff hunk does not say)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return [p for k in sorted(expected.keys() | actual.keys(), key=str)
                for p in changed_paths(expected.get(k), actual.get(k), f"{path} » {k}" if path else str(k))]
    return [] if expected == actual else [path or "(whole snapshot)"]


def report(stack: str, expected: str, snap: dict[str, Any], lines: list[str]) -> str:
    """What a failing comparison says: where, the first lines of the diff, and how to accept an intended change."""
    where = changed_paths(json.loads(expected), snap)
    shown = lines[:DIFF_LINES]
    more = f"\n... {len(lines) - DIFF_LINES} more diff lines" if len(lines) > DIFF_LINES else ""
    return (f"stack {stack!r} differs from tests/golden/{golden_path(stack).name} at:\n"
            + "".join(f"  {p}\n" for p in where[:50]) + (f"  ... {len(where) - 50} more\n" if len(where) > 50 else "")
            + "\n" + "\n".join(shown) + more
            + f"\n\nIf this change is intended, regenerate the golden files with\n    {REGENERATE}\n"
            "and review and commit the diff of tests/golden/.")

