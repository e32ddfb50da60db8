"""Seeded end-to-end runs: compile, place, route, simulate (cycle engine) and compare with
numpy and the ISA interpreter, over densities from empty to fully dense."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sieve
from workloads import get_workload

# (workload, shape, extra params)
KERNELS = [
    ("spmv", "12,9", {}),
    ("spmspm", "10,8,11", {"order": "ikj"}),
    ("spmspm", "10,8,11", {"order": "ijk"}),
    ("elemadd", "10,9", {}),
    ("elemmul", "10,9", {}),
]
DENSITIES = {"empty": 0.0, "one": None, "1%": 0.01, "10%": 0.1, "50%": 0.5, "100%": 1.0}


def _one_nonzero_density(shape: str) -> float:
    dims = [int(x) for x in shape.split(",")]
    return 1.0 / (dims[0] * dims[1])


@pytest.mark.parametrize("density_name", list(DENSITIES))
@pytest.mark.parametrize("workload,shape,extra", KERNELS,
                         ids=[f"{k[0]}-{k[2].get('order', '')}" for k in KERNELS])
def test_kernel_matches_numpy(small_chip, workload, shape, extra, density_name):
    density = DENSITIES[density_name]
    if density is None:
        density = _one_nonzero_density(shape)
    params = {"shape": shape, "density": density, "seed": 7, **extra}
    report = sieve.run(small_chip, workload, params=params, check="full")
    s = report.summary
    assert s["checks"] == {"numpy": True, "interpreter": True}
    assert s["verified"] is True
    assert s["cycles"] > s["kernel_cycles"] > 0


@pytest.mark.parametrize("workload,shape,extra", KERNELS,
                         ids=[f"{k[0]}-{k[2].get('order', '')}" for k in KERNELS])
def test_empty_rows(small_chip, workload, shape, extra):
    params = {"shape": shape, "density": 0.4, "seed": 3, "empty_rows": 0.5, **extra}
    layer = get_workload(workload).make(params)
    b = layer.tensors["B"]
    assert (np.diff(b.indptr) == 0).sum() >= 2      # the case really has empty rows
    assert sieve.run(small_chip, layer).summary["verified"]


@pytest.mark.parametrize("formats", ["B:ds c:d", "B:dd c:s", "B:ss:1,0 c:s"])
def test_spmv_formats(small_chip, formats):
    params = {"shape": "9,7", "density": 0.3, "formats": formats,
              "order": "ji" if "1,0" in formats else ""}
    assert sieve.run(small_chip, "spmv", params=params).summary["verified"]


def test_float_values(small_chip):
    params = {"shape": "9,8,7", "density": 0.3, "values": "float"}
    assert sieve.run(small_chip, "spmspm", params=params).summary["verified"]


def test_zero_policies_with_explicit_zeros(small_chip):
    """B stored dense keeps its zeros: gate counts them and saves no cycles, skip saves
    cycles, none performs them at full energy. Skipping is the dense level's scanner's: under
    skip the level is iterated, not located; under gate and none it is located (by default)
    and a zero reaches the ALU just the same."""
    # C pinned too: the format choice may store C differently under each policy
    params = {"shape": "10,10,10", "density": 0.3, "formats": "B:dd C:ss", "seed": 1}
    runs = {pol: sieve.run(small_chip, "spmspm", params=params,
                           overrides=[f"pe.zero_policy.a={pol}", "compiler.locate=false"]
                           ).summary
            for pol in ("skip", "gate", "none")}
    for s in runs.values():
        assert s["verified"]
    zeros_met = runs["gate"]["gated_ops"]
    assert zeros_met > 0
    assert runs["none"]["ineffectual_ops"] == zeros_met and runs["none"]["gated_ops"] == 0
    assert runs["skip"]["skipped_ops"] == zeros_met
    assert runs["skip"]["gated_ops"] == runs["skip"]["ineffectual_ops"] == 0
    assert runs["gate"]["kernel_cycles"] == runs["none"]["kernel_cycles"]
    assert runs["skip"]["kernel_cycles"] < runs["gate"]["kernel_cycles"]
    effectual = {s["effectual_ops"] for s in runs.values()}
    assert len(effectual) == 1
    for pol in ("skip", "gate"):
        default = sieve.run(small_chip, "spmspm", params=params,
                            overrides=[f"pe.zero_policy.a={pol}"]).summary
        assert default["verified"] and default["effectual_ops"] in effectual
        assert default["gated_ops"] == runs[pol]["gated_ops"]
        assert default["skipped_ops"] == runs[pol]["skipped_ops"]
        if pol == "skip":
            assert default["kernel_cycles"] == runs["skip"]["kernel_cycles"]
        else:
            assert default["kernel_cycles"] < runs["gate"]["kernel_cycles"]


def test_run_folder_and_determinism(small_chip, tmp_path):
    params = {"shape": "12,10,12", "density": 0.2, "seed": 5}
    a = sieve.run(small_chip, "spmspm", params=params, out=tmp_path / "a")
    sieve.run(small_chip, "spmspm", params=params, out=tmp_path / "b")
    doc_a = (tmp_path / "a" / "stats.json").read_bytes()
    assert doc_a == (tmp_path / "b" / "stats.json").read_bytes()
    doc = json.loads(doc_a)
    s = doc["summary"]
    for key in ("cycles", "seconds", "verified", "fidelity", "effectual_ops", "skipped_ops",
                "gated_ops", "sram_read_words", "sram_write_words", "hop_count", "dram_bytes"):
        assert key in s
    assert s["verified"] is True and s["fidelity"] == "burst"
    assert s["cycles"] == a.result.cycles
    assert s["seconds"] == pytest.approx(s["cycles"] / (small_chip.clock.freq_mhz * 1e6))
    for name, entry in doc["stats"].items():
        assert name.startswith("chip.") and set(entry) == {"value", "unit", "desc"}
    for f in ("config.yaml", "workload.json", "program.s", "summary.md", "timing.json"):
        assert (tmp_path / "a" / f).exists()


def test_summary_counts_are_the_stats(small_chip):
    r = sieve.run(small_chip, "elemmul", params={"shape": "8,8", "density": 0.5})
    st = r.result.stats
    assert r.summary["effectual_ops"] == sum(v["value"] for k, v in st.items()
                                             if k.endswith(".effectual_op_count"))
    # a product is computed once per common coordinate: effectual ops = intersect matches
    b, c = r.layer.tensors["B"], r.layer.tensors["C"]
    assert r.summary["effectual_ops"] == b.multiply(c).nnz
    assert r.summary["dram_bytes"] == (st["chip.memory.dram_read_bytes"]["value"]
                                       + st["chip.memory.dram_write_bytes"]["value"])


def test_energy_and_baseline_in_the_summary(small_chip, tmp_path):
    report = sieve.run(small_chip, "spmspm", params={"shape": "12,10,12", "density": 0.2},
                       baseline="xeon-12c", out=tmp_path / "r")
    s = report.summary
    assert s["energy_j"] == pytest.approx(report.energy.total_pj * 1e-12)
    assert s["energy_j"] > 0
    b = s["baseline"]
    assert b["cpu"] == "xeon-12c" and b["seconds"] > 0 and b["energy_j"] > 0
    assert b["speedup"] == pytest.approx(b["seconds"] / s["seconds"])
    assert b["energy_ratio"] == pytest.approx(b["energy_j"] / s["energy_j"])
    assert b["edp_ratio"] == pytest.approx(b["speedup"] * b["energy_ratio"])
    doc = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert doc["energy"]["total_pj"] == pytest.approx(sum(doc["energy"]["by_component"].values()))
    assert doc["summary"]["baseline"]["edp_ratio"] == pytest.approx(b["edp_ratio"])


def test_large_kernels_skip_the_interpreter_check_explicitly(small_chip, monkeypatch):
    import simulator.checks

    monkeypatch.setattr(simulator.checks, "INTERPRETER_MAX_TOKENS", 10)
    s = sieve.run(small_chip, "elemmul", params={"shape": "8,8", "density": 0.5},
                  check="full").summary
    assert s["checks"]["numpy"] is True
    assert s["checks"]["interpreter"].startswith("skipped:")
    assert s["verified"] is True


@pytest.mark.parametrize("workload,shape,extra", KERNELS,
                         ids=[f"{k[0]}-{k[2].get('order', '')}" for k in KERNELS])
def test_both_engines_give_the_same_summary(small_chip, workload, shape, extra):
    params = {"shape": shape, "density": 0.3, "seed": 11, **extra}
    a = sieve.run(small_chip, workload, params=params, fidelity="cycle").summary
    b = sieve.run(small_chip, workload, params=params, fidelity="burst").summary
    assert a["verified"] and b["verified"]
    same = {k: v for k, v in a.items() if k != "fidelity"}
    assert same == {k: v for k, v in b.items() if k != "fidelity"}
