"""The run of the program the order choice keeps reuses the choice's burst probe of that very
program (simulator.probe.probed_run): the same result as simulating it again."""

from __future__ import annotations

import json

import sieve.api as api
import simulator.probe as probe_mod
from simulator.config import load_chip


def _doc(report) -> str:
    return json.dumps(report.to_dict(), sort_keys=True, default=str)


def test_reusing_the_probe_gives_the_same_stats(monkeypatch):
    used = []
    real = probe_mod.probed_run

    def spy(program, chip):
        got = real(program, chip)
        used.append(got is not None)
        return got

    monkeypatch.setattr(api, "probed_run", spy)
    reused = api.run("onyx", "spmspm", params={"shape": "24,24,24"})
    assert used == [True]                 # the kept finalist was probed whole: reused
    monkeypatch.setattr(api, "probed_run", lambda program, chip: None)
    simulated = api.run("onyx", "spmspm", params={"shape": "24,24,24"})
    assert _doc(reused) == _doc(simulated)


def test_only_that_program_on_an_equal_chip_is_reused():
    chip = load_chip("onyx-small")
    layer = api.build_layer("spmv", {})
    program = api.compile_workload(layer, chip)
    other = api.compile_workload(layer, chip)          # equal, but not the probed object
    probe_mod.probe(program, chip)
    assert probe_mod.probed_run(other, chip) is None
    probe_mod.probe(program, chip)
    assert probe_mod.probed_run(program, load_chip("onyx")) is None   # another chip
    probe_mod.probe(program, chip)
    assert probe_mod.probed_run(program, chip) is not None
    assert probe_mod.probed_run(program, chip) is None                 # handed out once
