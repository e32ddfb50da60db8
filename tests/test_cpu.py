"""The CPU baseline model (baselines): presets, the citation rule on configs/cpus, the
roofline's invariants, the per-kernel work counts, host calibration, and (slow) the host
model's prediction against fresh measurements on shapes it was not fitted on."""

from __future__ import annotations

import dataclasses
import re
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from baselines import (
    CPU_KERNELS,
    CpuPreset,
    blas_threads,
    calibrate_host,
    cpu_kernel,
    cpu_preset_from_dict,
    estimate,
    estimate_gemm,
    estimate_spmm,
    estimate_work,
    gemm_work,
    load_cpu_preset,
    spgemm_branch_misses,
    time_call,
)
from isa.errors import ConfigError
from tests import citations
from workloads import WorkloadError, get_workload
from workloads.base import random_sparse

ROOT = Path(__file__).resolve().parent.parent
CPUS = ROOT / "configs" / "cpus"
PRESET_FILES = sorted(CPUS.glob("*.yaml"))
KERNELS = ("spmv", "spmspm", "elemadd", "elemmul")


def layer(name: str, shape: tuple[int, ...], density: float, seed: int = 0, **extra):
    """A catalog layer with float values."""
    return get_workload(name).make({"shape": shape, "density": density, "seed": seed,
                                    "values": "float", **extra})


def shape_for(name: str, n: int) -> tuple[int, ...]:
    return (n, n, n) if name == "spmspm" else (n, n)


@pytest.fixture(scope="module")
def presets() -> dict[str, CpuPreset]:
    return {p.stem: load_cpu_preset(p) for p in PRESET_FILES}


# ---------------------------------------------------------------------------------------------
# Presets and the citation rule


def test_presets_load(presets: dict[str, CpuPreset]) -> None:
    assert set(presets) >= {"xeon-12c", "xeon-1c", "epyc-9654", "host"}
    for stem, preset in presets.items():
        assert preset.name == stem
        assert preset.description
        assert preset.problems() == []
        assert preset.peak_gflops == pytest.approx(
            preset.cores * preset.freq_ghz * preset.fp32_flops_per_cycle_per_core)
    assert load_cpu_preset("xeon-12c") == presets["xeon-12c"]     # bare name lookup
    assert presets["xeon-12c"].cores == 12 and presets["xeon-1c"].cores == 1


def test_unknown_bare_preset_name_suggests() -> None:
    with pytest.raises(ConfigError, match=r"did you mean xeon-12c\?"):
        load_cpu_preset("xeon-12")


SOURCE = re.compile(r"\b(VENDOR|MEASURED|FITTED|OS-REPORTED|DERIVED|VLSI24|SAM23)\b"
                    r"|ASSUMPTION")


def uncited_numbers(text: str) -> list[tuple[int, str]]:
    return citations.uncited_numbers(text, SOURCE)


def test_citation_checker_catches_an_uncited_number() -> None:
    text = "\n".join([
        "a: 1            # VENDOR: spec sheet",
        "# ASSUMPTION: because",
        "b: 2.5",
        "c: 3            # no source",
        "d:",
        "  e: 4          # VLSI24 Fig. 7b",
        "  f: 5",
        "name: x",
    ])
    assert uncited_numbers(text) == [(4, "c: 3            # no source"), (7, "  f: 5")]


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: p.name)
def test_every_number_in_cpu_presets_cites_a_source(path: Path) -> None:
    text = path.read_text()
    assert uncited_numbers(text) == []
    assert citations.private_note_citations(text) == []   # public sources only
    numbers = [ln for ln in text.splitlines()
               if re.match(r"^\s*[\w-]+:\s*[\d.]+\s*$", citations.split_comment(ln)[0])]
    assert len(numbers) >= 25            # the checker did see this file's numbers


def test_bad_preset_is_one_error_listing_every_problem() -> None:
    data = yaml.safe_load((CPUS / "xeon-12c.yaml").read_text())
    data["freq_ghx"] = data.pop("freq_ghz")
    data["sparse"]["spmv"]["cycles_per_nz"] = data["sparse"]["spmv"].pop("cycles_per_nnz")
    data["stream_efficiency"] = 1.5
    data["cores"] = "twelve"
    with pytest.raises(ConfigError) as exc:
        cpu_preset_from_dict(data, where="xeon-12c.yaml")
    message = str(exc.value)
    assert message.splitlines()[0] == "invalid config xeon-12c.yaml:"
    assert "  freq_ghx: unknown key (did you mean freq_ghz?)" in message
    assert "  freq_ghz: required key missing" in message
    assert "  sparse.spmv.cycles_per_nz: unknown key (did you mean cycles_per_nnz?)" in message
    assert "  sparse.spmv.cycles_per_nnz: required key missing" in message
    assert "  cores: expected int, got 'twelve'" in message


