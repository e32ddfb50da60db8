"""The up-front size estimate (workloads.footprint, compiler.footprint) against what building a
workload and its numpy reference really take (tracemalloc's peak)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from workloads import get_workload
from workloads.footprint import available_memory_bytes, estimate

CASES = [
    ("spmspm", {"shape": "3000,300,3000", "density": "0.5"}),
    ("spmspm", {"shape": "300,300,300", "density": "0.05"}),
    ("spmv", {"shape": "2000,2000", "density": "0.2"}),
    ("spmv", {"shape": "200000,200000", "density": "0.00001"}),
    ("elemadd", {"shape": "1000,1000", "density": "0.3"}),
    ("innerprod", {"shape": "60,60,60", "density": "0.02"}),
    ("sddmm", {"shape": "200,200,50", "density": "0.3"}),
    ("mttkrp", {"shape": "40,30,20,20"}),
    ("gemm", {"shape": "512,256,128", "density": "0.3"}),
    ("moe.mixtral8x7b", {"scale": "16", "tokens": "512"}),
    ("moe.deepseek-v2-lite", {"scale": "4", "tokens": "256"}),
    ("linear.bert-base.intermediate", {"tokens": "512"}),
    ("ffn.bert-base", {"tokens": "256", "scale": "2"}),
]


@pytest.mark.parametrize("name, params", CASES, ids=[f"{n}-{i}" for i, (n, _) in
                                                    enumerate(CASES)])
def test_estimate_covers_building_and_the_reference(name, params):
    entry = get_workload(name)
    fp = estimate(name, entry.resolve(params))
    assert fp is not None and fp.host_bytes == sum(fp.terms.values())
    gc.collect()
    tracemalloc.start()
    try:
        layer = entry.make(params)
        ref = layer.reference()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del layer, ref
    # an estimate, not a bound: it covers the measured peak without being wildly above it
    assert peak <= fp.host_bytes <= 10 * peak + 16 * 2**20, (peak, fp.terms)


def test_sam_kernels_count_their_nonzeros_and_tiled_workloads_do_not():
    p = get_workload("spmspm").resolve({"shape": "100,200,300", "density": "0.25"})
    # M,N,K = 100,200,300: B is M x K, C is K x N
    assert estimate("spmspm", p).stored_elements == 100 * 300 // 4 + 300 * 200 // 4
    assert estimate("gemm", get_workload("gemm").resolve({})).stored_elements is None
    assert estimate("moe.olmoe", get_workload("moe.olmoe").resolve({})).stored_elements is None
    assert estimate("linear.custom", {"weights": "w.npz"}) is None   # sized by its file


def test_available_memory_is_positive_and_bounded_by_the_machine():
    have = available_memory_bytes()
    assert 0 < have <= 1 << 62


def test_the_glb_check_matches_the_emit_pass(onyx_chip):
    """The up-front GLB figure is a lower bound of what compiler.pipeline's emit pass finds."""
    from compiler.footprint import ELEMENT_BYTES
    from compiler.pipeline import ELEMENT_BYTES as PIPELINE_BYTES
    from compiler.pipeline import lower_layer

    assert ELEMENT_BYTES == PIPELINE_BYTES
    params = {"shape": "64,64,64", "density": "0.2"}
    layer = get_workload("spmspm").make(params)
    _kernel, images = lower_layer(layer, onyx_chip)
    need = sum(t.nbytes(PIPELINE_BYTES) for t in images.values())
    fp = estimate("spmspm", get_workload("spmspm").resolve(params))
    assert fp.stored_elements * ELEMENT_BYTES <= need
