"""The CPU baseline runs what Onyx's baselines ran: MKL (vectorised, multi-threaded) or
TACO-generated code (scalar, one core) per kernel; energy is the active power of the cores a
call runs on plus the uncore and DRAM; a model layer is one library call per product."""

from __future__ import annotations

import dataclasses

import pytest

from baselines import (
    CPU_KERNELS,
    CpuPreset,
    estimate,
    layer_estimate,
    load_cpu_preset,
)
from baselines.layers import library_calls
from tests.conftest import ROOT
from workloads import get_workload

TACO_ONLY = ("elemmul", "sddmm", "ttv", "ttm", "innerprod", "mttkrp")
BOTH = ("spmv", "spmspm", "elemadd")
SHAPES = {"spmv": "64,64", "spmspm": "32,32,32", "elemadd": "64,64", "elemmul": "64,64",
          "sddmm": "24,24,16", "ttv": "16,16,16", "ttm": "8,8,8,8", "innerprod": "16,16,16",
          "mttkrp": "8,8,8,8"}


@pytest.fixture(scope="module")
def presets() -> dict[str, CpuPreset]:
    return {p.stem: load_cpu_preset(p) for p in sorted((ROOT / "configs/cpus").glob("*.yaml"))}


def layer(name: str, density: float = 0.2):
    return get_workload(name).make({"shape": SHAPES[name], "density": density, "seed": 1,
                                    "values": "float"})


def scaled(cost, factor: float):
    """A copy of an issue-cost block with every rate multiplied by ``factor``."""
    return dataclasses.replace(cost, **{f.name: getattr(cost, f.name) * factor
                                        for f in dataclasses.fields(cost)})


def with_rates(preset: CpuPreset, lib: str, factor: float) -> CpuPreset:
    """``preset`` with every issue rate of library ``lib`` multiplied by ``factor``."""
    cost = preset.library_cost(lib)
    new = dataclasses.replace(cost, **{k: scaled(getattr(cost, k), factor)
                                       for k in ("spmv", "spmm", "spgemm", "merge")})
    return dataclasses.replace(preset, **{"sparse" if lib == "mkl" else "taco": new})


# ---------------------------------------------------------------------------------------------
# Library per kernel


def test_every_kernel_names_its_libraries() -> None:
    for name in TACO_ONLY:
        assert CPU_KERNELS[name].libraries == ("taco",), name
    for name in BOTH:
        assert set(CPU_KERNELS[name].libraries) == {"mkl", "taco"}, name
    assert CPU_KERNELS["gemm"].libraries == ("mkl",)


@pytest.mark.parametrize("name", TACO_ONLY)
def test_taco_only_kernels_run_as_taco_on_one_core_at_taco_rates(presets, name) -> None:
    """On the 12-core MKL preset a kernel MKL lacks runs as TACO code: one core, TACO's issue
    rates and its scalar compute roof; MKL's rates do not touch it."""
    xeon = presets["xeon-12c"]
    assert xeon.library == "mkl" and xeon.sparse.cores_used == 12
    lay = layer(name)
    est = estimate(lay, xeon)
    assert est.library == "taco"
    assert est.breakdown["cores_used"] == xeon.taco.cores_used == 1
    hz = xeon.freq_ghz * 1e9
    scalar_roof = hz * xeon.taco.fp32_flops_per_cycle_per_core
    assert est.breakdown["compute_s"] == pytest.approx(est.breakdown["executed_flops"]
                                                       / scalar_roof, rel=1e-12)
    assert est.breakdown["issue_s"] == pytest.approx(est.breakdown["issue_cycles"] / hz,
                                                     rel=1e-12)
    assert estimate(lay, with_rates(xeon, "mkl", 10.0)).seconds == est.seconds
    slower = estimate(lay, with_rates(xeon, "taco", 10.0))
    assert slower.breakdown["issue_cycles"] == pytest.approx(
        10 * est.breakdown["issue_cycles"], rel=1e-12)


@pytest.mark.parametrize("name", BOTH)
def test_kernels_in_both_libraries_follow_the_preset(presets, name) -> None:
    xeon = dataclasses.replace(presets["xeon-12c"], fork_join_us=0.0)   # always 12 threads
    lay = layer(name)
    mkl = estimate(lay, xeon)
    assert mkl.library == "mkl" and mkl.breakdown["cores_used"] == 12
    taco = estimate(lay, dataclasses.replace(xeon, library="taco"))
    assert taco.library == "taco" and taco.breakdown["cores_used"] == 1
    # each reads its own library's rates only
    assert estimate(lay, with_rates(xeon, "taco", 10.0)).seconds == mkl.seconds
    assert estimate(lay, with_rates(xeon, "mkl", 10.0)).breakdown["issue_cycles"] \
        == pytest.approx(10 * mkl.breakdown["issue_cycles"], rel=1e-12)


