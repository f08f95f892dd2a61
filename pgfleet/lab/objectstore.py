"""The lab's S3 object store: moto behind a TLS-terminating HAProxy on the bridge.

pgBackRest only speaks HTTPS to S3, and moto's own TLS mode breaks it
("unexpected eof"); moto on plain HTTP on loopback behind HAProxy, with a
certificate from the lab's cluster CA, works (see DESIGN.md). Hosts reach it
at the spec's ``backups.endpoint`` (the bridge address); moto itself is only
on loopback. Its data lives in memory: `lab down` ends it with the lab.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pgfleet import secrets, state, tls
from pgfleet.errors import LabError
from pgfleet.lab.daemon import Daemon
from pgfleet.lab.layout import Layout
from pgfleet.lab.system import tool
from pgfleet.spec import Spec
from pgfleet.templating import render

#: moto's plain-HTTP port, on loopback only.
MOTO_PORT = 9001
#: The name the object store's certificate carries besides the bridge address.
DNS_NAME = "objectstore.lab"


def _dir(layout: Layout) -> Path:
    return layout.dir / "objectstore"


def endpoint(spec: Spec, layout: Layout) -> tuple[str, int]:
    """Where hosts reach the store: the spec's endpoint, which must be on the bridge address."""
    host, _, port = (spec.backups.endpoint or "").removeprefix("https://").partition(":")
    if host != layout.bridge_address or not port.isdigit():
        raise LabError(f"pgfleet:backups.endpoint {spec.backups.endpoint!r}: the lab's object store listens on the bridge; "
                       f"set it to {layout.bridge_address}:9000")
    return host, int(port)


def daemons(spec: Spec, layout: Layout) -> tuple[Daemon, Daemon]:
    d = _dir(layout)
    moto = Daemon("the lab object store (moto)", "moto_server", d, f"--port={MOTO_PORT}", "127.0.0.1", MOTO_PORT)
    address, port = endpoint(spec, layout) if spec.backups.enabled else (layout.bridge_address, 0)
    proxy = Daemon("the object store's TLS proxy (haproxy)", "haproxy", d, str(d / "haproxy.cfg"), address, port)
    return moto, proxy


def _write_config(spec: Spec, layout: Layout) -> Path:
    d = state.private_dir(_dir(layout))
    sec = secrets.load_or_create_local(spec.environment, spec)
    names = tls.Names.of([DNS_NAME], [layout.bridge_address])
    cert = tls.issue(sec.ca_cert_pem, sec.ca_key_pem, DNS_NAME, names)
    pem = d / "objectstore.pem"
    state.write_private(pem, cert + tls.key_pem(tls.host_key(sec.ca_key_pem, DNS_NAME)))
    address, port = endpoint(spec, layout)
    cfg = d / "haproxy.cfg"
    cfg.write_text(render("lab/objectstore-haproxy.cfg.j2", bind_address=address, bind_port=port, pem=pem,
                          moto_port=MOTO_PORT))
    return cfg


def ensure(spec: Spec, layout: Layout) -> bool:
    """Start moto and its TLS proxy unless they already answer; True if anything started."""
    moto, proxy = daemons(spec, layout)
    started = moto.ensure([str(Path(sys.executable).with_name("moto_server")), "--host=127.0.0.1", f"--port={MOTO_PORT}"])
    if proxy.running_pids() and proxy.answering():
        return started
    cfg = _write_config(spec, layout)
    return proxy.ensure([tool("haproxy"), "-db", "-f", str(cfg)]) or started


def running_pids(spec: Spec, layout: Layout) -> list[int]:
    return [pid for d in daemons(spec, layout) for pid in d.running_pids()]


def stop(spec: Spec, layout: Layout) -> list[int]:
    return [pid for d in reversed(daemons(spec, layout)) for pid in d.stop()]
