"""compiler.order: the enumeration of loop orders, the burst-probe estimates, the choice by
compiler.objective, sampling, and the catalog kernels' default against every forced order."""

from __future__ import annotations

import dataclasses

import pytest

import compiler.order as order_mod
from compiler.order import (
    choose_order,
    default_order,
    enumerate_orders,
    sample_layer,
    with_formats,
    with_order,
    work_bound,
)
from compiler.pipeline import compile_layer
from isa.errors import ConfigError
from sieve.api import run
from sieve.cli import main
from simulator.config import load_chip
from simulator.probe import probe
from tests.conftest import ROOT
from workloads import get_workload

SMALL = str(ROOT / "configs/chips/onyx-small.yaml")

# every sparse catalog kernel at a small shape (gemm runs on the systolic array: no order)
CATALOG_SMALL = [
    ("spmv", {"shape": "24,24", "density": 0.2}),
    ("spmspm", {"shape": "16,16,16", "density": 0.2}),
    ("elemadd", {"shape": "16,16", "density": 0.2}),
    ("elemadd3", {"shape": "16,16", "density": 0.2}),
    ("elemmul", {"shape": "16,16", "density": 0.3}),
    ("sddmm", {"shape": "8,8,6"}),
    ("ttv", {"shape": "8,8,8"}),
    ("ttm", {"shape": "6,6,6,6", "density": 0.2}),
    ("innerprod", {"shape": "8,8,8"}),
    ("mttkrp", {"shape": "6,6,6,6"}),
]


def _legal(layer) -> list[str]:
    return [c.order for c in enumerate_orders(layer) if c.rejected is None]


def test_enumeration_follows_the_lowering():
    ttm = get_workload("ttm").make({"shape": "4,5,3,6"})
    cands = enumerate_orders(ttm)
    assert len(cands) == 24 and len({c.order for c in cands}) == 24
    assert sorted(_legal(ttm)) == ["ijkl", "ijlk"]
    by = {c.order: c for c in cands}
    # storage follows the loop order: C(k,l) is stored l-major under ijlk
    assert by["ijlk"].formats == {"B": "sss", "C": "dd:1,0"}
    assert by["ijkl"].formats == {"B": "sss", "C": "dd"}
    # an illegal order carries the lowering's reason
    assert "does not follow loop order" in by["jikl"].rejected
    assert "at most one output index" in by["lijk"].rejected
    # the inner product has a scalar output: every permutation lowers
    assert len(_legal(get_workload("innerprod").make({"shape": "3,4,5"}))) == 6
    assert _legal(get_workload("elemadd3").make({})) == ["ij"]


def test_pinned_mode_order_is_kept():
    # the user stored C row-major: only orders visiting k before j lower
    layer = get_workload("spmspm").make({"shape": "8,8,8", "formats": "C:ss:0,1"})
    assert _legal(layer) == ["ikj"]
    layer = get_workload("spmspm").make({"shape": "8,8,8", "formats": "C:ss:1,0"})
    assert _legal(layer) == ["ijk"]


def test_default_order_without_estimates_is_the_first_legal():
    mttkrp = get_workload("mttkrp").make({"shape": "4,5,3,6"})
    # the compiler's default (iklj: two contracted before j) does not lower
    assert enumerate_orders(mttkrp)[0].rejected is not None
    assert default_order(mttkrp) == _legal(mttkrp)[0]
    program = compile_layer(mttkrp, load_chip(SMALL))     # order None: compiles
    assert program.kernels[0].name.endswith(default_order(mttkrp))


