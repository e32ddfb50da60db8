"""DESIGN.md's import rules between packages, and the stats declaration rule."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import simulator.stats as stats_mod

ROOT = Path(__file__).resolve().parent.parent
STDLIB_OK = True  # the standard library is always allowed

# package -> third-party and project packages it may import
ALLOWED = {
    "isa": {"numpy", "isa"},
    "workloads": {"numpy", "scipy", "workloads"},
    "compiler": {"isa", "workloads", "networkx", "numpy", "scipy", "compiler"},
    "simulator": {"isa", "simpy", "numpy", "scipy", "yaml", "simulator"},
    "reports": {"reports", "numpy", "matplotlib", "isa", "rich"},   # rich: progress bars
    # the CPU model reads its presets with simulator.config's YAML reader
    "baselines": {"numpy", "scipy", "yaml", "isa", "workloads", "baselines", "simulator"},
}
THIRD_PARTY_AND_PROJECT = {"numpy", "scipy", "simpy", "networkx", "matplotlib", "yaml",
                           "isa", "workloads", "compiler", "simulator", "reports", "sieve",
                           "baselines",
                           "dask", "distributed", "pandas", "torch", "tqdm", "rich"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_rules(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for mod in _imports(path) & THIRD_PARTY_AND_PROJECT:
            if mod not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_nothing_imports_sieve():
    bad = [str(p.relative_to(ROOT)) for pkg in ALLOWED for p in (ROOT / pkg).rglob("*.py")
           if "sieve" in _imports(p)]
    assert not bad


def test_every_stat_has_unit_and_description():
    classes = [obj for obj in vars(stats_mod).values()
               if dataclasses.is_dataclass(obj) and isinstance(obj, type)]
    assert len(classes) >= 4
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert f.metadata.get("unit"), f"{cls.__name__}.{f.name} has no unit"
            desc = f.metadata.get("desc", "")
            assert desc.endswith("."), f"{cls.__name__}.{f.name} needs a one-sentence desc"
