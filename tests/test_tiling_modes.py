"""Tile pipelining chosen per kernel (``controller.tile_pipelining: auto``, issue 14).

Pipelining halves a tile's levels (a depth-2 FIFO of tiles in one MEM tile): more, smaller
tiles whose firmware work is per run of tiles, not per tile. It wins where the firmware's
per-tile work dominates short tiles and loses where the halved tiles re-walk levels (the
kernel grows more than the firmware shrinks). The compiler estimates both modes as the run
is and keeps the better by ``compiler.objective``; the program carries the mode and the
controller runs it so, whatever the chip config says.
"""

from __future__ import annotations

import dataclasses

import pytest

import sieve
from compiler.order import block_calls, choose_order, spread_calls
from compiler.pipeline import compile_layer
from compiler.tiling import modes, with_pipelining
from isa.errors import ConfigError
from sieve.cli import main
from simulator.config import load_chip
from simulator.controller import simulate
from simulator.probe import probe
from tests.test_tiling import tiny_mem
from workloads import get_workload

SMALL = "configs/chips/onyx-small.yaml"

SPMSPM = {"shape": "64,64,64", "density": 0.05, "order": "ikj", "formats": "B:ss C:ss"}
"""SpM*SpM with both operands compressed in order ikj: C's k level is re-walked for every
row of B, so halving the tiles (pipelined) adds kernel work; whether that outweighs the
firmware saved depends on the MEM tile's size (below)."""


def _chip(small_chip, mem_bytes: int, mode):
    return dataclasses.replace(tiny_mem(small_chip, mem_bytes, mode), compiler=dataclasses.replace(
        small_chip.compiler, objective="cycles"))


@pytest.mark.parametrize("mem_bytes, winner", [(256, True), (1024, False)],
                         ids=["256B-pipelining-wins", "1KB-one-at-a-time-wins"])
def test_auto_runs_the_better_of_the_two_forced_modes(small_chip, mem_bytes, winner):
    """256-byte MEM tiles: 16 tiles one at a time pay 16 kernel calls and their descriptors
    against 128 tiles in 4 runs pipelined: pipelining wins. 1 KB: 2 tiles against 4, the
    firmware is small and the halved tiles' re-walks cost more: one at a time wins. auto
    runs the winner (the same program as the forced mode: the same cycles)."""
    forced = {mode: sieve.run(_chip(small_chip, mem_bytes, mode), "spmspm", params=SPMSPM)
              for mode in (False, True)}
    assert all(r.program.tiling.pipelined is m for m, r in forced.items())
    best = min(forced, key=lambda m: forced[m].summary["cycles"])
    assert best is winner       # the case is what its id says (both outcomes are covered)
    auto = sieve.run(_chip(small_chip, mem_bytes, "auto"), "spmspm", params=SPMSPM)
    assert auto.program.tiling.pipelined is winner
    assert auto.summary["cycles"] == forced[winner].summary["cycles"]
    assert auto.summary["tiles"] == forced[winner].summary["tiles"]
    assert auto.summary["verified"]
    mode = "pipelined" if winner else "one tile at a time"
    assert auto.summary["tile_pipelining"] == f"{mode} (compiler's choice: least cycles of " \
                                              "both modes)"
    assert forced[winner].summary["tile_pipelining"] == \
        f"{mode} (forced: controller.tile_pipelining={str(winner).lower()})"


def test_a_finalist_is_estimated_in_both_modes_and_keeps_the_better(small_chip):
    """Without a forced order every finalist that is tiled carries both modes' estimates;
    the chosen one's mode is the better of its two by the objective."""
    chip = _chip(small_chip, 256, "auto")
    layer = get_workload("spmspm").make({"shape": "64,64,64", "density": 0.05})
    choice = choose_order(layer, chip, probe)
    finals = [c for c in choice.candidates if c.how]
    assert finals and all(c.pipelined is not None and c.other is not None for c in finals)
    for c in finals:
        assert c.estimate.cycles <= c.other.cycles
    assert choice.program.tiling.pipelined is choice.modes[0][0]
    assert len(choice.modes) == 2 and choice.modes[0][1].cycles <= choice.modes[1][1].cycles


def test_a_kernel_that_fits_full_mem_tiles_has_no_mode(onyx_chip):
    """auto: a kernel whose levels fit one MEM tile whole is one kernel call, untiled (the
    forced pipelined mode tiles it into halves)."""
    assert onyx_chip.controller.tile_pipelining == "auto"
    layer = get_workload("spmspm").make({"shape": "64,64,64", "density": 0.1,
                                         "order": "ikj"})
    choice = choose_order(layer, onyx_chip, probe)
    assert choice.program.tiling is None and choice.modes == ()
    report = sieve.run(onyx_chip, "spmspm", params={"shape": "64,64,64", "density": 0.1})
    assert report.summary["tiles"] == 0 and "tile_pipelining" not in report.summary


