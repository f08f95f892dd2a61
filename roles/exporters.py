"""Prometheus exporters on every database and etcd host, from Debian's packages, scraped only by the monitoring host.

node (every host), PostgreSQL (role ``monitor`` with ``pg_monitor``, over the
Unix socket), PgBouncer (its stats console) and pgBackRest (``pgbackrest
info``). Each listens on the host's private address with TLS and requires a
client certificate from the cluster CA naming the monitoring host (exporter-
toolkit's web configuration); the firewall admits only the monitoring host to
their ports. HAProxy's, Patroni's and etcd's own metrics are configured by
their roles. pgfleet's node metrics (archive backlog, restorable window,
certificate expiry) reach Prometheus through node_exporter's textfile
collector, written by the ``node-metrics`` node program on a timer.
"""

from __future__ import annotations

import json
import urllib.parse

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from pgfleet import contract
from pgfleet.probe.config import conninfo
from roles._common import ServiceActive, data, put, render, secrets
from roles.node import program

DEFAULTS: dict[str, object] = {"exporters": []}



def _listen(d: dict, port: int) -> str:
    return f"--web.listen-address={d['pgfleet_ip']}:{port}"


def instances(d: dict, name: str) -> list[tuple[str, int]]:
    """(unit, PgBouncer process) of exporter ``name``: one instance per PgBouncer process (the exporter reads one
    console), one Debian unit for the others (process 0)."""
    if name == "pgbouncer":
        return [(contract.pgbouncer_exporter_unit(p), p) for p in contract.pgbouncer_processes(d["pgbouncer_processes"])]
    return [(contract.EXPORTER_UNITS[name], 0)]


def environment(d: dict, name: str, monitor_password: str, process: int = 0) -> tuple[dict[str, str], list[str]]:
    """Environment and arguments of exporter ``name`` (what its Debian unit reads from /etc/default)."""
    web = f"--web.config.file={contract.EXPORTERS_WEB_CONFIG}"
    if name == "node":
        return {}, [_listen(d, contract.NODE_EXPORTER_PORT), web, f"--collector.textfile.directory={contract.NODE_METRICS_DIR}",
                    # node_exporter's default list without overlay: a container's (the lab's) data lives on it
                    "--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$"]
    if name == "postgres":
        dsn = conninfo(host=contract.POSTGRES_SOCKET_DIR, port=contract.POSTGRES_PORT, dbname="postgres", user=contract.PG_MONITOR,
                       password=monitor_password, sslmode="disable")
        return {"DATA_SOURCE_NAME": dsn}, [_listen(d, contract.POSTGRES_EXPORTER_PORT), web]
    if name == "pgbouncer":
        # the process's own console (its socket), and its pid file for pgbouncer_process_* (CPU, memory, files)
        sock = contract.pgbouncer_socket_dir(process)
        q = urllib.parse.urlencode({"host": sock, "port": contract.PGBOUNCER_PORT, "sslmode": "disable"})
        url = f"postgres://{contract.PG_MONITOR}:{urllib.parse.quote(monitor_password, safe='')}@/pgbouncer?{q}"
        return {"PGBOUNCER_EXPORTER_CONNECTION_STRING": url}, [_listen(d, contract.pgbouncer_exporter_port(process)), web,
                                                              f"--pgBouncer.pid-file={sock}/pgbouncer.pid"]
    if name == "pgbackrest":
        return {}, [_listen(d, contract.PGBACKREST_EXPORTER_PORT), web, f"--backrest.config={contract.PGBACKREST_CONFIG}",
                    f"--collect.interval={contract.PGBACKREST_EXPORTER_INTERVAL}"]
    raise ValueError(f"unknown exporter {name!r}")


def node_metrics_config(d: dict) -> str:
    """What the node-metrics program reads (no secrets): which files to write, what to measure."""
    return json.dumps({
        "output": f"{contract.NODE_METRICS_DIR}/pgfleet.prom",
        "certificates": {"host": contract.HOST_CERT, "ca": contract.CA_FILE,
                         **({"pgbackrest-client": contract.PGBACKREST_CLIENT_CERT} if d.get("pgbackrest_enabled") else {})},
        "data_dir": d.get("patroni_data_dir", ""),
        "stanza": d.get("pgbackrest_stanza", "") if d.get("pgbackrest_enabled") else "",
        "postgres_user": contract.POSTGRES_OS_USER,
    }, sort_keys=True, indent=1) + "\n"


def env_quote(value: str) -> str:
    """A value for a systemd EnvironmentFile: double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_text(unit: str, env: dict[str, str], args: list[str]) -> str:
    """/etc/default/<unit>: the environment and the ``ARGS`` Debian's unit passes to the program."""
    return render("exporters/default.j2", unit=unit, env={k: env_quote(v) for k, v in env.items()}, args=env_quote(" ".join(args)))


def web_config(d: dict) -> str:
    return render("exporters/web.yml.j2", cert=contract.HOST_CERT, key=contract.HOST_KEY, ca=contract.CA_FILE,
                  allowed_sans=d["exporters_allowed_sans"])