def test_semantic_problems_are_reported_with_key_paths() -> None:
    data = yaml.safe_load((CPUS / "xeon-12c.yaml").read_text())
    data["stream_efficiency"] = 1.5
    data["sparse"]["cores_used"] = 13
    data["dense"]["gemm_efficiency"] = 0
    data["energy_model"] = "per_instruction"
    with pytest.raises(ConfigError) as exc:
        cpu_preset_from_dict(data, where="w")
    message = str(exc.value)
    for line in ("  stream_efficiency: must be in (0, 1], got 1.5",
                 "  sparse.cores_used: must be <= cores (12), got 13",
                 "  dense.gemm_efficiency: must be in (0, 1], got 0.0",
                 "  energy_per_instruction_pj: required when energy_model is per_instruction"):
        assert line in message


# ---------------------------------------------------------------------------------------------
# Estimates: invariants of the roofline


@pytest.mark.parametrize("kernel", KERNELS)
def test_estimates_are_positive_and_energy_is_power_times_time_plus_dram(
        presets: dict[str, CpuPreset], kernel: str) -> None:
    lay = layer(kernel, shape_for(kernel, 96), 0.1, seed=3)
    for preset in presets.values():
        est = estimate(lay, preset)
        assert est.seconds > 0 and est.energy_j > 0 and est.bytes > 0
        assert est.flops > 0 and est.dense_equivalent_flops >= est.flops
        assert est.layer == kernel and est.preset == preset.name
        dram_j = est.bytes * 8.0 * preset.dram_pj_per_bit * 1e-12
        cores = est.breakdown["cores_used"]      # the library's threads, or 1 (MKL_DYNAMIC)
        assert cores in (preset.library_cost(est.library).cores_used, 1)
        power_w = cores * preset.core_power_w + preset.uncore_power_w
        assert est.energy_j == pytest.approx(power_w * est.seconds + dram_j, rel=1e-12)
        assert est.breakdown["energy_dram_j"] == pytest.approx(dram_j, rel=1e-12)
        assert est.bytes == pytest.approx(sum(v for k, v in est.breakdown.items()
                                              if k.startswith("dram_bytes_")), rel=1e-12)
        roofs = (est.breakdown["compute_s"], est.breakdown["memory_s"],
                 est.breakdown["issue_s"])
        assert est.seconds == pytest.approx(max(roofs) + est.breakdown["overhead_s"], rel=1e-12)
        assert est.edp_j_s == pytest.approx(est.energy_j * est.seconds)


def test_per_instruction_energy_model(presets: dict[str, CpuPreset]) -> None:
    base = presets["xeon-12c"]
    preset = dataclasses.replace(base, energy_model="per_instruction",
                                 energy_per_instruction_pj=600.0, instructions_per_cycle=1.5)
    assert preset.problems() == []
    est = estimate(layer("spmspm", (128, 128, 128), 0.05), preset)
    busy_s = est.seconds - est.breakdown["overhead_s"]
    instructions = busy_s * preset.freq_ghz * 1e9 * preset.sparse.cores_used * 1.5
    assert est.breakdown["instructions"] == pytest.approx(instructions, rel=1e-12)
    expected = (base.uncore_power_w * est.seconds + instructions * 600e-12
                + est.bytes * 8 * base.dram_pj_per_bit * 1e-12)
    assert est.energy_j == pytest.approx(expected, rel=1e-12)


def test_denser_spmv_takes_longer(presets: dict[str, CpuPreset]) -> None:
    for preset in presets.values():
        times = [estimate(layer("spmv", (2048, 2048), d), preset).seconds
                 for d in (0.001, 0.01, 0.05, 0.2)]
        assert times == sorted(times) and times[0] < times[-1], preset.name


def test_more_bandwidth_or_cores_is_never_slower(presets: dict[str, CpuPreset]) -> None:
    base = presets["xeon-12c"]
    faster_mem = dataclasses.replace(base, mem_bandwidth_gb_per_s=2 * base.mem_bandwidth_gb_per_s)
    more_cores = dataclasses.replace(base, cores=24, sparse=dataclasses.replace(
        base.sparse, cores_used=24))
    for kernel in KERNELS:
        lay = layer(kernel, shape_for(kernel, 256), 0.05)
        t = estimate(lay, base).seconds
        assert estimate(lay, faster_mem).seconds <= t
        assert estimate(lay, more_cores).seconds <= t


