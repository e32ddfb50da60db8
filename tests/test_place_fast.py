"""The vectorised placer (compiler/place.py): its incremental wire-length changes equal full
recomputations, it gives exactly the plain-Python placer's tiles (tests/place_reference.py),
and its per-process memo returns what a fresh placement would."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

import compiler.place as place_mod
from compiler.order import with_order
from compiler.pipeline import lower_layer
from compiler.place import Layout, place_kernel, wire_length
from compiler.unroll import unroll_kernel
from isa.ops import SIGNATURES, Opcode, TileKind
from isa.program import Edge, Kernel, Node
from simulator.config import load_chip
from tests.place_reference import reference_place
from tests.test_place_route import make_chip
from workloads import get_workload

PE_OPS = [op for op in Opcode if SIGNATURES[op].tile is TileKind.PE]
MEM_OPS = [op for op in Opcode if SIGNATURES[op].tile is TileKind.MEM]


def random_kernel(rng: random.Random, n: int, edges: int) -> Kernel:
    """A random DAG of ``n`` nodes (PE and MEM opcodes) with ``edges`` streams, some of them
    parallel (several nets between the same two nodes)."""
    nodes = tuple(Node.make(f"n{i}", rng.choice(PE_OPS if rng.random() < 0.6 else MEM_OPS))
                  for i in range(n))
    out = []
    for _ in range(edges):
        a, b = sorted(rng.sample(range(n), 2))
        out.append(Edge(f"n{a}", "o", f"n{b}", "i", "crd"))
    return Kernel("rand", nodes, tuple(out))


def random_layout(rng: random.Random, kernel: Kernel, chip) -> Layout:
    """A Layout with every node on a distinct random tile of its kind."""
    free = {k: rng.sample(chip.array.tiles(k), len(chip.array.tiles(k))) for k in TileKind}
    lay = Layout(kernel, chip.array, {})
    for i, n in enumerate(kernel.nodes):
        lay.put(i, free[SIGNATURES[n.op].tile].pop())
    return lay


def full_wire_length(lay: Layout, kernel: Kernel) -> int:
    tiles = [tuple(int(x) for x in p) for p in lay.pos]
    return wire_length(kernel.with_nodes(tuple(replace(n, tile=t)
                                               for n, t in zip(kernel.nodes, tiles))))


@pytest.mark.parametrize("seed", range(8))
def test_incremental_wire_length_equals_full_recomputation(seed: int) -> None:
    # random moves and swaps: every predicted change equals the difference of the two full
    # sums, and the running per-node costs stay equal to a fresh layout's
    rng = random.Random(seed)
    chip = make_chip(8, 16)        # 32 MEM and 96 PE tiles: room for any 30 nodes
    kernel = random_kernel(rng, rng.randint(4, 30), rng.randint(3, 60))
    lay = random_layout(rng, kernel, chip)
    cols = chip.array.cols
    for _ in range(60):
        before = full_wire_length(lay, kernel)
        assert lay.total() == before
        u = rng.randrange(len(kernel.nodes))
        same = [v for v in range(len(kernel.nodes)) if v != u and lay.kind[v] == lay.kind[u]]
        free = np.flatnonzero((lay.kind_grid == lay.kind[u]) & ~lay.occupied)
        if same and (rng.random() < 0.5 or free.size == 0):
            v = rng.choice(same)
            predicted = int(lay.swap_deltas(u, np.array([v]))[0])
            lay.swap(u, v)
        else:
            t = int(rng.choice(list(free)))
            predicted = int(lay.move_deltas(u, lay.grid_r[[t]], lay.grid_c[[t]])[0])
            lay.put(u, (t // cols, t % cols))
        assert full_wire_length(lay, kernel) - before == predicted
    fresh = Layout(kernel, chip.array, {})
    for i, p in enumerate(lay.pos):
        fresh.put(i, (int(p[0]), int(p[1])))
    assert np.array_equal(fresh.cost, lay.cost)
    assert np.array_equal(fresh.dist, lay.dist)


@pytest.mark.parametrize("seed", range(12))
def test_same_tiles_as_the_plain_python_placer_on_random_kernels(seed: int) -> None:
    rng = random.Random(100 + seed)
    chip = make_chip(rng.choice([4, 6, 8]), rng.choice([8, 12, 16]),
                     tracks=rng.choice([1, 2, 5]))
    kernel = random_kernel(rng, rng.randint(3, 24), rng.randint(2, 40))
    if seed % 3 == 0:       # pin one node of each kind
        pins = {}
        for kind in TileKind:
            ids = [n.id for n in kernel.nodes if SIGNATURES[n.op].tile is kind]
            if ids:
                pins[ids[0]] = chip.array.tiles(kind)[seed % len(chip.array.tiles(kind))]
        kernel = kernel.with_nodes(tuple(replace(n, tile=pins.get(n.id))
                                         for n in kernel.nodes))
    place_mod._memo.clear()
    try:
        expected = reference_place(kernel, chip)
    except Exception as exc:          # a fan-out no tile can carry: both refuse
        with pytest.raises(type(exc)):
            place_kernel(kernel, chip)
        return
    assert place_kernel(kernel, chip) == expected


@pytest.mark.parametrize("name,copies", [("spmspm", 3), ("mttkrp", 2), ("elemadd3", 4)])
def test_same_tiles_as_the_plain_python_placer_on_unrolled_catalog_kernels(name: str,
                                                                            copies: int) -> None:
    chip = load_chip("onyx")
    layer = get_workload(name).build(get_workload(name).resolve({}))
    if not layer.order:
        from compiler.order import default_order
        layer = with_order(layer, default_order(layer))
    kernel, _ = lower_layer(layer, chip)
    for k in (kernel, unroll_kernel(kernel, copies)):
        place_mod._memo.clear()
        assert place_kernel(k, chip) == reference_place(k, chip)


def test_the_memo_gives_what_a_fresh_placement_gives() -> None:
    rng = random.Random(7)
    chip = make_chip(6, 12)
    kernel = random_kernel(rng, 20, 30)
    place_mod._memo.clear()
    first = place_kernel(kernel, chip)
    renamed = replace(kernel, name="other", expr="X=Y")      # same graph: the memo's entry
    again = place_kernel(renamed, chip)
    assert again.name == "other" and again.nodes == first.nodes
    place_mod._memo.clear()
    assert place_kernel(kernel, chip) == first
    # a different array is a different placement problem, not the memo's entry
    wider = make_chip(6, 16)
    assert place_kernel(kernel, wider) == reference_place(kernel, wider)