@pytest.mark.parametrize("objective", ["cycles", "energy", "edp"])
def test_choice_minimises_the_objective_and_is_deterministic(objective):
    chip = load_chip(SMALL, [f"compiler.objective={objective}"])
    layer = get_workload("ttv").make({"shape": "8,8,8"})
    a = choose_order(layer, chip, probe)
    b = choose_order(layer, chip, probe)
    assert a == b
    probed = [c for c in a.candidates if c.estimate is not None]
    # both legal orders with the given formats, and at most FORMAT_VARIANTS format variants
    assert {c.order for c in probed} == {"ijk", "ikj"}
    assert 2 < len(probed) <= 2 + order_mod.FORMAT_VARIANTS
    best = min(probed, key=lambda c: c.estimate.value(objective))
    assert a.order == best.order and not a.forced and a.objective == objective
    # whole data: the estimate is the full run's cycles
    for c in probed:
        full = probe(compile_layer(with_formats(layer, c.order, c.formats), chip), chip)
        assert c.estimate.cycles == full[0] and c.estimate.energy_pj == full[1]


def test_forced_order_is_kept():
    chip = load_chip(SMALL)
    layer = get_workload("ttm").make({"shape": "4,5,3,6", "order": "ijkl"})
    choice = choose_order(layer, chip, probe)
    assert choice.forced and choice.order == "ijkl"
    assert all(c.estimate is None for c in choice.candidates)       # not probed
    explained = choose_order(layer, chip, probe, probe_forced=True)
    assert explained.order == "ijkl" and explained.formats is None
    assert {c.order for c in explained.candidates if c.estimate is not None} == {"ijkl", "ijlk"}
    rep = run(SMALL, "ttm", params={"shape": "4,5,3,6", "order": "ijkl"})
    assert rep.summary["loop_order"] == "ijkl" and rep.summary["loop_order_by"] == "forced"


def test_unknown_objective_is_a_config_error():
    with pytest.raises(ConfigError, match="compiler.objective"):
        load_chip(SMALL, ["compiler.objective=speed"])


def test_sampled_probe_extrapolates_two_samples(monkeypatch):
    layer = get_workload("ttm").make({"shape": "10,6,6,6", "density": 0.3})
    sampled = sample_layer(layer, "i", 3)
    assert sampled.tensors["B"].shape == (4, 6, 6) and sampled.out_shape == (4, 6, 6)
    assert (sampled.tensors["B"] == layer.tensors["B"][::3]).all()
    bound = max(work_bound(layer, o) for o in _legal(layer))
    monkeypatch.setattr(order_mod, "SCREEN_STEPS", int(bound / 3) + 1)
    calls = []

    def fake(program, chip):
        # a fixed 50 plus 100 per slice of i: the line through the samples finds both
        slices = program.images["B"].shape[0]
        calls.append(slices)
        return 50.0 + 100.0 * slices, 10.0 * slices, 1e-6 * slices

    choice = choose_order(layer, load_chip(SMALL), fake)
    # the screen probes the samples (2 and 4 slices); the finalists run whole (untiled)
    assert choice.sample == ("i", 3, 10) and sorted(set(calls)) == [2, 4, 10]
    assert calls.count(10) == order_mod.FINALISTS
    est = [c.estimate for c in choice.candidates if c.estimate is not None]
    assert len(est) >= 2        # both orders, and their format variants
    for e in est:
        assert e.cycles == pytest.approx(1050.0) and e.energy_pj == pytest.approx(100.0)


def test_sampled_probe_ranks_like_the_full_run(monkeypatch):
    # ttm sampled every 4th and 8th i: the estimates are within 15% of the full runs and
    # choose the same order
    chip = load_chip(SMALL)
    layer = get_workload("ttm").make({"shape": "16,12,12,12", "density": 0.1})
    full = choose_order(layer, chip, probe)
    assert full.sample is None
    bound = max(work_bound(layer, o) for o in _legal(layer))
    monkeypatch.setattr(order_mod, "SCREEN_STEPS", int(bound / 4) + 1)
    sampled = choose_order(layer, chip, probe)
    assert sampled.sample is not None and sampled.sample[1] == 4
    assert sampled.order == full.order
    for a, b in zip(full.candidates, sampled.candidates):
        if a.estimate is not None:       # the screens (a finalist's estimate is its run's)
            sa, sb = a.screen or a.estimate, b.screen or b.estimate
            assert abs(sb.cycles / sa.cycles - 1) < 0.15, a.order


