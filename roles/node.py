"""pgfleet's node programs: the :mod:`pgfleet.node` package, one launcher per program, the node's contract file.

The package directory is copied as it is (``pgfleet_node``), so what runs on a
node is exactly the code the unit tests import; each launcher only puts the
package on ``sys.path`` (isolated mode, no bytecode written next to it) and
names its program and the contract file. Roles run the programs by their
launcher's path (:func:`program`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import files

from pgfleet import contract, node
from pgfleet.node.config import NodeConfig
from roles._common import put

DEFAULTS: dict[str, object] = {}
#: Shell and Python helpers the deploy installed before the node programs became a package.
RETIRED = ("on-leader.sh", "wait-member.sh", "patroni-config.py", "etcd-auth.py")


def package_files() -> dict[str, str]:
    """The package's modules by file name, in a fixed order."""
    return {p.name: p.read_text() for p in sorted(Path(node.__file__).parent.glob("*.py"))}


def launcher(name: str, helpers_dir: str = contract.HELPERS_DIR, config: str = contract.NODE_CONFIG) -> str:
    """The small script ``<helpers_dir>/<name>`` that runs program ``name`` of the package."""
    return (f"#!/usr/bin/python3 -IB\n"
            f"# Managed by pgfleet: node program {name} ({contract.NODE_PACKAGE} in {helpers_dir}), contract {config}.\n"
            f"import sys\n\n"
            f"sys.path.insert(0, {helpers_dir!r})\n"
            f"from {contract.NODE_PACKAGE} import launch  # noqa: E402\n\n"
            f"sys.exit(launch({name!r}, {config!r}, sys.argv[1:]))\n")


def node_config() -> str:
    """The contract values the node programs read (no secrets: 0644)."""
    return NodeConfig(
        patroni_url=contract.local_url(contract.PATRONI_REST_PORT), etcd_url=contract.local_url(contract.ETCD_CLIENT_PORT),
        ca_file=contract.CA_FILE, cert_file=contract.HOST_CERT, key_file=contract.HOST_KEY,
        patroni_config=contract.PATRONI_CONFIG, patroni_unit=contract.PATRONI_UNIT, postgres_user=contract.POSTGRES_OS_USER,
    ).dumps()


def program(name: str) -> str:
    """The command that runs node program ``name``."""
    if name not in node.PROGRAMS:
        raise KeyError(f"no node program {name!r}: {', '.join(node.PROGRAMS)}")
    return f"{contract.HELPERS_DIR}/{name}"


@deploy("pgfleet node programs", data_defaults=DEFAULTS)
def apply() -> Callable[[], bool]:
    """Install them; returns whether any file changed (long-running programs restart then)."""
    files.directory(name="Node programs package", path=contract.NODE_PACKAGE_DIR, user="root", group="root", mode="0755")
    ops = [put(f"Node module {name}", f"{contract.NODE_PACKAGE_DIR}/{name}", text) for name, text in package_files().items()]
    ops += [put(f"Launcher {name}", program(name), launcher(name), mode="0755") for name in node.PROGRAMS]
    ops.append(put("Node contract", contract.NODE_CONFIG, node_config()))
    for old in RETIRED:
        files.file(name=f"Retired helper {old}", path=f"{contract.HELPERS_DIR}/{old}", present=False)
    return lambda: any(op.did_change() for op in ops)
