"""pgfleet's layers (pyproject.toml, import-linter): no part imports a part above it, no circles, no module outside a layer.

cli → deployment/hostdata → backup | drill | fleet → stack → providers → lab | cluster → … → spec → sizing → schema → …
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(cwd / "pyproject.toml"), "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True, env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(cwd)})


def layers_contract() -> dict:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c.get("id") == "layers")


def layer_parts() -> set[str]:
    """Every part named in a layer (``a | b`` and ``a : b`` are siblings)."""
    return {part.strip() for layer in layers_contract()["layers"] for part in re.split(r"[|:]", layer)}


def part_of(module: str) -> str:
    """``pgfleet.drill.control`` -> ``drill``."""
    return module.split(".")[1]


def test_the_layers_contract_is_kept() -> None:
    p = lint_imports(ROOT, "--contract", "layers")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "KEPT" in p.stdout and "ignore_imports" not in layers_contract()


def test_every_pgfleet_module_belongs_to_a_layer() -> None:
    graph = grimp.build_graph("pgfleet")
    modules = {m for m in graph.modules if m != "pgfleet"}
    assert len(modules) > 50, "grimp found too few modules to mean anything"
    outside = sorted(m for m in modules if part_of(m) not in layer_parts())
    assert not outside, f"pgfleet modules in no layer of pyproject.toml's layers contract: {outside}"


def test_no_import_circle_between_parts() -> None:
    graph = grimp.build_graph("pgfleet")
    edges: dict[str, set[str]] = {}
    for m in graph.modules:
        if m == "pgfleet":
            continue
        for imported in graph.find_modules_directly_imported_by(m):
            if imported != "pgfleet" and part_of(imported) != part_of(m):
                edges.setdefault(part_of(m), set()).add(part_of(imported))

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges.get(a, ()))

    circles = sorted(a for a in edges if reaches(a, a, set()))
    assert not circles, f"parts of pgfleet that import themselves through others: {circles}"


def test_the_layers_contract_fails_on_an_upward_import_and_on_a_module_outside_the_layers(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "pgfleet", tmp_path / "pgfleet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "pgfleet" / "lab" / "upward.py").write_text("from pgfleet import deployment\n")
    (tmp_path / "pgfleet" / "newpart.py").write_text("X = 1\n")
    p = lint_imports(tmp_path, "--contract", "layers")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "pgfleet.lab.upward -> pgfleet.deployment" in p.stdout, p.stdout
    assert "pgfleet.newpart" in p.stdout, p.stdout