def test_twelve_cores_beat_one_core_on_dense_gemm(presets: dict[str, CpuPreset]) -> None:
    twelve = estimate_gemm(1024, 1024, 1024, presets["xeon-12c"])
    one = estimate_gemm(1024, 1024, 1024, presets["xeon-1c"])
    assert twelve.seconds < one.seconds / 4
    assert twelve.flops == one.flops == 2 * 1024**3


def test_bound_classification(presets: dict[str, CpuPreset]) -> None:
    xeon = presets["xeon-12c"]
    # 839k nonzeros at 8 B each on 12 cores: 78 us at 86 GB/s vs 61 us of issue.
    spmv = estimate(layer("spmv", (4096, 4096), 0.05), xeon)
    assert spmv.bound == "memory"
    assert spmv.breakdown["memory_s"] > spmv.breakdown["issue_s"] > spmv.breakdown["compute_s"]
    for preset in presets.values():
        assert estimate_gemm(2048, 2048, 2048, preset).bound == "compute"
    # One scalar core (the host's scipy loop) is issue-bound on the same SpMV.
    assert estimate(layer("spmv", (4096, 4096), 0.05), presets["host"]).bound == "issue"


def test_unsupported_layer_is_a_workload_error(presets: dict[str, CpuPreset]) -> None:
    odd = types.SimpleNamespace(name="spmvv", tensors={})
    with pytest.raises(WorkloadError, match=r"no model for layer 'spmvv' \(did you mean "
                                            r"spmv\?\); supported: elemadd, elemadd3, elemmul"):
        estimate(odd, presets["xeon-12c"])


def test_malformed_tensors_are_workload_errors(presets: dict[str, CpuPreset]) -> None:
    xeon = presets["xeon-12c"]
    b = sp.random(8, 6, density=0.5, format="csr", random_state=0)
    with pytest.raises(WorkloadError, match="tensor 'c' has length 5, expected 6"):
        estimate(types.SimpleNamespace(name="spmv", tensors={"B": b, "c": np.ones(5)}), xeon)
    with pytest.raises(WorkloadError, match="B is 8x6 but C is 8x6"):
        estimate(types.SimpleNamespace(name="spmspm", tensors={"B": b, "C": b}), xeon)
    with pytest.raises(WorkloadError, match="tensor 'C' missing"):
        estimate(types.SimpleNamespace(name="elemadd", tensors={"B": b}), xeon)
    with pytest.raises(WorkloadError, match="M must be a positive int"):
        gemm_work(0, 4, 4, xeon)


def test_registry_adds_a_layer_kind(presets: dict[str, CpuPreset]) -> None:
    xeon = presets["xeon-12c"]

    @cpu_kernel("test_dense_gemm", libraries=("mkl",))
    def _gemm(lay, preset, library):
        m, k = lay.tensors["A"].shape
        return gemm_work(m, lay.tensors["B"].shape[1], k, preset)

    try:
        lay = types.SimpleNamespace(name="test_dense_gemm",
                                    tensors={"A": np.ones((64, 32)), "B": np.ones((32, 16))})
        assert estimate(lay, xeon).flops == 2 * 64 * 32 * 16
        with pytest.raises(ValueError, match="already registered"):
            cpu_kernel("test_dense_gemm")(_gemm)
    finally:
        CPU_KERNELS.pop("test_dense_gemm")


# ---------------------------------------------------------------------------------------------
# Work counts from the actual tensors


def test_spgemm_counts_match_brute_force(presets: dict[str, CpuPreset]) -> None:
    lay = layer("spmspm", (40, 20, 30), 0.15, seed=5, empty_rows=0.2)   # M,N,K
    b = lay.tensors["B"].toarray() != 0
    c = lay.tensors["C"].toarray() != 0
    products = sum(int(b[i, k] and c[k, j]) for i in range(40) for k in range(30)
                   for j in range(20))
    out_nnz = int(np.count_nonzero(b.astype(int) @ c.astype(int)))
    est = estimate(lay, presets["xeon-12c"])
    assert est.breakdown["products"] == products
    assert est.breakdown["nnz_out"] == out_nnz
    assert est.flops == 2 * products
    assert est.dense_equivalent_flops == 2 * 40 * 30 * 20
    assert est.breakdown["branch_misses"] == pytest.approx(
        2 * products * (out_nnz / products) * (1 - out_nnz / products))
    xeon = presets["xeon-12c"]
    vb, ib = xeon.value_bytes, xeon.index_bytes
    assert est.breakdown["dram_bytes_output"] == out_nnz * (vb + ib) + 41 * ib


