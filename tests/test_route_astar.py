"""The router's own A* (compiler/route.py) is networkx's ``astar_path`` written out: the same
mesh order, the same path under any congestion state, hence the same routes as before the
compiler stopped importing networkx."""

from __future__ import annotations

import random

import networkx as nx
import pytest

import compiler.route as route_mod
from compiler.route import _manhattan, _mesh, _PathFinder


@pytest.mark.parametrize("rows,cols", [(1, 2), (2, 2), (3, 4), (16, 32)])
def test_mesh_order_is_networkx_grid_order(rows: int, cols: int) -> None:
    graph = nx.grid_2d_graph(rows, cols).to_directed()
    mesh = _mesh(rows, cols)
    assert list(mesh) == list(graph.nodes)
    for tile, near in mesh.items():
        assert [t for t, _ in near] == list(graph._adj[tile])
        assert all(link == (tile, t) for t, link in near)
    router = _PathFinder(mesh, 2)
    assert list(router.occupancy) == list(graph.edges)     # overused(): in mesh order


@pytest.mark.parametrize("seed", range(10))
def test_astar_gives_networkx_path_under_congestion(seed: int) -> None:
    rng = random.Random(seed)
    rows, cols = rng.choice([(4, 8), (6, 6), (16, 32)])
    router = _PathFinder(_mesh(rows, cols), rng.choice([1, 2, 5]))
    for link in router.occupancy:       # a random congestion state, with ties in cost
        router.occupancy[link] = rng.choice([0, 0, 1, 2, 3, 6])
        router.history[link] = rng.choice([0.0, 0.0, 1.0, 2.5])
    router.present = rng.choice([0.5, 0.75, 3.0])
    graph = nx.grid_2d_graph(rows, cols).to_directed()

    def cost(u, v, _attrs):
        link = (u, v)
        over = router.occupancy[link] + 1 - router.tracks
        penalty = 1.0 + router.present * over if over > 0 else 1.0
        return (1.0 + router.history[link]) * penalty

    tiles = list(graph.nodes)
    for _ in range(40):
        src, dst = rng.sample(tiles, 2)
        expected = nx.astar_path(graph, src, dst, heuristic=_manhattan, weight=cost)
        assert router._astar(src, dst) == expected


def test_route_memo_is_keyed_by_the_nets_and_tracks() -> None:
    from compiler.place import place_kernel
    from compiler.route import route_kernel
    from tests.test_place_route import KERNELS, make_chip

    build, chip = KERNELS["elemmul"]
    placed = place_kernel(build(), chip)
    route_mod._memo.clear()
    first = route_kernel(placed, chip)
    assert len(route_mod._memo) == 1
    assert route_kernel(placed, chip) == first and len(route_mod._memo) == 1
    narrow = make_chip(4, 12, tracks=2)                  # other tracks: a new routing
    route_kernel(placed, narrow)
    assert len(route_mod._memo) == 2
    route_mod._memo.clear()
    assert route_kernel(placed, chip) == first          # a fresh routing: the same routes