def test_the_controller_runs_the_program_s_mode_not_the_chip_s(small_chip):
    """The same Program simulated on a chip forcing the other mode (or auto) runs as its
    Tiling says: the mode is the compiler's, fixed in the program."""
    layer = get_workload("spmspm").make({"shape": "20,24,20", "density": 0.15, "seed": 2})
    for mode in (False, True):
        program = compile_layer(layer, tiny_mem(small_chip, 64, mode))
        assert program.tiling.pipelined is mode
        runs = [simulate(program, tiny_mem(small_chip, 64, other), fidelity="burst")
                for other in (False, True, "auto")]
        assert len({r.cycles for r in runs}) == 1
        calls = {r.stats["chip.controller.launch_count"]["value"] for r in runs}
        n = len(program.tiling.tiles)
        assert calls == ({-(-n // small_chip.controller.pipelined_tiles_per_call)} if mode
                         else {n})


def test_compile_without_estimates_takes_one_of_the_forced_cuts(small_chip):
    """compile_layer with auto and no estimator (no order choice) cuts both ways and keeps
    the lesser rough cost: its program is one of the two forced modes' programs."""
    layer = get_workload("spmspm").make({"shape": "20,24,20", "density": 0.15, "seed": 2,
                                         "order": "ikj"})
    auto = compile_layer(layer, tiny_mem(small_chip, 64, "auto"))
    forced = compile_layer(layer, tiny_mem(small_chip, 64, auto.tiling.pipelined))
    assert auto.tiling.sizes == forced.tiling.sizes
    assert len(auto.tiling.tiles) == len(forced.tiling.tiles)


def test_modes_and_the_chip_variant(small_chip):
    assert modes(tiny_mem(small_chip, 64, "auto")) == (False, True)
    assert modes(tiny_mem(small_chip, 64, True)) == (True,)
    assert modes(tiny_mem(small_chip, 64, False)) == (False,)
    chip = tiny_mem(small_chip, 64, "auto")
    assert with_pipelining(chip, True).controller.tile_pipelining is True
    assert with_pipelining(chip, False).mem_tile == chip.mem_tile


@pytest.mark.parametrize("chip", ["configs/chips/onyx.yaml", SMALL])
def test_auto_is_the_default_and_anything_else_is_refused(chip):
    assert load_chip(chip).controller.tile_pipelining == "auto"
    assert load_chip(chip, ["controller.tile_pipelining=false"]).controller.tile_pipelining \
        is False
    with pytest.raises(ConfigError, match=r"controller\.tile_pipelining: must be true, "
                                          r"false or auto \(got 'sometimes'\)"):
        load_chip(chip, ["controller.tile_pipelining=sometimes"])
    with pytest.raises(ConfigError, match=r"controller\.tile_pipelining"):
        load_chip(chip, ["controller.tile_pipelining=2"])


def test_cli_refuses_a_bad_mode_with_exit_2(capsys):
    assert main(["run", SMALL, "spmv", "-c", "controller.tile_pipelining=yes please"]) == 2
    assert "controller.tile_pipelining" in capsys.readouterr().err


def test_explain_shows_each_finalist_s_mode_and_the_choice(capsys):
    args = ["compile", SMALL, "spmspm", "-p", "shape=64,64,64", "-p", "density=0.05",
            "-c", "mem_tile.size_bytes=256", "--explain"]
    assert main(args) == 0
    out = capsys.readouterr().out
    finals = [ln for ln in out.splitlines() if ln.startswith("  ") and (
        "whole run (" in ln or "tile calls (" in ln)]
    assert finals and all((", pipelined (one at a time: " in ln) or
                          (", one at a time (pipelined: " in ln) for ln in finals)
    assert "\ntile pipelining: " in out and "least edp of both modes" in out
    # a forced order: its mode is still chosen (estimated in both)
    assert main(args[:-1] + ["-p", "order=ikj"]) == 0
    out = capsys.readouterr().out
    assert "tile pipelining:" not in out        # not asked to explain
    assert main(args + ["-p", "order=ikj"]) == 0
    assert "least edp of both modes" in capsys.readouterr().out


def test_a_sample_of_tile_calls_holds_whole_output_blocks(small_chip):
    """A partial tile merges into its block's earlier sum: the estimate's sample of tile
    calls takes whole blocks, so every sampled partial tile has its block's earlier tiles."""
    layer = get_workload("spmv").make({"shape": "6,200", "density": 0.3, "seed": 1,
                                       "formats": "B:ds c:d", "order": "ij"})
    tiling = compile_layer(layer, tiny_mem(small_chip, 64, True)).tiling
    n = len(tiling.tiles)
    assert any(t.partial for t in tiling.tiles)
    sizes: dict[tuple[int, ...], int] = {}
    for t in tiling.tiles:
        sizes[tiling.origin(t)] = sizes.get(tiling.origin(t), 0) + 1
    assert len(sizes) > 1 and max(sizes.values()) > 1
    for m in (min(sizes.values()), n - 1):
        calls = block_calls(tiling, m)
        assert calls == sorted(set(calls)) and 0 < len(calls) <= m
        blocks = {tiling.origin(tiling.tiles[i]) for i in calls}
        whole = [i for i, t in enumerate(tiling.tiles) if tiling.origin(t) in blocks]
        assert calls == whole
    # every block larger than the sample: single calls spread over the schedule
    m = min(sizes.values()) - 1
    assert block_calls(tiling, m) == spread_calls(n, m)
