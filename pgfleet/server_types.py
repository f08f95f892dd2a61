"""Hetzner Cloud server types and locations: the one table pgfleet sizes from.

Figures are Hetzner's published ones (vCPU, RAM in GiB, local NVMe disk in GB).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerType:
    name: str
    cores: int
    memory_gib: int
    disk_gb: int
    dedicated: bool
    architecture: str  # "x86" or "arm"

    @property
    def memory_mib(self) -> int:
        return self.memory_gib * 1024


def _t(name: str, cores: int, mem: int, disk: int, dedicated: bool, arch: str = "x86") -> ServerType:
    return ServerType(name, cores, mem, disk, dedicated, arch)


SERVER_TYPES: dict[str, ServerType] = {
    t.name: t
    for t in (
        # dedicated vCPU (AMD EPYC)
        _t("ccx13", 2, 8, 80, True),
        _t("ccx23", 4, 16, 160, True),
        _t("ccx33", 8, 32, 240, True),
        _t("ccx43", 16, 64, 360, True),
        _t("ccx53", 32, 128, 600, True),
        _t("ccx63", 48, 192, 960, True),
        # shared vCPU, cost-optimised (2025 generation)
        _t("cx23", 2, 4, 40, False),
        _t("cx33", 4, 8, 80, False),
        _t("cx43", 8, 16, 160, False),
        _t("cx53", 16, 32, 320, False),
        # shared vCPU, AMD (2025 generation)
        _t("cpx22", 2, 4, 80, False),
        _t("cpx32", 4, 8, 160, False),
        _t("cpx42", 8, 16, 320, False),
        _t("cpx52", 12, 24, 480, False),
        _t("cpx62", 16, 32, 640, False),
        # shared vCPU, Ampere Arm
        _t("cax11", 2, 4, 40, False, "arm"),
        _t("cax21", 4, 8, 80, False, "arm"),
        _t("cax31", 8, 16, 160, False, "arm"),
        _t("cax41", 16, 32, 320, False, "arm"),
    )
}

#: Types Hetzner deprecated in 2025, with the same-size successor to suggest.
DEPRECATED: dict[str, str] = {
    "cx22": "cx23",
    "cx32": "cx33",
    "cx42": "cx43",
    "cx52": "cx53",
}

#: Location -> network zone.
LOCATIONS: dict[str, str] = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}

#: Debian 13 (trixie) ships these extensions for its PostgreSQL (contrib in ``postgresql-<major>``, the others
#: in ``postgresql-<major>-<suffix>``: :func:`pgfleet.contract.postgres_package`).
DEBIAN13_EXTENSIONS: dict[str, str] = {
    # extension name -> the suffix of the Debian package that provides it ("" for contrib)
    "vector": "pgvector",
    "pg_stat_statements": "",
    "pg_trgm": "",
    "btree_gin": "",
    "btree_gist": "",
    "citext": "",
    "hstore": "",
    "pgcrypto": "",
    "uuid-ossp": "",
    "unaccent": "",
    "fuzzystrmatch": "",
    "intarray": "",
    "ltree": "",
    "cube": "",
    "earthdistance": "",
    "tablefunc": "",
    "pg_buffercache": "",
    "pg_prewarm": "",
    "amcheck": "",
    "postgres_fdw": "",
    "pgstattuple": "",
    "bloom": "",
    "postgis": "postgis-3",
    "pg_partman": "partman",
    "pg_cron": "cron",
    "hypopg": "hypopg",
    "pg_repack": "repack",
}
