"""What ``pgfleet vector advise`` prints: a table per index, the advice, the stack change and the SQL, or JSON.

The stack change is the way to keep a setting (``pgfleet deploy`` applies the
spec's ``databases[].vector``); the SQL is the same change by hand, for now or
for a cluster that is not deployed from this stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pgfleet.vector import advise
from pgfleet.vector.advise import LOAD_PGVECTOR, Advice, Point, Search, ms, size_text, sql_literal_name
from pgfleet.vector.session import SCRATCH_DB, DatabaseReport, IndexReport

#: Database settings the stack can hold (``databases[].vector``), by their PostgreSQL name.
STACK_KEYS = {"hnsw.ef_search": "ef_search"}
ABSENT = "—"


@dataclass(frozen=True)
class Context:
    stack: str
    cluster: str
    target: float
    k: int
    sample: int
    #: the stack file's path as the user names it (for the comment above the stack change)
    stack_file: str = ""
    #: the cluster's server type and its RAM (the spec's server type table)
    server_type: str | None = None
    ram_bytes: int | None = None


def all_advice(reports: Sequence[DatabaseReport]) -> list[tuple[str, Advice]]:
    return [(d.name, a) for d in reports for i in d.indexes for a in i.advice]


def code_for(reports: Sequence[DatabaseReport]) -> int:
    measured = [d.error is None for d in reports] + [i.measured for d in reports for i in d.indexes]
    return advise.exit_code(measured, len(all_advice(reports)))


def stack_change(ctx: Context, databases: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Mapping[str, int]]) -> str | None:
    """The cluster's ``databases`` entries that change, as YAML to merge into the stack file (None: nothing to keep).

    ``databases``: each database's entry as the spec holds it (name, owner, extensions, vector), so the printed
    entry replaces the old one whole.
    """
    entries = []
    for name, values in sorted(settings.items()):
        keep = {STACK_KEYS[k]: v for k, v in values.items() if k in STACK_KEYS}
        if not keep:
            continue
        entry = dict(databases[name])
        entry["vector"] = {**{k: v for k, v in dict(entry.get("vector") or {}).items() if v is not None}, **keep}
        entries.append(entry)
    if not entries:
        return None
    doc = {"pgfleet:clusters": [{"name": ctx.cluster, "databases": entries}]}
    where = ctx.stack_file or f"stacks/Pulumi.{ctx.stack}.yaml"
    head = (f"# {where}, under config: (merge into cluster {ctx.cluster}'s entry; other databases and keys stay as they are),\n"
            f"# then: pgfleet deploy {ctx.stack}\n")
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def settings_sql(settings: Mapping[str, Mapping[str, int]]) -> list[str]:
    """``ALTER DATABASE … SET …`` for every database setting (new sessions get it; a running one keeps its own),
    after the statement that loads pgvector (:data:`~pgfleet.vector.advise.LOAD_PGVECTOR`) so the owner may set them."""
    statements = [f"ALTER DATABASE {sql_literal_name(db)} SET {name} = {value};"
                  for db, values in sorted(settings.items()) for name, value in sorted(values.items())]
    return [LOAD_PGVECTOR, *statements] if statements else []


def unkept_settings(settings: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Settings the stack has no key for (``ivfflat.probes``): only the SQL applies them."""
    return sorted({name for values in settings.values() for name in values if name not in STACK_KEYS})


# ---- JSON


def _point(p: Point | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"value": p.value, "recall": round(p.recall, 4), "p95_ms": round(p.p95_seconds * 1000, 3), "queries": p.queries,
            "set_by_advise": p.set_by_advise}


def _search(s: Search | None) -> dict[str, Any] | None:
    if s is None:
        return None
    point = _point
    return {"setting": s.setting, "current": point(s.current), "tried": [point(p) for p in s.tried], "found": point(s.found),
            "reaches_target_now": s.reaches_target_now}


