"""The kernel verifier: a valid placed and routed kernel passes, and each rule catches its
violation (one test per rule, asserting on the message).

``ewise_mul`` and ``ARRAY`` are also the fixtures of test_isa_asm and test_isa_bitstream.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from isa.arch import ArrayConfig
from isa.errors import IsaError
from isa.ops import Opcode
from isa.program import Edge, Kernel, Node, TensorDecl
from isa.verify import kernel_problems, verify_kernel

# 4 x 8 grid; MEM tiles are the columns where (col + 1) % 4 == 0, i.e. columns 3 and 7.
ARRAY = ArrayConfig(rows=4, cols=8, mem_column_period=4)

_ROUTES: dict[str, tuple[tuple[int, int], ...]] = {
    "scan_b.crd->isect_i.crd_a": ((0, 3), (0, 2)),
    "scan_b.ref->isect_i.ref_a": ((0, 3), (0, 2)),
    "scan_c.crd->isect_i.crd_b": ((1, 3), (1, 2), (0, 2)),
    "scan_c.ref->isect_i.ref_b": ((1, 3), (1, 2), (0, 2)),
    "isect_i.crd->wr_x0.crd": ((0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7)),
    "isect_i.ref_a->arr_b.ref": ((0, 2), (0, 3), (1, 3), (2, 3)),
    "isect_i.ref_b->arr_c.ref": ((0, 2), (1, 2), (2, 2), (3, 2), (3, 3)),
    "arr_b.val->mul.a": ((2, 3), (2, 2)),
    "arr_c.val->mul.b": ((3, 3), (3, 2), (2, 2)),
    "mul.val->wr_xv.val": ((2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (2, 7), (1, 7)),
}


def ewise_mul(placed: bool = True) -> Kernel:
    """x(i) = b(i) * c(i) over compressed vectors, placed and routed on ``ARRAY``."""

    def at(tile: tuple[int, int]) -> tuple[int, int] | None:
        return tile if placed else None

    nodes = (
        Node.make("scan_b", Opcode.SCAN, tile=at((0, 3)), tensor="b", level=0, fmt="compressed",
                  root=True),
        Node.make("scan_c", Opcode.SCAN, tile=at((1, 3)), tensor="c", level=0, fmt="compressed",
                  root=True),
        Node.make("isect_i", Opcode.INTERSECT, tile=at((0, 2))),
        Node.make("arr_b", Opcode.ARRAY, tile=at((2, 3)), tensor="b"),
        Node.make("arr_c", Opcode.ARRAY, tile=at((3, 3)), tensor="c"),
        Node.make("mul", Opcode.ALU, tile=at((2, 2)), op="mul"),
        Node.make("wr_x0", Opcode.WRITE_CRD, tile=at((0, 7)), tensor="x", level=0),
        Node.make("wr_xv", Opcode.WRITE_VAL, tile=at((1, 7)), tensor="x"),
    )
    plain = (
        Edge("scan_b", "crd", "isect_i", "crd_a", "crd"),
        Edge("scan_b", "ref", "isect_i", "ref_a", "ref"),
        Edge("scan_c", "crd", "isect_i", "crd_b", "crd"),
        Edge("scan_c", "ref", "isect_i", "ref_b", "ref"),
        Edge("isect_i", "crd", "wr_x0", "crd", "crd"),
        Edge("isect_i", "ref_a", "arr_b", "ref", "ref"),
        Edge("isect_i", "ref_b", "arr_c", "ref", "ref"),
        Edge("arr_b", "val", "mul", "a", "val"),
        Edge("arr_c", "val", "mul", "b", "val"),
        Edge("mul", "val", "wr_xv", "val", "val"),
    )
    edges = tuple(replace(e, route=_ROUTES[e.name]) if placed else e for e in plain)
    vec = ((8,), ("compressed",), (0,))
    tensors = (
        TensorDecl("b", *vec),
        TensorDecl("c", *vec),
        TensorDecl("x", *vec, is_output=True),
    )
    return Kernel("ewise_mul", nodes, edges, tensors, "x(i)=b(i)*c(i)")


def _with_node(k: Kernel, node: Node) -> Kernel:
    return k.with_nodes(tuple(node if n.id == node.id else n for n in k.nodes))


def _with_edge(k: Kernel, name: str, edge: Edge | None) -> Kernel:
    edges = [edge if e.name == name else e for e in k.edges]
    return k.with_edges(tuple(e for e in edges if e is not None))


def _problems(k: Kernel, array: ArrayConfig | None = ARRAY) -> str:
    with pytest.raises(IsaError) as info:
        verify_kernel(k, array)
    return str(info.value)


def test_valid_kernel_passes() -> None:
    verify_kernel(ewise_mul(), ARRAY)
    verify_kernel(ewise_mul(placed=False), ARRAY)
    verify_kernel(ewise_mul(placed=False))
    assert kernel_problems(ewise_mul(), ARRAY) == []


def test_every_problem_in_one_error_one_per_line() -> None:
    k = _with_edge(ewise_mul(), "scan_c.crd->isect_i.crd_b", None)
    k = _with_node(k, Node.make("mul", Opcode.ALU, tile=(2, 2), op="pow"))
    msg = _problems(k)
    lines = msg.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("kernel ewise_mul: ") for line in lines)


def test_duplicate_node_id() -> None:
    k = ewise_mul(placed=False)
    k = k.with_nodes(k.nodes + (Node.make("mul", Opcode.ALU, op="add"),))
    assert "kernel ewise_mul: duplicate node id 'mul'" in _problems(k, None)


def test_unknown_attribute() -> None:
    k = _with_node(ewise_mul(), Node.make("isect_i", Opcode.INTERSECT, tile=(0, 2), mode=1))
    assert "node isect_i: unknown attribute 'mode' for intersect" in _problems(k)


def test_attribute_type() -> None:
    k = _with_node(ewise_mul(), Node.make("wr_x0", Opcode.WRITE_CRD, tile=(0, 7), tensor="x",
                                          level="0"))
    assert "node wr_x0: attribute level must be int, got '0'" in _problems(k)


def test_bool_is_not_an_int_attribute() -> None:
    k = _with_node(ewise_mul(), Node.make("wr_x0", Opcode.WRITE_CRD, tile=(0, 7), tensor="x",
                                          level=True))
    assert "node wr_x0: attribute level must be int, got True" in _problems(k)


def test_required_attribute_missing() -> None:
    k = _with_node(ewise_mul(), Node.make("arr_b", Opcode.ARRAY, tile=(2, 3)))
    assert "node arr_b: required attribute tensor missing" in _problems(k)


def test_alu_op_known() -> None:
    k = _with_node(ewise_mul(), Node.make("mul", Opcode.ALU, tile=(2, 2), op="pow"))
    assert "node mul: op must be one of add, sub, mul, max, relu, silu, gelu, got 'pow'" in (
        _problems(k)
    )


def test_zero_policy_known() -> None:
    k = _with_node(ewise_mul(), Node.make("mul", Opcode.ALU, tile=(2, 2), op="mul", zero_b="never"))
    assert "node mul: zero_b must be one of skip, gate, none, got 'never'" in _problems(k)


def test_scan_format_known() -> None:
    k = _with_node(ewise_mul(), Node.make("scan_b", Opcode.SCAN, tile=(0, 3), tensor="b", level=0,
                                          fmt="rle", root=True))
    assert "node scan_b: fmt must be one of compressed, dense, bitmap, got 'rle'" in _problems(k)


def test_edge_unknown_node() -> None:
    k = ewise_mul(placed=False)
    k = k.with_edges(k.edges + (Edge("ghost", "val", "mul", "a", "val"),))
    assert "edge ghost.val->mul.a: unknown node 'ghost'" in _problems(k, None)


def test_edge_unknown_output_port() -> None:
    old = "scan_b.crd->isect_i.crd_a"
    k = _with_edge(ewise_mul(placed=False), old,
                   Edge("scan_b", "coord", "isect_i", "crd_a", "crd"))
    assert "edge scan_b.coord->isect_i.crd_a: scan scan_b has no output port 'coord'" in (
        _problems(k, None)
    )


def test_edge_unknown_input_port() -> None:
    old = "arr_c.val->mul.b"
    k = _with_edge(ewise_mul(placed=False), old, Edge("arr_c", "val", "mul", "c", "val"))
    msg = _problems(k, None)
    assert "edge arr_c.val->mul.c: alu mul has no input port 'c' (has a, b)" in msg
    assert "node mul: input port b unconnected" in msg


def test_unary_alu_has_no_b_port() -> None:
    k = _with_node(ewise_mul(), Node.make("mul", Opcode.ALU, tile=(2, 2), op="relu"))
    assert "edge arr_c.val->mul.b: alu mul has no input port 'b' (has a)" in _problems(k)


def test_edge_kind_matches_ports() -> None:
    old = "arr_b.val->mul.a"
    k = _with_edge(ewise_mul(), old, replace(ewise_mul().edges[7], kind="crd"))
    msg = _problems(k)
    assert "edge arr_b.val->mul.a: kind crd but output port val carries val" in msg
    assert "edge arr_b.val->mul.a: kind crd but input port a takes val" in msg


def test_input_port_unconnected() -> None:
    k = _with_edge(ewise_mul(), "scan_c.crd->isect_i.crd_b", None)
    assert "kernel ewise_mul: node isect_i: input port crd_b unconnected" in _problems(k)


def test_input_port_driven_twice() -> None:
    k = ewise_mul(placed=False)
    k = k.with_edges(k.edges + (Edge("arr_c", "val", "mul", "a", "val"),))
    assert "node mul: input port a driven by 2 edges" in _problems(k, None)


def test_unused_output_is_allowed() -> None:
    k = _with_edge(ewise_mul(), "isect_i.crd->wr_x0.crd", None)
    k = k.with_nodes(tuple(n for n in k.nodes if n.id != "wr_x0"))
    assert kernel_problems(k, ARRAY) == []
    verify_kernel(k, ARRAY)


def test_cycle() -> None:
    k = ewise_mul(placed=False)
    # scan_c's coordinates go through a crdhold whose inner input is the intersect's output.
    k = k.with_nodes(k.nodes + (Node.make("hold", Opcode.CRDHOLD),))
    k = _with_edge(k, "scan_c.crd->isect_i.crd_b", Edge("hold", "inner", "isect_i", "crd_b",
                                                           "crd"))
    k = k.with_edges(k.edges + (
        Edge("scan_c", "crd", "hold", "outer", "crd"),
        Edge("isect_i", "crd", "hold", "inner", "crd"),
    ))
    assert kernel_problems(k) == ["graph has a cycle through isect_i, hold"]


def test_writer_reachable_from_scan() -> None:
    k = ewise_mul(placed=False)
    k = k.with_nodes(k.nodes + (Node.make("wr_y", Opcode.WRITE_VAL, tensor="x"),))
    msg = _problems(k, None)
    assert "node wr_y: write_val not reachable from a scan" in msg
    assert "node wr_xv" not in msg


def test_tensor_declared() -> None:
    k = ewise_mul()
    k = replace(k, tensors=tuple(t for t in k.tensors if t.name != "c"))
    msg = _problems(k)
    assert "node scan_c: tensor c not declared" in msg
    assert "node arr_c: tensor c not declared" in msg


def test_tensor_declared_once() -> None:
    k = ewise_mul()
    k = replace(k, tensors=k.tensors + (k.tensors[0],))
    assert "tensor b declared twice" in _problems(k)


def test_writer_writes_output_tensor() -> None:
    k = _with_node(ewise_mul(), Node.make("wr_xv", Opcode.WRITE_VAL, tile=(1, 7), tensor="b"))
    assert "node wr_xv: writes input tensor b" in _problems(k)


def test_reader_reads_input_tensor() -> None:
    k = _with_node(ewise_mul(), Node.make("arr_c", Opcode.ARRAY, tile=(3, 3), tensor="x"))
    assert "node arr_c: reads output tensor x" in _problems(k)


def test_level_exists() -> None:
    k = _with_node(ewise_mul(), Node.make("scan_c", Opcode.SCAN, tile=(1, 3), tensor="c", level=1,
                                          fmt="compressed", root=True))
    assert "node scan_c: level 1 outside tensor c (levels 0..0)" in _problems(k)


def test_every_node_placed_once_any_is() -> None:
    k = _with_node(ewise_mul(), Node.make("mul", Opcode.ALU, op="mul"))
    assert "node mul: not placed" in _problems(k)


def test_node_inside_grid() -> None:
    k = _with_node(ewise_mul(), Node.make("mul", Opcode.ALU, tile=(4, 2), op="mul"))
    assert "node mul: tile (4, 2) outside the 4x8 array" in _problems(k)


def test_node_on_tile_of_its_kind() -> None:
    k = _with_node(ewise_mul(), Node.make("mul", Opcode.ALU, tile=(3, 7), op="mul"))
    assert "node mul: alu needs a pe tile, (3, 7) is a mem tile" in _problems(k)


def test_one_node_per_tile() -> None:
    k = _with_node(ewise_mul(), Node.make("arr_c", Opcode.ARRAY, tile=(2, 3), tensor="c"))
    assert "tile (2, 3) holds several nodes: arr_b, arr_c" in _problems(k)


def test_every_edge_routed_once_any_is() -> None:
    name = "arr_b.val->mul.a"
    k = _with_edge(ewise_mul(), name, Edge("arr_b", "val", "mul", "a", "val"))
    assert f"edge {name}: not routed" in _problems(k)


def test_placed_but_unrouted_kernel_passes() -> None:
    k = ewise_mul().with_edges(tuple(replace(e, route=()) for e in ewise_mul().edges))
    assert kernel_problems(k, ARRAY) == []
    verify_kernel(k, ARRAY)


def test_route_starts_at_source_tile() -> None:
    name = "arr_b.val->mul.a"
    k = _with_edge(ewise_mul(), name, Edge("arr_b", "val", "mul", "a", "val",
                                           ((2, 1), (2, 2))))
    assert f"edge {name}: route starts at (2, 1), source is on (2, 3)" in _problems(k)


def test_route_ends_at_destination_tile() -> None:
    name = "arr_b.val->mul.a"
    k = _with_edge(ewise_mul(), name, Edge("arr_b", "val", "mul", "a", "val",
                                           ((2, 3), (1, 3))))
    assert f"edge {name}: route ends at (1, 3), destination is on (2, 2)" in _problems(k)


def test_route_steps_between_neighbours() -> None:
    name = "arr_c.val->mul.b"
    k = _with_edge(ewise_mul(), name, Edge("arr_c", "val", "mul", "b", "val",
                                           ((3, 3), (2, 2))))
    assert f"edge {name}: route step (3, 3) -> (2, 2) is not between mesh neighbours" in (
        _problems(k)
    )


def test_route_has_a_hop() -> None:
    name = "arr_b.val->mul.a"
    k = _with_edge(ewise_mul(), name, Edge("arr_b", "val", "mul", "a", "val", ((2, 3),)))
    assert re.search(rf"edge {re.escape(name)}: route \[\(2, 3\)\] has no hop", _problems(k))


def test_route_inside_grid() -> None:
    name = "arr_b.val->mul.a"
    k = _with_edge(ewise_mul(), name, Edge("arr_b", "val", "mul", "a", "val",
                                           ((2, 3), (2, 4), (1, 4), (0, 4), (-1, 4), (-1, 3),
                                            (-1, 2), (0, 2), (1, 2), (2, 2))))
    assert f"edge {name}: route tile (-1, 4) outside the 4x8 array" in _problems(k)


def test_systolic_kernel_rules():
    from isa.program import SystolicKernel, TensorDecl

    dense = ("dense", "dense")

    def decls(a, b, c):
        return (TensorDecl("A", a, dense, (0, 1)), TensorDecl("B", b, dense, (0, 1)),
                TensorDecl("X", c, dense, (0, 1), True))

    verify_kernel(SystolicKernel("ok", 4, 4, "os", (2, 4), decls((3, 8), (8, 5), (3, 5))))
    bad = SystolicKernel("bad", 0, 4, "xs", (5, 4), decls((3, 8), (7, 5), (3, 5)))
    with pytest.raises(IsaError) as err:
        verify_kernel(bad)
    text = str(err.value)
    for problem in ("rows must be an int >= 1", "dataflow 'xs'", "N:M pattern 5:4",
                    "shapes do not make a GEMM"):
        assert f"kernel bad: {problem}" in text