def test_merge_and_spmv_counts(presets: dict[str, CpuPreset]) -> None:
    xeon = presets["xeon-12c"]
    add = layer("elemadd", (50, 40), 0.2, seed=2)
    b, c = add.tensors["B"].toarray() != 0, add.tensors["C"].toarray() != 0
    est = estimate(add, xeon)
    assert est.breakdown["nnz_union"] == np.count_nonzero(b | c)
    assert est.breakdown["nnz_intersection"] == est.flops == np.count_nonzero(b & c)
    mul = estimate(layer("elemmul", (50, 40), 0.2, seed=2), xeon)
    assert mul.breakdown["nnz_out"] == np.count_nonzero(b & c)
    assert mul.breakdown["issue_cycles"] < est.breakdown["issue_cycles"]   # smaller output
    spmv = layer("spmv", (50, 40), 0.3, seed=4)
    bm, cv = spmv.tensors["B"].toarray(), spmv.tensors["c"]
    est = estimate(spmv, xeon)
    assert est.flops == 2 * np.count_nonzero((bm != 0) & (cv[None, :] != 0))
    assert est.breakdown["executed_flops"] == 2 * np.count_nonzero(bm)
    assert est.breakdown["dram_bytes_B"] == np.count_nonzero(bm) * 8 + 51 * 4


def test_empty_and_fully_dense_operands(presets: dict[str, CpuPreset]) -> None:
    for kernel in KERNELS:
        for density in (0.0, 1.0):
            est = estimate(layer(kernel, shape_for(kernel, 16), density), presets["host"])
            assert est.seconds > 0 and np.isfinite(est.energy_j)
            if density == 0.0:
                assert est.flops == 0
    assert spgemm_branch_misses(0, 0) == 0.0


def test_capacity_misses_only_beyond_the_llc(presets: dict[str, CpuPreset]) -> None:
    small = dataclasses.replace(presets["xeon-12c"], llc_bytes=4096)
    lay = layer("spmv", (64, 4096), 0.05)
    assert estimate(lay, presets["xeon-12c"]).breakdown["dram_bytes_c_capacity_misses"] == 0
    assert estimate(lay, small).breakdown["dram_bytes_c_capacity_misses"] > 0
    b = random_sparse(np.random.default_rng(0), (64, 4096), 0.05, "float")
    assert estimate_spmm(b, 64, small).breakdown["dram_bytes_dense_capacity_misses"] > 0
    assert estimate_spmm(b, 64, presets["xeon-12c"]).breakdown[
        "dram_bytes_dense_capacity_misses"] == 0


def test_estimate_work_matches_estimate(presets: dict[str, CpuPreset]) -> None:
    preset = presets["epyc-9654"]
    work = gemm_work(300, 200, 100, preset)
    assert estimate_work(work, preset, layer="gemm") == estimate_gemm(300, 200, 100, preset)


# ---------------------------------------------------------------------------------------------
# Host calibration


def test_calibrate_host_quick_writes_a_preset_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "h.yaml"
    measured = calibrate_host(out, quick=True, repeats=2)
    preset = load_cpu_preset(out)
    assert preset.name == "host"
    assert uncited_numbers(out.read_text()) == []
    assert measured["quick"] is True
    assert {"gemm", "spmv", "spmm", "spgemm", "merge", "stream", "fitted"} <= set(measured)
    assert preset.mem_bandwidth_gb_per_s == pytest.approx(
        max(s["gb_per_s_best"] for s in measured["stream"]), rel=1e-3)
    assert preset.sparse.spmv.cycles_per_nnz == pytest.approx(
        measured["fitted"]["sparse.spmv.cycles_per_nnz"], rel=1e-3)


def test_time_call_reports_median_and_best() -> None:
    median, best = time_call(lambda: sum(range(100)), repeats=3, min_seconds=0.001)
    assert 0 < best <= median


# ---------------------------------------------------------------------------------------------
# Slow: the host model against fresh measurements on shapes it was not fitted on

