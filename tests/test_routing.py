"""workloads.routing: load statistics, the Zipf calibration against an independent calibration
table, router biases that reproduce a profile, expert capacity, and the gating rules."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from workloads.base import WorkloadError
from workloads.routing import (
    PROFILE_ALIASES,
    PROFILE_INFO,
    PROFILES,
    apply_capacity,
    calibrate_zipf,
    capacity_of,
    gini,
    load_stats,
    router_bias,
    topk_gating,
    zipf_popularity,
)


def _loads(logits: np.ndarray, k: int) -> np.ndarray:
    """Per-expert token counts of top-k routing (random logits: no ties)."""
    E = logits.shape[1]
    top = np.argpartition(logits, E - k, axis=1)[:, E - k:]
    return np.bincount(top.ravel(), minlength=E)


# ---- statistics ------------------------------------------------------------------------------

def test_gini_known_values():
    assert gini(np.array([5, 5, 5, 5])) == 0.0
    assert gini(np.zeros(6)) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)      # (n - 1) / n
    assert gini(np.array([1, 3])) == pytest.approx(0.25)
    assert gini(np.array([7])) == 0.0
    x = np.random.default_rng(0).integers(0, 50, size=37)
    mean_abs_diff = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())
    assert gini(x) == pytest.approx(mean_abs_diff)
    assert gini(x) == gini(np.random.default_rng(1).permutation(x))


def test_load_stats():
    st = load_stats(np.array([0, 2, 2, 8]))
    assert st["total"] == 12 and st["max"] == 8 and st["min"] == 0 and st["idle"] == 1
    assert st["max_over_mean"] == pytest.approx(8 / 3)
    assert st["cv"] == pytest.approx(np.std([0, 2, 2, 8]) / 3)
    assert st["gini"] == pytest.approx(gini(np.array([0, 2, 2, 8])))
    empty = load_stats(np.zeros(4, dtype=int))
    assert empty["gini"] == empty["cv"] == empty["max_over_mean"] == 0 and empty["idle"] == 4


@pytest.mark.parametrize("bad", [np.array([1, -1]), np.array([[1, 2]]), np.array([1.0, np.nan])])
def test_counts_must_be_a_vector_of_loads(bad):
    with pytest.raises(WorkloadError, match="^counts: "):
        gini(bad)


def test_zipf_popularity():
    p = zipf_popularity(16, 0.7, np.random.default_rng(2))
    ranks = np.arange(1, 17) ** -0.7
    assert p.sum() == pytest.approx(1.0)
    assert np.sort(p) == pytest.approx(np.sort(ranks / ranks.sum()))
    assert not np.array_equal(p, np.sort(p)[::-1])                  # permuted
    assert np.array_equal(p, zipf_popularity(16, 0.7, np.random.default_rng(2)))
    assert zipf_popularity(4, 0.0, np.random.default_rng(0)) == pytest.approx([0.25] * 4)
    with pytest.raises(WorkloadError, match="^s: "):
        zipf_popularity(4, -1.0, np.random.default_rng(0))
    with pytest.raises(WorkloadError, match="^E: "):
        zipf_popularity(0, 1.0, np.random.default_rng(0))


# ---- calibration against an independent table -----------------------------------------------

# (E, k): [(s, max/mean) at Gini 0.10, 0.25, 0.35], measured by the team with a separate
# Gumbel-top-k-over-Zipf script before this module existed (unpublished; not a paper's figure)
TABLE = {
    (8, 2): [(0.29, 1.38), (0.73, 2.07), (1.04, 2.58)],      # Mixtral
    (16, 4): [(0.26, 1.52), (0.65, 2.44), (0.93, 3.07)],     # DBRX
    (64, 8): [(0.21, 1.85), (0.50, 3.64), (0.69, 5.11)],     # OLMoE
    (256, 8): [(0.19, 2.31), (0.43, 6.04), (0.58, 9.90)],    # DeepSeek-V3
}


@pytest.mark.parametrize("E,k", list(TABLE))
@pytest.mark.parametrize("column,target", [(0, 0.10), (1, 0.25), (2, 0.35)])
def test_calibration_reproduces_the_table(E, k, column, target):
    s_ref, max_mean_ref = TABLE[(E, k)][column]
    s = calibrate_zipf(E, k, target)
    assert s == pytest.approx(s_ref, abs=0.05)
    # a fresh sample at that s: Gumbel-top-k of log p, i.e. k experts without replacement
    rng = np.random.default_rng(99)
    logits = np.log(zipf_popularity(E, s, rng)) + rng.gumbel(size=(20000, E))
    loads = _loads(logits, k)
    assert gini(loads) == pytest.approx(target, abs=0.01)
    assert load_stats(loads)["max_over_mean"] == pytest.approx(max_mean_ref, rel=0.08)


def test_calibration_is_deterministic_and_monotone():
    a = calibrate_zipf(64, 6, 0.2)
    assert calibrate_zipf(64, 6, 0.2) == a
    assert calibrate_zipf(64, 6, 0.1) < a < calibrate_zipf(64, 6, 0.3)
    assert calibrate_zipf(64, 6, 0.0) < 0.01          # below sampling noise: s = 0
    gauss = calibrate_zipf(64, 6, 0.2, noise="gauss")
    assert gauss != a and calibrate_zipf(64, 6, 0.2, noise="gauss", noise_std=2.0) \
        == pytest.approx(2 * gauss, abs=0.02)          # s scales with the noise


@pytest.mark.parametrize("kwargs,field", [
    (dict(E=8, k=9, target_gini=0.1), "k"),
    (dict(E=8, k=0, target_gini=0.1), "k"),
    (dict(E=8, k=2, target_gini=1.2), "target_gini"),
    (dict(E=8, k=2, target_gini=0.8), "target_gini"),   # top-2 of 8 caps Gini at 0.75
    (dict(E=8, k=2, target_gini=0.1, noise="cauchy"), "noise"),
    (dict(E=8, k=2, target_gini=0.1, noise_std=0.0), "noise_std"),
    (dict(E=8, k=2, target_gini=0.1, tokens=0), "tokens"),
])
def test_calibration_errors_name_the_field(kwargs, field):
    with pytest.raises(WorkloadError, match=f"^{field}: "):
        calibrate_zipf(**kwargs)


# ---- router biases ---------------------------------------------------------------------------

def test_profiles_are_described():
    assert set(PROFILE_INFO) == set(PROFILES)
    assert all(re.search(r"arXiv \d{4}\.\d{5}", PROFILE_INFO[p])
               for p in PROFILES if p != "uniform")


@pytest.mark.parametrize("E,k,profile,target,noise,std", [
    (8, 2, "gini0.10", 0.10, "gauss", 1.0),
    (8, 2, "gini0.35", 0.35, "gumbel", 1.0),
    (64, 8, "gini0.10", 0.10, "gauss", 2.5),
    (64, 8, "gini0.25", 0.25, "gauss", 1.0),
    (64, 8, "gini0.35", 0.35, "gauss", 0.5),
    (128, 4, "gini0.25", 0.25, "gumbel", 1.0),
    (128, 4, "gini0.35", 0.35, "gauss", 1.0),
])
def test_router_bias_reproduces_the_gini(E, k, profile, target, noise, std):
    bias = router_bias(E, k, profile, np.random.default_rng(3), noise=noise, noise_std=std)
    assert bias.shape == (E,) and abs(bias.mean()) < 1e-9
    rng = np.random.default_rng(4)
    noise_tk = rng.normal(0, std, (20000, E)) if noise == "gauss" else rng.gumbel(0, std,
                                                                                   (20000, E))
    assert gini(_loads(noise_tk + bias, k)) == pytest.approx(target, abs=0.03)


def test_uniform_profile_is_zero_bias():
    assert not router_bias(16, 4, "uniform", np.random.default_rng(0)).any()


def test_section_7_profile_names_are_aliases():
    for alias, name in PROFILE_ALIASES.items():
        assert name in PROFILES
        kw = dict(hot_factor=3.0)
        assert np.array_equal(router_bias(16, 4, alias, np.random.default_rng(1), **kw),
                              router_bias(16, 4, name, np.random.default_rng(1), **kw))


@pytest.mark.parametrize("E,k,factor,noise", [(64, 8, 6.0, "gauss"), (160, 6, 10.0, "gauss"),
                                              (128, 1, 4.0, "gumbel"), (16, 4, 2.0, "gauss")])
def test_hot_expert_gets_hot_factor_times_the_mean(E, k, factor, noise):
    bias = router_bias(E, k, "hot", np.random.default_rng(5), noise=noise, noise_std=1.5,
                       hot_factor=factor)
    hot = int(np.argmax(bias))
    assert np.count_nonzero(bias) == 1 and bias[hot] > 0
    rng = np.random.default_rng(6)
    T = 40000
    noise_tk = rng.normal(0, 1.5, (T, E)) if noise == "gauss" else rng.gumbel(0, 1.5, (T, E))
    loads = _loads(noise_tk + bias, k)
    assert loads[hot] / loads.mean() == pytest.approx(factor, rel=0.05)


def test_hot_factor_at_its_limit_always_picks_the_hot_expert():
    bias = router_bias(8, 2, "hot", np.random.default_rng(7), hot_factor=4.0)
    loads = _loads(np.random.default_rng(8).normal(size=(5000, 8)) + bias, 2)
    assert loads[np.argmax(bias)] == 5000


@pytest.mark.parametrize("kwargs,field", [
    (dict(profile="gini7"), "profile"),
    (dict(profile="zipf"), "profile"),
    (dict(profile="hot", hot_factor=5.0), "hot_factor"),      # E/k = 4
    (dict(profile="hot", hot_factor=0.5), "hot_factor"),
    (dict(profile="gini0.10", noise="uniform"), "noise"),
    (dict(profile="gini0.10", noise_std=-1.0), "noise_std"),
])
def test_router_bias_errors_name_the_field(kwargs, field):
    with pytest.raises(WorkloadError, match=f"^{field}: "):
        router_bias(8, 2, rng=np.random.default_rng(0), **kwargs)


# ---- capacity --------------------------------------------------------------------------------

def test_capacity_drops_by_hand():
    # T=4, k=2, E=4, CF 1.0: capacity ceil(4*2/4) = 2. Expert 0 is asked by (t0,s0), (t1,s0),
    # (t2,s0), (t3,s1): the last two are dropped; every other expert has <= 2 requests.
    idx = np.array([[0, 1], [0, 2], [0, 1], [3, 0]])
    keep = apply_capacity(idx, 4, 1.0)
    assert keep.tolist() == [[True, True], [True, True], [False, True], [True, False]]
    # CF 1.5: capacity 3, only (t3,s1) dropped
    assert (~apply_capacity(idx, 4, 1.5)).sum() == 1 and not apply_capacity(idx, 4, 1.5)[3, 1]


def test_capacity_priority_token_versus_slot():
    # E=3, capacity ceil(3*2/3) = 2; expert 0 asked by (t0,s1), (t1,s0), (t2,s0)
    idx = np.array([[1, 0], [0, 1], [0, 2]])
    assert apply_capacity(idx, 3, 1.0).tolist() == [[True, True], [True, True],
                                                    [False, True]]
    assert apply_capacity(idx, 3, 1.0, priority="slot").tolist() == [[True, False],
                                                                     [True, True],
                                                                     [True, True]]


def test_capacity_rounding():
    assert capacity_of(10, 1, 8, 1.25) == 2          # 1.5625 -> 2
    assert capacity_of(3, 1, 10, 10.0) == 3          # 3.0000000000000004 in floating point
    assert capacity_of(2048, 2, 64, 1.0) == 64


@pytest.mark.parametrize("profile", ["uniform", "gini0.10", "gini0.25"])
def test_capacity_drop_counts_follow_the_loads(profile):
    E, k, T = 64, 2, 4096
    bias = router_bias(E, k, profile, np.random.default_rng(9))
    logits = np.random.default_rng(10).normal(size=(T, E)) + bias
    idx, _ = topk_gating(logits, k, "softmax_topk")
    loads = np.bincount(idx.ravel(), minlength=E)
    drops = []
    for cf in (1.0, 1.25, 2.0):
        keep = apply_capacity(idx, E, cf)
        cap = capacity_of(T, k, E, cf)
        assert (~keep).sum() == np.maximum(loads - cap, 0).sum()
        assert np.bincount(idx[keep], minlength=E).max() <= cap
        drops.append((~keep).mean())
    assert drops[0] >= drops[1] >= drops[2]
    if profile == "uniform":      # random balanced routing: a few % at CF 1.25, ~0 at CF 2
        assert 0.0 < drops[1] < 0.05 and drops[2] < 0.002
    else:
        assert drops[0] > 0.05


@pytest.mark.parametrize("args,field", [
    ((np.array([[0, 4]]), 4, 1.0), "expert_idx"),
    ((np.array([0, 1]), 4, 1.0), "expert_idx"),
    ((np.array([[0.0, 1.0]]), 4, 1.0), "expert_idx"),
    ((np.array([[0, 1]]), 4, 0.0), "capacity_factor"),
    ((np.array([[0, 1]]), 0, 1.0), "E"),
])
def test_capacity_errors_name_the_field(args, field):
    with pytest.raises(WorkloadError, match=f"^{field}: "):
        apply_capacity(*args)


# ---- gating ----------------------------------------------------------------------------------

LOGITS = np.array([[1.0, 3.0, 2.0, 0.5], [0.0, 0.0, 1.0, 0.0]])


def test_softmax_topk_by_hand():
    idx, w = topk_gating(LOGITS, 2, "softmax_topk")
    assert idx.tolist() == [[1, 2], [2, 0]]            # ties to the lower index
    e = math.exp(1.0)
    assert w[0] == pytest.approx([e / (e + 1), 1 / (e + 1)])
    assert w[1] == pytest.approx([e / (e + 1), 1 / (e + 1)])


def test_softmax_without_renormalization_by_hand():
    idx, w = topk_gating(LOGITS, 2, "softmax")
    z = np.exp(LOGITS[0]).sum()
    assert idx[0].tolist() == [1, 2]
    assert w[0] == pytest.approx([math.exp(3) / z, math.exp(2) / z])
    assert w.sum(axis=1).max() < 1


def test_top1_by_hand():
    idx, w = topk_gating(LOGITS, 1, "top1", scaling=2.0)
    assert idx[:, 0].tolist() == [1, 2]
    assert w[0, 0] == pytest.approx(2.0 * math.exp(3) / np.exp(LOGITS[0]).sum())
    with pytest.raises(WorkloadError, match="^k: "):
        topk_gating(LOGITS, 2, "top1")


def test_bias_shifts_softmax_selection_and_weights():
    bias = np.array([5.0, 0.0, 0.0, 0.0])
    idx, w = topk_gating(LOGITS, 2, "softmax_topk", bias=bias)
    assert idx[0].tolist() == [0, 1]                   # 1 + 5 > 3
    assert w[0] == pytest.approx([1 / (1 + math.exp(-3)), math.exp(-3) / (1 + math.exp(-3))])


def _dsv3_reference(logits, bias, k, n_group, topk_group, scaling):
    """DeepSeek-V3 noaux_tc routing, one token at a time (the HF modeling code's steps)."""
    T, E = logits.shape
    size = E // n_group
    out_idx, out_w = [], []
    for t in range(T):
        scores = 1 / (1 + np.exp(-logits[t]))
        sel = scores + bias
        group_scores = [sum(sorted(sel[g * size:(g + 1) * size])[-2:]) for g in range(n_group)]
        groups = sorted(range(n_group), key=lambda g: (-group_scores[g], g))[:topk_group]
        allowed = [e for e in range(E) if e // size in groups]
        chosen = sorted(allowed, key=lambda e: (-sel[e], e))[:k]
        w = scores[chosen] / scores[chosen].sum() * scaling
        order = sorted(range(k), key=lambda i: (-w[i], chosen[i]))
        out_idx.append([chosen[i] for i in order])
        out_w.append([w[i] for i in order])
    return np.array(out_idx), np.array(out_w)


def test_sigmoid_group_matches_a_per_token_reference():
    rng = np.random.default_rng(11)
    E, k, n_group, topk_group = 32, 4, 8, 3
    logits = rng.normal(size=(200, E))
    bias = rng.normal(0, 0.3, size=E)
    idx, w = topk_gating(logits, k, "sigmoid_group", bias=bias, n_group=n_group,
                         topk_group=topk_group, scaling=2.5)
    ref_idx, ref_w = _dsv3_reference(logits, bias, k, n_group, topk_group, 2.5)
    assert np.array_equal(idx, ref_idx)
    assert w == pytest.approx(ref_w)
    assert w.sum(axis=1) == pytest.approx(np.full(200, 2.5))
    groups_used = np.array([len(set(row // (E // n_group))) for row in idx])
    assert groups_used.max() <= topk_group


def test_sigmoid_group_only_picks_from_the_kept_groups():
    # DSv3 shape: 256 experts in 8 groups of 32, keep 4 groups, top-8
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(500, 256))
    idx, w = topk_gating(logits, 8, "sigmoid_group", n_group=8, topk_group=4, scaling=2.5)
    scores = 1 / (1 + np.exp(-logits))
    top2 = np.sort(scores.reshape(500, 8, 32), axis=2)[:, :, -2:].sum(axis=2)
    kept = np.argsort(-top2, axis=1, kind="stable")[:, :4]
    assert all(set(row // 32) <= set(g) for row, g in zip(idx, kept))
    assert (np.diff(w, axis=1) <= 0).all()             # descending weights


def test_sigmoid_group_bias_changes_selection_not_weights():
    logits = np.array([[0.0, 0.1, 0.2, 0.3]])
    idx, w = topk_gating(logits, 1, "sigmoid_group", bias=np.array([1.0, 0, 0, 0]))
    assert idx[0, 0] == 0 and w[0, 0] == pytest.approx(1.0)   # normalized over 1 expert
    idx2, w2 = topk_gating(logits, 2, "sigmoid_group", bias=np.array([1.0, 0, 0, 0]))
    s0, s3 = 0.5, 1 / (1 + math.exp(-0.3))
    assert idx2[0].tolist() == [3, 0]                   # sorted by the unbiased weight
    assert w2[0] == pytest.approx([s3 / (s0 + s3), s0 / (s0 + s3)])


def test_gating_is_vectorized_and_sorted_with_ties_to_the_lower_index():
    logits = np.zeros((3, 6))
    for kind in ("softmax_topk", "softmax", "sigmoid_group"):
        idx, w = topk_gating(logits, 3, kind)
        assert idx.tolist() == [[0, 1, 2]] * 3
        assert (w == w[0, 0]).all()


@pytest.mark.parametrize("kwargs,field", [
    (dict(logits=np.zeros(4), k=1, kind="softmax"), "logits"),
    (dict(logits=np.array([[np.nan, 0.0]]), k=1, kind="softmax"), "logits"),
    (dict(logits=np.zeros((2, 4)), k=5, kind="softmax"), "k"),
    (dict(logits=np.zeros((2, 4)), k=1, kind="sparsemax"), "kind"),
    (dict(logits=np.zeros((2, 4)), k=1, kind="softmax", bias=np.zeros(3)), "bias"),
    (dict(logits=np.zeros((2, 6)), k=1, kind="sigmoid_group", n_group=4), "n_group"),
    (dict(logits=np.zeros((2, 8)), k=1, kind="sigmoid_group", n_group=4, topk_group=5),
     "topk_group"),
    (dict(logits=np.zeros((2, 8)), k=5, kind="sigmoid_group", n_group=4, topk_group=2), "k"),
])
def test_gating_errors_name_the_field(kwargs, field):
    with pytest.raises(WorkloadError, match=f"^{field}: "):
        topk_gating(**kwargs)
