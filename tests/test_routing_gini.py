"""Routing skew as a number: ``-p routing=gini:X`` for any Gini in [0, 1), calibrated as the
named profiles are, so skew can be swept."""

from __future__ import annotations

import numpy as np
import pytest

from workloads import WorkloadError, get_workload
from workloads.routing import gini, parse_routing, router_bias


@pytest.mark.parametrize("text,canonical", [("gini:0.3", "gini0.3"), ("gini0.3", "gini0.3"),
                                            ("gini:0", "gini0"), ("uniform", "uniform"),
                                            ("real_concentrated", "gini0.25")])
def test_parse_routing(text, canonical):
    assert parse_routing(text) == canonical


@pytest.mark.parametrize("bad", ["gini:1.0", "gini:-0.1", "gini:abc", "gini:", "zipf"])
def test_bad_routing_names_the_parameter(bad):
    with pytest.raises(WorkloadError, match="^routing: "):
        parse_routing(bad)
    with pytest.raises(WorkloadError, match="parameter routing: "):
        get_workload("moe.olmoe").make({"routing": bad, "scale": "16"})


def test_a_numeric_gini_is_calibrated_as_the_named_profiles():
    named = router_bias(64, 8, "gini0.25", np.random.default_rng(5), noise="gauss")
    numeric = router_bias(64, 8, parse_routing("gini:0.25"), np.random.default_rng(5),
                          noise="gauss")
    assert np.array_equal(named, numeric)


@pytest.mark.parametrize("target", [0.15, 0.3, 0.45])
def test_the_layer_routes_with_the_requested_gini(target):
    """OLMoE's router (64 experts, top-8) on 4,096 tokens: the per-expert token loads have
    the requested Gini within 0.02 (the sampling noise of 512 tokens per expert is ~0.02)."""
    layer = get_workload("moe.olmoe").make({"scale": "16", "tokens": "4096",
                                            "routing": f"gini:{target}"})
    idx, _w, kept = layer.route()
    loads = np.bincount(idx[kept], minlength=layer.num_experts)
    assert gini(loads) == pytest.approx(target, abs=0.02)
