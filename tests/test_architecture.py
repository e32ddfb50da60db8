"""The import rules between packages (stated by ALLOWED below), and the stats declaration rule."""

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
    # sweeps: generic machinery; the simulator comes in as a Target (sieve.sweeper)
    "sweeps": {"sweeps", "isa", "yaml", "dask", "distributed", "pandas", "tqdm", "matplotlib"},
}
THIRD_PARTY_AND_PROJECT = {"numpy", "scipy", "simpy", "networkx", "matplotlib", "yaml",
                           "isa", "workloads", "compiler", "simulator", "reports", "sieve",
                           "baselines", "sweeps",
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


# ---- the one road (issue 9) ------------------------------------------------------------------

NUMPY_NAMES = {"np", "numpy", "scipy", "sp"}
CHECKS_MODULE = "simulator/checks.py"


def _numpy_arithmetic(path: Path) -> list[str]:
    """Lines of ``path`` that compute with numpy/scipy (a call or attribute of np/scipy) or
    import them: the signs of simulation, mapping or checking logic."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                else [node.module or ""]
            if any(n.split(".")[0] in ("numpy", "scipy") for n in names):
                found.append(f"{path.name}:{node.lineno}: imports numpy/scipy")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in NUMPY_NAMES:
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_rule_detects_numpy_arithmetic(tmp_path):
    """The AST rule below cannot pass vacuously: it flags numpy use in a sample facade."""
    sample = tmp_path / "facade.py"
    sample.write_text("import numpy as np\n\ndef f(x):\n    return np.asarray(x).sum()\n")
    assert len(_numpy_arithmetic(sample)) == 2
    assert _numpy_arithmetic(ROOT / CHECKS_MODULE), "the checks module computes with numpy"


def test_sieve_holds_no_simulation_or_mapping_logic():
    """sieve/ wires and prints: no numpy/scipy (arithmetic on workload data belongs to the
    compiler, the simulator or the one checks module), and it stays under 900 lines."""
    files = sorted((ROOT / "sieve").rglob("*.py"))
    assert files
    bad = [hit for path in files for hit in _numpy_arithmetic(path)]
    assert not bad, "\n".join(bad)
    lines = sum(len(p.read_text().splitlines()) for p in files)
    assert lines < 900, f"sieve/ has {lines} lines"


def test_one_energy_function():
    """Counts become joules in one place: the only call of simulator.energy._report (the
    multiplication of counts by energies) is energy_from_counts, which every path (unit
    counters, systolic kernels, layer tiles, the calibration kernel) goes through."""
    callers = []
    for path in sorted((ROOT / "simulator").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_report":
                callers.append(path.name)
    assert callers == ["energy.py"]
    energy_src = (ROOT / "simulator/energy.py").read_text()
    assert energy_src.count("_report(") == 2        # its definition and energy_from_counts


WORKLOAD_KINDS = [
    ("spmspm", {"shape": "8,8,8", "density": "0.3"}),
    ("ttv", {"shape": "4,4,4", "density": "0.4"}),
    ("gemm", {"shape": "8,6,4"}),
    ("gemm", {"shape": "8,6,8", "pattern": "2:4"}),
    ("moe.olmoe", {"scale": "64", "tokens": "4"}),
    ("ffn.bert-base", {"scale": "16", "tokens": "2"}),
    ("linear.bert-base.output", {"scale": "16", "tokens": "2"}),
]


@pytest.mark.parametrize("name,params", WORKLOAD_KINDS,
                         ids=[f"{n}-{p.get('pattern', '')}" for n, p in WORKLOAD_KINDS])
def test_every_workload_kind_yields_a_program_that_round_trips(name, params):
    from isa.asm import parse_program, print_program
    from isa.bitstream import decode, encode
    from sieve.api import build_layer, compile_workload
    from simulator.config import load_chip

    chip = load_chip(ROOT / "configs/chips/onyx.yaml")
    program = compile_workload(build_layer(name, params), chip)
    text = print_program(program)
    back = parse_program(text)
    assert back.kernels == program.kernels and back.schedule == program.schedule
    assert print_program(back) == text
    for kernel in program.kernels:
        assert decode(encode(kernel)) == kernel
    kinds = {k.kind for k in program.kernels}
    if name == "gemm":
        assert kinds == {"systolic"} and not program.jobs
    elif "." in name:                    # model layers: both kernels and their jobs
        assert kinds == {"sam", "systolic"} and program.jobs
        assert all(j.task is not None for j in program.jobs if j.stage in ("experts",
                                                                            "products"))
    else:
        assert kinds == {"sam"}
