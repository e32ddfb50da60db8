"""Activation sparsity in FFNs: published zero fractions (each setting's ``source``), skewed
per-neuron firing rates, ReLU thresholds that reproduce them, and TEAL magnitude thresholds.

Model (ASSUMPTION: our choice, not a published model): neuron n of the FFN intermediate fires
(is nonzero) on a token with probability r_n, independently per token, and the rates r_n are
drawn from a Beta distribution with mean 1 - zero_fraction. A small Beta concentration a + b
gives a "hot set" of neurons that fire on most tokens and many that almost never do (the
power law reported by Song et al., "PowerInfer: Fast Large Language Model Serving with a
Consumer-grade GPU").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workloads.base import WorkloadError

ACTIVATION_KINDS = ("none", "relu", "threshold")


@dataclass(frozen=True)
class Activation:
    """An activation-sparsity setting.

    zero_fraction: fraction of the FFN intermediate (kind relu) or of the matrix inputs (kind
        threshold) that is zero on a token, in a dense FFN.
    moe_zero_fraction: the same inside MoE experts.
    kind: "none" (dense), "relu" (zeros come from a ReLU-like activation, per-neuron rates) or
        "threshold" (TEAL/CATS: inputs with small magnitude are zeroed).
    source: where the figure comes from (the paper, by arXiv number).
    """

    name: str
    zero_fraction: float
    moe_zero_fraction: float
    kind: str
    source: str


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("none", 0.0, 0.0, "none", "dense SiLU/GELU FFN: only 2-11% of GELU outputs are "
               "below 0.01 (our unpublished MiniLM-L6 measurement, 400 English sentences)"),
    Activation("relu", 0.95, 0.95, "relu", "native ReLU FFN: T5-Base 97.0%, ViT-B/16 93.7% "
               "zeros (Lazy Neuron, arXiv 2210.06313); >90% in OPT (ReLU Strikes Back, "
               "arXiv 2310.04564)"),
    Activation("prosparse", 0.89, 0.89, "relu", "ProSparse LLaMA2-7B/13B 89.32%/88.80% "
               "(arXiv 2402.13516)"),
    Activation("turbosparse", 0.90, 0.85, "relu", "TurboSparse dReLU: ~90% inactive in "
               "Mistral-7B, 85% inside Mixtral-47B experts (arXiv 2406.05955 section 6.2)"),
    Activation("teal40", 0.40, 0.40, "threshold", "TEAL magnitude threshold on the inputs of "
               "all 7 matrices, 40% (arXiv 2408.14690)"),
    Activation("teal50", 0.50, 0.50, "threshold", "TEAL magnitude threshold on the inputs of "
               "all 7 matrices, 50% (arXiv 2408.14690)"),
)}
"""Activation-sparsity settings by name."""

_RENORM_STEPS = 100


def firing_rates(rng: np.random.Generator, n: int, zero_fraction: float, *,
                 concentration: float = 2.0) -> np.ndarray:
    """Per-neuron firing probabilities (n,), Beta-distributed with mean 1 - zero_fraction and
    a + b = ``concentration`` (smaller: more skew, a heavier hot set), in [0, 1].

    The sample is rescaled (and re-clipped) until its mean is within 1e-6 of the target, so
    even small n hit the requested sparsity.

    Raises: WorkloadError naming n, zero_fraction or concentration.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise WorkloadError(f"n: expected an integer >= 0, got {n!r}")
    zf = _check_fraction("zero_fraction", zero_fraction)
    if not (isinstance(concentration, (int, float)) and 0 < concentration < math.inf):
        raise WorkloadError(f"concentration: must be a finite number > 0, got "
                            f"{concentration!r}")
    mean = 1.0 - zf
    if mean <= 0.0 or mean >= 1.0 or n == 0:
        return np.full(n, mean)
    rates = rng.beta(mean * concentration, zf * concentration, size=n)
    for _ in range(_RENORM_STEPS):
        got = rates.mean()
        if abs(got - mean) < 1e-6 or got <= 0.0:
            break
        if got > mean:
            rates *= mean / got
        else:                                    # stretch toward 1 so clipping cannot stall
            rates = 1.0 - (1.0 - rates) * ((1.0 - mean) / (1.0 - got))
        np.clip(rates, 0.0, 1.0, out=rates)
    return rates


def firing_mask(rng: np.random.Generator, rates: np.ndarray, tokens: int) -> np.ndarray:
    """Which neurons fire on each token: (tokens, n) bool, Bernoulli(rates[n]) per entry."""
    r = _check_rates(rates)
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 0:
        raise WorkloadError(f"tokens: expected an integer >= 0, got {tokens!r}")
    return rng.random((tokens, r.size), dtype=np.float32) < r.astype(np.float32)


def relu_thresholds(rates: np.ndarray, preact_std: np.ndarray | float) -> np.ndarray:
    """theta_n with P(N(0, std_n) > theta_n) = rate_n, so relu(h - theta) is nonzero at those
    rates when the pre-activation h_n is Gaussian with std std_n (rate 0: +inf, 1: -inf).

    Raises: WorkloadError naming rates or preact_std.
    """
    import scipy.stats  # lazily: ~0.6 s to import, and only ReLU sparsity needs it

    r = _check_rates(rates)
    std = np.asarray(preact_std, dtype=np.float64)
    if not (np.isfinite(std).all() and (std > 0).all()):
        raise WorkloadError("preact_std: must be finite and > 0")
    try:
        std = np.broadcast_to(std, r.shape)
    except ValueError:
        raise WorkloadError(f"preact_std: shape {std.shape} does not match rates "
                            f"{r.shape}") from None
    return scipy.stats.norm.isf(r, scale=std)


def magnitude_threshold(x: np.ndarray, zero_fraction: float) -> float:
    """TEAL's threshold: zeroing the entries with |x| < t zeroes round(zero_fraction x size)
    of them (fewer when magnitudes tie at t); +inf zeroes everything.

    Raises: WorkloadError naming x or zero_fraction.
    """
    a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    zf = _check_fraction("zero_fraction", zero_fraction)
    if a.size == 0:
        raise WorkloadError("x: is empty")
    if not np.isfinite(a).all():
        raise WorkloadError("x: contains NaN or inf")
    k = int(round(zf * a.size))
    if k >= a.size:
        return math.inf
    if k == 0:
        return 0.0
    part = np.partition(a, (k - 1, k))
    lo, hi = float(part[k - 1]), float(part[k])
    # midway between the largest zeroed and the smallest kept magnitude (the same entries as
    # t = hi), so a copy of the tensor computed with other rounding (the simulated layer's
    # products) is cut at the same place: t = hi sits exactly on a kept entry
    return hi if lo == hi else 0.5 * (lo + hi)


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise WorkloadError(f"{name}: expected a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise WorkloadError(f"{name}: must be in [0, 1], got {value}")
    return float(value)


def _check_rates(rates: np.ndarray) -> np.ndarray:
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1:
        raise WorkloadError(f"rates: expected a 1-D vector, got shape {r.shape}")
    if not ((r >= 0) & (r <= 1)).all():          # also rejects NaN
        raise WorkloadError("rates: must be in [0, 1]")
    return r
