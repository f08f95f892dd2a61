"""Roles, databases, extensions and per-database pgvector settings from the spec, created on the leader.

One SQL file (passwords as SCRAM verifiers) is applied by the current leader
through the local socket; replicas get it by replication. It is applied again
only when its content changes (a new database, extension, setting or password).

The spec's ``databases[].vector`` become ``ALTER DATABASE … SET hnsw.…`` (new
sessions get them: PgBouncer's server connections once they are replaced);
an unset one is RESET, so removing it from the spec takes effect. pgvector's
GUCs are placeholders until its library loads in a session; the superuser may
set them anyway.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from pgfleet import contract, scram, sizing
from roles._common import converge, render, secrets
from roles.node import program

DEFAULTS: dict[str, object] = {"databases_psql": f"runuser -u {contract.POSTGRES_OS_USER} -- psql -X -q -At -d postgres"}


def roles_for(databases: list[dict], passwords: dict[str, str]) -> list[dict]:
    """The login roles a cluster needs, with verifiers; database owners get ``owner_<name>``'s password."""
    out = [
        {"name": contract.PG_POOLER_AUTH, "options": "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION", "verifier": None, "grants": []},
        {"name": contract.PG_MONITOR, "options": "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION",
         "verifier": scram.verifier(contract.PG_MONITOR, passwords["monitor"]), "grants": ["pg_monitor"]},
    ]
    for owner in sorted({db["owner"] for db in databases}):
        out.append({"name": owner, "options": "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION",
                    "verifier": scram.verifier(owner, passwords[f"owner_{owner}"]), "grants": []})
    return out


#: The extension the ``prewarm`` node program calls (pgfleet/node/prewarm.py); replicas get it by replication.
PREWARM_EXTENSION = "pg_prewarm"


def database_plan(db: dict, prewarm: bool) -> dict:
    """What the template does for one spec database: its extensions (pg_prewarm added when the cluster
    prewarms) and the pgvector settings to SET (name, SQL literal) or RESET."""
    extensions = list(db["extensions"]) + ([PREWARM_EXTENSION] if prewarm and PREWARM_EXTENSION not in db["extensions"] else [])
    settings = db["settings"]
    return {"name": db["name"], "owner": db["owner"], "extensions": extensions,
            "set": [{"name": guc, "value": f"'{value}'"} for guc, value in settings.items()],
            "reset": [guc for guc in sizing.VECTOR_SETTINGS.values() if guc not in settings]}


def setup_sql(d: dict, passwords: dict[str, str]) -> str:
    databases = [database_plan(db, bool(d["patroni_prewarm"])) for db in d["databases"]]
    return render("databases/setup.sql.j2", patroni_scope=d["patroni_scope"], databases=databases,
                  roles=roles_for(d["databases"], passwords), superuser=contract.PG_SUPERUSER,
                  pooler_auth=contract.PG_POOLER_AUTH, monitor=contract.PG_MONITOR)


@deploy("Databases", data_defaults=DEFAULTS)
def apply() -> None:
    d = host.data
    sql = setup_sql(d.dict(), secrets().passwords)
    converge("databases.sql", sql, f"{program('on-leader')} {d.databases_psql} < {{desired}}")
