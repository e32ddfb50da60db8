"""The sampled interpreter check (simulator.unit_check) and the run's check options."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import simulator.burst_fire as burst_fire
from compiler.pipeline import compile_layer
from simulator.burst_fire import Stream
from simulator.unit_check import check_units_sampled, sample_steps
from workloads import get_workload


def _program(chip, name="spmspm", params=None):
    if params is None:
        params = {"shape": "24,24,24", "density": 0.2}
    return compile_layer(get_workload(name).make(params), chip)


@pytest.mark.parametrize("name", ["spmspm", "spmv", "elemadd", "sddmm", "mttkrp"])
def test_the_sample_agrees_on_correct_kernels(onyx_chip, name):
    program = _program(onyx_chip, name, None if name == "spmspm" else {})
    r = check_units_sampled(program.kernels[0], program.images)
    assert r.mismatch is None
    assert r.units == len(program.kernels[0].nodes)
    assert 0 < r.steps <= r.of_steps


def test_the_sample_is_a_fraction_of_a_large_kernel():
    assert sample_steps(10) == 10
    assert sample_steps(64_000) == 1_000
    assert sample_steps(100) == 64


def test_the_sample_catches_a_wrong_firing_function(onyx_chip, monkeypatch):
    # an ALU firing function that adds one to its first output: the ISA's behaviour does not
    program = _program(onyx_chip)
    real = burst_fire.FIRE[burst_fire.Opcode.ALU]

    def wrong(node, ins, mem):
        f = real(node, ins, mem)
        port = next(iter(f.outs))
        s = f.outs[port]
        data = s.data.copy()
        first = np.flatnonzero(s.kind == burst_fire.DATA)[0]
        data[first] = data[first] + 1
        return dataclasses.replace(f, outs={**f.outs, port: Stream(s.kind, data)})

    monkeypatch.setitem(burst_fire.FIRE, burst_fire.Opcode.ALU, wrong)
    r = check_units_sampled(program.kernels[0], program.images)
    assert r.mismatch is not None and "alu" in r.mismatch


def test_run_says_which_checks_ran(small_chip):
    import sieve

    sampled = sieve.run(small_chip, "spmspm").summary["checks"]
    assert sampled["numpy"] is True and sampled["interpreter_sample"] is True
    assert sampled["interpreter"].startswith("skipped: sampled instead")
    full = sieve.run(small_chip, "spmspm", check="full").summary["checks"]
    assert full == {"numpy": True, "interpreter": True}
