"""Graphviz DOT export of a kernel, in the spirit of SAM's ``.gv`` graphs.

Each node carries ``type`` (the mnemonic), its attributes, ``tile`` when placed and a
two-line ``label``; each edge carries ``type`` (the stream kind), ``src_port``, ``dst_port``,
``hops`` when routed, a ``label`` ``src_port->dst_port`` and a style per stream kind (SAM
draws coordinates dashed and references bold). Every identifier and value is quoted, so any
node id or attribute text gives valid DOT. No graphviz dependency.
"""

from __future__ import annotations

from typing import Any

from isa.ops import SIGNATURES, Opcode, TileKind
from isa.program import Edge, Kernel, Node

EDGE_STYLE = {"crd": "dashed", "ref": "bold", "val": "solid", "repsig": "dotted",
              "bv": "dashed"}
EDGE_COLOR = {"crd": "black", "ref": "black", "val": "blue", "repsig": "darkorange",
              "bv": "darkgreen"}
NODE_COLOR = {
    Opcode.SCAN: "green4",
    Opcode.REPSIG: "cyan3",
    Opcode.REPEAT: "cyan2",
    Opcode.INTERSECT: "purple",
    Opcode.UNION: "purple1",
    Opcode.ARRAY: "green2",
    Opcode.ALU: "brown",
    Opcode.REDUCE: "brown2",
    Opcode.VREDUCE: "brown3",
    Opcode.CRDDROP: "orange",
    Opcode.CRDHOLD: "orange3",
    Opcode.WRITE_CRD: "green3",
    Opcode.WRITE_VAL: "green3",
    Opcode.LOCATE: "purple3",
    Opcode.SCAN_BV: "green4",
    Opcode.BV_INTERSECT: "purple",
    Opcode.BV_UNION: "purple1",
    Opcode.LOCATE_BV: "purple3",
    Opcode.WRITE_BV: "green3",
}


def quote(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _attr_list(pairs: list[tuple[str, Any]]) -> str:
    return "[" + " ".join(f"{quote(k)}={quote(_text(v))}" for k, v in pairs) + "]"


def _node_label(node: Node) -> str:
    a = node.a
    detail = node.op.value
    if "tensor" in a:
        detail += f" {a['tensor']}"
        if "level" in a:
            detail += f"{a['level']}"
    if "fmt" in a:
        detail += f" {a['fmt']}"
    if node.op is Opcode.ALU and "op" in a:
        detail += f" {a['op']}"
    if node.tile is not None:
        detail += f"\n@({node.tile[0]},{node.tile[1]})"
    return f"{node.id}\n{detail}"


def _node_stmt(node: Node) -> str:
    tile_kind = SIGNATURES[node.op].tile
    pairs: list[tuple[str, Any]] = [
        ("label", _node_label(node)),
        ("type", node.op.value),
        ("shape", "box" if tile_kind is TileKind.MEM else "ellipse"),
        ("style", "filled" if tile_kind is TileKind.MEM else "solid"),
        ("color", NODE_COLOR[node.op]),
    ]
    taken = {k for k, _ in pairs} | {"tile"}
    pairs += [(k, v) for k, v in node.attrs if k not in taken]
    if node.tile is not None:
        pairs.append(("tile", f"{node.tile[0]},{node.tile[1]}"))
    return f"    {quote(node.id)} {_attr_list(pairs)}"


def _edge_stmt(edge: Edge) -> str:
    pairs: list[tuple[str, Any]] = [
        ("label", f"{edge.src_port}->{edge.dst_port}"),
        ("type", edge.kind),
        ("src_port", edge.src_port),
        ("dst_port", edge.dst_port),
        ("style", EDGE_STYLE.get(edge.kind, "solid")),
        ("color", EDGE_COLOR.get(edge.kind, "red")),
    ]
    if edge.route:
        pairs.append(("hops", edge.hops))
        pairs.append(("route", " ".join(f"({r},{c})" for r, c in edge.route)))
    return f"    {quote(edge.src)} -> {quote(edge.dst)} {_attr_list(pairs)}"


def to_dot(kernel: Kernel) -> str:
    """The kernel as a Graphviz ``digraph`` (one statement per node and per edge)."""
    lines = [f"digraph {quote(kernel.name)} {{"]
    graph_attrs: list[tuple[str, Any]] = [("label", kernel.name)]
    if kernel.expr:
        graph_attrs.append(("comment", kernel.expr))
    lines += [f"    {quote(k)}={quote(_text(v))}" for k, v in graph_attrs]
    lines += [_node_stmt(n) for n in kernel.nodes]
    lines += [_edge_stmt(e) for e in kernel.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