def _index(ctx: Context, d: DatabaseReport, r: IndexReport) -> dict[str, Any]:
    i = r.info
    view = d.view
    return {
        "database": i.database, "schema": i.schema, "table": i.table, "index": i.index, "method": i.method, "column": i.column,
        "type": i.vector_type, "dimensions": i.dimensions, "opclass": i.opclass, "operator": i.operator, "rows": i.rows,
        "options": i.options, "key": i.key, "size_bytes": i.size_bytes,
        "shared_buffers_bytes": view.shared_buffers_bytes if view else None,
        "fits_shared_buffers": i.size_bytes <= view.shared_buffers_bytes if view else None,
        "server_type": ctx.server_type, "ram_bytes": ctx.ram_bytes,
        "fits_ram": i.size_bytes <= ctx.ram_bytes if ctx.ram_bytes else None,
        "owner_settings": view.settings if view else {},
        "measured": r.measured, "error": r.error,
        "recall": round(r.search.current.recall, 4) if r.search else None,
        "p95_ms": round(r.search.current.p95_seconds * 1000, 3) if r.search else None,
        "search": _search(r.search),
        "builds": [{"m": b.m, "ef_construction": b.ef_construction, "build_seconds": round(b.build_seconds, 3),
                    "search": _search(b.search)} for b in r.builds],
        "scratch_rows": r.scratch_rows, "rebuild_note": r.rebuild_note,
        "churn": asdict(r.churn) if r.churn else None,
        "advice": [{**asdict(a), "sql": list(a.sql)} for a in r.advice],
    }