def test_taco_is_not_costed_at_the_mkl_vector_rate(presets) -> None:
    """TTM's inner loop over a dense factor: MKL's SpMM rate is 8 MACs per cycle, TACO's
    scalar loop one; a TTM big enough to be issue-bound must cost TACO's rate."""
    xeon = presets["xeon-12c"]
    assert xeon.taco.spmm.cycles_per_mac > xeon.sparse.spmm.cycles_per_mac
    lay = get_workload("ttm").make({"shape": "24,24,24,64", "density": 0.2, "seed": 0,
                                    "values": "float"})
    est = estimate(lay, xeon)
    macs = est.breakdown["executed_flops"] / 2
    assert est.breakdown["issue_cycles"] >= xeon.taco.spmm.cycles_per_mac * macs
    assert est.breakdown["issue_cycles"] > 4 * xeon.sparse.spmm.cycles_per_mac * macs


def test_taco_preset_matches_onyx_taco_one_core(presets) -> None:
    taco = presets["xeon-1c-taco"]
    assert taco.library == "taco" and taco.taco.cores_used == 1
    for name in (*BOTH, *TACO_ONLY):
        assert estimate(layer(name), taco).library == "taco", name


def test_a_kernel_with_no_taco_form_keeps_its_library(presets) -> None:
    taco = presets["xeon-1c-taco"]
    est = estimate(get_workload("gemm").make({"shape": "16,16,16", "seed": 0}), taco)
    assert est.library == "mkl"


# ---------------------------------------------------------------------------------------------
# Energy: the cores used, the uncore and DRAM


@pytest.mark.parametrize("name", ("spmspm", "elemmul", "ttv"))
def test_energy_is_active_cores_plus_uncore_plus_dram(presets, name) -> None:
    for preset in presets.values():
        est = estimate(layer(name), preset)
        cores = est.breakdown["cores_used"]
        b = est.breakdown
        assert b["energy_cores_j"] == pytest.approx(cores * preset.core_power_w * est.seconds,
                                                    rel=1e-12)
        assert b["energy_uncore_j"] == pytest.approx(preset.uncore_power_w * est.seconds,
                                                     rel=1e-12)
        assert est.energy_j == pytest.approx(b["energy_cores_j"] + b["energy_uncore_j"]
                                             + b["energy_dram_j"], rel=1e-12)


def test_idle_cores_cost_nothing(presets) -> None:
    """A one-core call on a 12-core part pays one core and the uncore, far less than the
    package's full power; adding idle cores to the part changes nothing."""
    xeon = presets["xeon-12c"]
    est = estimate(layer("elemmul"), xeon)
    assert est.breakdown["cores_used"] == 1
    assert est.energy_j < 0.5 * xeon.package_power_w * est.seconds
    bigger = dataclasses.replace(xeon, cores=48)
    assert estimate(layer("elemmul"), bigger).energy_j == est.energy_j
    mkl = estimate(layer("spmspm"), dataclasses.replace(xeon, fork_join_us=0.0))
    assert mkl.breakdown["cores_used"] == 12  # 12 MKL threads: the whole package
    assert mkl.energy_j > 0.99 * xeon.package_power_w * mkl.seconds


def test_package_power_is_cores_plus_uncore_and_matches_tdp(presets) -> None:
    xeon = presets["xeon-12c"]
    assert xeon.package_power_w == pytest.approx(85, abs=0.05)        # the 4214's TDP
    assert presets["epyc-9654"].package_power_w == pytest.approx(360, abs=0.05)


# ---------------------------------------------------------------------------------------------
# A model layer: one library call per product


def chunked(label: str, m: int, k: int, n: int, nnz_per: int, parts: int,
            along: str) -> list[dict]:
    out = []
    for i in range(parts):
        if along == "n":
            out.append({"label": f"{label}[{i * n}:{(i + 1) * n}]", "m": m, "k": k, "n": n,
                        "w_nnz": nnz_per})
        else:
            out.append({"label": f"{label}[{i * k}:{(i + 1) * k}].down", "m": m, "k": k,
                        "n": n, "w_nnz": nnz_per})
    return out


