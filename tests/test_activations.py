"""workloads.activations: the section 4 table, Beta firing rates, ReLU thresholds that fire at
those rates on Gaussian pre-activations, and TEAL magnitude thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.activations import (
    ACTIVATION_KINDS,
    ACTIVATIONS,
    firing_mask,
    firing_rates,
    magnitude_threshold,
    relu_thresholds,
)
from workloads.base import WorkloadError


def test_table_follows_section_4():
    expect = {"none": (0.0, 0.0, "none"), "relu": (0.95, 0.95, "relu"),
              "prosparse": (0.89, 0.89, "relu"), "turbosparse": (0.90, 0.85, "relu"),
              "teal40": (0.40, 0.40, "threshold"), "teal50": (0.50, 0.50, "threshold")}
    assert set(ACTIVATIONS) == set(expect)
    for name, (zf, moe, kind) in expect.items():
        a = ACTIVATIONS[name]
        assert (a.name, a.zero_fraction, a.moe_zero_fraction, a.kind) == (name, zf, moe, kind)
        assert a.kind in ACTIVATION_KINDS and a.source
    assert "2210.06313" in ACTIVATIONS["relu"].source
    assert "2402.13516" in ACTIVATIONS["prosparse"].source
    assert "2406.05955" in ACTIVATIONS["turbosparse"].source
    assert "2408.14690" in ACTIVATIONS["teal40"].source


@pytest.mark.parametrize("zf", [0.0, 0.4, 0.5, 0.85, 0.89, 0.95, 0.99, 1.0])
@pytest.mark.parametrize("concentration", [0.3, 2.0, 20.0])
@pytest.mark.parametrize("n", [1000, 14336])
def test_firing_rate_mean_hits_the_target(zf, concentration, n):
    rates = firing_rates(np.random.default_rng(0), n, zf, concentration=concentration)
    assert rates.shape == (n,)
    assert ((rates >= 0) & (rates <= 1)).all()
    assert rates.mean() == pytest.approx(1 - zf, abs=1e-2)


def test_smaller_concentration_is_more_skewed():
    def top10_share(c):
        r = np.sort(firing_rates(np.random.default_rng(1), 10000, 0.8, concentration=c))
        return r[-1000:].sum() / r.sum()
    assert top10_share(0.5) > top10_share(2.0) > top10_share(20.0) > 0.1
    # a skewed ReLU FFN: the hottest 10% of neurons take about half the firings
    assert top10_share(0.5) > 0.4


def test_rates_are_seeded_and_beta_shaped():
    a = firing_rates(np.random.default_rng(2), 5000, 0.7)
    assert np.array_equal(a, firing_rates(np.random.default_rng(2), 5000, 0.7))
    assert not np.array_equal(a, firing_rates(np.random.default_rng(3), 5000, 0.7))
    # Beta(0.6, 1.4): variance mean (1 - mean) / (a + b + 1) = 0.21 / 3
    assert a.var() == pytest.approx(0.07, rel=0.1)


def test_firing_mask_fires_at_the_rates():
    rates = firing_rates(np.random.default_rng(4), 2000, 0.9)
    mask = firing_mask(np.random.default_rng(5), rates, 3000)
    assert mask.shape == (3000, 2000) and mask.dtype == bool
    assert mask.mean() == pytest.approx(0.1, abs=0.005)
    assert mask.mean(axis=0) == pytest.approx(rates, abs=0.04)


@pytest.mark.parametrize("std", [1.0, 0.3])
def test_relu_thresholds_fire_at_the_rates_on_gaussian_preactivations(std):
    rates = np.array([0.0, 0.02, 0.1, 0.5, 0.9, 1.0])
    theta = relu_thresholds(rates, std)
    assert theta[0] == np.inf and theta[-1] == -np.inf and theta[3] == pytest.approx(0.0)
    h = np.random.default_rng(6).normal(0, std, size=(100000, rates.size))
    fired = (np.maximum(h - theta, 0) > 0).mean(axis=0)
    assert fired == pytest.approx(rates, abs=0.005)


def test_relu_thresholds_per_neuron_std():
    rates = firing_rates(np.random.default_rng(7), 512, 0.89)
    std = np.random.default_rng(8).uniform(0.1, 2.0, size=512)
    theta = relu_thresholds(rates, std)
    h = np.random.default_rng(9).normal(0, 1, size=(20000, 512)) * std
    fired = (h > theta).mean()
    assert fired == pytest.approx(0.11, abs=0.005)


@pytest.mark.parametrize("zf", [0.0, 0.25, 0.4, 0.5, 0.9, 1.0])
def test_magnitude_threshold_zeroes_that_fraction(zf):
    x = np.random.default_rng(10).normal(size=(64, 1000))
    t = magnitude_threshold(x, zf)
    assert (np.abs(x) < t).sum() == round(zf * x.size)


def test_magnitude_threshold_with_ties():
    x = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 2.0])
    assert magnitude_threshold(x, 0.5) == 0.5          # zeroes the three zeros, midway to 1
    assert (np.abs(x) < magnitude_threshold(x, 0.2)).sum() == 0   # 1 of 6 would split a tie


@pytest.mark.parametrize("call,field", [
    (lambda: firing_rates(np.random.default_rng(0), 10, 1.2), "zero_fraction"),
    (lambda: firing_rates(np.random.default_rng(0), 10, float("nan")), "zero_fraction"),
    (lambda: firing_rates(np.random.default_rng(0), -1, 0.5), "n"),
    (lambda: firing_rates(np.random.default_rng(0), 10, 0.5, concentration=0), "concentration"),
    (lambda: relu_thresholds(np.array([0.5, 1.5]), 1.0), "rates"),
    (lambda: relu_thresholds(np.array([0.5, np.nan]), 1.0), "rates"),
    (lambda: relu_thresholds(np.array([0.5]), 0.0), "preact_std"),
    (lambda: relu_thresholds(np.array([0.5, 0.5]), np.ones(3)), "preact_std"),
    (lambda: magnitude_threshold(np.array([1.0, np.nan]), 0.5), "x"),
    (lambda: magnitude_threshold(np.zeros(0), 0.5), "x"),
    (lambda: magnitude_threshold(np.ones(3), -0.1), "zero_fraction"),
    (lambda: firing_mask(np.random.default_rng(0), np.array([0.5]), -2), "tokens"),
])
def test_errors_name_the_field(call, field):
    with pytest.raises(WorkloadError, match=f"^{field}: "):
        call()


def test_magnitude_threshold_cuts_a_rounded_copy_at_the_same_place():
    # the simulated layer's h is the reference's h with other rounding (float32 products): a
    # threshold sitting exactly on a kept entry would zero it on one side and not the other
    x = np.random.default_rng(11).normal(size=(8, 3072))
    t = magnitude_threshold(x, 0.5)
    x32 = x.astype(np.float32).astype(np.float64)
    assert np.array_equal(np.abs(x) < t, np.abs(x32) < t)
