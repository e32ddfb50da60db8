"""The up-front size estimate (workloads.footprint, compiler.footprint) against what runs and
builds really take (tracemalloc's peak)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from workloads import get_workload
from workloads.footprint import available_memory_bytes, estimate

SAM_RUNS = [
    ("spmspm", {"shape": "300,300,300", "density": "0.1"}),
    ("spmv", {"shape": "3000,3000", "density": "0.1"}),
    ("elemmul", {"shape": "600,600", "density": "0.3"}),
    ("elemadd", {"shape": "600,600", "density": "0.2"}),
    ("ttv", {"shape": "40,40,40"}),
    ("sddmm", {"shape": "60,60,30", "density": "0.2"}),
]
"""Whole SAM runs (other sizes than the ones the coefficients were measured on)."""

BUILDS = [
    ("gemm", {"shape": "512,256,128", "density": "0.3"}),
    ("moe.mixtral8x7b", {"scale": "16", "tokens": "512"}),
    ("moe.deepseek-v2-lite", {"scale": "4", "tokens": "256"}),
    ("linear.bert-base.intermediate", {"tokens": "512"}),
    ("ffn.bert-base", {"tokens": "256", "scale": "2"}),
]
"""Dense GEMM and model layers: building the layer and its reference (their simulation is
tiled and its memory does not grow with the layer)."""


def _peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name, params", SAM_RUNS, ids=[n for n, _ in SAM_RUNS])
def test_estimate_covers_a_whole_sam_run(onyx_chip, name, params):
    from sieve.api import run

    fp = estimate(name, get_workload(name).resolve(params))
    assert fp is not None and fp.host_bytes == sum(fp.terms.values())
    peak = _peak(lambda: run(onyx_chip, name, params=params))
    # an estimate, not a bound: it covers the measured peak without being wildly above it
    assert peak <= fp.host_bytes <= 4 * peak + 32 * 2**20, (peak, fp.terms)


@pytest.mark.parametrize("name, params", BUILDS, ids=[n for n, _ in BUILDS])
def test_estimate_covers_building_and_the_reference(name, params):
    entry = get_workload(name)
    fp = estimate(name, entry.resolve(params))
    assert fp is not None and fp.host_bytes == sum(fp.terms.values())
    peak = _peak(lambda: entry.make(params).reference())
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
    from compiler.pipeline import lower_layer
    from isa.arch import ELEMENT_BYTES  # the one element size, compiler and simulator alike
    params = {"shape": "64,64,64", "density": "0.2"}
    layer = get_workload("spmspm").make(params)
    _kernel, images = lower_layer(layer, onyx_chip)
    need = sum(t.nbytes(ELEMENT_BYTES) for t in images.values())
    fp = estimate("spmspm", get_workload("spmspm").resolve(params))
    assert fp.stored_elements * ELEMENT_BYTES <= need