def test_library_calls_merge_the_chunks_of_one_product() -> None:
    products = (chunked("linear", 4, 512, 64, 64 * 512, 8, "n")
                + [{"label": "ffn[0:64].up", "m": 4, "k": 32, "n": 64, "w_nnz": 10},
                   {"label": "ffn[64:128].up", "m": 4, "k": 32, "n": 64, "w_nnz": 20}]
                + chunked("ffn", 4, 64, 32, 7, 2, "k")
                + [{"label": "p#0", "call": "x", "m": 2, "k": 3, "n": 4, "w_nnz": 1},
                   {"label": "p#1", "call": "x", "m": 2, "k": 3, "n": 5, "w_nnz": 2}])
    assert library_calls(products) == [
        {"m": 4, "k": 512, "n": 512, "w_nnz": 8 * 64 * 512},
        {"m": 4, "k": 32, "n": 128, "w_nnz": 30},
        {"m": 4, "k": 128, "n": 32, "w_nnz": 14},
        {"m": 2, "k": 3, "n": 9, "w_nnz": 3},
    ]


def test_a_chunked_layer_is_billed_as_one_call(presets) -> None:
    xeon = presets["xeon-12c"]
    chunks = chunked("linear", 4, 768, 96, 768 * 96, 8, "n")
    one = [{"label": "linear[0:768]", "m": 4, "k": 768, "n": 768, "w_nnz": 768 * 768}]
    est = layer_estimate(chunks, xeon, layer="linear")
    assert est.breakdown["calls"] == 1
    assert est.seconds == layer_estimate(one, xeon, layer="linear").seconds
    assert est.breakdown["overhead_s"] == pytest.approx(xeon.dense.call_overhead_us * 1e-6)
    # the same chunks as eight separate products pay eight overheads
    apart = [{**c, "label": f"p{i}"} for i, c in enumerate(chunks)]
    assert layer_estimate(apart, xeon, layer="linear").breakdown["calls"] == 8
    assert layer_estimate(apart, xeon, layer="linear").seconds > est.seconds


# ---------------------------------------------------------------------------------------------
# MKL's thread count per call (MKL_DYNAMIC)


def test_a_small_mkl_call_runs_on_one_thread_and_a_large_one_on_all(presets) -> None:
    xeon = presets["xeon-12c"]
    assert xeon.fork_join_us > 0
    small = estimate(layer("spmv", density=0.1), xeon)
    assert small.library == "mkl" and small.breakdown["cores_used"] == 1
    assert small.breakdown["overhead_s"] == pytest.approx(
        (xeon.sparse.spmv.call_overhead_us - xeon.fork_join_us) * 1e-6)
    big = estimate(get_workload("spmv").make({"shape": "4096,4096", "density": 0.05,
                                              "seed": 0, "values": "float"}), xeon)
    assert big.breakdown["cores_used"] == 12
    assert big.breakdown["overhead_s"] == pytest.approx(xeon.sparse.spmv.call_overhead_us * 1e-6)
    spgemm = estimate(layer("spmspm", density=0.05), xeon)       # two phases: two fork/joins
    if spgemm.breakdown["cores_used"] == 1:
        assert spgemm.breakdown["overhead_s"] == pytest.approx(
            (xeon.sparse.spgemm.call_overhead_us - 2 * xeon.fork_join_us) * 1e-6)


@pytest.mark.parametrize("name", ("spmv", "spmspm", "elemadd", "gemm"))
def test_the_thread_choice_is_never_slower_than_all_threads(presets, name) -> None:
    xeon = presets["xeon-12c"]
    always = dataclasses.replace(xeon, fork_join_us=0.0)
    shapes = {"spmv": ("64,64", "2048,2048"), "spmspm": ("32,32,32", "512,512,512"),
              "elemadd": ("64,64", "4096,4096"), "gemm": ("16,16,16", "512,512,512")}[name]
    chosen = set()
    for shape in shapes:
        lay = get_workload(name).make({"shape": shape, "density": 0.05, "seed": 0})
        dyn, fixed = estimate(lay, xeon), estimate(lay, always)
        assert fixed.breakdown["cores_used"] == 12
        assert dyn.seconds <= fixed.seconds
        chosen.add(dyn.breakdown["cores_used"])
    assert chosen == {1.0, 12.0}, "small on one thread, large on twelve"


def test_the_run_summary_says_which_library_ran() -> None:
    import sieve
    from reports.summary import summary_rows

    for name, shape, library in (("ttv", "8,8,8", "taco"), ("spmv", "32,32", "mkl")):
        report = sieve.run(ROOT / "configs/chips/onyx.yaml", name,
                           params={"shape": shape, "density": 0.2, "seed": 0},
                           baseline="xeon-12c")
        assert report.summary["baseline"]["library"] == library
        assert (f"CPU time (s) [xeon-12c, {library}]"
                in [label for label, _ in summary_rows(report.summary)])
