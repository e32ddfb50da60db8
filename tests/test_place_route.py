"""Placement and routing passes: legality, determinism, pins, capacity and error messages."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from compiler.place import place_kernel, wire_length
from compiler.route import link_usage, route_kernel
from isa.arch import (
    ArrayConfig,
    ChipConfig,
    ClockConfig,
    ControllerConfig,
    DramConfig,
    GlbConfig,
    InterconnectConfig,
    MemTileConfig,
    PeConfig,
)
from isa.errors import CompileError
from isa.ops import SIGNATURES, Opcode
from isa.program import Edge, Kernel, Node

Tile = tuple[int, int]


def make_chip(rows: int = 4, cols: int = 8, *, mem_column_period: int = 4, tracks: int = 5,
              name: str = "test-chip") -> ChipConfig:
    """A small chip; only the array and interconnect matter to placement and routing."""
    return ChipConfig(
        name=name,
        clock=ClockConfig(freq_mhz=850.0, max_freq_mhz=970.0),
        array=ArrayConfig(rows=rows, cols=cols, mem_column_period=mem_column_period),
        pe=PeConfig(fifo_depth=2, datapath_bits=16),
        mem_tile=MemTileConfig(size_bytes=4096, word_bits=64, ports=1),
        interconnect=InterconnectConfig(tracks_per_direction=tracks, track_bits=17,
                                        hop_latency_cycles=1, fifo_depth=2),
        glb=GlbConfig(tiles=16, tile_size_bytes=262144, banks_per_tile=2, bank_width_bits=64,
                      array_links_per_direction=16, link_bits=64, latency_cycles=2),
        dram=DramConfig(kind="lpddr4", channels=1, channel_bandwidth_gb_per_s=16.0,
                        latency_ns=100),
        controller=ControllerConfig(config_bits_per_cycle=32, launch_cycles=10,
                                    dma_setup_cycles=10),
    )


def edge(src: str, src_port: str, dst: str, dst_port: str, kind: str) -> Edge:
    return Edge(src, src_port, dst, dst_port, kind)


def chain_kernel() -> Kernel:
    """X(i,j) = C(j) broadcast over the rows of B: scan -> repsig -> repeat -> scan -> array."""
    nodes = (
        Node.make("Bi", Opcode.SCAN, tensor="B", level=0, fmt="compressed", root=True),
        Node.make("rs_i", Opcode.REPSIG),
        Node.make("rep_C", Opcode.REPEAT, root=True),
        Node.make("Cj", Opcode.SCAN, tensor="C", level=0, fmt="compressed"),
        Node.make("Cv", Opcode.ARRAY, tensor="C"),
        Node.make("Xi", Opcode.WRITE_CRD, tensor="X", level=0),
        Node.make("Xj", Opcode.WRITE_CRD, tensor="X", level=1),
        Node.make("Xv", Opcode.WRITE_VAL, tensor="X"),
    )
    edges = (
        edge("Bi", "crd", "rs_i", "crd", "crd"),
        edge("rs_i", "repsig", "rep_C", "repsig", "repsig"),
        edge("rep_C", "ref", "Cj", "ref", "ref"),
        edge("Cj", "ref", "Cv", "ref", "ref"),
        edge("Bi", "crd", "Xi", "crd", "crd"),
        edge("Cj", "crd", "Xj", "crd", "crd"),
        edge("Cv", "val", "Xv", "val", "val"),
    )
    return Kernel("bcast", nodes, edges)


def elemmul_kernel() -> Kernel:
    """X(i,j) = B(i,j) * C(i,j) with B, C, X in DCSR: 13 nodes (9 MEM, 4 PE)."""
    nodes = (
        Node.make("Bi", Opcode.SCAN, tensor="B", level=0, fmt="compressed", root=True),
        Node.make("Ci", Opcode.SCAN, tensor="C", level=0, fmt="compressed", root=True),
        Node.make("isect_i", Opcode.INTERSECT),
        Node.make("Bj", Opcode.SCAN, tensor="B", level=1, fmt="compressed"),
        Node.make("Cj", Opcode.SCAN, tensor="C", level=1, fmt="compressed"),
        Node.make("isect_j", Opcode.INTERSECT),
        Node.make("Bv", Opcode.ARRAY, tensor="B"),
        Node.make("Cv", Opcode.ARRAY, tensor="C"),
        Node.make("mul", Opcode.ALU, op="mul"),
        Node.make("drop", Opcode.CRDDROP),
        Node.make("Xi", Opcode.WRITE_CRD, tensor="X", level=0),
        Node.make("Xj", Opcode.WRITE_CRD, tensor="X", level=1),
        Node.make("Xv", Opcode.WRITE_VAL, tensor="X"),
    )
    edges = (
        edge("Bi", "crd", "isect_i", "crd_a", "crd"),
        edge("Bi", "ref", "isect_i", "ref_a", "ref"),
        edge("Ci", "crd", "isect_i", "crd_b", "crd"),
        edge("Ci", "ref", "isect_i", "ref_b", "ref"),
        edge("isect_i", "ref_a", "Bj", "ref", "ref"),
        edge("isect_i", "ref_b", "Cj", "ref", "ref"),
        edge("Bj", "crd", "isect_j", "crd_a", "crd"),
        edge("Bj", "ref", "isect_j", "ref_a", "ref"),
        edge("Cj", "crd", "isect_j", "crd_b", "crd"),
        edge("Cj", "ref", "isect_j", "ref_b", "ref"),
        edge("isect_j", "ref_a", "Bv", "ref", "ref"),
        edge("isect_j", "ref_b", "Cv", "ref", "ref"),
        edge("Bv", "val", "mul", "a", "val"),
        edge("Cv", "val", "mul", "b", "val"),
        edge("isect_i", "crd", "drop", "outer", "crd"),
        edge("isect_j", "crd", "drop", "inner", "crd"),
        edge("drop", "outer", "Xi", "crd", "crd"),
        edge("drop", "inner", "Xj", "crd", "crd"),
        edge("mul", "val", "Xv", "val", "val"),
    )
    return Kernel("elemmul", nodes, edges)


KERNELS = {"bcast": (chain_kernel, make_chip(4, 8)), "elemmul": (elemmul_kernel, make_chip(4, 12))}


def manhattan(a: Tile, b: Tile) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def assert_legal_placement(kernel: Kernel, chip: ChipConfig) -> None:
    tiles = [n.tile for n in kernel.nodes]
    assert all(t is not None for t in tiles)
    assert len(set(tiles)) == len(tiles), "two nodes share a tile"
    for n in kernel.nodes:
        assert n.tile is not None
        r, c = n.tile
        assert 0 <= r < chip.array.rows and 0 <= c < chip.array.cols
        assert chip.array.kind(r, c) is SIGNATURES[n.op].tile, n.id


def assert_legal_routes(kernel: Kernel, chip: ChipConfig) -> None:
    tiles = {n.id: n.tile for n in kernel.nodes}
    for e in kernel.edges:
        assert e.route[0] == tiles[e.src] and e.route[-1] == tiles[e.dst], e.name
        assert e.hops == len(e.route) - 1 >= manhattan(e.route[0], e.route[-1]) >= 1
        for a, b in zip(e.route, e.route[1:], strict=False):
            assert manhattan(a, b) == 1, f"{e.name}: {a}->{b} is not a link"
            assert 0 <= b[0] < chip.array.rows and 0 <= b[1] < chip.array.cols
    tracks = chip.interconnect.tracks_per_direction
    assert all(used <= tracks for used in link_usage(kernel).values())


# --- placement -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_place_puts_each_node_on_its_own_tile_of_the_right_kind(name: str) -> None:
    build, chip = KERNELS[name]
    kernel = build()
    placed = place_kernel(kernel, chip)
    assert_legal_placement(placed, chip)
    assert [n.id for n in placed.nodes] == [n.id for n in kernel.nodes]
    assert placed.edges == kernel.edges


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_place_is_deterministic(name: str) -> None:
    build, chip = KERNELS[name]
    assert place_kernel(build(), chip) == place_kernel(build(), chip)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_place_is_a_local_optimum_of_wire_length(name: str) -> None:
    # No single move to a free tile of the right kind and no swap of two same-kind nodes
    # shortens the total wire length (the improvement phase's stopping condition).
    build, chip = KERNELS[name]
    placed = place_kernel(build(), chip)
    best = wire_length(placed)
    nodes = list(placed.nodes)
    used = {n.tile for n in nodes}

    def moved(changes: dict[int, Tile]) -> int:
        return wire_length(placed.with_nodes(tuple(
            replace(n, tile=changes.get(i, n.tile)) for i, n in enumerate(nodes))))

    for i, a in enumerate(nodes):
        kind = SIGNATURES[a.op].tile
        assert a.tile is not None
        for t in chip.array.tiles(kind):
            if t not in used:
                assert moved({i: t}) >= best, (a.id, t)
        for j in range(i + 1, len(nodes)):
            b = nodes[j]
            if SIGNATURES[b.op].tile is kind:
                assert b.tile is not None
                assert moved({i: b.tile, j: a.tile}) >= best, (a.id, b.id)


def test_place_keeps_pinned_nodes() -> None:
    chip = make_chip(4, 12)
    kernel = elemmul_kernel()
    pins = {"Bi": (3, 11), "mul": (0, 0)}
    pinned = kernel.with_nodes(tuple(replace(n, tile=pins.get(n.id)) for n in kernel.nodes))
    placed = place_kernel(pinned, chip)
    assert_legal_placement(placed, chip)
    for nid, tile in pins.items():
        assert placed.node(nid).tile == tile
    # A fully placed kernel is a fixed point.
    assert place_kernel(placed, chip) == placed


def test_place_rejects_pin_on_wrong_kind() -> None:
    kernel = chain_kernel()
    bad = kernel.with_nodes(tuple(replace(n, tile=(0, 0)) if n.id == "Bi" else n
                                  for n in kernel.nodes))
    with pytest.raises(CompileError, match=r"node 'Bi' \(scan\) needs a MEM tile but is pinned "
                                           r"to \(0,0\), a PE tile"):
        place_kernel(bad, make_chip())


def test_place_rejects_two_pins_on_one_tile() -> None:
    kernel = chain_kernel()
    bad = kernel.with_nodes(tuple(replace(n, tile=(1, 3)) if n.id in ("Bi", "Cj") else n
                                  for n in kernel.nodes))
    with pytest.raises(CompileError, match=r"both pinned to tile \(1,3\)"):
        place_kernel(bad, make_chip())


def test_place_reports_missing_tiles_of_both_kinds() -> None:
    chip = make_chip(4, 8, name="tiny")   # MEM columns 3 and 7: 8 MEM, 24 PE tiles
    with pytest.raises(CompileError) as info:
        place_kernel(elemmul_kernel(), chip)
    msg = str(info.value)
    assert msg.startswith("place: kernel elemmul needs 9 MEM tiles and 4 PE tiles but chip "
                          "tiny has 8 MEM and 24 PE tiles")
    assert "bigger chip config" in msg


def fanout_kernel(sinks: int) -> Kernel:
    """One repeat-signal generator broadcasting to ``sinks`` repeaters."""
    names = [f"rep{i}" for i in range(sinks)]
    return Kernel(
        f"fanout{sinks}",
        (Node.make("rs", Opcode.REPSIG), *(Node.make(s, Opcode.REPEAT) for s in names)),
        tuple(edge("rs", "repsig", s, "repsig", "repsig") for s in names),
    )


def test_place_puts_a_wide_fanout_on_a_tile_with_enough_links() -> None:
    # Four streams on one track per direction need all four links of an interior tile.
    chip = make_chip(4, 8, tracks=1)
    placed = place_kernel(fanout_kernel(4), chip)
    assert_legal_placement(placed, chip)
    r, c = placed.node("rs").tile or (-1, -1)
    assert 0 < r < chip.array.rows - 1 and 0 < c < chip.array.cols - 1
    assert_legal_routes(route_kernel(placed, chip), chip)


def test_place_rejects_a_fanout_no_tile_can_carry() -> None:
    with pytest.raises(CompileError, match=r"node 'rs' has 5 output and 0 input streams but a "
                                           r"tile has at most 4 links x 1 tracks"):
        place_kernel(fanout_kernel(5), make_chip(4, 8, tracks=1))


# --- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_route_uncongested_routes_are_shortest(name: str) -> None:
    build, chip = KERNELS[name]
    routed = route_kernel(place_kernel(build(), chip), chip)
    assert_legal_routes(routed, chip)
    for e in routed.edges:
        assert e.hops == manhattan(e.route[0], e.route[-1]), e.name
    assert sum(e.hops for e in routed.edges) == wire_length(routed)
    assert route_kernel(place_kernel(build(), chip), chip) == routed


def test_route_on_large_chip() -> None:
    chip = make_chip(16, 32)
    routed = route_kernel(place_kernel(elemmul_kernel(), chip), chip)
    assert_legal_routes(routed, chip)
    assert all(e.hops == manhattan(e.route[0], e.route[-1]) for e in routed.edges)


def pinned(kernel: Kernel, tiles: dict[str, Tile]) -> Kernel:
    return kernel.with_nodes(tuple(replace(n, tile=tiles[n.id]) for n in kernel.nodes))


def test_route_negotiates_detours_when_tracks_are_short() -> None:
    # Four streams leave (1,1), three of them to the adjacent tile (1,2), with one track per
    # direction: each must take its own outgoing link, so two of them detour.
    chip = make_chip(4, 8, tracks=1)
    kernel = Kernel(
        "fanout4",
        (Node.make("a", Opcode.INTERSECT), Node.make("b", Opcode.INTERSECT),
         Node.make("r", Opcode.REPSIG)),
        (edge("a", "crd", "b", "crd_a", "crd"), edge("a", "ref_a", "b", "ref_a", "ref"),
         edge("a", "ref_b", "b", "ref_b", "ref"), edge("a", "crd", "r", "crd", "crd")),
    )
    kernel = pinned(kernel, {"a": (1, 1), "b": (1, 2), "r": (2, 2)})
    routed = route_kernel(kernel, chip)
    assert_legal_routes(routed, chip)
    usage = link_usage(routed)
    assert max(usage.values()) == 1
    hops = sorted(e.hops for e in routed.edges)
    assert hops[0] == 1 and sum(hops) > wire_length(routed)
    assert {e.route[1] for e in routed.edges} == {(0, 1), (2, 1), (1, 0), (1, 2)}
    assert route_kernel(kernel, chip) == routed


def test_route_raises_naming_the_overused_link() -> None:
    # A corner tile has two outgoing links; five streams cannot leave it on one track each.
    chip = make_chip(4, 8, tracks=1, name="narrow")
    tiles = {"rs": (0, 0), "rep0": (0, 1), "rep1": (1, 0), "rep2": (1, 1), "rep3": (2, 2),
             "rep4": (0, 2)}
    kernel = pinned(replace(fanout_kernel(5), name="corner"), tiles)
    with pytest.raises(CompileError) as info:
        route_kernel(kernel, chip, max_iterations=10)
    msg = str(info.value)
    assert re.match(r"route: cannot route kernel corner on chip narrow: link "
                    r"\(0,0\)->\((0,1|1,0)\) needs [3-5] tracks, has 1 \(after 10 PathFinder "
                    r"iterations", msg), msg
    assert "tracks_per_direction" in msg


def test_route_requires_placement() -> None:
    with pytest.raises(CompileError, match=r"route: kernel bcast: node 'Bi' has no tile"):
        route_kernel(chain_kernel(), make_chip())


def test_link_usage_counts_tracks_per_directed_link() -> None:
    kernel = Kernel(
        "k",
        (Node.make("a", Opcode.INTERSECT, tile=(0, 0)),
         Node.make("b", Opcode.INTERSECT, tile=(1, 1)),
         Node.make("c", Opcode.REPSIG, tile=(0, 2))),
        (Edge("a", "crd", "b", "crd_a", "crd", route=((0, 0), (0, 1), (1, 1))),
         Edge("a", "ref_a", "b", "ref_a", "ref", route=((0, 0), (0, 1), (1, 1))),
         Edge("b", "crd", "c", "crd", "crd", route=((1, 1), (0, 1), (0, 2)))),
    )
    assert link_usage(kernel) == {((0, 0), (0, 1)): 2, ((0, 1), (1, 1)): 2,
                                  ((1, 1), (0, 1)): 1, ((0, 1), (0, 2)): 1}
