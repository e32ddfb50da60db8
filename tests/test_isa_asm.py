"""Assembly printer/parser round trips, parse errors naming the line, and DOT export."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from isa.asm import parse_kernel, parse_program, print_kernel, print_program
from isa.dot import to_dot
from isa.errors import IsaError
from isa.ops import Opcode
from isa.program import Command, Edge, Kernel, Node, Program, TensorDecl
from tests.test_isa_verify import ewise_mul


def _odd_kernel() -> Kernel:
    """Names and values that need quoting: non-identifiers, 'true' as a string, ';' etc."""
    nodes = (
        Node.make("scan B.0", Opcode.SCAN, tensor="B-mat", level=0, fmt="dense", dim=-3),
        Node.make("true", Opcode.ARRAY, tensor="true"),
        Node.make('q"uote', Opcode.WRITE_VAL, tensor="ünï code"),
        Node.make("s", Opcode.REDUCE, tile=(0, 0), drop_empty=True),
    )
    edges = (
        Edge("scan B.0", "ref", "true", "ref", "ref", ((0, 3),)),
        Edge("true", "val", 'q"uote', "val", "val"),
        Edge("true", "val", "s", "val", "val"),
    )
    tensors = (
        TensorDecl("B-mat", (4,), ("dense",), (0,)),
        TensorDecl("scalar", (), (), (), is_output=True),
    )
    return Kernel("odd kernel", nodes, edges, tensors, ' y = "a" ; b\t')


@pytest.mark.parametrize(
    "kernel",
    [ewise_mul(), ewise_mul(placed=False), _odd_kernel(), Kernel("empty", (), ())],
    ids=["placed", "unplaced", "quoted", "empty"],
)
def test_kernel_round_trips_both_ways(kernel: Kernel) -> None:
    text = print_kernel(kernel)
    assert parse_kernel(text) == kernel
    assert print_kernel(parse_kernel(text)) == text


def test_printed_lines() -> None:
    lines = print_kernel(ewise_mul()).splitlines()
    assert lines[:3] == [".kernel ewise_mul", ".expr x(i)=b(i)*c(i)",
                         ".tensor b shape=8 formats=compressed order=0"]
    assert ".tensor x shape=8 formats=compressed order=0 output" in lines
    assert ("scan_b = scan tensor=b level=0 fmt=compressed dim=0 root=true skip_zeros=false "
            "@mem(0,3)") in lines
    assert "mul = alu op=mul zero_a=skip zero_b=skip @pe(2,2)" in lines
    assert "scan_c.crd -> isect_i.crd_b : crd via (1,3) (1,2) (0,2)" in lines
    assert lines[-1] == ".end"


def test_quoting() -> None:
    text = print_kernel(_odd_kernel())
    assert '.kernel "odd kernel"' in text
    assert '.expr " y = \\"a\\" ; b\\t"' in text
    assert '"true" = array tensor="true"' not in text          # a node id needs no quotes
    assert 'true = array tensor="true"' in text                # a string value 'true' does
    assert ".tensor scalar shape=() formats=() order=() output" in text
    assert '"scan B.0".ref -> true.ref : ref via (0,3)' in text


def test_hand_written_text_with_comments_and_defaults() -> None:
    text = """
    ; x(i) = b(i) * c(i), written by hand
    .kernel ewise_mul   ; name
    .expr x(i)=b(i)*c(i)
    .tensor b shape=8 formats=compressed order=0
    .tensor c  order=0 formats=compressed shape=8
    .tensor x shape=8 formats=compressed order=0 output
    scan_b = scan tensor=b level=0 fmt=compressed root=true @mem(0,3)
    scan_c = scan root=true fmt=compressed level=0 tensor=c @(1,3)
    isect_i = intersect @pe(0,2)
    arr_b = array tensor="b" @mem(2,3)
    arr_c = array tensor=c @mem(3,3)
    mul = alu op=mul @pe(2,2)    ; zero policies default to skip
    wr_x0 = write_crd tensor=x level=0 @mem(0,7)
    wr_xv = write_val tensor=x @mem(1,7)
    scan_b.crd -> isect_i.crd_a : crd via (0,3) (0,2)
    scan_b.ref -> isect_i.ref_a : ref via (0,3) (0,2)
    scan_c.crd->isect_i.crd_b:crd via (1,3)(1,2)(0,2)
    scan_c.ref -> isect_i.ref_b : ref via (1,3) (1,2) (0,2)
    isect_i.crd -> wr_x0.crd : crd via (0,2) (0,3) (0,4) (0,5) (0,6) (0,7)
    isect_i.ref_a -> arr_b.ref : ref via (0,2) (0,3) (1,3) (2,3)
    isect_i.ref_b -> arr_c.ref : ref via (0,2) (1,2) (2,2) (3,2) (3,3)
    arr_b.val -> mul.a : val via (2,3) (2,2)
    arr_c.val -> mul.b : val via (3,3) (3,2) (2,2)
    mul.val -> wr_xv.val : val via (2,2) (2,3) (2,4) (2,5) (2,6) (2,7) (1,7)
    .end
    """
    assert parse_kernel(text) == ewise_mul()


def _program() -> Program:
    other = replace(ewise_mul(placed=False), name="ewise_mul_2")
    schedule = (
        Command("configure", "ewise_mul", 300),
        Command("dma_in", "b", 64),
        Command("load", "b", 64),
        Command("launch", "ewise_mul"),
        Command("wait", "ewise_mul"),
        Command("dma_out", "x", 64),
    )
    return Program("demo", (ewise_mul(), other), {}, schedule)


def test_program_round_trips_both_ways() -> None:
    program = _program()
    text = print_program(program)
    assert parse_program(text) == program
    assert print_program(parse_program(text)) == text
    assert "\n.schedule\nconfigure ewise_mul size_bytes=300\n" in text
    assert "\nlaunch ewise_mul\n" in text


def test_program_text_has_no_images() -> None:
    program = replace(_program(), images={"b": object()})
    parsed = parse_program(print_program(program))
    assert parsed.images == {}
    assert parsed == replace(program, images={})


def test_program_without_kernels_or_schedule() -> None:
    text = print_program(Program("nothing", ()))
    assert text == ".program nothing\n"
    assert parse_program(text) == Program("nothing", ())


_GOOD = print_kernel(ewise_mul()).splitlines()


def _replace_line(index: int, line: str) -> str:
    lines = list(_GOOD)
    lines[index] = line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("lineno", "line", "message"),
    [
        (8, "isect_i = intersekt @pe(0,2)", "unknown opcode 'intersekt'"),
        (8, "isect_i = intersect mode=1 @pe(0,2)", "unknown attribute 'mode' for intersect"),
        (12, "wr_x0 = write_crd tensor=x level=zero @mem(0,7)",
         "attribute level of write_crd: expected int, got zero"),
        (6, "scan_b = scan tensor=b level=0 fmt=compressed root=1 @mem(0,3)",
         "attribute root of scan: expected bool, got 1"),
        (9, "arr_b = array tensor=true @mem(2,3)",
         "attribute tensor of array: expected str, got true"),
        (9, "arr_b = array tensor=b @pe(2,3)", "array goes on a mem tile, not pe"),
        (9, "arr_b = array tensor=b @mem(2,3", "expected ')', got end of line"),
        (10, "arr_b = array tensor=c @mem(3,3)",
         "duplicate node id 'arr_b' (first defined on line 9)"),
        (21, "arr_b.val -> mul.a : value via (2,3) (2,2)", "unknown stream kind 'value'"),
        (21, "arr_b.val -> mull.a : val via (2,3) (2,2)", "edge names unknown node 'mull'"),
        (21, "arr_b.val -> mul.a : val (2,3) (2,2)",
         "expected 'via', 'buffer=' or end of line, got '('"),
        (21, 'arr_b.val -> mul.a : "val', "bad quoted string"),
        (21, "arr_b.val -> mul.a : val via (2,3) $", "unexpected character '$'"),
        (3, ".tensor b shape=8 formats=compressed", "tensor b: missing order"),
        (3, ".tensor b shape=8 formats=compressed order=0 input", "unknown tensor field 'input'"),
        (2, ".exprr x", "unexpected .exprr inside kernel ewise_mul"),
    ],
)
def test_parse_error_names_the_line(lineno: int, line: str, message: str) -> None:
    with pytest.raises(IsaError) as info:
        parse_kernel(_replace_line(lineno - 1, line))
    assert str(info.value).startswith(f"line {lineno}: ")
    assert message in str(info.value)


def test_parse_error_missing_end() -> None:
    with pytest.raises(IsaError, match=r"^line 1: kernel ewise_mul has no \.end"):
        parse_kernel("\n".join(_GOOD[:-1]))


def test_parse_error_text_after_kernel() -> None:
    with pytest.raises(IsaError, match=r"^line 25: text after the kernel's \.end"):
        parse_kernel("\n".join(_GOOD) + "\nextra = alu op=add\n")


def test_parse_error_in_program_schedule() -> None:
    text = print_program(_program()).replace("launch ewise_mul", "launchh ewise_mul")
    lineno = text.splitlines().index("launchh ewise_mul") + 1
    with pytest.raises(IsaError, match=rf"^line {lineno}: unknown command 'launchh'"):
        parse_program(text)


# ------------------------------------------------------------------------------------- DOT

_DOT_STRING = r'"(?:[^"\\]|\\.)*"'
_DOT_ATTRS = rf"\[(?:{_DOT_STRING}={_DOT_STRING} ?)*\]"
_DOT_LINE = re.compile(
    rf"\s*(?:{_DOT_STRING}={_DOT_STRING}"
    rf"|{_DOT_STRING} {_DOT_ATTRS}"
    rf"|{_DOT_STRING} -> {_DOT_STRING} {_DOT_ATTRS})"
)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@pytest.mark.parametrize("kernel", [ewise_mul(), _odd_kernel()], ids=["placed", "quoted"])
def test_dot_is_well_formed(kernel: Kernel) -> None:
    lines = to_dot(kernel).splitlines()
    assert re.fullmatch(rf"digraph {_DOT_STRING} {{", lines[0])
    assert lines[-1] == "}"
    for line in lines[1:-1]:
        assert _DOT_LINE.fullmatch(line), line


def test_dot_has_every_node_and_edge() -> None:
    kernel = _odd_kernel()
    dot = to_dot(kernel)
    node_ids = re.findall(rf"^    ({_DOT_STRING}) \[", dot, flags=re.M)
    assert [_unquote(n) for n in node_ids] == [n.id for n in kernel.nodes]
    edges = re.findall(rf"^    ({_DOT_STRING}) -> ({_DOT_STRING}) \[(.*)\]$", dot, flags=re.M)
    assert [(_unquote(s), _unquote(d)) for s, d, _ in edges] == [
        (e.src, e.dst) for e in kernel.edges
    ]
    for (_, _, attrs), e in zip(edges, kernel.edges, strict=True):
        assert f'"type"="{e.kind}"' in attrs
        assert f'"label"="{e.src_port}->{e.dst_port}"' in attrs


def test_dot_node_and_edge_attributes() -> None:
    dot = to_dot(ewise_mul())
    scan = next(line for line in dot.splitlines() if line.startswith('    "scan_b" ['))
    for pair in ('"type"="scan"', '"tensor"="b"', '"level"="0"', '"root"="true"',
                 '"tile"="0,3"', r'"label"="scan_b\nscan b0 compressed\n@(0,3)"'):
        assert pair in scan
    crd = next(line for line in dot.splitlines() if line.startswith('    "scan_c" -> '))
    assert '"style"="dashed"' in crd and '"hops"="2"' in crd
    val = next(line for line in dot.splitlines() if line.startswith('    "arr_b" -> '))
    assert '"type"="val"' in val and '"style"="solid"' in val


def test_systolic_kernels_round_trip_and_report_bad_lines():
    from isa.asm import parse_kernel, print_kernel
    from isa.program import SystolicKernel, TensorDecl

    dense = ("dense", "dense")
    k = SystolicKernel("gemm_ws_8x4", 8, 4, "ws", (2, 4),
                       (TensorDecl("A", (5, 8), dense, (0, 1)),
                        TensorDecl("B", (8, 3), dense, (0, 1)),
                        TensorDecl("X", (5, 3), dense, (0, 1), True)))
    text = print_kernel(k)
    assert ".array rows=8 cols=4 dataflow=ws nm=2:4" in text
    assert parse_kernel(text) == k and print_kernel(parse_kernel(text)) == text
    template = SystolicKernel("mac_block", 16, 21, "os")
    assert parse_kernel(print_kernel(template)) == template
    with pytest.raises(IsaError, match="line 2: unknown array field 'depth'"):
        parse_kernel(".systolic g\n.array rows=1 cols=1 dataflow=os depth=3\n.end\n")
    with pytest.raises(IsaError, match="has no .array"):
        parse_kernel(".systolic g\n.end\n")
