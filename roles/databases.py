"""Roles, databases and extensions from the spec, created on the leader.

One SQL file (passwords as SCRAM verifiers) is applied by the current leader
through the local socket; replicas get it by replication. It is applied again
only when its content changes (a new database, extension or password).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from pgfleet import contract, scram
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


def setup_sql(d: dict, passwords: dict[str, str]) -> str:
    return render("databases/setup.sql.j2", patroni_scope=d["patroni_scope"], databases=d["databases"],
                  roles=roles_for(d["databases"], passwords), superuser=contract.PG_SUPERUSER,
                  pooler_auth=contract.PG_POOLER_AUTH, monitor=contract.PG_MONITOR)


@deploy("Databases", data_defaults=DEFAULTS)
def apply() -> None:
    d = host.data
    sql = setup_sql(d.dict(), secrets().passwords)
    converge("databases.sql", sql, f"{program('on-leader')} {d.databases_psql} < {{desired}}")