def to_json(ctx: Context, reports: Sequence[DatabaseReport], databases: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    settings = advise.database_settings(all_advice(reports))
    return {
        "stack": ctx.stack, "cluster": ctx.cluster, "target_recall": ctx.target, "k": ctx.k, "sample": ctx.sample,
        "exit_code": code_for(reports),
        "databases": [{"name": d.name, "owner": d.owner, "dsn": d.dsn, "error": d.error, "churn_error": d.churn_error,
                       "measured_on": {"host": d.view.host, "replica": d.view.in_recovery} if d.view else None}
                      for d in reports],
        "indexes": [_index(ctx, d, r) for d in reports for r in d.indexes],
        "settings": settings,
        "stack_change": stack_change(ctx, databases, settings),
        "sql": settings_sql(settings),
        "scratch_database": SCRATCH_DB,
    }


# ---- the terminal


def index_table(d: DatabaseReport, r: IndexReport, ctx: Context) -> Table:
    i = r.info
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("index", Text(f"{i.database}: {i.qualified_index} on {i.qualified_table} ({i.column or 'expression'}) "
                            f"{i.method} {i.opclass}"))
    t.add_row("vectors", f"{i.rows if i.rows is not None else ABSENT} rows, {i.vector_type or ABSENT}"
                         f"({i.dimensions or '?'}), operator {i.operator or ABSENT}")
    t.add_row("build", ", ".join(f"{k} {v}" for k, v in i.options.items()))
    memory = [f"{size_text(i.size_bytes)}"]
    if d.view:
        fits = "fits" if i.size_bytes <= d.view.shared_buffers_bytes else "[red]does not fit[/red]"
        memory.append(f"{fits} shared_buffers {size_text(d.view.shared_buffers_bytes)}")
    if ctx.ram_bytes:
        fits = "fits" if i.size_bytes <= ctx.ram_bytes else "[red]does not fit[/red]"
        memory.append(f"{fits} RAM {size_text(ctx.ram_bytes)}" + (f" ({ctx.server_type})" if ctx.server_type else ""))
    t.add_row("size", ", ".join(memory))
    if r.search:
        s = r.search
        c = s.current
        colour = "green" if s.reaches_target_now else "red"
        t.add_row(f"{s.setting}", f"{c.value} (the owner {d.owner}'s session)")
        t.add_row(f"recall@{ctx.k}", Text.from_markup(f"[{colour}]{c.recall:.3f}[/{colour}] (target {ctx.target}), "
                                                      f"p95 {ms(c.p95_seconds)}, {c.queries} queries"))
        if s.tried:
            t.add_row("tried", ", ".join(f"{p.value}: {p.recall:.3f} / {ms(p.p95_seconds)}" for p in s.tried))
    else:
        t.add_row("recall", Text(f"not measured: {r.error}", style="red"))
    for b in r.builds:
        f = b.search.found
        t.add_row("sample build", f"m {b.m}, ef_construction {b.ef_construction}: "
                                  + (f"reaches {ctx.target} at {b.search.setting} {f.value} (p95 {ms(f.p95_seconds)})" if f
                                     else f"misses {ctx.target}") + f", built in {b.build_seconds:.1f} s on {r.scratch_rows} rows")
    if r.rebuild_note:
        t.add_row("rebuild", Text(r.rebuild_note))
    return t


def render(out: Console, ctx: Context, reports: Sequence[DatabaseReport], databases: Mapping[str, Mapping[str, Any]]) -> None:
    for d in reports:
        where = (f"{'replica' if d.view.in_recovery else '[yellow]primary[/yellow] (no replica answered)'} {d.view.host or ''}"
                 if d.view else ABSENT)
        out.print(f"[bold]{ctx.stack} / {ctx.cluster} / {d.name}[/bold] — measured as {d.owner} on {where}", highlight=False)
        if d.error:
            out.print(f"[red]could not measure:[/red] {escape(d.error)}", highlight=False, soft_wrap=True)
        if d.churn_error:
            out.print(f"[yellow]no churn figures from the primary:[/yellow] {escape(d.churn_error)}", highlight=False, soft_wrap=True)
        elif not d.indexes:
            out.print("no hnsw or ivfflat index", highlight=False)
        for r in d.indexes:
            out.print(index_table(d, r, ctx), highlight=False)
            for a in r.advice:
                colour = "cyan" if a.basis == "measured" else "yellow"
                out.print(f"  → [{colour}]{a.basis}[/{colour}] {escape(a.action)}: {escape(a.effect)}", highlight=False, soft_wrap=True)
                for line in a.sql:
                    out.print(f"      {line}", highlight=False, markup=False, soft_wrap=True)
            out.print("")
    settings = advise.database_settings(all_advice(reports))
    change = stack_change(ctx, databases, settings)
    if change:
        out.print("[bold]stack change[/bold] (keeps the setting across deploys):", highlight=False)
        out.print(change.rstrip(), highlight=False, markup=False, soft_wrap=True)
    if settings:
        out.print("[bold]the same by hand[/bold] (as the owner; new sessions get it):", highlight=False)
        for line in settings_sql(settings):
            out.print(f"  {line}", highlight=False, markup=False)
        for name in unkept_settings(settings):
            out.print(f"  ({name}: the stack has no key for it yet, only the SQL keeps it)", highlight=False)
    if any(r.builds or r.rebuild_note for d in reports for r in d.indexes):
        out.print(f"rebuild estimates ran on a copy of sampled rows in the scratch database {SCRATCH_DB} on the primary "
                  "(created and dropped by this run as the superuser; the tables themselves are only read, on the replica)",
                  highlight=False, soft_wrap=True)
    for d in reports:
        out.print(f"measure with (pgfleet dsn {ctx.stack} --cluster {ctx.cluster} --ro --direct --db {d.name}): {d.dsn}",
                  highlight=False, markup=False, soft_wrap=True)
    code = code_for(reports)
    verdict = {advise.EXIT_OK: f"[green]every index reaches recall {ctx.target} with its current settings[/green]",
               advise.EXIT_ADVICE: "[yellow]advice above[/yellow]",
               advise.EXIT_UNKNOWN: "[red]something could not be measured (above)[/red]"}[code]
    out.print(verdict, highlight=False)
