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


def with_fifo(chip, depth: int, hop_latency: int = 1):
    """A copy of ``chip`` with another FIFO depth and hop latency."""
    return dataclasses.replace(
        chip, pe=dataclasses.replace(chip.pe, fifo_depth=depth),
        interconnect=dataclasses.replace(chip.interconnect, fifo_depth=depth,
                                         hop_latency_cycles=hop_latency))
