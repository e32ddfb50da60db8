"""MoE routing: expert-load statistics, Zipf popularity calibrated to a target Gini, router
biases that reproduce a routing profile, expert capacity, and the gating rules of the models
in workloads/models.py (from their released configs).

Skew model (ASSUMPTION: our generator, not a published one; its targets are the published Gini
values of PROFILE_INFO): expert e has popularity
p_e proportional to rank^-s (randomly permuted over experts); a token's k experts are the top-k
of log p_e + noise. With standard Gumbel noise this is sampling k experts without replacement
from p (Gumbel-top-k). The exponent s is calibrated so the per-expert token loads have a target
Gini coefficient.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.integrate
import scipy.stats

from workloads.base import WorkloadError

PROFILES: tuple[str, ...] = ("uniform", "gini0.10", "gini0.25", "gini0.35", "hot")
"""Routing profiles ``router_bias`` reproduces."""

PROFILE_INFO: dict[str, str] = {
    "uniform": "no skew: every expert equally likely (an ideally balanced router)",
    "gini0.10": "real text, balanced: Gini 0.10 (DeepSeek-MoE-16B 0.105 on wikitext; "
                "DODOCO, arXiv 2605.20982, abstract)",
    "gini0.25": "real text, concentrated: Gini 0.25 (DeepSeek-V2-Lite, Qwen3.5-35B > 0.24; "
                "DODOCO, arXiv 2605.20982, abstract)",
    "gini0.35": "mock/adversarial: Gini 0.35 (random-token inputs, 0.29-0.38; "
                "DODOCO, arXiv 2605.20982, abstract)",
    "hot": "hot expert: one expert gets hot_factor (4-10, our stress range) x the mean load "
           "(heavy-hitter experts: Replicate-and-Quantize, arXiv 2602.19938)",
}
"""Profile -> what it models and the published measurement it comes from."""

PROFILE_ALIASES: dict[str, str] = {
    "real_balanced": "gini0.10", "real_concentrated": "gini0.25",
    "mock_adversarial": "gini0.35", "hot_expert": "hot",
}
"""Descriptive profile names -> ``PROFILES`` entries."""

GATING_KINDS: tuple[str, ...] = ("softmax_topk", "softmax", "sigmoid_group", "top1")
"""``topk_gating`` kinds: Mixtral/DBRX/Qwen3/GPT-OSS, DeepSeek-V2/Qwen1.5/Qwen2, DeepSeek-V3,
Switch."""

NOISE_KINDS: tuple[str, ...] = ("gumbel", "gauss")

_S_MAX = 4.0                # bisection range of the Zipf exponent
_S_STEPS = 14               # bisection steps: resolution 4 / 2^14
_HOT_STEPS = 60             # bisection steps of the hot expert's bias


# ------------------------------------------------------------------ load statistics
def gini(counts: np.ndarray) -> float:
    """Gini coefficient of a load vector: sum_i (2i - n - 1) x_(i) / (n sum x) over the values
    sorted ascending (i = 1..n). 0 for equal loads and for an all-zero vector."""
    x = _check_counts(counts)
    total = x.sum()
    if x.size == 0 or total == 0:
        return 0.0
    x = np.sort(x)
    n = x.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def load_stats(counts: np.ndarray) -> dict[str, float | int]:
    """Per-expert load statistics: gini, cv (population std / mean), max_over_mean
    (= 1 + MaxVio, arXiv 2408.15664), max, min, idle (experts with 0 tokens), total."""
    x = _check_counts(counts)
    total = float(x.sum())
    mean = total / x.size if x.size else 0.0
    return {
        "gini": gini(x),
        "cv": float(x.std() / mean) if mean > 0 else 0.0,
        "max_over_mean": float(x.max() / mean) if mean > 0 else 0.0,
        "max": _num(x.max()) if x.size else 0,
        "min": _num(x.min()) if x.size else 0,
        "idle": int(np.count_nonzero(x == 0)),
        "total": _num(x.sum()),
    }


def _num(v: np.generic) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def _check_counts(counts: np.ndarray) -> np.ndarray:
    x = np.asarray(counts)
    if x.ndim != 1 or x.dtype.kind not in "fiub":
        raise WorkloadError(f"counts: expected a 1-D vector of loads, got shape {x.shape} "
                            f"dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all() or (x < 0).any():
        raise WorkloadError("counts: loads must be finite and >= 0")
    return x


# ------------------------------------------------------------------ Zipf popularity
def _zipf(E: int, s: float) -> np.ndarray:
    p = np.arange(1, E + 1, dtype=np.float64) ** -s
    return p / p.sum()


def zipf_popularity(E: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """p_e proportional to rank^-s, ranks randomly permuted over the E experts; sums to 1."""
    _check_int("E", E, 1)
    if not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0):
        raise WorkloadError(f"s: Zipf exponent must be a finite number >= 0, got {s!r}")
    return _zipf(E, s)[rng.permutation(E)]


def _noise(rng: np.random.Generator, shape: tuple[int, int], kind: str,
           std: float) -> np.ndarray:
    if kind == "gumbel":
        return rng.gumbel(0.0, std, size=shape)
    return rng.normal(0.0, std, size=shape)


@functools.lru_cache(maxsize=256)
def _calibrate(E: int, k: int, target: float, noise: str, std: float, tokens: int,
               seed: int) -> float:
    noise_tk = _noise(np.random.default_rng(seed), (tokens, E), noise, std).astype(np.float32)
    log_rank = np.log(np.arange(1, E + 1, dtype=np.float64))
    scores = np.empty_like(noise_tk)

    def gini_at(s: float) -> float:
        np.subtract(noise_tk, (s * log_rank).astype(np.float32), out=scores)  # log p + const
        if k == E:
            return 0.0
        # an expert is in a token's top-k iff its score reaches the k-th largest (continuous
        # noise: no ties); a partition is 3x faster than an argpartition
        kth = np.partition(scores, E - k, axis=1)[:, E - k:E - k + 1]
        return gini(np.count_nonzero(scores >= kth, axis=0))

    hi_gini = gini_at(_S_MAX)
    if target > hi_gini:
        raise WorkloadError(f"target_gini: {target} is out of reach for E={E}, k={k} "
                            f"(Gini at s={_S_MAX:g} is {hi_gini:.3f}; top-{k} of {E} caps it "
                            f"at {1 - k / E:.3f})")
    lo, hi = 0.0, _S_MAX
    for _ in range(_S_STEPS):
        mid = 0.5 * (lo + hi)
        if gini_at(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate_zipf(E: int, k: int, target_gini: float, *, noise: str = "gumbel",
                   noise_std: float | None = None, tokens: int = 20000,
                   seed: int = 12345) -> float:
    """The Zipf exponent s in [0, 4] for which top-k of (log p_e + noise) over ``tokens``
    tokens gives per-expert loads with Gini ``target_gini``.

    Bisection (14 steps) on one fixed noise sample drawn from ``seed`` (common random numbers,
    so the result is deterministic); cached. ``noise``: "gumbel" (standard Gumbel: Gumbel-top-k,
    sampling without replacement from p) or "gauss" (normal); ``noise_std`` scales either
    (default 1). Targets below the sampling-noise Gini of s = 0 give 0.
    Reproduces the calibration table in tests/test_routing.py (gumbel noise).

    Raises: WorkloadError naming E, k, target_gini, noise, noise_std or tokens.
    """
    _check_int("E", E, 1)
    _check_int("k", k, 1)
    if k > E:
        raise WorkloadError(f"k: top-{k} needs at least {k} experts, E is {E}")
    if not (isinstance(target_gini, (int, float)) and 0.0 <= target_gini < 1.0):
        raise WorkloadError(f"target_gini: must be in [0, 1), got {target_gini!r}")
    std = _check_noise(noise, noise_std)
    _check_int("tokens", tokens, 1)
    return _calibrate(E, k, float(target_gini), noise, std, int(tokens), int(seed))


def _check_noise(noise: str, noise_std: float | None) -> float:
    if noise not in NOISE_KINDS:
        raise WorkloadError(f"noise: unknown noise {noise!r} (use {', '.join(NOISE_KINDS)})")
    std = 1.0 if noise_std is None else noise_std
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
        raise WorkloadError(f"noise_std: must be a finite number > 0, got {noise_std!r}")
    return float(std)


# ------------------------------------------------------------------ router biases
def router_bias(E: int, k: int, profile: str, rng: np.random.Generator, *,
                noise: str = "gauss", noise_std: float = 1.0,
                hot_factor: float = 6.0) -> np.ndarray:
    """An additive per-expert logit bias (E,) such that top-k of (router logits + bias)
    follows ``profile`` when the router logits are i.i.d. ``noise`` with std ``noise_std``.

    uniform: zeros.
    giniX (any Gini in [0, 1), e.g. gini0.25): noise_std * log p_e,
        p = zipf_popularity(E, s, rng) with s calibrated for unit noise of the same kind
        (scaling logits and bias together leaves top-k unchanged), shifted to mean 0.
    hot: zeros except one random expert, whose bias (bisection on an exact quadrature of its
        selection probability) makes its expected load hot_factor x the mean k/E;
        hot_factor in [1, E/k].
    The section 7A names (real_balanced, real_concentrated, mock_adversarial, hot_expert) are
    accepted too (``PROFILE_ALIASES``).

    Raises: WorkloadError naming profile, E, k, noise, noise_std or hot_factor.
    """
    _check_int("E", E, 1)
    _check_int("k", k, 1)
    if k > E:
        raise WorkloadError(f"k: top-{k} needs at least {k} experts, E is {E}")
    std = _check_noise(noise, noise_std)
    profile = PROFILE_ALIASES.get(profile, profile) if isinstance(profile, str) else profile
    if profile == "uniform":
        return np.zeros(E)
    if profile == "hot":
        if not (isinstance(hot_factor, (int, float)) and 1.0 <= hot_factor <= E / k):
            raise WorkloadError(f"hot_factor: must be in [1, E/k] = [1, {E / k:g}] for "
                                f"E={E}, k={k}, got {hot_factor!r}")
        bias = np.zeros(E)
        bias[rng.integers(E)] = std * _hot_bias(E, k, noise, float(hot_factor))
        return bias
    target = _profile_gini(profile)
    s = calibrate_zipf(E, k, target, noise=noise)
    logp = std * np.log(zipf_popularity(E, s, rng))
    return logp - logp.mean()


def parse_routing(text: str) -> str:
    """A routing parameter as ``router_bias`` takes it: a profile of ``PROFILES``, an alias
    of ``PROFILE_ALIASES``, or any Gini in [0, 1) as ``gini:X`` (or ``giniX``), calibrated as
    the named gini profiles are (``gini:0.25`` is ``gini0.25``).

    Raises: WorkloadError naming routing.
    """
    name = str(text).strip()
    name = PROFILE_ALIASES.get(name, name)
    if name in PROFILES:
        return name
    if name.startswith("gini"):
        value = name[4:].removeprefix(":")
        try:
            g = float(value)
        except ValueError:
            g = math.nan
        if 0.0 <= g < 1.0:
            return f"gini{value}"
        raise WorkloadError(f"routing: gini:X needs a Gini X in [0, 1), got {text!r}")
    raise WorkloadError(f"routing: unknown {text!r} (use {', '.join(PROFILES)}, gini:X for "
                        f"any Gini X in [0, 1), or {', '.join(PROFILE_ALIASES)})")


def _profile_gini(profile: str) -> float:
    if isinstance(profile, str) and profile.startswith("gini"):
        try:
            value = float(profile[4:])
        except ValueError:
            value = -1.0
        if 0.0 <= value < 1.0:
            return value
    raise WorkloadError(f"profile: unknown routing profile {profile!r} (use "
                        f"{', '.join(PROFILES)}, giniX for another Gini, or "
                        f"{', '.join(PROFILE_ALIASES)})")


def _selection_probability(E: int, k: int, noise: str, bias: float) -> float:
    """P(expert 0, whose logit has ``bias`` added, is in the top-k of E i.i.d. unit-noise
    logits) = E_x[P(Binomial(E - 1, S(x + bias)) < k)], S the noise survival function."""
    dist = scipy.stats.gumbel_r if noise == "gumbel" else scipy.stats.norm
    lo, hi = dist.ppf(1e-12), dist.isf(1e-15)
    x = np.linspace(lo, hi, 20001)
    inner = scipy.stats.binom.cdf(k - 1, E - 1, dist.sf(x + bias))
    return float(scipy.integrate.trapezoid(dist.pdf(x) * inner, x))


@functools.lru_cache(maxsize=256)
def _hot_bias(E: int, k: int, noise: str, hot_factor: float) -> float:
    target = hot_factor * k / E
    if target >= 1.0:
        target = 1.0 - 1e-9
    lo, hi = 0.0, 1.0
    while _selection_probability(E, k, noise, hi) < target and hi < 1e3:
        lo, hi = hi, 2 * hi
    for _ in range(_HOT_STEPS):
        mid = 0.5 * (lo + hi)
        if _selection_probability(E, k, noise, mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------ capacity
def apply_capacity(expert_idx: np.ndarray, E: int, capacity_factor: float, *,
                   priority: str = "token") -> np.ndarray:
    """Switch/GShard expert capacity: which of the (T, k) assignments are kept (bool).

    Every expert takes at most capacity = ceil(T k / E x capacity_factor) assignments; later
    ones are dropped (the token passes through the residual). ``priority`` "token": in token
    order, then slot order (row-major); "slot": every token's first choice before any second
    choice (GShard's top-2 order), tokens in order within a slot.

    Raises: WorkloadError naming expert_idx, E, capacity_factor or priority.
    """
    idx = np.asarray(expert_idx)
    _check_int("E", E, 1)
    if idx.ndim != 2 or idx.dtype.kind not in "iu":
        raise WorkloadError(f"expert_idx: expected a (T, k) integer array, got shape "
                            f"{idx.shape} dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= E):
        raise WorkloadError(f"expert_idx: expert indices must be in [0, {E}), got "
                            f"{idx.min()}..{idx.max()}")
    if not (isinstance(capacity_factor, (int, float)) and 0 < capacity_factor < math.inf):
        raise WorkloadError(f"capacity_factor: must be a finite number > 0, got "
                            f"{capacity_factor!r}")
    if priority not in ("token", "slot"):
        raise WorkloadError(f"priority: use token or slot, got {priority!r}")
    T, k = idx.shape
    capacity = math.ceil(round(T * k / E * capacity_factor, 9))
    flat = (idx if priority == "token" else idx.T).ravel()
    order = np.argsort(flat, kind="stable")
    sorted_e = flat[order]
    starts = np.searchsorted(sorted_e, np.arange(E))
    position = np.empty(flat.size, dtype=np.int64)
    position[order] = np.arange(flat.size) - starts[sorted_e]
    keep = position < capacity
    return keep.reshape(T, k) if priority == "token" else keep.reshape(k, T).T.copy()


def capacity_of(T: int, k: int, E: int, capacity_factor: float) -> int:
    """ceil(T k / E x capacity_factor), the per-expert capacity ``apply_capacity`` uses."""
    return math.ceil(round(T * k / E * capacity_factor, 9))


# ------------------------------------------------------------------ gating
def topk_gating(logits: np.ndarray, k: int, kind: str, *, bias: np.ndarray | None = None,
                n_group: int = 1, topk_group: int = 1,
                scaling: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Each token's k experts and gate weights, ((T, k) int, (T, k) float), under the gating
    rule ``kind`` (from the released model configs named in workloads/models.py):

    softmax_topk: top-k logits, softmax over those k (Mixtral, DBRX, Qwen3, GPT-OSS).
    softmax: softmax over all E, then top-k, no renormalization (DeepSeek-V2, Qwen1.5,
        Qwen2-57B).
    sigmoid_group: DeepSeek-V3 (noaux_tc): scores = sigmoid(logits); selection on
        scores + bias, limited to the topk_group of n_group expert groups whose two best
        biased scores sum highest; weights are the chosen unbiased scores normalized to sum 1,
        times ``scaling``.
    top1: Switch: softmax over all E, the top expert with its probability (k must be 1).

    ``bias`` (E,) is added to the logits for the softmax kinds and top1 (a skewed router, as
    ``router_bias`` makes) and to the selection scores only for sigmoid_group. ``scaling``
    multiplies the weights of every kind. Experts in a row are sorted by descending weight;
    ties go to the lower index.

    Raises: WorkloadError naming logits, k, kind, bias, n_group or topk_group.
    """
    x = np.asarray(logits)
    if x.ndim != 2 or x.dtype.kind not in "fiu":
        raise WorkloadError(f"logits: expected a (T, E) real array, got shape {x.shape}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise WorkloadError("logits: contain NaN or inf")
    T, E = x.shape
    if kind not in GATING_KINDS:
        raise WorkloadError(f"kind: unknown gating {kind!r} (use {', '.join(GATING_KINDS)})")
    _check_int("k", k, 1)
    if k > E:
        raise WorkloadError(f"k: top-{k} needs at least {k} experts, logits have E={E}")
    if kind == "top1" and k != 1:
        raise WorkloadError(f"k: top1 gating routes each token to one expert, got k={k}")
    b = np.zeros(E)
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64)
        if b.shape != (E,) or not np.isfinite(b).all():
            raise WorkloadError(f"bias: expected {E} finite values, got shape {b.shape}")
    if kind == "sigmoid_group":
        chosen, weights = _sigmoid_group(x, b, k, n_group, topk_group)
    else:
        probs = _softmax(x + b)
        chosen = _topk_idx(probs, k)
        weights = np.take_along_axis(probs, chosen, axis=1)
        if kind == "softmax_topk":
            weights = weights / weights.sum(axis=1, keepdims=True)
    weights = weights * scaling
    order = np.lexsort((chosen, -weights), axis=1)
    return (np.take_along_axis(chosen, order, axis=1),
            np.take_along_axis(weights, order, axis=1))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _topk_idx(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, ties to the lower index."""
    return np.argsort(-score, axis=1, kind="stable")[:, :k]


def _sigmoid_group(x: np.ndarray, bias: np.ndarray, k: int, n_group: int,
                   topk_group: int) -> tuple[np.ndarray, np.ndarray]:
    T, E = x.shape
    _check_int("n_group", n_group, 1)
    _check_int("topk_group", topk_group, 1)
    if E % n_group:
        raise WorkloadError(f"n_group: {n_group} groups must divide E={E}")
    if topk_group > n_group:
        raise WorkloadError(f"topk_group: {topk_group} exceeds n_group={n_group}")
    size = E // n_group
    if k > topk_group * size:
        raise WorkloadError(f"k: top-{k} exceeds the {topk_group} x {size} experts of the "
                            f"kept groups")
    scores = 1.0 / (1.0 + np.exp(-x))
    select = scores + bias
    grouped = np.sort(select.reshape(T, n_group, size), axis=2)
    group_score = grouped[:, :, -min(2, size):].sum(axis=2)
    groups = _topk_idx(group_score, topk_group)
    allowed = np.zeros((T, n_group), dtype=bool)
    np.put_along_axis(allowed, groups, True, axis=1)
    masked = np.where(np.repeat(allowed, size, axis=1), select, -np.inf)
    chosen = _topk_idx(masked, k)
    weights = np.take_along_axis(scores, chosen, axis=1)
    return chosen, weights / weights.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ checks
def _check_int(name: str, value: object, lowest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
        raise WorkloadError(f"{name}: expected an integer >= {lowest}, got {value!r}")
