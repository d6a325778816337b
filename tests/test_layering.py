"""The architecture as a test: imports point one way, and the tests mirror the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "models", "io", "sim", "recon", "training", "analysis", "server", "cli")
LEAVES = ("sampling", "bart_baselines")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_the_project_but_themselves(leaf):
    others = {"npgd_recon", *LEAVES} - {leaf}
    offenders = [(p.relative_to(ROOT), m) for p in modules(leaf) for m in imports(p)
                 if m.split(".")[0] in others]
    assert not offenders, offenders


def test_npgd_recon_layers_import_only_downwards():
    offenders = []
    for path in modules("npgd_recon"):
        parts = path.relative_to(ROOT / "npgd_recon").parts
        if len(parts) < 2:
            continue
        rank = LAYERS.index(parts[0])
        for name in imports(path):
            target = name.split(".")
            if target[0] == "npgd_recon" and len(target) > 1 and target[1] in LAYERS \
                    and LAYERS.index(target[1]) > rank:
                offenders.append((str(path.relative_to(ROOT)), name))
    assert not offenders, offenders


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
