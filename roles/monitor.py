"""The monitoring host: Prometheus, Alertmanager and pgfleet's recall probe, from Debian's packages.

Prometheus scrapes every exporter over TLS with this host's certificate (the
only one the exporters accept) and evaluates pgfleet's rules; Alertmanager
sends to the spec's receivers. Both serve HTTPS with the cluster CA's
certificate for the admin ranges. Configuration comes computed in host data
(:func:`pgfleet.hostdata.monitor_data`); secrets (the SMTP password) are added
here. Files are checked (``promtool``, ``amtool``) before a reload.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from pgfleet import contract, probe, tls
from pgfleet.monitoring import alertmanager
from pgfleet.probe import config as probe_mod_config
from pgfleet.secrets import Secrets
from roles import exporters
from roles._common import ServiceActive, converge, data, put, render, secrets

DEFAULTS: dict[str, object] = {}


#: Seconds Prometheus keeps trying to flush remote_write at shutdown, and systemd's patience with its stop.
REMOTE_FLUSH_DEADLINE = 10
STOP_TIMEOUT = 60


def prometheus_override() -> str:
    return render("monitor/prometheus-override.conf.j2", stop_timeout=STOP_TIMEOUT)


def web_config() -> str:
    return render("monitor/web.yml.j2", cert=contract.HOST_CERT, key=contract.MONITOR_KEY)


def prometheus_default(d: dict) -> str:
    args = [f"--config.file={contract.PROMETHEUS_CONFIG}", f"--storage.tsdb.path={contract.PROMETHEUS_STORAGE}",
            f"--web.listen-address=:{contract.PROMETHEUS_PORT}", f"--web.config.file={contract.MONITOR_WEB_CONFIG}",
            f"--web.external-url=https://{d['pgfleet_ip']}:{contract.PROMETHEUS_PORT}/",
            # a remote_write store that does not answer must not hold a restart for Prometheus' default minute
            f"--storage.remote.flush-deadline={REMOTE_FLUSH_DEADLINE}s", *d["monitor_prometheus_flags"]]
    return exporters.default_text(contract.PROMETHEUS_UNIT, {}, args)


def alertmanager_default(d: dict) -> str:
    # an empty --cluster.listen-address: one Alertmanager, no gossip port
    args = [f"--config.file={contract.ALERTMANAGER_CONFIG}", f"--web.listen-address=:{contract.ALERTMANAGER_PORT}",
            f"--web.config.file={contract.MONITOR_WEB_CONFIG}", "--cluster.listen-address=",
            f"--web.external-url=https://{d['pgfleet_ip']}:{contract.ALERTMANAGER_PORT}/"]
    return exporters.default_text(contract.ALERTMANAGER_UNIT, {}, args)


@deploy("Monitoring host", data_defaults=DEFAULTS)
def apply(tls_reissued: bool = False) -> None:
    d = host.data
    s = secrets()
    key = put("Host key for Prometheus and Alertmanager", contract.MONITOR_KEY, tls.key_pem(tls.host_key(s.ca_key_pem, host.name)),
              mode="0640", group=contract.PROMETHEUS_USER)
    files.directory(name="Monitoring configuration directory", path=contract.MONITORING_DIR, mode="0755")
    web = put("HTTPS for Prometheus and Alertmanager", contract.MONITOR_WEB_CONFIG, web_config())
    tls_changed = [key, web]

    # each file is checked before it replaces the one in use; a file that fails its check is never installed,
    # and the next deploy tries (and checks) it again (converge keeps what was applied)
    rules = converge("pgfleet-rules.yml", d.monitor_rules,
                     f"promtool check rules {{desired}} && install -m 0644 {{desired}} {contract.PROMETHEUS_RULES}")
    prom = converge("prometheus.yml", d.monitor_prometheus_config,
                    f"promtool check config {{desired}} && install -m 0644 {{desired}} {contract.PROMETHEUS_CONFIG}")
    prom_env = put("Prometheus settings", contract.default_file(contract.PROMETHEUS_UNIT), prometheus_default(data()), mode="0600")
    prom_unit = put("Prometheus unit settings", f"/etc/systemd/system/{contract.PROMETHEUS_UNIT}.d/pgfleet.conf", prometheus_override())
    systemd.daemon_reload(name="systemd: reload units (Prometheus)", _if=prom_unit.did_change)
    _service(contract.PROMETHEUS_UNIT, restart_if=[prom_env, prom_unit, *tls_changed], reload=rules or prom, tls_reissued=tls_reissued)

    am = converge("alertmanager.yml", alertmanager_yaml(d.monitor_alertmanager, d.monitor_smtp_password_secret, s),
                  f"amtool check-config {{desired}} && install -m 0640 -g {contract.PROMETHEUS_USER} {{desired}} {contract.ALERTMANAGER_CONFIG}")
    am_env = put("Alertmanager settings", contract.default_file(contract.ALERTMANAGER_UNIT), alertmanager_default(data()), mode="0600")
    _service(contract.ALERTMANAGER_UNIT, restart_if=[am_env, *tls_changed], reload=am, tls_reissued=tls_reissued)
    _probe(s)


def alertmanager_yaml(doc: dict, secret: str | None, s: Secrets) -> str:
    """Host data's Alertmanager document with the SMTP password (a stack secret, never in host data) filled in."""
    return yaml.safe_dump(alertmanager.with_smtp_password(doc, s.password(secret) if secret else None), sort_keys=False)


