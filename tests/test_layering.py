"""The architecture as a test: imports point one way, and the tests mirror the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each layer and the layers it may import (besides itself and the leaves). Analysis and training
# are siblings that both stand on data; nothing serves or analyses through the training package.
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "io": {"core"},
    "sim": {"core", "io"},
    "data": {"core", "io", "sim"},
    "recon": {"core", "io", "models"},
    "training": {"core", "data", "models", "sim"},
    "analysis": {"core", "data", "io", "models", "recon", "sim"},
    "server": {"core", "io", "models", "recon"},
    "cli": {"core", "data", "io", "models", "recon", "sim", "training", "analysis", "server"},
}
LAYERS = tuple(ALLOWED)
LEAVES = ("sampling", "bart_baselines")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)  # and its submodules imported by name (checked by callers)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_the_project_but_themselves(leaf):
    others = {"npgd_recon", *LEAVES} - {leaf}
    offenders = [(p.relative_to(ROOT), m) for p in modules(leaf) for m in imports(p)
                 if m.split(".")[0] in others]
    assert not offenders, offenders


def test_npgd_recon_layers_import_only_what_they_are_allowed():
    offenders = []
    for path in modules("npgd_recon"):
        parts = path.relative_to(ROOT / "npgd_recon").parts
        if len(parts) < 2:
            continue
        allowed = ALLOWED[parts[0]] | {parts[0]}
        for name in imports(path):
            target = name.split(".")
            if target[0] == "npgd_recon" and len(target) > 1 and target[1] in LAYERS \
                    and target[1] not in allowed:
                offenders.append((str(path.relative_to(ROOT)), name))
    assert not offenders, offenders


def test_nothing_outside_training_and_cli_imports_training():
    offenders = [(str(p.relative_to(ROOT)), m)
                 for p in modules("npgd_recon")
                 if not {"training", "cli"} & set(p.relative_to(ROOT).parts)
                 for m in imports(p) if m.startswith("npgd_recon.training")]
    assert not offenders, offenders


def test_no_import_circles_between_modules():
    """Imports between the project's modules, lazy ones inside functions included, form no
    cycle."""
    graph = {}
    for path in modules("npgd_recon"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {m for m in imports(path) if m.startswith("npgd_recon.")}
    graph = {name: targets & graph.keys() for name, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return stack + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, stack + [node])):
                return cycle
        state[node] = 2
        return None

    cycles = [c for n in sorted(graph) if n not in state and (c := visit(n, []))]
    assert not cycles, cycles


def test_every_module_lives_in_a_layer():
    flat = [p.name for p in (ROOT / "npgd_recon").glob("*.py") if p.name != "__init__.py"]
    packages = {p.name for p in (ROOT / "npgd_recon").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    assert not flat and packages == set(LAYERS)


def test_tests_mirror_the_packages():
    wanted = {*LAYERS, *LEAVES}
    present = {p.name for p in (ROOT / "tests").iterdir()
               if p.is_dir() and any(p.glob("test_*.py"))}
    assert wanted <= present, wanted - present