# Tolerances, chosen after measuring on this noisy 2-vCPU VM (errors seen in development:
# GEMM within 5%, in-cache sparse kernels within 25%, the out-of-LLC SpMV 1.85x too fast).
GEMM_TOLERANCE = 1.5        # predicted/measured within [1/1.5, 1.5]
SPARSE_TOLERANCE = 2.0      # in-cache sparse kernels: within [1/2, 2]
# Out of the LLC the roofline's perfect overlap of issue and memory time is optimistic for a
# single scalar core (ECM-style non-overlap would be closer): within [1/3, 3].
OUT_OF_LLC_TOLERANCE = 3.0

HELD_OUT = (  # none of these shapes/densities is among calibrate_host's fitting cases
    ("spmv", (6000, 6000), 0.02), ("spmv", (30000, 3000), 0.005), ("spmv", (1500, 20000), 0.03),
    ("spmspm", (1500, 1500, 1500), 0.02), ("spmspm", (3000, 1000, 3000), 0.01),
    ("spmspm", (600, 5000, 600), 0.01),
    ("elemadd", (3000, 3000), 0.03), ("elemadd", (800, 12000), 0.01),
    ("elemadd", (20000, 500), 0.05),
    ("elemmul", (3000, 3000), 0.03), ("elemmul", (800, 12000), 0.01),
    ("elemmul", (20000, 500), 0.05),
)


def _scipy_call(lay):
    b = lay.tensors["B"].astype(np.float32)
    if lay.name == "spmv":
        c = lay.tensors["c"].astype(np.float32)
        return lambda: b @ c
    c = lay.tensors["C"].astype(np.float32)
    return {"spmspm": lambda: b @ c, "elemadd": lambda: b + c,
            "elemmul": lambda: b.multiply(c)}[lay.name]


@pytest.mark.slow
def test_host_model_predicts_unfitted_shapes(tmp_path: Path) -> None:
    calibrate_host(tmp_path / "host.yaml", repeats=5)
    host = load_cpu_preset(tmp_path / "host.yaml")
    rows: list[tuple[str, float, float, float]] = []   # (case, measured, predicted, tolerance)
    for name, shape, density in HELD_OUT:
        lay = layer(name, shape, density, seed=7)
        measured, _ = time_call(_scipy_call(lay), repeats=5, min_seconds=0.02)
        rows.append((f"{name} {shape} @{density}", measured, estimate(lay, host).seconds,
                     SPARSE_TOLERANCE))
    big = layer("spmv", (50000, 50000), 0.002, seed=7)     # 40 MB of CSR > the 32 MB LLC
    measured, _ = time_call(_scipy_call(big), repeats=5, min_seconds=0.02)
    rows.append(("spmv (50000, 50000) @0.002 (out of LLC)", measured,
                 estimate(big, host).seconds, OUT_OF_LLC_TOLERANCE))
    rng = np.random.default_rng(11)
    for m, k, density, cols in ((3000, 3000, 0.02, 48), (8000, 2000, 0.01, 24)):
        b = random_sparse(rng, (m, k), density, "float").astype(np.float32)
        x = rng.random((k, cols), dtype=np.float32)
        measured, _ = time_call(lambda b=b, x=x: b @ x, repeats=5, min_seconds=0.02)
        rows.append((f"spmm ({m}, {k}) x {cols} @{density}", measured,
                     estimate_spmm(b, cols, host).seconds, SPARSE_TOLERANCE))
    with blas_threads(host.cores) as limited:
        assert limited or host.cores > 1
        for m, n, k in ((768, 768, 768), (1536, 1536, 1536), (2000, 1200, 300)):
            a = rng.random((m, k), dtype=np.float32)
            bb = rng.random((k, n), dtype=np.float32)
            measured, _ = time_call(lambda a=a, bb=bb: a @ bb, repeats=5, min_seconds=0.05)
            rows.append((f"gemm {m}x{n}x{k}", measured, estimate_gemm(m, n, k, host).seconds,
                         GEMM_TOLERANCE))
    report = "\n".join(f"{case:45s} measured {t * 1e3:9.3f} ms  model {p * 1e3:9.3f} ms  "
                       f"model/measured {p / t:5.2f} (tolerance {tol}x)"
                       for case, t, p, tol in rows)
    print("\n" + report)
    bad = [case for case, t, p, tol in rows if not 1 / tol <= p / t <= tol]
    assert not bad, f"outside tolerance: {bad}\n{report}"
