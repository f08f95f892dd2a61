"""Programs that run on the nodes, standard library only (nodes cannot pip install).

The deploy copies this directory as it is to every node (``pgfleet_node`` in
:data:`pgfleet.contract.HELPERS_DIR`) next to one launcher per program, which
calls :func:`launch` with the node's contract file (:data:`pgfleet.contract.NODE_CONFIG`).
pgfleet itself imports the same modules (``pgfleet.node``), so the Patroni
rules a node applies are the ones ``pgfleet status``, drills and restore apply.
Modules import each other relatively, never the rest of pgfleet (import-linter
checks it: ``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

import importlib

from .config import NodeConfig

#: program name (the launcher's file name) -> module
PROGRAMS = {
    "backup-member": "backup_member",
    "etcd-auth": "etcd_auth",
    "etcd-leader-away": "etcd_leader_away",
    "first-backup": "first_backup",
    "node-metrics": "node_metrics",
    "on-leader": "on_leader",
    "patroni-config": "patroni_config",
    "prewarm": "prewarm",
    "wait-member": "wait_member",
}


def launch(program: str, config_file: str, argv: list[str]) -> int:
    """Run ``program`` with the node's contract file and its own arguments (what a launcher does)."""
    module = importlib.import_module(f"{__name__}.{PROGRAMS[program]}")
    return int(module.main(argv, NodeConfig.load(config_file)))
