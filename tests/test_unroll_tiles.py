"""Tile dealing: unrolled copies that take whole tiles (garnet's unrolling under tile
pipelining, concat_tiles.py; compiler.unroll, isa.copies, simulator.controller).

1. The rule and the graph: a run's tiles go to the copies by their place in the run mod N
   (the stream ID restarts with each run); the N-copy graph has no stream filter, each copy
   alone is the one-copy graph.
2. The run: the output equals numpy, every tile's output is checked, copy c computed exactly
   the tiles dealt to it (its units' counters are the sum of those tiles run on it alone),
   each copy loads only its own tiles; a hand-derived timing of 2 copies and 4 equal tiles.
3. The random cycle == burst suite over tile-dealt kernels (the tiled suite's cases).
4. The planner and the configuration key.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from compiler.pipeline import compile_layer, lower_layer, place_route_balance
from compiler.unroll import deal_tiles, max_tile_copies, tiles_why_not
from isa.bitstream import config_bits, decode, encode
from isa.copies import copy_alone, tile_copies, tile_copy
from isa.errors import CompileError, ConfigError
from isa.ops import WRITERS, Opcode
from isa.verify import verify_kernel
from simulator.checks import check_outputs
from simulator.chip import link_transfer
from simulator.controller import simulate
from simulator.engine_burst import run_burst
from tests.test_burst import configure
from tests.test_tiling import make_tiled_case, tiny_mem
from workloads import get_workload
from workloads.base import KernelLayer


def _chip(chip, mem: int = 256, per_call: int = 32, **compiler):
    """``chip`` with MEM tiles of ``mem`` bytes, tiles pipelined in runs of ``per_call``,
    and ``compiler`` settings."""
    chip = tiny_mem(chip, mem, pipelined=True)
    return dataclasses.replace(
        chip, controller=dataclasses.replace(chip.controller,
                                             pipelined_tiles_per_call=per_call),
        compiler=dataclasses.replace(chip.compiler, **compiler))


SPMSPM = {"shape": "32,24,32", "density": 0.12, "seed": 4, "order": "ikj"}


# ------------------------------------------------------------------ 1. the rule and graph
def test_tile_copy_is_the_place_in_the_run_mod_n():
    # garnet concat_tiles.py: stream_id counts a run's tiles mod unroll, from 0 per run
    assert [tile_copy(i, 2, 32) for i in range(6)] == [0, 1, 0, 1, 0, 1]
    assert [tile_copy(i, 3, 4) for i in range(10)] == [0, 1, 2, 0, 0, 1, 2, 0, 0, 1]
    assert [tile_copy(i, 4, 32) for i in range(64)] == [i % 4 for i in range(64)]


def test_the_tile_dealt_graph_is_n_whole_copies_without_filters(onyx):
    layer = get_workload("spmspm").make(SPMSPM)
    kernel, _ = lower_layer(layer, onyx)
    dealt = deal_tiles(kernel, 3)
    verify_kernel(dealt)
    assert not any(n.op in (Opcode.FILTER, Opcode.ARBITER) for n in dealt.nodes)
    assert len(dealt.nodes) == 3 * len(kernel.nodes)
    assert len(dealt.edges) == 3 * len(kernel.edges)
    assert tile_copies(dealt) == 3 and tile_copies(kernel) == 1
    assert {n.attr("copy") for n in dealt.nodes if n.op in WRITERS} == {0, 1, 2}
    for c in range(3):
        alone = copy_alone(dealt, c)
        assert tile_copies(alone) == 1
        assert sorted((n.id, n.op, n.attrs) for n in alone.nodes) == sorted(
            (f"{n.id}_u{c}", n.op, n.attrs) for n in kernel.nodes)
    placed = place_route_balance(dealt, onyx)
    assert decode(encode(placed)) == placed
    one = place_route_balance(kernel, onyx)
    assert config_bits(placed) > 2 * config_bits(one)     # three copies to configure
    assert tiles_why_not(dealt) == "it is already unrolled"
    with pytest.raises(CompileError, match="cannot deal tiles"):
        deal_tiles(dealt, 2)
    from isa.asm import parse_program, print_program

    program = compile_layer(layer, _chip(onyx, unroll=3, unroll_deal="tiles"))
    text = print_program(program)
    assert "write_X0_u2 = write_crd tensor=X level=0 copy=2 copies=3" in text
    assert "= filter" not in text
    assert parse_program(text).kernels[0] == program.kernels[0]


def test_a_scalar_output_cannot_take_whole_tiles(onyx):
    layer = get_workload("innerprod").make({"shape": "8,8,8", "density": 0.3})
    kernel, _ = lower_layer(layer, onyx)
    assert "no stored outer level" in tiles_why_not(kernel)


# ------------------------------------------------------------------ 2. the run
@pytest.mark.parametrize("copies,per_call", [(2, 32), (3, 5)])
def test_copy_c_computes_exactly_its_tiles(onyx, copies, per_call):
    # the output equals numpy; each tile's output is checked on its own (output_copies);
    # copy c's unit counters are the sum of the tiles tile_copy deals to c, each run on copy
    # c alone (as placed): with 32 tiles per run, tiles c, c+N, ...; with runs of 5, the
    # stream ID restarts with every run
    chip = _chip(onyx, per_call=per_call, unroll=copies, unroll_deal="tiles")
    layer = get_workload("spmspm").make(SPMSPM)
    program = compile_layer(layer, chip)
    kernel = program.kernels[0]
    tiles = program.tiling.tiles
    assert program.unroll.deal == "tiles" and tile_copies(kernel) == copies
    assert len(tiles) > 2 * copies
    result = simulate(program, chip)
    checks = check_outputs(result, program, layer.reference(), check="full")
    assert checks["numpy"] is True and checks["output_copies"] is True
    assert checks["interpreter"] is True
    owner = [tile_copy(i, copies, per_call) for i in range(len(tiles))]
    if per_call == 32:
        assert owner == [i % copies for i in range(len(tiles))]
    else:
        assert owner != [i % copies for i in range(len(tiles))]
    for c in range(copies):
        alone = copy_alone(kernel, c)
        runs = [run_burst(alone, t.images, chip) for i, t in enumerate(tiles) if owner[i] == c]
        units = result.kernel_runs[kernel.name].units
        for node in alone.nodes:
            for counter in ("busy_cycles", "tokens_in_count", "tokens_out_count",
                            "sram_read_words", "sram_write_words"):
                assert getattr(units[node.id], counter) == sum(
                    getattr(r.units[node.id], counter) for r in runs), (node.id, counter)
        assert sum(units[n.id].busy_cycles for n in alone.nodes) > 0


def test_each_copy_loads_only_its_own_tiles(onyx):
    # positions dealt: every copy loads every operand tile (N x the bytes); tiles dealt: a
    # tile is loaded once, into its copy, whose MEM tiles keep its previous tile's operands
    layer = get_workload("spmspm").make(SPMSPM)
    tiles_p = compile_layer(layer, _chip(onyx, unroll=3, unroll_deal="tiles"))
    pos_p = compile_layer(layer, _chip(onyx, unroll=3, unroll_deal="positions"))
    one_p = compile_layer(layer, _chip(onyx, unroll=1))
    tiles = tiles_p.tiling.tiles

    def loaded(p):
        return sum(c.size_bytes for c in p.schedule if c.op == "load")

    assert loaded(pos_p) == 3 * loaded(one_p)
    assert loaded(one_p) <= loaded(tiles_p) < loaded(pos_p)
    held: list[dict[str, object]] = [{}, {}, {}]
    for c in tiles_p.schedule:
        if c.op == "load":
            assert c.size_bytes == tiles[c.tile].images[c.arg].nbytes(2)
    for i, tile in enumerate(tiles):          # reloaded when it differs from the copy's
        mine = held[tile_copy(i, 3, 32)]      # previous tile's operand tile
        want = {n for n in tile.images
                if mine.get(n) is None or not _same(mine[n], tile.images[n])}
        got = {c.arg for c in tiles_p.schedule if c.op == "load" and c.tile == i}
        assert want <= got
        mine.update(tile.images)


def _same(a, b) -> bool:
    return a.shape == b.shape and np.array_equal(a.to_dense(), b.to_dense())


def _four_equal_tiles() -> KernelLayer:
    """elemadd of two 32x32 matrices, each 4 x 4 copies of one random 8x8 block with 6
    nonzeros: in MEM tiles of 256 bytes, four tiles of 8 rows, all equal."""
    rng = np.random.default_rng(3)
    blocks = []
    for _ in range(2):
        x = np.zeros(64, dtype=np.int64)
        x[rng.choice(64, 6, replace=False)] = rng.integers(1, 9, 6)
        blocks.append(x.reshape(8, 8))
    b, c = (sp.csr_matrix(np.tile(x, (4, 4))) for x in blocks)
    return KernelLayer("elemadd", "X(i,j)=B(i,j)+C(i,j)", {"B": b, "C": c},
                       {"B": "ss", "C": "ss"}, "ij", (32, 32),
                       reference_fn=lambda: (b + c).toarray())


def test_two_copies_four_equal_tiles_timing(onyx):
    # elemadd of 4 identical 8-row stripes (_four_equal_tiles): 4 tile calls in one run,
    # each loading B and C (L cycles: two link transfers), computing K_c cycles on copy c,
    # unloading its output (U). With K > 2L + U and U < L (asserted below) nothing waits on
    # the links. One copy (pipelined, from the run's start after its call and
    # descriptors): t0 loads [0, L], t1 [L, 2L] (the FIFO's second entry), t2 waits for t0's
    # entry, t0..t3 compute back to back [L, L + 4K], the last unload ends at L + 4K + U.
    # Two copies taking tiles 0, 2 and 1, 3 (tile_copy): the ID-tagged stream loads t0..t3
    # in order at [0, L], [L, 2L], [2L, 3L], [3L, 4L]; copy 0 computes t0, t2 over
    # [L, L + 2 K_0], copy 1 t1, t3 over [2L, 2L + 2 K_1]; the end is
    # max(L + 2 K_0, 2L + 2 K_1) + U. Everything before the run (configuration, the inputs'
    # DMA) and after it (the output's DMA) is the same, so the totals differ by the runs'
    # difference, and kernel cycles (the time some tile computes) are 4 K one copy,
    # max(L + 2 K_0, 2L + 2 K_1) - L with two. (DMA descriptors cost nothing here: the
    # run's store descriptor, programmed on the M3 after the run's call, would otherwise
    # hold the first unload, in both cases but not alike.)
    layer = _four_equal_tiles()
    chip = _chip(onyx, mem=256, unroll_deal="tiles")
    chip = dataclasses.replace(chip, controller=dataclasses.replace(chip.controller,
                                                                    dma_setup_cycles=0))
    one = compile_layer(layer, dataclasses.replace(
        chip, compiler=dataclasses.replace(chip.compiler, unroll=1)))
    two = compile_layer(layer, dataclasses.replace(
        chip, compiler=dataclasses.replace(chip.compiler, unroll=2)))
    tiles = two.tiling.tiles
    assert len(tiles) == 4 and two.unroll.copies == 2 and two.unroll.deal == "tiles"
    assert all(_same(t.images[n], tiles[0].images[n]) for t in tiles for n in ("B", "C"))
    loads = [[c for c in p.schedule if c.op == "load" and c.tile == i]
             for p in (one, two) for i in range(4)]
    assert all({c.arg for c in ld} == {"B", "C"} for ld in loads)   # every tile loads both
    L = sum(link_transfer(chip, tiles[0].images[n].nbytes(2)).cycles for n in ("B", "C"))
    K1 = run_burst(one.kernels[0], tiles[0].images, chip)
    K0, Kc1 = (run_burst(copy_alone(two.kernels[0], k), tiles[0].images, chip)
               for k in (0, 1))
    out = K1.memory
    from isa.interp import assemble_output

    decl = one.kernels[0].tensor("X")
    U = link_transfer(chip, assemble_output(decl, out).nbytes(2)).cycles
    K, k0, k1 = K1.cycles, K0.cycles, Kc1.cycles
    assert min(K, k0, k1) > 2 * L + U and U < L          # the premises of the derivation
    r1, r2 = simulate(one, chip), simulate(two, chip)
    end2 = max(L + 2 * k0, 2 * L + 2 * k1)
    assert r2.cycles - r1.cycles == end2 - (L + 4 * K)
    assert r1.kernel_cycles == 4 * K and r2.kernel_cycles == end2 - L
    assert r2.cycles < r1.cycles
    for r, p in ((r1, one), (r2, two)):
        assert check_outputs(r, p, layer.reference())["numpy"] is True


# ------------------------------------------------------------------ 3. the random suite
SEEDS = 24
FACTORS = [2, 3, 4]


def _dealt_case(seed: int, onyx):
    """The tiled suite's case ``seed`` (tests/test_tiling.py), pipelined, its copies taking
    whole tiles (the case's factor, within the limits); None when it is not tiled, has one
    tile or cannot take whole tiles."""
    case = make_tiled_case(seed)
    chip = tiny_mem(configure(onyx, case), case["mem_bytes"], pipelined=True)
    layer = get_workload(case["workload"]).make(case["params"])
    kernel, _ = lower_layer(layer, chip)
    if tiles_why_not(kernel) is not None:
        return None
    probe = compile_layer(layer, chip)
    if probe.tiling is None or len(probe.tiling.tiles) < 2:
        return None
    bound = min(max_tile_copies(kernel, chip, len(probe.tiling.tiles)).values())
    n = min(FACTORS[seed % len(FACTORS)], bound)
    if n < 2:
        return None
    chip = dataclasses.replace(chip, compiler=dataclasses.replace(
        chip.compiler, unroll=n, unroll_deal="tiles"))
    return layer, chip, compile_layer(layer, chip)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_tile_dealt_runs_equal_on_both_engines(onyx, seed):
    got = _dealt_case(seed, onyx)
    if got is None:
        pytest.skip("not tile-dealt (counted by test_tile_dealt_suite_covers_the_space)")
    layer, chip, program = got
    cyc = simulate(program, chip, fidelity="cycle")
    burst = simulate(program, chip, fidelity="burst")
    assert burst.cycles == cyc.cycles
    assert burst.stats == cyc.stats
    checks = check_outputs(burst, program, layer.reference())
    assert checks["numpy"] is True and checks["output_copies"] is True


def test_tile_dealt_suite_covers_the_space(onyx):
    done = [g for g in (_dealt_case(s, onyx) for s in range(SEEDS)) if g is not None]
    assert len(done) >= 16
    assert {tile_copies(p.kernels[0]) for _, _, p in done} >= {2, 3}
    assert len({layer.name for layer, _, _ in done}) >= 6
    assert any(any(t.partial for t in p.tiling.tiles) for _, _, p in done)   # merges
    assert any(len(p.tiling.tiles) > 2 * tile_copies(p.kernels[0]) for _, _, p in done)


# ------------------------------------------------------------------ 4. planner and config
def test_mttkrp_takes_whole_tiles_where_positions_cannot_unroll(onyx):
    # MTTKRP's tiles hold one or two outer positions each, so dealing positions unrolls
    # it at most that much (outer_positions binds); auto deals its tiles instead
    chip = _chip(onyx, mem=512, unroll="auto")
    layer = get_workload("mttkrp").make({"shape": "24,6,20,20", "density": 0.1})
    auto = compile_layer(layer, chip)
    pos = compile_layer(layer, dataclasses.replace(
        chip, compiler=dataclasses.replace(chip.compiler, unroll_deal="positions")))
    assert pos.unroll.binds == "outer_positions" and pos.unroll.copies <= 2
    assert auto.unroll.deal == "tiles" and auto.unroll.copies > pos.unroll.copies
    assert "tiles dealt" in auto.unroll.why and auto.unroll.as_dict()["deal"] == "tiles"
    r_auto, r_pos = simulate(auto, chip), simulate(pos, chip)
    assert r_auto.cycles < r_pos.cycles
    assert check_outputs(r_auto, auto, layer.reference())["output_copies"] is True


def test_tiles_are_dealt_only_with_pipelined_tiles(onyx):
    layer = get_workload("spmspm").make(SPMSPM)
    seq = dataclasses.replace(
        _chip(onyx, unroll=3, unroll_deal="tiles"),
        controller=dataclasses.replace(onyx.controller, tile_pipelining=False))
    seq = tiny_mem(seq, 256, pipelined=False)
    with pytest.raises(CompileError, match="compiler.unroll_deal=tiles.*not pipelined"):
        compile_layer(layer, seq)
    auto = dataclasses.replace(seq, compiler=dataclasses.replace(seq.compiler,
                                                                 unroll="auto"))
    choice = compile_layer(layer, auto).unroll
    assert choice.copies == 1 and "not pipelined" in choice.why
    # unroll_deal auto without pipelining: positions, as before tile dealing existed
    pos = dataclasses.replace(auto, compiler=dataclasses.replace(auto.compiler,
                                                                 unroll_deal="auto"))
    assert compile_layer(layer, pos).unroll.deal in ("positions", "")


def test_forced_tiles_beyond_the_tiles_are_refused(onyx):
    layer = _four_equal_tiles()
    assert compile_layer(layer, _chip(onyx, mem=256, unroll=4, unroll_deal="tiles")
                         ).unroll.binds == "tiles"
    with pytest.raises(CompileError, match="tiles allow 4"):
        compile_layer(layer, _chip(onyx, mem=256, unroll=5, unroll_deal="tiles"))


def test_config_validates_unroll_deal():
    from simulator.config import load_chip

    with pytest.raises(ConfigError, match="compiler.unroll_deal: must be auto, positions or "
                                          "tiles"):
        load_chip("configs/chips/onyx.yaml", ["compiler.unroll_deal=rows"])
    assert load_chip("configs/chips/onyx.yaml").compiler.unroll_deal == "auto"
