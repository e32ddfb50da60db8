"""The CPU baseline of the tensor kernels (sddmm, ttv, ttm, innerprod, mttkrp): the work
counts equal brute-force loops over the tensors, the estimates obey the roofline's
invariants, and malformed layers are WorkloadErrors."""

from __future__ import annotations

import dataclasses
import itertools
import types

import numpy as np
import pytest

from baselines import CPU_KERNELS, CpuPreset, estimate, load_cpu_preset
from tests.conftest import ROOT
from workloads import WorkloadError, get_workload

KERNELS = ("sddmm", "ttv", "ttm", "innerprod", "mttkrp")
SHAPES = {"sddmm": "5,6,4", "ttv": "4,5,6", "ttm": "3,4,5,6", "innerprod": "4,5,6",
          "mttkrp": "3,4,5,6"}


@pytest.fixture(scope="module")
def presets() -> dict[str, CpuPreset]:
    return {p.stem: load_cpu_preset(p) for p in sorted((ROOT / "configs/cpus").glob("*.yaml"))}


def layer(name: str, **params):
    return get_workload(name).make({"shape": SHAPES[name], "values": "float", **params})


def brute_force(name: str, t: dict[str, np.ndarray]) -> tuple[int, int, int]:
    """(executed ops, useful ops, dense ops) by walking the TACO loops one point at a time:
    executed over the stored nonzeros of B and every coordinate of the dense factors, useful
    where every operand is nonzero."""
    b = t["B"]
    executed = useful = 0
    if name == "sddmm":
        c, d = t["C"], t["D"]
        per = 3
        for i, j in zip(*np.nonzero(b)):
            for k in range(c.shape[1]):
                executed += per
                useful += per * bool(c[i, k] and d[j, k])
        dense = per * b.shape[0] * b.shape[1] * c.shape[1]
    elif name == "ttv":
        c = t["c"]
        for _i, _j, k in zip(*np.nonzero(b)):
            executed += 2
            useful += 2 * bool(c[k])
        dense = 2 * b.size
    elif name == "ttm":
        c = t["C"]
        for _i, _j, el in zip(*np.nonzero(b)):
            for k in range(c.shape[0]):
                executed += 2
                useful += 2 * bool(c[k, el])
        dense = 2 * b.size * c.shape[0]
    elif name == "innerprod":
        c = t["C"]
        for idx in itertools.product(*map(range, b.shape)):
            if b[idx] and c[idx]:
                executed += 2
                useful += 2
        dense = 2 * b.size
    else:
        c, d = t["C"], t["D"]
        for _i, k, el in zip(*np.nonzero(b)):
            for j in range(c.shape[0]):
                executed += 3
                useful += 3 * bool(c[j, k] and d[j, el])
        dense = 3 * b.size * c.shape[0]
    return executed, useful, dense


def test_every_tensor_kernel_is_registered():
    assert set(KERNELS) <= set(CPU_KERNELS)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("params", [
    {"density": 0.3, "seed": 1},
    {"density": 0.6, "empty_rows": 0.5, "seed": 2},
    {"density": 0.4, "factor_density": 0.5, "seed": 3},
    {"density": 1.0, "seed": 4},
    {"density": 0.0, "seed": 5},
], ids=["sparse", "empty-slices", "sparse-factors", "dense", "empty"])
def test_counts_equal_brute_force_loops(presets, name, params):
    if name == "innerprod":
        params = {k: v for k, v in params.items() if k != "factor_density"}
    lay = layer(name, **params)
    work = CPU_KERNELS[name](lay, presets["xeon-12c"])
    executed, useful, dense = brute_force(name, lay.tensors)
    assert (work.executed_flops, work.useful_flops, work.dense_equivalent_flops) == (
        executed, useful, dense)
    assert work.useful_flops <= work.executed_flops <= work.dense_equivalent_flops
    assert work.issue_cycles >= 0 and all(v >= 0 for v in work.dram_bytes.values())
    assert work.counts["nnz_B"] == np.count_nonzero(lay.tensors["B"])


