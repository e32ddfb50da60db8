"""The kernel verifier: every ISA rule a kernel must satisfy, all problems in one error.

``verify_kernel`` runs between compiler passes and before simulation. Rules:

- node ids are unique; attribute names are in ``ops.ATTRS`` with the declared type, required
  ones are present; ALU ops, zero policies and scan formats take known values;
- every edge joins existing nodes, from an output port to an input port of the nodes'
  signatures (``ops.signature``), and its kind equals both ports' kinds;
- every input port is driven by exactly one edge (outputs may fan out or be unused);
- the graph is a DAG, and every level writer is reachable from a scan;
- tensors named by scan, array, locator and writer nodes are declared (once each), writers
  write output tensors and scans/arrays/locators read input tensors, and scanned/written/
  located levels exist; a locator's level is dense and its ``dim`` is that level's size;
- stream filters and arbiters have a known kind and consistent counts; an output's writers
  write each level once, or, dealt over copies (the output address generator, isa.copies),
  agree on the copies and write each level once per copy.

A systolic (dense-mode) kernel has its own rules: rows and cols are ints >= 1, the dataflow
is one of SCALE-Sim's (os, ws, is), an N:M pattern has 0 < N <= M, and, when it declares
tensors, they are exactly A (M x K), B (K x N) and one output (M x N), all dense 2-D with
matching extents (a template declares none). Given an ``ArrayConfig``, the block must fit the
array's rows.

Given an ``ArrayConfig``, it also checks the physical mapping at the stage the kernel has
reached: once any node is placed, every node is placed inside the grid on a tile of its
opcode's kind and no two nodes share a tile; once any edge is routed, every edge's route runs
from its source tile to its destination tile over mesh neighbours with at least one hop.
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np

from isa.arch import SYSTOLIC_DATAFLOWS, ArrayConfig
from isa.asm import STREAM_KINDS
from isa.errors import IsaError
from isa.ops import (
    ALU_BINARY,
    ALU_UNARY,
    ATTRS,
    SIGNATURES,
    WRITERS,
    ZERO_POLICIES,
    Opcode,
    signature,
)
from isa.program import Kernel, Node, SystolicKernel

SCAN_FORMATS = ("compressed", "dense", "bitmap")
READERS = (Opcode.SCAN, Opcode.ARRAY, Opcode.LOCATE, Opcode.SCAN_BV, Opcode.LOCATE_BV)
BITMAP_UNITS = (Opcode.SCAN_BV, Opcode.LOCATE_BV, Opcode.WRITE_BV)   # need a bitmap level


def _type_ok(value: Any, typ: type) -> bool:
    if typ is bool:
        return isinstance(value, (bool, np.bool_))
    if typ is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    return isinstance(value, typ)


def _attr_problems(node: Node) -> list[str]:
    out: list[str] = []
    schema = ATTRS[node.op]
    seen: set[str] = set()
    for key, value in node.attrs:
        if key in seen:
            out.append(f"node {node.id}: attribute {key} given twice")
        seen.add(key)
        if key not in schema:
            out.append(f"node {node.id}: unknown attribute {key!r} for {node.op.value}")
        elif not _type_ok(value, schema[key][0]):
            out.append(
                f"node {node.id}: attribute {key} must be {schema[key][0].__name__}, "
                f"got {value!r}"
            )
    for key, (_typ, default) in schema.items():
        if default is None and key not in seen:
            out.append(f"node {node.id}: required attribute {key} missing")
    a = node.a
    choices: list[tuple[str, tuple[str, ...]]] = []
    if node.op is Opcode.ALU:
        choices = [("op", ALU_BINARY + ALU_UNARY), ("zero_a", ZERO_POLICIES),
                   ("zero_b", ZERO_POLICIES)]
    elif node.op is Opcode.SCAN:
        choices = [("fmt", SCAN_FORMATS)]
    for key, allowed in choices:
        if key in a and isinstance(a[key], str) and a[key] not in allowed:
            out.append(
                f"node {node.id}: {key} must be one of {', '.join(allowed)}, got {a[key]!r}"
            )
    return out


def _edge_and_arity_problems(kernel: Kernel, nodes: dict[str, Node]) -> list[str]:
    out: list[str] = []
    drivers: dict[tuple[str, str], int] = defaultdict(int)
    for e in kernel.edges:
        if e.buffer < 0:
            out.append(f"edge {e.name}: negative buffer {e.buffer}")
        bad_end = False
        for end in (e.src, e.dst):
            if end not in nodes:
                out.append(f"edge {e.name}: unknown node {end!r}")
                bad_end = True
        if bad_end:
            continue
        src, dst = nodes[e.src], nodes[e.dst]
        outputs = signature(src.op, src.a).outputs
        inputs = signature(dst.op, dst.a).inputs
        if e.src_port not in outputs:
            out.append(f"edge {e.name}: {src.op.value} {src.id} has no output port "
                       f"{e.src_port!r} (has {', '.join(outputs) or 'none'})")
        elif outputs[e.src_port] != e.kind:
            out.append(f"edge {e.name}: kind {e.kind} but output port {e.src_port} "
                       f"carries {outputs[e.src_port]}")
        if e.dst_port not in inputs:
            out.append(f"edge {e.name}: {dst.op.value} {dst.id} has no input port "
                       f"{e.dst_port!r} (has {', '.join(inputs) or 'none'})")
        else:
            drivers[(e.dst, e.dst_port)] += 1
            if inputs[e.dst_port] != e.kind:
                out.append(f"edge {e.name}: kind {e.kind} but input port {e.dst_port} "
                           f"takes {inputs[e.dst_port]}")
    for node in nodes.values():
        for port in signature(node.op, node.a).inputs:
            count = drivers[(node.id, port)]
            if count == 0:
                out.append(f"node {node.id}: input port {port} unconnected")
            elif count > 1:
                out.append(f"node {node.id}: input port {port} driven by {count} edges")
    return out


def _graph_problems(kernel: Kernel, nodes: dict[str, Node]) -> list[str]:
    """Cycles, and writers that no scan feeds."""
    succ: dict[str, set[str]] = {n: set() for n in nodes}
    pred: dict[str, set[str]] = {n: set() for n in nodes}
    for e in kernel.edges:
        if e.src in nodes and e.dst in nodes:
            succ[e.src].add(e.dst)
            pred[e.dst].add(e.src)
    out: list[str] = []
    # Peel sources, then sinks: what remains lies on (or between) cycles.
    alive = set(nodes)
    for links in (pred, succ):
        frontier = [n for n in alive if not (links[n] & alive)]
        while frontier:
            n = frontier.pop()
            if n not in alive:
                continue
            alive.discard(n)
            other = succ if links is pred else pred
            frontier += [m for m in other[n] if m in alive and not (links[m] & alive)]
    if alive:
        order = [n for n in nodes if n in alive]
        out.append(f"graph has a cycle through {', '.join(order)}")
    for node in nodes.values():
        if node.op not in WRITERS:
            continue
        seen = {node.id}
        stack = [node.id]
        found = False
        while stack and not found:
            for p in pred[stack.pop()]:
                if nodes[p].op in (Opcode.SCAN, Opcode.SCAN_BV):
                    found = True
                    break
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        if not found:
            out.append(f"node {node.id}: {node.op.value} not reachable from a scan")
    return out


def _tensor_problems(kernel: Kernel, nodes: dict[str, Node]) -> list[str]:
    out: list[str] = []
    declared = {}
    for t in kernel.tensors:
        if t.name in declared:
            out.append(f"tensor {t.name} declared twice")
        declared[t.name] = t
    for node in nodes.values():
        if node.op not in READERS + WRITERS:
            continue
        name = node.a.get("tensor")
        if not isinstance(name, str):
            continue
        t = declared.get(name)
        if t is None:
            out.append(f"node {node.id}: tensor {name} not declared")
            continue
        if node.op in WRITERS and not t.is_output:
            out.append(f"node {node.id}: writes input tensor {name}")
        if node.op in READERS and t.is_output:
            out.append(f"node {node.id}: reads output tensor {name}")
        level = node.a.get("level")
        if (node.op in (Opcode.SCAN, Opcode.WRITE_CRD, Opcode.LOCATE) + BITMAP_UNITS
                and _type_ok(level, int)
                and not 0 <= level < len(t.formats)):
            out.append(f"node {node.id}: level {level} outside tensor {name} "
                       f"(levels 0..{len(t.formats) - 1})")
    return out


def _locate_problems(kernel: Kernel, nodes: dict[str, Node]) -> list[str]:
    """A locator computes positions of a dense level: the level must be dense and ``dim`` its
    size (the declared shape of the mode stored there)."""
    return _level_unit_problems(
        kernel, nodes, (Opcode.LOCATE,), "dense",
        lambda node, name, level, fmt: f"node {node.id}: locates into {name} level {level}, "
        f"which is {fmt}; a locator needs a dense level")


def _level_unit_problems(kernel: Kernel, nodes: dict[str, Node], ops: Any, fmt: str,
                         wrong: Callable[[Node, str, int, str], str]) -> list[str]:
    """Units ``ops`` that address one level of a tensor (attributes ``tensor``, ``level``,
    ``dim``): the level must have format ``fmt`` (else ``wrong(...)``) and size ``dim``."""
    out: list[str] = []
    declared = {t.name: t for t in kernel.tensors}
    for node in nodes.values():
        if node.op not in ops:
            continue
        t = declared.get(node.a.get("tensor"))
        level, dim = node.a.get("level"), node.a.get("dim")
        if t is None or not _type_ok(level, int) or not 0 <= level < len(t.formats):
            continue                       # reported by _tensor_problems
        if t.formats[level] != fmt:
            out.append(wrong(node, t.name, level, t.formats[level]))
        size = t.shape[t.mode_order[level]]
        if _type_ok(dim, int) and dim != size:
            out.append(f"node {node.id}: dim {dim} but {t.name} level {level} has size {size}")
    return out


def _bitmap_problems(kernel: Kernel, nodes: dict[str, Node]) -> list[str]:
    """A bitvector scanner, bitmap locator or bitmap writer works on a bitmap level whose size
    is its ``dim``; the two bitvector streams of a word-wide joiner have that size too."""
    out = _level_unit_problems(
        kernel, nodes, BITMAP_UNITS, "bitmap",
        lambda node, name, level, fmt: f"node {node.id}: {node.op.value} on {name} level "
        f"{level}, which is {fmt}; it needs a bitmap level")
    for node in nodes.values():
        if node.op not in (Opcode.BV_INTERSECT, Opcode.BV_UNION):
            continue
        for e in kernel.in_edges(node.id):
            src = nodes.get(e.src)
            if e.kind == "bv" and src is not None and src.op is Opcode.SCAN_BV \
                    and src.a.get("dim") != node.a.get("dim"):
                out.append(f"node {node.id}: dim {node.a.get('dim')} but its input {src.id} "
                           f"scans a level of size {src.a.get('dim')}")
    return out


def _inside(tile: tuple[int, int], array: ArrayConfig) -> bool:
    return 0 <= tile[0] < array.rows and 0 <= tile[1] < array.cols


def _placement_problems(kernel: Kernel, nodes: dict[str, Node], array: ArrayConfig) -> list[str]:
    out: list[str] = []
    if any(n.tile is not None for n in nodes.values()):
        on_tile: dict[tuple[int, int], list[str]] = defaultdict(list)
        for node in nodes.values():
            if node.tile is None:
                out.append(f"node {node.id}: not placed")
                continue
            on_tile[node.tile].append(node.id)
            if not _inside(node.tile, array):
                out.append(f"node {node.id}: tile {node.tile} outside the "
                           f"{array.rows}x{array.cols} array")
                continue
            want, have = SIGNATURES[node.op].tile, array.kind(*node.tile)
            if want is not have:
                out.append(f"node {node.id}: {node.op.value} needs a {want.value} tile, "
                           f"{node.tile} is a {have.value} tile")
        for tile, ids in on_tile.items():
            if len(ids) > 1:
                out.append(f"tile {tile} holds several nodes: {', '.join(ids)}")
    if any(e.route for e in kernel.edges):
        for e in kernel.edges:
            out += _route_problems(e.name, e.route, nodes.get(e.src), nodes.get(e.dst), array)
    return out


def _route_problems(
    name: str,
    route: tuple[tuple[int, int], ...],
    src: Node | None,
    dst: Node | None,
    array: ArrayConfig,
) -> list[str]:
    if not route:
        return [f"edge {name}: not routed"]
    out: list[str] = []
    if len(route) < 2:
        out.append(f"edge {name}: route {list(route)} has no hop (needs at least 2 tiles)")
    if src is not None and src.tile is not None and route[0] != src.tile:
        out.append(f"edge {name}: route starts at {route[0]}, source is on {src.tile}")
    if dst is not None and dst.tile is not None and route[-1] != dst.tile:
        out.append(f"edge {name}: route ends at {route[-1]}, destination is on {dst.tile}")
    for tile in route:
        if not _inside(tile, array):
            out.append(f"edge {name}: route tile {tile} outside the "
                       f"{array.rows}x{array.cols} array")
    for a, b in pairwise(route):
        if abs(a[0] - b[0]) + abs(a[1] - b[1]) != 1:
            out.append(f"edge {name}: route step {a} -> {b} is not between mesh neighbours")
    return out


def _int_at_least(value: Any, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def systolic_problems(kernel: SystolicKernel, array: ArrayConfig | None = None) -> list[str]:
    """Every rule violation of a systolic kernel (module docstring)."""
    out: list[str] = []
    for what in ("rows", "cols"):
        if not _int_at_least(getattr(kernel, what), 1):
            out.append(f"{what} must be an int >= 1, got {getattr(kernel, what)!r}")
    if kernel.dataflow not in SYSTOLIC_DATAFLOWS:
        out.append(f"dataflow {kernel.dataflow!r} is not one of {', '.join(SYSTOLIC_DATAFLOWS)}")
    if kernel.nm is not None:
        n, m = kernel.nm
        if not (_int_at_least(n, 1) and _int_at_least(m, 1) and n <= m):
            out.append(f"N:M pattern {n}:{m} needs 0 < N <= M")
    if kernel.tensors:
        if len(kernel.tensors) != 3 or [t.is_output for t in kernel.tensors] != [
                False, False, True]:
            out.append("tensors must be A, B and one output, in that order")
        else:
            for t in kernel.tensors:
                if len(t.shape) != 2 or t.formats != ("dense", "dense"):
                    out.append(f"tensor {t.name} must be 2-D and dense (got shape {t.shape}, "
                               f"formats {t.formats})")
            a, b, c = (t.shape for t in kernel.tensors)
            if len(a) == len(b) == len(c) == 2 and not (a[1] == b[0] and c == (a[0], b[1])):
                out.append(f"shapes do not make a GEMM: A {a}, B {b}, output {c}")
    if array is not None and _int_at_least(kernel.rows, 1) and kernel.rows > array.rows:
        out.append(f"block of {kernel.rows} rows does not fit the array's {array.rows}")
    return out


def kernel_problems(kernel: Kernel | SystolicKernel, array: ArrayConfig | None = None
                    ) -> list[str]:
    """Every rule violation of ``kernel`` (empty when valid), without the kernel prefix."""
    if isinstance(kernel, SystolicKernel):
        return systolic_problems(kernel, array)
    out: list[str] = []
    nodes: dict[str, Node] = {}
    for node in kernel.nodes:
        if node.id in nodes:
            out.append(f"duplicate node id {node.id!r}")
            continue
        nodes[node.id] = node
    for node in kernel.nodes:
        out += _attr_problems(node)
    out += _edge_and_arity_problems(kernel, nodes)
    out += _graph_problems(kernel, nodes)
    out += _tensor_problems(kernel, nodes)
    out += _locate_problems(kernel, nodes)
    out += _bitmap_problems(kernel, nodes)
    out += _unroll_problems(kernel)
    out += _writer_copies_problems(kernel)
    if array is not None:
        out += _placement_problems(kernel, nodes, array)
    return out


def _unroll_problems(kernel: Kernel) -> list[str]:
    """Stream filters and arbiters: a known stream kind; a filter's copy is one of its
    copies; an arbiter's depth is >= 0 and it takes >= 1 item from each input per round."""
    out: list[str] = []
    for node in kernel.nodes:
        if node.op not in (Opcode.FILTER, Opcode.ARBITER):
            continue
        a = node.a
        if a.get("kind") not in STREAM_KINDS:
            out.append(f"node {node.id}: kind must be one of {', '.join(STREAM_KINDS)}, "
                       f"got {a.get('kind')!r}")
        ints = {k: v for k, v in a.items() if _type_ok(v, int)}
        if node.op is Opcode.FILTER and {"copy", "copies"} <= set(ints) and not (
                0 <= ints["copy"] < ints["copies"]):
            out.append(f"node {node.id}: copy {ints['copy']} is not one of "
                       f"{ints['copies']} copies (0 <= copy < copies)")
        if node.op is Opcode.ARBITER:
            if ints.get("depth", 0) < 0:
                out.append(f"node {node.id}: depth must be >= 0, got {ints['depth']}")
            for k in ("take_a", "take_b"):
                if ints.get(k, 1) < 1:
                    out.append(f"node {node.id}: {k} must be >= 1, got {ints[k]}")
    return out


