"""prewarm ACTION ROLE SCOPE: Patroni's ``on_role_change`` callback; a member that became primary loads its vector indexes.

A failover must not leave the new primary serving HNSW and IVFFlat searches from a cold cache: every visited
neighbour is one random index page. So on ``on_role_change`` to ``primary`` (Patroni 4; ``master`` before) this
program calls ``pg_prewarm()`` on every valid ``hnsw``/``ivfflat`` index of every database that has the
``pg_prewarm`` extension (roles/databases.py creates it; pg_prewarm() reads, so it runs on a replica too). Indexes
go into shared_buffers, smallest first, while together they fit in :data:`SHARED_BUFFERS_SHARE` of it; the rest is
read into the OS page cache (mode ``read``), so a large index never evicts the others.

Restarts are autoprewarm's (``pg_prewarm.autoprewarm``: a restarted PostgreSQL reloads the blocks it had, on every
member); replicas that serve reads keep their own cache warm, so only promotion needs this program, and a demoted
or restarted member is left alone.

Patroni runs callbacks one at a time in a thread of its own (patroni/postgresql/callback_executor.py), never in its
HA loop, so a long prewarm delays nothing; a later callback kills a running one with its children, which is right:
the role it prewarmed for has changed. It runs as Patroni's user (postgres) and calls psql over the local socket;
run by hand (``prewarm now``, as root or postgres) it prewarms whatever this member's role.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from dataclasses import dataclass

from .config import NodeConfig

#: Roles Patroni passes for a primary: ``primary`` (Patroni 4), ``master`` (Patroni 3).
PRIMARY_ROLES = ("primary", "master")
#: pgvector's index access methods.
VECTOR_AMS = ("hnsw", "ivfflat")
#: The share of shared_buffers the prewarmed indexes may take (the rest stays for tables and other indexes).
SHARED_BUFFERS_SHARE = 0.75
#: psql's field separator in unaligned output (never part of a name).
SEP = "\x1f"

DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
SHARED_BUFFERS_SQL = "SELECT pg_size_bytes(current_setting('shared_buffers'))"
INDEXES_SQL = (
    "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_relation_size(c.oid),"
    " EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_prewarm')"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    f" WHERE a.amname IN ({', '.join(repr(am) for am in VECTOR_AMS)}) AND i.indisvalid"
    " ORDER BY pg_relation_size(c.oid), c.oid"
)


@dataclass(frozen=True)
class Index:
    database: str
    oid: int
    name: str
    size: int
    #: the database has the pg_prewarm extension
    prewarmable: bool


def should_prewarm(argv: list[str]) -> bool:
    """Patroni's ``ACTION ROLE SCOPE``: on_role_change to a primary; ``now``: always."""
    if argv == ["now"]:
        return True
    return len(argv) == 3 and argv[0] == "on_role_change" and argv[1] in PRIMARY_ROLES


def plan(indexes: list[Index], shared_buffers: int) -> list[tuple[Index, str]]:
    """(index, pg_prewarm mode) for every prewarmable index: ``buffer`` smallest first while they fit in
    :data:`SHARED_BUFFERS_SHARE` of shared_buffers, ``read`` (the OS page cache) for the rest."""
    budget = int(shared_buffers * SHARED_BUFFERS_SHARE)
    out: list[tuple[Index, str]] = []
    used = 0
    for ix in sorted((i for i in indexes if i.prewarmable), key=lambda i: (i.size, i.database, i.oid)):
        fits = used + ix.size <= budget
        used += ix.size if fits else 0
        out.append((ix, "buffer" if fits else "read"))
    return out


def prewarm_statements(items: list[tuple[Index, str]]) -> list[str]:
    """One database's statements, ``pg_prewarm(oid, mode)`` per index (oids: no quoting needed); each prints its blocks."""
    return [f"SELECT pg_prewarm({ix.oid}::regclass, '{mode}')" for ix, mode in items]


def conninfo(database: str) -> str:
    """A libpq connection string naming ``database`` (quoted: any name is safe)."""
    return "dbname='" + database.replace("\\", "\\\\").replace("'", "\\'") + "'"


def psql_argv(user: str, current_user: str, database: str, statements: list[str]) -> list[str]:
    """psql over the local socket as ``user``, one ``-c`` per statement (each its own transaction, each result
    printed); through runuser when run by someone else (root by hand)."""
    argv = ["psql", "-X", "-q", "-A", "-t", "-F", SEP, "-v", "ON_ERROR_STOP=1", "-d", conninfo(database)]
    argv += [a for sql in statements for a in ("-c", sql)]
    return argv if current_user == user else ["runuser", "-u", user, "--", *argv]


def parse_indexes(database: str, out: str) -> list[Index]:
    rows = [line.split(SEP) for line in out.splitlines() if line]
    return [Index(database, int(oid), name, int(size), has == "t") for oid, name, size, has in rows]


class Psql:
    def __init__(self, user: str) -> None:
        self.user = user
        self.current = pwd.getpwuid(os.geteuid()).pw_name

    def __call__(self, database: str, *statements: str) -> str:
        cp = subprocess.run(psql_argv(self.user, self.current, database, list(statements)), capture_output=True, text=True, timeout=3600)
        if cp.returncode != 0:
            raise RuntimeError(f"psql -d {database}: {(cp.stderr or cp.stdout).strip()[-500:]}")
        return cp.stdout


def main(argv: list[str], cfg: NodeConfig) -> int:
    if not should_prewarm(argv):
        if not (len(argv) == 3 and argv[0].startswith("on_")):
            print("usage: prewarm ACTION ROLE SCOPE (Patroni's callback) | prewarm now", file=sys.stderr)
            return 2
        print(f"prewarm: nothing to do on {argv[0]} to {argv[1]}")
        return 0
    psql = Psql(cfg.postgres_user)
    failed = 0
    try:
        shared_buffers = int(psql("postgres", SHARED_BUFFERS_SQL).strip())
        databases = psql("postgres", DATABASES_SQL).splitlines()
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        print(f"prewarm: {e}", file=sys.stderr)
        return 1
    indexes: list[Index] = []
    for db in databases:
        try:
            found = parse_indexes(db, psql(db, INDEXES_SQL))
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
            print(f"prewarm: {e}", file=sys.stderr)
            failed += 1
            continue
        if any(not ix.prewarmable for ix in found):
            print(f"prewarm: {db} has vector indexes but no pg_prewarm extension: skipped", file=sys.stderr)
        indexes += found
    steps = plan(indexes, shared_buffers)
    for db in dict.fromkeys(ix.database for ix, _ in steps):
        mine = [(ix, mode) for ix, mode in steps if ix.database == db]
        try:
            blocks = psql(db, *prewarm_statements(mine)).split()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            print(f"prewarm: {e}", file=sys.stderr)
            failed += 1
            continue
        for (ix, mode), n in zip(mine, blocks):
            print(f"prewarm: {db} {ix.name}: {n} blocks ({mode})", flush=True)
    if not steps:
        print("prewarm: no vector indexes to prewarm")
    return 1 if failed else 0