@pytest.mark.parametrize("name", KERNELS)
def test_estimates_are_positive_and_energy_is_power_times_time_plus_dram(presets, name):
    for preset in presets.values():
        est = estimate(layer(name, density=0.3), preset)
        assert est.seconds > 0 and est.energy_j > 0 and est.bytes > 0
        assert est.bound in ("compute", "memory", "issue")
        assert est.layer == name and est.preset == preset.name
        dram_j = est.bytes * 8 * preset.dram_pj_per_bit * 1e-12
        assert est.breakdown["energy_dram_j"] == pytest.approx(dram_j)
        assert est.library == "taco" and est.breakdown["cores_used"] == preset.taco.cores_used
        if preset.energy_model == "active_power":
            power_w = preset.taco.cores_used * preset.core_power_w + preset.uncore_power_w
            assert est.energy_j == pytest.approx(power_w * est.seconds + dram_j)


@pytest.mark.parametrize("name", KERNELS)
def test_empty_operand_costs_only_overhead_and_traffic(presets, name):
    est = estimate(layer(name, density=0.0), presets["xeon-12c"])
    assert est.flops == 0 and est.breakdown["executed_flops"] == 0
    assert est.seconds >= est.breakdown["overhead_s"] > 0


@pytest.mark.parametrize("name", KERNELS)
def test_denser_is_never_faster_and_more_resources_never_slower(presets, name):
    base = presets["xeon-12c"]
    shape = {"sddmm": "96,96,32", "ttv": "40,40,40", "ttm": "24,24,24,24",
             "innerprod": "40,40,40", "mttkrp": "24,24,24,24"}[name]
    times = [estimate(layer(name, shape=shape, density=d, seed=0), base).seconds
             for d in (0.01, 0.05, 0.2, 0.5)]
    assert times == sorted(times) and times[0] < times[-1]
    faster_mem = dataclasses.replace(base, mem_bandwidth_gb_per_s=2 * base.mem_bandwidth_gb_per_s)
    more_cores = dataclasses.replace(base, cores=24, taco=dataclasses.replace(
        base.taco, cores_used=24))
    lay = layer(name, shape=shape, density=0.2)
    t = estimate(lay, base).seconds
    assert estimate(lay, faster_mem).seconds <= t and estimate(lay, more_cores).seconds <= t


def test_dense_factors_make_every_stored_product_useful(presets):
    for name in ("sddmm", "ttm", "mttkrp"):
        work = CPU_KERNELS[name](layer(name, density=0.4), presets["xeon-12c"])
        assert work.useful_flops == work.executed_flops > 0
    work = CPU_KERNELS["ttv"](layer("ttv", density=0.4), presets["xeon-12c"])
    assert work.useful_flops == work.executed_flops


def test_traffic_counts_the_compressed_operand(presets):
    # a CSF tensor: per level a pointer array and a coordinate per fiber, a value per nonzero
    xeon = presets["xeon-12c"]
    b = np.zeros((2, 3, 4))
    b[0, 1, 2] = b[0, 1, 3] = b[1, 0, 0] = 1.0
    lay = types.SimpleNamespace(name="ttv", tensors={"B": b, "c": np.ones(4)})
    work = CPU_KERNELS["ttv"](lay, xeon)
    fibers = [2, 2, 3]                          # i slices, (i,j) fibers, nonzeros
    pointers = (1 + 1) + (2 + 1) + (2 + 1)
    assert work.dram_bytes["B"] == (pointers + sum(fibers)) * xeon.index_bytes \
        + 3 * xeon.value_bytes
    assert work.counts["fibers_B"] == 2
    assert work.dram_bytes["c"] == 4 * xeon.value_bytes


@pytest.mark.parametrize("name,tensors,message", [
    ("sddmm", {"B": np.ones((3, 4)), "C": np.ones((3, 2)), "D": np.ones((5, 2))},
     "index j has sizes 4, 5"),
    ("ttm", {"B": np.ones((2, 3, 4)), "C": np.ones((5, 6))}, "index l has sizes 4, 6"),
    ("innerprod", {"B": np.ones((2, 3, 4)), "C": np.ones((2, 3, 5))}, "B is"),
    ("mttkrp", {"B": np.ones((2, 3, 4)), "C": np.ones((5, 3))}, "tensor 'D' missing"),
    ("ttv", {"B": np.ones((2, 3)), "c": np.ones(3)}, "must be a 3-D numeric array"),
    ("ttv", {"B": np.ones((2, 3, 4)), "c": np.ones(5)}, "has length 5, expected 4"),
])
def test_malformed_layers_are_workload_errors(presets, name, tensors, message):
    lay = types.SimpleNamespace(name=name, tensors=tensors)
    with pytest.raises(WorkloadError, match=message):
        estimate(lay, presets["xeon-12c"])