def default_file(d: dict, name: str, monitor_password: str, process: int = 0) -> str:
    env, args = environment(d, name, monitor_password, process)
    return default_text(contract.pgbouncer_exporter_unit(process) if process else contract.EXPORTER_UNITS[name], env, args)


def pgbouncer_exporter_unit() -> str:
    """The template unit of the per-process PgBouncer exporters (Debian's unit reads one fixed /etc/default file)."""
    return render("exporters/prometheus-pgbouncer-exporter@.service.j2", user=contract.EXPORTER_USERS["pgbouncer"],
                  default_file=contract.default_file(contract.pgbouncer_exporter_unit("%i")), pgbouncer=contract.pgbouncer_unit("%i"))


def override(d: dict) -> str:
    return render("exporters/override.conf.j2", tls_group=d["tls_group"])


def node_metrics_units() -> dict[str, str]:
    return {contract.NODE_METRICS_UNIT: render("exporters/node-metrics.service.j2", program=program("node-metrics"),
                                               config=contract.NODE_METRICS_CONFIG),
            contract.NODE_METRICS_TIMER: render("exporters/node-metrics.timer.j2", interval=contract.NODE_METRICS_INTERVAL)}


@deploy("Exporters", data_defaults=DEFAULTS)
def apply(tls_reissued: bool = False) -> None:
    """``tls_reissued``: the host certificate was replaced, so the exporters restart to serve the new one."""
    d = host.data
    if not d.exporters:
        return
    monitor_pw = secrets().password(contract.PG_MONITOR)
    files.directory(name="Monitoring configuration directory", path=contract.MONITORING_DIR, mode="0755")
    web = put("Exporters' TLS (client certificate required)", contract.EXPORTERS_WEB_CONFIG, web_config(data()))
    files.directory(name="node_exporter textfile directory", path=contract.NODE_METRICS_DIR, mode="0755")
    for name in d.exporters:
        if name == "pgbouncer":
            # one exporter per PgBouncer process; Debian's single one is stopped and masked
            package = contract.EXPORTER_UNITS[name]
            systemd.service(name="Debian's single PgBouncer exporter stopped", service=package, running=False, enabled=False)
            masked = files.link(name="Debian's single PgBouncer exporter masked", path=f"/etc/systemd/system/{package}", target="/dev/null")
            template = put("PgBouncer exporter unit (one instance per process)",
                           f"/etc/systemd/system/{contract.PGBOUNCER_EXPORTER_TEMPLATE_UNIT}", pgbouncer_exporter_unit())
            template_conf = put("pgbouncer exporter unit settings (every instance)",
                                f"/etc/systemd/system/{contract.PGBOUNCER_EXPORTER_TEMPLATE_UNIT}.d/pgfleet.conf", override(data()))
            systemd.daemon_reload(name="systemd: reload units (PgBouncer exporters)",
                                  _if=lambda: masked.did_change() or template.did_change() or template_conf.did_change())
            for p in range(d.pgbouncer_processes, contract.PGBOUNCER_MAX_PROCESSES):  # fewer processes than before
                systemd.service(name=f"pgbouncer exporter {p + 1} stopped (not needed)", service=contract.pgbouncer_exporter_unit(p + 1),
                                running=False, enabled=False)
        for unit, process in instances(data(), name):
            label = f"{name} exporter" + (f" {process}" if process else "")
            was_running = host.get_fact(ServiceActive, unit=unit)
            # the default file holds the monitoring password: root only (systemd reads it before dropping privileges)
            default = put(f"{label} settings", contract.default_file(unit), default_file(data(), name, monitor_pw, process), mode="0600")
            # a PgBouncer exporter instance reads its template's drop-in (written once above)
            unit_conf = template_conf if process else put(f"{label} unit settings", f"/etc/systemd/system/{unit}.d/pgfleet.conf",
                                                          override(data()))
            systemd.daemon_reload(name="systemd: reload units", _if=unit_conf.did_change)
            systemd.service(name=f"{label} running", service=unit, running=True, enabled=True)
            if was_running:
                systemd.service(name=f"{label} restart (settings changed)", service=unit, restarted=True,
                                _if=lambda default=default, unit_conf=unit_conf: default.did_change() or unit_conf.did_change()
                                or web.did_change() or tls_reissued)

    conf = put("node-metrics configuration", contract.NODE_METRICS_CONFIG, node_metrics_config(data()))
    units = node_metrics_units()
    service = put("node-metrics unit", f"/etc/systemd/system/{contract.NODE_METRICS_UNIT}", units[contract.NODE_METRICS_UNIT])
    timer = put("node-metrics timer", f"/etc/systemd/system/{contract.NODE_METRICS_TIMER}", units[contract.NODE_METRICS_TIMER])
    systemd.daemon_reload(name="systemd: reload units (node-metrics)", _if=lambda: service.did_change() or timer.did_change())
    systemd.service(name="node-metrics timer running", service=contract.NODE_METRICS_TIMER, running=True, enabled=True)
    systemd.service(name="node-metrics now (configuration changed)", service=contract.NODE_METRICS_UNIT, restarted=True,
                    _if=lambda: conf.did_change() or service.did_change())