PROBE_DIR = f"{contract.HELPERS_DIR}/{contract.PROBE_PACKAGE}"
PROBE_LAUNCHER = f"{contract.HELPERS_DIR}/pgfleet-probe"


def probe_files() -> dict[str, str]:
    """The probe package's modules by file name (copied as they are, like the node programs)."""
    return {p.name: p.read_text() for p in sorted(Path(probe.__file__).parent.glob("*.py"))}


def probe_launcher() -> str:
    return (f"#!/usr/bin/python3 -IB\n"
            f"# Managed by pgfleet: the recall probe ({contract.PROBE_PACKAGE} in {contract.HELPERS_DIR}).\n"
            f"import sys\n\n"
            f"sys.path.insert(0, {contract.HELPERS_DIR!r})\n"
            f"from {contract.PROBE_PACKAGE}.__main__ import main  # noqa: E402\n\n"
            f"sys.exit(main(sys.argv[1:]))\n")


def probe_config(watches: list[dict], s: Secrets) -> str:
    """The probe's JSON (0600 root: the application role's password; systemd hands it to the probe as a credential)."""
    filled = [{**{k: v for k, v in w.items() if k != "password_name"}, "password": s.password(w["password_name"])} for w in watches]
    doc = probe_mod_config.build(filled, ca_file=contract.CA_FILE, port=contract.HAPROXY_DIRECT_RO, listen_port=contract.PGFLEET_EXPORTER_PORT,
                                 interval=contract.PROBE_INTERVAL, statement_timeout_ms=contract.PROBE_STATEMENT_TIMEOUT_MS)
    return json.dumps(doc, sort_keys=True, indent=1) + "\n"


def probe_unit() -> str:
    return render("monitor/probe.service.j2", launcher=PROBE_LAUNCHER, config=contract.PROBE_CONFIG)


def _probe(s: Secrets) -> None:
    """The recall probe: package, launcher, configuration and its service (restarted when any of them changed)."""
    d = host.data
    files.directory(name="Recall probe package", path=PROBE_DIR, mode="0755")
    ops = [put(f"Probe module {name}", f"{PROBE_DIR}/{name}", text) for name, text in probe_files().items()]
    ops.append(put("Probe launcher", PROBE_LAUNCHER, probe_launcher(), mode="0755"))
    ops.append(put("Probe configuration", contract.PROBE_CONFIG, probe_config(d.monitor_probe_watches, s), mode="0600"))
    unit = put("Probe unit", f"/etc/systemd/system/{contract.PROBE_UNIT}", probe_unit())
    systemd.daemon_reload(name="systemd: reload units (probe)", _if=unit.did_change)
    was_running = host.get_fact(ServiceActive, unit=contract.PROBE_UNIT)
    systemd.service(name="Recall probe running", service=contract.PROBE_UNIT, running=True, enabled=True)
    if was_running:
        systemd.service(name="Recall probe restart (changed)", service=contract.PROBE_UNIT, restarted=True,
                        _if=lambda: unit.did_change() or any(op.did_change() for op in ops))


def _service(unit: str, *, restart_if: list, reload: bool, tls_reissued: bool) -> None:
    """Running and enabled; restarted when its settings or TLS files changed, else reloaded when ``reload``."""
    was_running = host.get_fact(ServiceActive, unit=unit)
    systemd.service(name=f"{unit} running", service=unit, running=True, enabled=True)
    if was_running:
        restart = lambda: tls_reissued or any(op.did_change() for op in restart_if)  # noqa: E731
        systemd.service(name=f"{unit} restart (settings changed)", service=unit, restarted=True, _if=restart)
        systemd.service(name=f"{unit} reload (configuration changed)", service=unit, reloaded=True,
                        _if=lambda: reload and not restart())
