"""Shared fixtures: chip configs built from the shipped YAML files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from simulator.config import load_chip

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def small_chip():
    """configs/chips/onyx-small.yaml, the test-size chip."""
    return load_chip(ROOT / "configs/chips/onyx-small.yaml")


@pytest.fixture(scope="session")
def onyx_chip():
    return load_chip(ROOT / "configs/chips/onyx.yaml")


@pytest.fixture(scope="session")
def onyx(onyx_chip):
    """onyx_chip under the short name the unroll and layer tests use."""
    return onyx_chip


@pytest.fixture(scope="session")
def plan(onyx_chip):
    """The onyx chip's model-layer plan (compiler.layers.plan_layer: the lanes, copies of the
    unrolled batched tile kernel), placed once for the session."""
    from compiler.layers import plan_layer

    return plan_layer(onyx_chip)


def with_fifo(chip, depth: int, hop_latency: int = 1):
    """A copy of ``chip`` with another FIFO depth and hop latency."""
    return dataclasses.replace(
        chip, pe=dataclasses.replace(chip.pe, fifo_depth=depth),
        interconnect=dataclasses.replace(chip.interconnect, fifo_depth=depth,
                                         hop_latency_cycles=hop_latency))