@pytest.mark.parametrize("name,params", CATALOG_SMALL, ids=[n for n, _ in CATALOG_SMALL])
def test_default_is_within_10_percent_of_the_best_forced_order(name, params):
    chip = load_chip(SMALL)
    layer = get_workload(name).make(params)
    forced = {}
    for o in _legal(layer):
        program = compile_layer(with_order(layer, o), chip)
        forced[o] = probe(program, chip)[0]
    rep = run(chip, name, params=params)
    assert rep.summary["verified"]
    assert rep.summary["cycles"] <= 1.10 * min(forced.values()), (rep.summary["loop_order"],
                                                                   forced)


def test_explain_prints_candidates_and_choice(capsys):
    assert main(["compile", SMALL, "ttv", "-p", "shape=8,8,8", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "objective: edp" in out and "ikj" in out and "ijk" in out
    assert "illegal:" in out and "chosen: " in out and "(least edp)" in out
    assert main(["compile", SMALL, "ttv", "-p", "shape=8,8,8", "-p", "order=ijk",
                 "--explain"]) == 0
    assert "chosen: ijk (forced by -p order)" in capsys.readouterr().out


def test_objective_changes_with_the_config():
    chip = load_chip(SMALL)
    assert chip.compiler.objective == "edp"
    other = dataclasses.replace(chip, compiler=dataclasses.replace(chip.compiler,
                                                                   objective="energy"))
    assert choose_order(get_workload("spmv").make({}), other, probe).objective == "energy"


def test_summary_reports_the_order(tmp_path):
    rep = run(SMALL, "ttv", params={"shape": "8,8,8"}, out=tmp_path / "r")
    assert rep.summary["loop_order_by"] == "edp"
    text = (tmp_path / "r" / "summary.md").read_text()
    assert f"| loop order | {rep.summary['loop_order']} (least edp of the legal orders) |" in text


def test_a_candidate_whose_probe_fails_is_rejected_not_fatal():
    from isa.errors import SimulationError

    layer = get_workload("ttv").make({"shape": "8,8,8"})
    chip = load_chip(SMALL)

    def deadlocks_ikj(program, chip):
        if program.kernels[0].name.endswith("ikj"):
            raise SimulationError("deadlock: every unit waits (test)")
        return probe(program, chip)

    choice = choose_order(layer, chip, deadlocks_ikj)
    by = {c.order: c for c in choice.candidates}
    assert choice.order == "ijk" and by["ikj"].rejected.startswith("probe: deadlock")
    assert any("probe: deadlock" in line for line in choice.lines())

    def always(program, chip):
        raise SimulationError("deadlock: every unit waits (test)")

    with pytest.raises(SimulationError, match="deadlock"):
        choose_order(layer, chip, always)


# ------------------------------------------------------------------ level-format choice
def test_level_options_follow_fiber_occupancy():
    import numpy as np

    from compiler.order import level_options

    full = np.ones((4, 8))
    assert set(level_options(full, (0, 1), "ss")) == {"ss", "sd", "sb", "ds", "dd", "db",
                                                      "bs", "bd", "bb"}
    # one nonzero in a 32x32 matrix: its rows are 1/32 full (neither dense nor bitmap) and
    # its one row's fiber 1/32 full (compressed only)
    one = np.zeros((32, 32))
    one[3, 5] = 1.0
    assert level_options(one, (0, 1), "ss") == ["ss"]
    # every row holds 4 of 64 columns: rows dense or bitmap; a row's fiber is 1/16 full:
    # bitmap (as large as compressed) but not dense
    rows = np.zeros((8, 64))
    rows[:, ::16] = 1.0
    assert set(level_options(rows, (0, 1), "ss")) == {"ss", "sb", "ds", "db", "bs", "bb"}


def test_format_choice_locates_where_it_is_clearly_better(capsys):
    # SpM*SpM 64^3 @5%: nearly every k row of C holds a nonzero, so C's outer level stored
    # dense (or bitmap) is located per coordinate of B's row instead of co-iterated with it
    chip = load_chip(SMALL)
    params = {"shape": "64,64,64", "density": 0.05}
    layer = get_workload("spmspm").make(params)
    choice = choose_order(layer, chip, probe)
    by = {(c.order, " ".join(f"{k}:{v}" for k, v in c.formats.items())): c
          for c in choice.candidates if c.estimate is not None}
    given = by[("ikj", "B:ss C:ss")].estimate
    best = by[(choice.order, " ".join(f"{k}:{v}" for k, v in choice.formats.items()))]
    assert choice.order == "ikj" and choice.formats["C"][0] in "db"
    assert best.estimate.value("edp") < given.value("edp")
    assert best.estimate.cycles < 0.75 * given.cycles, (best.estimate, given)   # 3,954 vs 6,773
    rep = run(chip, "spmspm", params=params)
    assert rep.summary["verified"]
    assert rep.summary["formats_chosen"] == " ".join(f"{k}:{v}"
                                                     for k, v in choice.formats.items())
    # the estimate is the run (whole data probed)
    assert rep.summary["cycles"] == best.estimate.cycles
    assert main(["compile", SMALL, "spmspm", "-p", "shape=64,64,64", "-p", "density=0.05",
                 "--explain"]) == 0
    out = capsys.readouterr().out
    assert "B:ss C:ss" in out and f"{given.cycles:,.0f}" in out
    assert f"chosen: ikj B:{choice.formats['B']} C:{choice.formats['C']} (least edp)" in out


def test_pinned_formats_are_kept():
    chip = load_chip(SMALL)
    layer = get_workload("spmspm").make({"shape": "64,64,64", "density": 0.05,
                                         "formats": "C:ss"})
    choice = choose_order(layer, chip, probe)
    probed = [c for c in choice.candidates if c.estimate is not None]
    assert len(probed) > 2      # B's formats still vary
    assert all(c.formats["C"].partition(":")[0] == "ss" for c in choice.candidates)
    assert choice.formats["C"].partition(":")[0] == "ss"
    rep = run(chip, "spmspm", params={"shape": "64,64,64", "density": 0.05,
                                      "formats": "B:ss C:ss"})
    assert rep.summary["formats_chosen"].startswith("B:ss C:ss")


# ------------------------------------------------------------------ the whole-run stage
def _auto(chip):
    return dataclasses.replace(chip, compiler=dataclasses.replace(chip.compiler, unroll="auto"))


def test_finalists_are_estimated_on_the_run_as_compiled():
    # SpM*SpM 64^3 @5% unrolls under compiler.unroll=auto: the screen probes one copy, the
    # finalists are compiled as the run is (unrolled) and run whole; the run reuses the
    # chosen program, so its cycles are the chosen finalist's estimate
    chip = _auto(load_chip(SMALL))
    params = {"shape": "64,64,64", "density": 0.05}
    layer = get_workload("spmspm").make(params)
    choice = choose_order(layer, chip, probe)
    finals = [c for c in choice.candidates if c.how]
    assert len(finals) == order_mod.FINALISTS
    for c in finals:
        program = compile_layer(with_formats(layer, c.order, c.formats), chip)
        assert c.how.startswith("whole run")
        assert c.estimate.cycles == probe(program, chip)[0], c
        assert c.screen is not None
    screened = [c for c in choice.candidates if c.estimate is not None and not c.how]
    worst_final = max(c.screen.value("edp") for c in finals)
    assert all(c.estimate.value("edp") >= worst_final for c in screened)   # the best screened
    chosen = min(finals, key=lambda c: c.estimate.value("edp"))
    assert (choice.order, choice.formats) == (chosen.order, chosen.formats)
    assert choice.program is not None and choice.program.unroll.copies > 1
    rep = run(chip, "spmspm", params=params)
    assert rep.summary["verified"] and rep.summary["cycles"] == chosen.estimate.cycles
    assert rep.summary["unroll"]["copies"] == choice.program.unroll.copies


def test_whole_run_ranks_where_the_screen_misleads():
    # an estimator whose one-copy screen favours ikj and whose whole run (the chip's
    # compiler.unroll) favours ijk: the choice follows the whole run
    chip = load_chip(SMALL, ["compiler.unroll=2"])
    layer = get_workload("ttv").make({"shape": "8,8,8"})

    def skewed(program, chip):
        ikj = program.kernels[0].name.endswith("ikj")
        screen = chip.compiler.unroll == 1
        cycles = 100.0 if ikj == screen else 200.0
        return cycles, cycles, cycles * 1e-9

    choice = choose_order(layer, chip, skewed)
    assert choice.order == "ijk"
    by = {(c.order, c.how != "") for c in choice.candidates if c.estimate is not None}
    assert ("ikj", True) in by and ("ijk", True) in by
    assert "whole run" in "\n".join(choice.lines())


def test_whole_run_samples_tile_calls_and_scales(small_chip, monkeypatch):
    # a tiled program's estimate from m spread tile calls and the program without calls: an
    # estimator linear in the calls (50 + 100 per call) is recovered exactly; each sampled
    # call keeps its loads and images
    from compiler.order import spread_calls, tile_sample, whole_run
    from tests.test_tiling import tiny_mem

    chip = tiny_mem(small_chip)
    layer = get_workload("spmspm").make({"shape": "16,16,16", "density": 0.3})
    program = compile_layer(layer, chip)
    n = len(program.tiling.tiles)
    assert n >= 8
    calls = spread_calls(n, 5)
    assert len(calls) == 5 == len(set(calls)) and calls == sorted(calls) and max(calls) < n
    assert spread_calls(n, 5) == calls and spread_calls(4, 9) == [0, 1, 2, 3]
    # spread over the schedule: not all in its first or last half
    assert min(calls) < n // 2 <= max(calls)
    part = tile_sample(program, chip, calls)
    whole = program.tiling.tiles
    assert [t.index for t in part.tiling.tiles] == [whole[i].index for i in calls]
    assert [t.loads for t in part.tiling.tiles] == [whole[i].loads for i in calls]
    assert sum(c.op == "launch" for c in part.schedule) == 5
    assert not any(c.tile >= 0 for c in tile_sample(program, chip, []).schedule)
    monkeypatch.setattr(order_mod, "PROBE_STEPS", 10)
    monkeypatch.setattr(order_mod, "PROBE_CALLS", 4)
    seen = []

    def linear(program, chip):
        k = len(program.tiling.tiles)
        seen.append(k)
        return 50.0 + 100.0 * k, 7.0 * k, 1e-9 * k

    got, how = whole_run(program, chip, linear, work=2.0 * n)     # 5 calls: 4 at most
    assert got[0] == pytest.approx(50.0 + 100.0 * n) and got[1] == pytest.approx(7.0 * n)
    assert sorted(seen) == [0, 4] and how == f"4 of {n} tile calls (1 copy), scaled to all"
    # within the work budget but more calls than PROBE_CALLS: still sampled (each tile call
    # is a burst run with its own set-up, whatever its work: issue 11's cost cliff)
    seen.clear()
    got, how = whole_run(program, chip, linear, work=5)
    assert sorted(seen) == [0, 4] and how == f"4 of {n} tile calls (1 copy), scaled to all"
    # at most PROBE_CALLS calls: the whole program, as the run is
    monkeypatch.setattr(order_mod, "PROBE_CALLS", n)
    seen.clear()
    got, how = whole_run(program, chip, linear, work=5)
    assert got[0] == 50.0 + 100.0 * n and how.startswith("whole run") and seen == [n]


def test_when_no_finalist_compiles_as_the_run_would_its_error_is_raised():
    # a forced unroll factor the kernel cannot take: the one-copy screen runs, every whole-run
    # compile fails, and the choice raises the run's own error (the CLI: exit 2, one message)
    from isa.errors import CompileError

    chip = load_chip(SMALL, ["compiler.unroll=64"])
    layer = get_workload("spmspm").make({"shape": "4,4,4", "density": 0.5})
    with pytest.raises(CompileError, match="compiler.unroll=64"):
        choose_order(layer, chip, probe)
    assert main(["run", SMALL, "spmspm", "-p", "shape=4,4,4", "-p", "density=0.5", "-q",
                 "-c", "compiler.unroll=64"]) == 2
