"""workloads.pruning: pattern parsing, magnitude pruning (exact counts, N:M group invariants,
block scores, tie-breaks) and synthetic masks whose row CV follows the MiniLM-L6 points."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from workloads.base import WorkloadError
from workloads.kernels import prune_nm
from workloads.pruning import (
    PATTERN_HELP,
    Pattern,
    parse_pattern,
    prune,
    row_cv_default,
    row_nnz_cv,
    synthetic_mask,
)


def _w(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---- patterns --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,pattern,fixed", [
    ("unstructured", Pattern("unstructured"), None),
    ("2:4", Pattern("nm", n=2, m=4), 0.5),
    ("4:8", Pattern("nm", n=4, m=8), 0.5),
    ("1:4", Pattern("nm", n=1, m=4), 0.75),
    ("3:3", Pattern("nm", n=3, m=3), 0.0),
    ("block4x4", Pattern("block", bh=4, bw=4), None),
    ("block16x16", Pattern("block", bh=16, bw=16), None),
    ("block32x8", Pattern("block", bh=32, bw=8), None),
    ("block8", Pattern("block", bh=8, bw=8), None),
    (" Block4X4 ", Pattern("block", bh=4, bw=4), None),
])
def test_parse_pattern(text, pattern, fixed):
    got = parse_pattern(text)
    assert got == pattern
    assert got.fixed_sparsity == fixed
    assert parse_pattern(got.name) == got
    assert parse_pattern(got) is got


def test_pattern_names_are_canonical():
    assert parse_pattern("block8").name == "block8x8"
    assert parse_pattern("2:4").name == "2:4"
    assert "unstructured" in PATTERN_HELP and "2:4" in PATTERN_HELP and "block" in PATTERN_HELP


@pytest.mark.parametrize("text", ["blk4", "0:4", "5:4", "", "block0", "block4x", "2:4:8",
                                  "dense", 3])
def test_bad_patterns_name_the_field(text):
    with pytest.raises(WorkloadError, match="^pattern: "):
        parse_pattern(text)


@pytest.mark.parametrize("args", [("nm", 3, 2), ("nm", 0, 4), ("block", 0, 0, 0, 4),
                                  ("diagonal",)])
def test_invalid_pattern_objects_are_rejected(args):
    with pytest.raises(WorkloadError, match="^pattern: invalid"):
        Pattern(*args)


def test_unknown_pattern_message_lists_the_choices():
    with pytest.raises(WorkloadError, match=r"pattern: unknown pattern 'blk4' \(use "
                       r"unstructured, 2:4, 4:8, 1:4, blockHxW\)"):
        parse_pattern("blk4")


# ---- unstructured ----------------------------------------------------------------------------

@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_unstructured_keeps_exactly_the_largest(s):
    w = _w((97, 131))
    out = prune(w, "unstructured", s)
    kept = out != 0
    assert kept.sum() == round((1 - s) * w.size)
    assert out.dtype == w.dtype and out.shape == w.shape
    assert np.array_equal(out[kept], w[kept])
    if 0 < kept.sum() < w.size:
        assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max()
    assert np.isfinite(w).all() and not np.shares_memory(out, w)


def test_unstructured_ties_go_to_the_lower_flat_index():
    w = np.ones((4, 5), dtype=np.float64)
    w[3, 4] = 2.0
    out = prune(w, "unstructured", 0.5)        # keep 10: the 2.0, then flat indices 0..8
    expect = np.zeros(20)
    expect[:9] = 1.0
    expect[19] = 2.0
    assert np.array_equal(out.ravel(), expect)


def test_integer_weights_keep_their_dtype_and_int8_min():
    w = np.array([[-128, 1, 2, -3], [5, -6, 7, 0]], dtype=np.int8)
    out = prune(w, "unstructured", 0.5)
    assert out.dtype == np.int8
    assert np.array_equal(out, [[-128, 0, 0, 0], [5, -6, 7, 0]])
    half = prune(np.array([[1, 2, 3, 4]], dtype=np.float16), "unstructured", 0.5)
    assert half.dtype == np.float16 and np.array_equal(half, [[0, 0, 3, 4]])


# ---- N:M -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("4:8", 4, 8), ("1:4", 1, 4)])
def test_nm_groups_keep_exactly_n_of_the_largest(pattern, n, m):
    w = _w((64, 256), seed=1)
    out = prune(w, pattern, None)
    groups = (out != 0).reshape(64, 256 // m, m)
    assert (groups.sum(axis=2) == n).all()
    mag = np.abs(w).reshape(64, 256 // m, m)
    kept_min = np.where(groups, mag, np.inf).min(axis=2)
    dropped_max = np.where(groups, -np.inf, mag).max(axis=2)
    assert (kept_min >= dropped_max).all()
    assert row_nnz_cv(out) == 0.0
    assert prune(w, pattern, 1 - n / m).tolist() == out.tolist()


@pytest.mark.parametrize("nm,cols", [((2, 4), 10), ((2, 4), 9), ((4, 8), 13), ((1, 4), 7),
                                     ((3, 5), 11)])
def test_nm_matches_the_gemm_pruner_including_ties_and_partial_groups(nm, cols):
    # integers 0..3 make many ties; kernels.prune_nm prunes along axis 0 of B (K x N)
    w = np.random.default_rng(2).integers(-3, 4, size=(12, cols)).astype(np.int64)
    got = prune(w, f"{nm[0]}:{nm[1]}", None)
    assert np.array_equal(got, prune_nm(w.T, nm).T)
    rest = cols % nm[1]
    if rest:
        tail = prune(np.ones((3, cols)), f"{nm[0]}:{nm[1]}", None)[:, -rest:]
        assert (tail.sum(axis=1) == min(nm[0], rest)).all()


def test_nm_with_large_m_uses_a_stable_sort():
    w = np.random.default_rng(3).integers(0, 5, size=(6, 70)).astype(np.float32)
    got = prune(w, "16:32", None)
    assert np.array_equal(got, prune_nm(w.T, (16, 32)).T)


def test_nm_rejects_a_different_sparsity():
    with pytest.raises(WorkloadError, match="^sparsity: pattern 2:4 fixes sparsity at 0.5"):
        prune(_w((4, 8)), "2:4", 0.7)


# ---- block -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,bh,bw,s", [((64, 64), 4, 4, 0.5), ((70, 45), 16, 16, 0.5),
                                          ((33, 100), 8, 32, 0.75), ((64, 64), 4, 4, 0.9)])
def test_block_keeps_whole_best_blocks(shape, bh, bw, s):
    w = _w(shape, seed=4)
    out = prune(w, f"block{bh}x{bw}", s)
    gr, gc = -(-shape[0] // bh), -(-shape[1] // bw)
    pad = np.zeros((gr * bh, gc * bw), dtype=bool)
    pad[:shape[0], :shape[1]] = out != 0
    blocks = pad.reshape(gr, bh, gc, bw).transpose(0, 2, 1, 3).reshape(gr, gc, -1)
    kept = blocks.any(axis=2)
    assert kept.sum() == round((1 - s) * gr * gc)
    magpad = np.zeros(pad.shape)
    magpad[:shape[0], :shape[1]] = np.abs(w)
    score = magpad.reshape(gr, bh, gc, bw).sum(axis=(1, 3))
    assert score[kept].min() >= score[~kept].max()
    full = np.zeros(pad.shape, dtype=bool)
    full[:shape[0], :shape[1]] = True
    inside = full.reshape(gr, bh, gc, bw).transpose(0, 2, 1, 3).reshape(gr, gc, -1)
    assert (blocks[kept] == inside[kept]).all()        # a kept block keeps every real entry


def test_block_ties_go_to_the_lower_block_index():
    out = prune(np.ones((4, 8)), "block2x2", 0.5)   # 8 equal blocks, keep the first 4
    assert np.array_equal(out[:2], np.ones((2, 8))) and not out[2:].any()


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("w,pattern,s,field", [
    (np.array([[1.0, np.nan]]), "unstructured", 0.5, "weights: contain NaN"),
    (np.array([[1.0, np.inf]]), "2:4", None, "weights: contain inf"),
    (np.ones((2, 2, 2)), "unstructured", 0.5, "weights: expected a 2-D"),
    (np.array([["a"]]), "unstructured", 0.5, "weights: expected real numbers"),
    (sp.eye(3, format="csr"), "unstructured", 0.5, "weights: expected a dense"),
    (np.ones((2, 2)), "unstructured", 1.5, r"sparsity: must be in \[0, 1\]"),
    (np.ones((2, 2)), "unstructured", float("nan"), "sparsity: must be in"),
    (np.ones((2, 2)), "unstructured", None, "sparsity: required for pattern unstructured"),
    (np.ones((2, 2)), "block4", None, "sparsity: required for pattern block4x4"),
    (np.ones((2, 2)), "block7y", 0.5, "pattern: unknown pattern"),
])
def test_prune_errors_name_the_field(w, pattern, s, field):
    with pytest.raises(WorkloadError, match="^" + field):
        prune(w, pattern, s)


# ---- synthetic masks -------------------------------------------------------------------------

def test_row_cv_default_follows_section_3():
    for s, cv in [(0.0, 0.0), (0.5, 0.17), (0.7, 0.30), (0.9, 0.55), (0.95, 0.75), (1.0, 0.75)]:
        assert row_cv_default(s) == pytest.approx(cv)
    assert row_cv_default(0.6) == pytest.approx(0.235)
    assert row_cv_default(0.25) == pytest.approx(0.085)
    with pytest.raises(WorkloadError, match="^sparsity: "):
        row_cv_default(1.2)


@pytest.mark.parametrize("s", [0.5, 0.7, 0.9])
def test_unstructured_mask_rows_vary_like_pruned_models(s):
    mask = synthetic_mask(np.random.default_rng(5), (4096, 4096), "unstructured", s)
    assert mask.dtype == bool and mask.shape == (4096, 4096)
    assert mask.mean() == pytest.approx(1 - s, abs=0.01)
    assert row_nnz_cv(mask) == pytest.approx(row_cv_default(s), abs=0.03)


@pytest.mark.parametrize("shape,s,cv", [((4096, 4096), 0.5, 0.3), ((4096, 4096), 0.5, 0.05),
                                        ((3072, 384), 0.7, 0.25), ((3072, 384), 0.9, 0.5)])
def test_unstructured_mask_hits_a_requested_row_cv(shape, s, cv):
    # on 384 columns the binomial part of the CV is large: it is taken off g's CV
    mask = synthetic_mask(np.random.default_rng(6), shape, "unstructured", s, row_cv=cv)
    assert row_nnz_cv(mask) == pytest.approx(cv, abs=0.03)
    assert mask.mean() == pytest.approx(1 - s, abs=0.02)


def test_unstructured_mask_can_have_empty_rows_at_high_sparsity():
    mask = synthetic_mask(np.random.default_rng(7), (2000, 384), "unstructured", 0.9,
                          row_cv=1.5)
    assert (mask.sum(axis=1) == 0).any()


def test_masks_are_seeded():
    def make(seed, pattern="unstructured", s=0.5):
        return synthetic_mask(np.random.default_rng(seed), (300, 200), pattern, s)
    for pattern, s in [("unstructured", 0.5), ("2:4", None), ("block4x4", 0.5), ("16:32", None)]:
        assert np.array_equal(make(1, pattern, s), make(1, pattern, s))
        assert not np.array_equal(make(1, pattern, s), make(2, pattern, s))


def test_dense_and_empty_masks():
    rng = np.random.default_rng(8)
    assert synthetic_mask(rng, (50, 60), "unstructured", 0.0).all()
    assert not synthetic_mask(rng, (50, 60), "unstructured", 1.0).any()
    assert synthetic_mask(rng, (50, 60), "block4x4", 0.0).all()
    assert not synthetic_mask(rng, (50, 60), "block4x4", 1.0).any()
    assert synthetic_mask(rng, (0, 60), "2:4", None).shape == (0, 60)


@pytest.mark.parametrize("n,m,cols", [(2, 4, 4096), (4, 8, 4096), (1, 4, 4096), (2, 4, 4099),
                                      (4, 8, 21), (16, 32, 70)])
def test_nm_mask_has_exactly_n_per_group(n, m, cols):
    mask = synthetic_mask(np.random.default_rng(9), (512, cols), f"{n}:{m}", None)
    full = cols // m
    groups = mask[:, :full * m].reshape(512, full, m)
    assert (groups.sum(axis=2) == n).all()
    if cols % m:
        assert (mask[:, full * m:].sum(axis=1) == min(n, cols % m)).all()
    if cols >= 4096:                       # positions are uniform: every column near n/m
        assert mask[:, :full * m].mean(axis=0) == pytest.approx(np.full(full * m, n / m),
                                                                abs=0.1)


def test_block_mask_keeps_whole_blocks():
    mask = synthetic_mask(np.random.default_rng(10), (1000, 1030), "block16x16", 0.75)
    gr, gc = -(-1000 // 16), -(-1030 // 16)
    blocks = mask[::16, ::16]
    assert blocks.shape == (gr, gc)
    assert np.array_equal(np.repeat(np.repeat(blocks, 16, 0), 16, 1)[:1000, :1030], mask)
    assert blocks.mean() == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize("args,field", [
    (((4, 4), "unstructured", -0.1), "sparsity"),
    (((4, 4), "unstructured", None), "sparsity"),
    (((4, 4), "4:8", 0.25), "sparsity"),
    (((4, 4), "2:4", None, 0.2), "row_cv"),
    (((4, 4), "block4", 0.5, 0.2), "row_cv"),
    (((4, 4), "unstructured", 0.5, -1.0), "row_cv"),
    (((4, 4), "unstructured", 0.5, float("nan")), "row_cv"),
    (((4, -1), "unstructured", 0.5), "shape"),
    (((4,), "unstructured", 0.5), "shape"),
    (((4, 4), "2by4", None), "pattern"),
])
def test_mask_errors_name_the_field(args, field):
    with pytest.raises(WorkloadError, match=f"^{field}: "):
        synthetic_mask(np.random.default_rng(0), *args)


def test_row_nnz_cv_dense_and_sparse_agree():
    m = np.array([[1, 0, 2, 0], [0, 0, 0, 0], [3, 4, 5, 6]])
    counts = np.array([2, 0, 4])
    assert row_nnz_cv(m) == pytest.approx(counts.std() / counts.mean())
    s = sp.csr_matrix(m)
    s.data[0] = 0                                      # an explicit zero does not count
    counts2 = np.array([1, 0, 4])
    assert row_nnz_cv(s) == pytest.approx(counts2.std() / counts2.mean())
    assert row_nnz_cv(sp.coo_matrix(m)) == pytest.approx(row_nnz_cv(m))
    assert row_nnz_cv(np.zeros((3, 3))) == 0.0
    assert row_nnz_cv(np.zeros((0, 3))) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("pattern,s", [("unstructured", 0.5), ("2:4", None), ("4:8", None),
                                       ("block16x16", 0.5)])
def test_mixtral_expert_size(pattern, s):
    """14336 x 4096 (a Mixtral expert's W1): prune and mask at full size."""
    w = np.random.default_rng(11).standard_normal((14336, 4096), dtype=np.float32)
    out = prune(w, pattern, s)
    assert out.dtype == np.float32
    assert np.count_nonzero(out) == pytest.approx(0.5 * w.size, rel=1e-3)
    mask = synthetic_mask(np.random.default_rng(12), w.shape, pattern, s)
    assert mask.mean() == pytest.approx(0.5, abs=0.01)