def _writer_copies_problems(kernel: Kernel) -> list[str]:
    """The output address generator (isa.copies): a writer's ``copy`` and ``copies`` come
    together with 0 <= copy < copies; the writers of one tensor are all plain (each level
    written once) or all dealt over the same N copies, each copy writing every level the
    others write, once; and a tensor written by copies stores its outer level (not dense)."""
    out: list[str] = []
    by_tensor: dict[str, list[Node]] = defaultdict(list)
    for node in kernel.nodes:
        if node.op in WRITERS and isinstance(node.a.get("tensor"), str):
            by_tensor[node.a["tensor"]].append(node)
    declared = {t.name: t for t in kernel.tensors}
    for name, writers in by_tensor.items():
        dealt = [w for w in writers if "copy" in w.a or "copies" in w.a]
        ok = True
        for w in dealt:
            c, n = w.a.get("copy"), w.a.get("copies")
            if not (_type_ok(c, int) and _type_ok(n, int)):
                out.append(f"node {w.id}: copy and copies must be given together")
                ok = False
            elif not 0 <= c < n:
                out.append(f"node {w.id}: copy {c} is not one of {n} copies "
                           "(0 <= copy < copies)")
                ok = False
        if dealt and len(dealt) != len(writers):
            out.append(f"tensor {name}: some writers carry copy/copies and some do not "
                       f"({', '.join(w.id for w in writers if w not in dealt)})")
            continue
        if not ok:
            continue
        counts = {w.a.get("copies") for w in dealt}
        if len(counts) > 1:
            out.append(f"tensor {name}: its writers disagree on copies "
                       f"({', '.join(map(str, sorted(counts)))})")
            continue
        copies = counts.pop() if counts else 1
        seen: dict[tuple[Any, int], str] = {}
        for w in writers:
            key = (w.a.get("level", -1) if w.op is not Opcode.WRITE_VAL else -1,
                   w.a.get("copy", 0))
            if key in seen:
                what = "values" if key[0] == -1 else f"level {key[0]}"
                out.append(f"tensor {name}: {what}" + (f" of copy {key[1]}" if dealt else "")
                           + f" written by both {seen[key]} and {w.id}")
            seen.setdefault(key, w.id)
        levels = {lvl for lvl, _ in seen}
        for c in range(copies if dealt else 0):
            missing = sorted(lvl for lvl in levels if (lvl, c) not in seen)
            if missing:
                out.append(f"tensor {name}: copy {c} of {copies} has no writer of "
                           f"{', '.join('values' if m == -1 else f'level {m}' for m in missing)}")
        t = declared.get(name)
        if dealt and t is not None and (not t.formats or t.formats[0] == "dense"):
            out.append(f"tensor {name}: written by copies but its outer level is not stored "
                       "(compressed or bitmap): the copies' fibers have no outer coordinate")
    return out


def verify_kernel(kernel: Kernel | SystolicKernel, array: ArrayConfig | None = None) -> None:
    """Raise one IsaError listing every problem, one per line as ``kernel NAME: problem``."""
    problems = kernel_problems(kernel, array)
    if problems:
        raise IsaError("\n".join(f"kernel {kernel.name}: {p}" for p in problems))
