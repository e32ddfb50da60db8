"""Unrolling: N copies of a kernel's graph on the array, the outer loop dealt to them.

Onyx's compiler unrolls a sparse kernel over the array (IEEE Micro 2025: a stream filter, a
round-robin stream arbiter and an output address generator; up to 7.5x utilisation, limited
by load imbalance and the 16 GLB links each way). Here:

- The *region* is the units of the outermost loop level: the nodes every output of which is
  a stream of the outermost fiber (depth 0: root scanners, the joiners and repeaters of the
  first index variable). The *tail* is the output side: the level writers and the
  coordinate droppers that feed a writer's inner stream (they remove output fibers, so they
  must see the whole output). Every other node is the *body*.
- Each copy c of N gets its own region and body (its own MEM tiles: every input is loaded
  into every copy, and the load commands count the replicated bytes). Every depth-0 stream
  from the region into the body passes a ``filter`` (copy c of N): element p of the outer
  fiber goes to copy p mod N, round-robin by position. Round-robin deals neighbouring outer
  fibers to different copies, so a copy's share follows the data's average rather than one
  dense block of rows; and it needs no data-dependent bounds in the configuration.
- Every stream from a body into the tail is merged by a balanced tree of two-input
  ``arbiter`` units (rounds of take_a items from the copies on one side, then take_b from the
  other), which undoes the round-robin deal exactly, so the tail (droppers and writers, one
  set) writes the same output as one copy would: the output address generator's job (placing
  each copy's results in the one output) is done by the merge order. A region stream into
  the tail comes straight from copy 0's region (it is the whole outer fiber).

Legality: every stream merged at depth 0 must come from a filter (one element per dealt
position), else the merge could not restore the order (the outer index is contracted, or a
1-D output's coordinates were dropped in the copies): such kernels are not unrolled. A
deeper stream has one item (fiber) per dealt position whatever the body drops inside it.
An arbiter tells a copy's empty stream (``S_d D``: no item) from one empty item only when
every copy has at least one item, so N never exceeds the outer fiber's positions.

``compiler.unroll: auto`` picks N as the estimated best of the feasible factors (see
:func:`plan_unroll`): the tiles, the GLB links (one per copy, MICRO25's 16 each way bound
Onyx's factor), the outer positions, and placing and routing it (tracks).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from isa.arch import ChipConfig
from isa.errors import CompileError
from isa.fibertree import FiberTree
from isa.ops import SIGNATURES, Opcode, TileKind, signature
from isa.program import Edge, Kernel, Node

Port = tuple[str, str]

_DEPTH_STEP = {Opcode.SCAN: 1, Opcode.SCAN_BV: 1, Opcode.REDUCE: -1, Opcode.VREDUCE: -1}
"""Output stream depth relative to the input's: a scanner opens a level, a reducer closes
one; every other unit keeps its inputs' depth (a dropper and a hold port by port)."""


@dataclass(frozen=True)
class UnrollChoice:
    """The unroll factor a kernel got and why (``summary.unroll``)."""

    copies: int
    requested: str                       # "auto" or the forced factor
    why: str
    limits: dict[str, int] = field(default_factory=dict)   # the bound each limit sets

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the summary."""
        return {"copies": self.copies, "requested": self.requested, "why": self.why,
                "limits": dict(self.limits)}


def stream_depths(kernel: Kernel) -> dict[Port, int]:
    """Depth of every output stream: levels below the outermost fiber (0 for the outer
    loop's streams, -1 for a scalar's value)."""
    depth: dict[Port, int] = {}
    for node in kernel.topo_order():
        ins = {e.dst_port: depth[(e.src, e.src_port)] for e in kernel.in_edges(node.id)}
        outs = signature(node.op, node.a).outputs
        for port in outs:
            if node.op in (Opcode.CRDDROP, Opcode.CRDHOLD):
                d = ins[port]
            elif not ins:
                d = 0
            else:
                d = max(ins.values()) + _DEPTH_STEP.get(node.op, 0)
            depth[(node.id, port)] = d
    return depth


def _tail(kernel: Kernel) -> set[str]:
    """Level writers and the droppers whose inner stream a writer writes, plus droppers
    feeding those (the output side, kept whole)."""
    writers = {n.id for n in kernel.nodes
               if n.op in (Opcode.WRITE_CRD, Opcode.WRITE_VAL, Opcode.WRITE_BV)}
    tail = set(writers)
    for e in kernel.edges:
        if e.dst in writers and e.src_port == "inner" \
                and kernel.node(e.src).op is Opcode.CRDDROP:
            tail.add(e.src)
    return tail


def _region(kernel: Kernel, depth: dict[Port, int], tail: set[str]) -> set[str]:
    """Non-tail nodes fed only by region nodes (or by nothing), all of whose outputs are
    streams of the outermost fiber."""
    region: set[str] = set()
    for n in kernel.topo_order():
        outs = signature(n.op, n.a).outputs
        if n.id not in tail and outs and all(depth[(n.id, p)] == 0 for p in outs) \
                and all(e.src in region for e in kernel.in_edges(n.id)):
            region.add(n.id)
    return region


@dataclass(frozen=True)
class Shape:
    """A kernel's parts for unrolling: region, body and tail node ids and the merged
    streams (body ports feeding the tail, with their depths)."""

    region: frozenset[str]
    tail: frozenset[str]
    merged: tuple[tuple[Port, int], ...]
    why_not: str | None = None


def kernel_shape(kernel: Kernel) -> Shape:
    """Split ``kernel`` for unrolling; ``why_not`` says why it cannot be unrolled."""
    depth = stream_depths(kernel)
    tail = _tail(kernel)
    region = _region(kernel, depth, tail)
    merged: dict[Port, int] = {}
    why = None
    for e in kernel.edges:
        if e.src in tail and e.dst not in tail:
            raise CompileError(f"unroll: kernel {kernel.name}: output-side unit {e.src} "
                               f"feeds {e.dst}")
        if e.dst in tail and e.src not in tail and e.src not in region:
            merged[(e.src, e.src_port)] = depth[(e.src, e.src_port)]
    body_ops = {kernel.node(n).op for n in {x.id for x in kernel.nodes} - tail - region}
    if not region or not body_ops:
        why = "no outer loop level to deal (the whole graph is one level)"
    for (src, port), d in merged.items():
        if d < 0:
            why = "its output is a scalar (every index is contracted): copies' partial " \
                  "results would need adding, not merging"
        elif d == 0:
            why = (f"the outer index is not dealt position by position to the output "
                   f"({src}.{port} reaches the output at the outer level after a reduction "
                   "or a drop in the copies)")
    if why is None and any(kernel.node(n).op in (Opcode.FILTER, Opcode.ARBITER)
                           for n in region | tail):
        why = "it is already unrolled"
    return Shape(frozenset(region), frozenset(tail), tuple(sorted(merged.items())), why)


def unroll_kernel(kernel: Kernel, copies: int, shape: Shape | None = None) -> Kernel:
    """N copies of ``kernel``'s region and body, dealt by filters and merged by arbiters.

    Pre:  ``kernel`` is unplaced and ``kernel_shape(kernel).why_not`` is None; copies >= 1.
    Post: a kernel computing the same output (same tensors and writers); copy c's nodes are
          the original ids suffixed ``_u<c>``; unplaced and unrouted. copies == 1 returns
          ``kernel`` unchanged.
    Raises: CompileError if the kernel cannot be unrolled.
    """
    if copies == 1:
        return kernel
    shape = shape or kernel_shape(kernel)
    if shape.why_not is not None:
        raise CompileError(f"unroll: kernel {kernel.name} cannot be unrolled: {shape.why_not}")
    region, tail = shape.region, shape.tail
    nodes: list[Node] = []
    edges: list[Edge] = []

    def cid(nid: str, c: int) -> str:
        return f"{nid}_u{c}"

    for c in range(copies):
        nodes += [Node(cid(n.id, c), n.op, n.attrs) for n in kernel.nodes if n.id not in tail]
    nodes += [n for n in kernel.nodes if n.id in tail]
    filtered: set[tuple[str, str, int]] = set()
    for e in kernel.edges:
        if e.src in tail or (e.dst in tail and e.src in region):
            src = e.src if e.src in tail else cid(e.src, 0)
            edges.append(Edge(src, e.src_port, e.dst, e.dst_port, e.kind))
            continue
        if e.dst in tail:
            continue                                     # merged below
        for c in range(copies):
            src, port = cid(e.src, c), e.src_port
            if e.src in region and e.dst not in region:
                fid = f"filter_{e.src}_{e.src_port}_u{c}"
                if (e.src, e.src_port, c) not in filtered:
                    filtered.add((e.src, e.src_port, c))
                    nodes.append(Node.make(fid, Opcode.FILTER, kind=e.kind, copy=c,
                                           copies=copies))
                    edges.append(Edge(src, port, fid, "in", e.kind))
                src, port = fid, "out"
            edges.append(Edge(src, port, cid(e.dst, c), e.dst_port, e.kind))
    for (src, port), d in shape.merged:
        kind = signature(kernel.node(src).op, kernel.node(src).a).outputs[port]
        root = _arbiter_tree(nodes, edges, src, port, kind, d, 0, copies, cid)
        for e in kernel.edges:
            if e.src == src and e.src_port == port and e.dst in tail:
                edges.append(Edge(root[0], root[1], e.dst, e.dst_port, e.kind))
    return Kernel(kernel.name, tuple(nodes), tuple(edges), kernel.tensors, kernel.expr)


def _arbiter_tree(nodes: list[Node], edges: list[Edge], src: str, port: str, kind: str,
                  depth: int, lo: int, hi: int, cid: Any) -> Port:
    """The port that emits copies lo..hi-1's ``src.port`` streams merged in position order:
    an arbiter taking (mid - lo) items from the lower half, then (hi - mid) from the upper."""
    if hi - lo == 1:
        return cid(src, lo), port
    mid = (lo + hi) // 2
    a = _arbiter_tree(nodes, edges, src, port, kind, depth, lo, mid, cid)
    b = _arbiter_tree(nodes, edges, src, port, kind, depth, mid, hi, cid)
    aid = f"arb_{src}_{port}_{lo}_{hi}"
    nodes.append(Node.make(aid, Opcode.ARBITER, kind=kind, depth=depth, take_a=mid - lo,
                           take_b=hi - mid))
    edges.append(Edge(a[0], a[1], aid, "a", kind))
    edges.append(Edge(b[0], b[1], aid, "b", kind))
    return aid, "out"


def outer_positions(kernel: Kernel, shape: Shape, images: dict[str, FiberTree]) -> int:
    """Elements of the outermost fiber (what the filters deal), from the region's streams run
    by the interpreter on the data (the region reads level 0 of its operands only)."""
    from isa.interp import run_kernel
    from isa.tokens import Done, Stop

    crossing = [e for e in kernel.edges if e.src in shape.region and e.dst not in shape.region]
    if not crossing:
        return 0
    sub = Kernel(kernel.name, tuple(n for n in kernel.nodes if n.id in shape.region),
                 tuple(e for e in kernel.edges if e.src in shape.region
                       and e.dst in shape.region), kernel.tensors, kernel.expr)
    streams = run_kernel(sub, images).streams
    toks = streams[(crossing[0].src, crossing[0].src_port)]
    return sum(1 for t in toks if not isinstance(t, (Stop, Done)))


def tile_counts(kernel: Kernel) -> Counter[TileKind]:
    """PE and MEM tiles a kernel occupies (one unit per tile)."""
    return Counter(SIGNATURES[n.op].tile for n in kernel.nodes)


def copies_of(kernel: Kernel) -> int:
    """The unroll factor of a (possibly) unrolled kernel: its filters' ``copies``, or 1."""
    return max((int(n.attr("copies")) for n in kernel.nodes if n.op is Opcode.FILTER),
               default=1)


def max_copies(kernel: Kernel, shape: Shape, chip: ChipConfig, positions: int
               ) -> dict[str, int]:
    """The largest factor each static limit allows: the PE and MEM tiles, the GLB links
    (one per copy each way) and the outer fiber's positions."""
    tail = [n for n in kernel.nodes if n.id in shape.tail]
    body = [n for n in kernel.nodes if n.id not in shape.tail]
    per = Counter(SIGNATURES[n.op].tile for n in body)
    fixed = Counter(SIGNATURES[n.op].tile for n in tail)
    filters = len({(e.src, e.src_port) for e in kernel.edges
                   if e.src in shape.region and e.dst not in shape.region
                   and e.dst not in shape.tail})
    merged = len(shape.merged)
    have = {k: len(chip.array.tiles(k)) for k in TileKind}
    # PE: per copy its body units and filters, plus (N - 1) arbiters per merged stream
    pe = (have[TileKind.PE] - fixed[TileKind.PE] + merged) // \
        max(per[TileKind.PE] + filters + merged, 1)
    mem = (have[TileKind.MEM] - fixed[TileKind.MEM]) // max(per[TileKind.MEM], 1)
    return {"pe_tiles": max(pe, 0), "mem_tiles": max(mem, 0),
            "glb_links": chip.glb.array_links_per_direction, "outer_positions": positions}


def lane_limits(kernel: Kernel, chip: ChipConfig, band_cols: int) -> dict[str, int]:
    """The copies of a placed kernel that fit ``chip`` when each copy has its own band of
    ``band_cols`` columns: a model layer's lanes, the case of unrolling whose copies take
    whole jobs (dealt by the controller) rather than a stream's positions (dealt by
    filters). The limits are unrolling's: the bands (tiles and tracks: the kernel places and
    routes on one band), the PE and MEM tiles and the GLB links."""
    per = tile_counts(kernel)
    have = {k: len(chip.array.tiles(k)) for k in TileKind}
    return {"bands": chip.array.cols // band_cols,
            "pe_tiles": have[TileKind.PE] // max(per[TileKind.PE], 1),
            "mem_tiles": have[TileKind.MEM] // max(per[TileKind.MEM], 1),
            "glb_links": chip.glb.array_links_per_direction}


def parse_unroll(value: Any) -> int | None:
    """``compiler.unroll`` as a factor, or None for ``auto``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise CompileError(f"unroll: compiler.unroll must be auto or an integer >= 1, got "
                           f"{value!r}") from None
    if n < 1:
        raise CompileError(f"unroll: compiler.unroll must be auto or an integer >= 1, got {n}")
    return n


def output_bound(layer: Any, order: str) -> float:
    """A rough count of the output's coordinates (the tokens the one tail of an unrolled
    graph writes, one per cycle, however many copies there are): per output index in loop
    order, the points reaching it times its fibers' average length (the shortest operand's
    for ``*``, the sum for ``+``), contracted indices not multiplying."""
    from compiler.notation import parse_expr, parse_order
    from compiler.order import _level_counts, formats_for
    from isa.fibertree import parse_formats

    assign = parse_expr(layer.expr)
    seq = parse_order(order, assign)
    formats = formats_for(layer, assign, seq)
    length: dict[tuple[str, str], float] = {}
    for acc in assign.operands:
        fmts, mode = parse_formats(formats[acc.tensor])
        mode = mode or tuple(range(len(fmts)))
        prev = 1.0
        for lvl, c in enumerate(_level_counts(layer.tensors[acc.tensor], fmts, mode)):
            length[(acc.tensor, acc.indices[mode[lvl]])] = c / prev if prev else 0.0
            prev = c
    points = 1.0
    for v in seq:
        if v not in assign.out.indices:
            continue
        walks = [length[(a.tensor, v)] for a in assign.operands if v in a.indices]
        points *= (min(walks) if assign.op == "*" else sum(walks)) if walks else 1.0
    return points


def estimate_cycles(work: float, tail: float, per_copy: float, copies: int,
                    overlap: float = 1.0) -> float:
    """The planner's cheap bound of a factor's cycles: the one-copy work (unit steps) shared
    by the copies, but never below the output the one tail writes; plus what each copy adds
    before the kernel starts: its configuration or its replicated input loads over the GLB
    links, whichever is longer (the controller configures while it loads).

    ``overlap`` (0..1) is the share of a copy's work on one outer item that can run before
    the arbiters reach that item: ``min(1, buffer / output per item)``, since a copy stalls
    once its output for the item fills its arbiter input's buffer. With overlap 1 the copies
    run apart (N times one copy's pace); below 1 the arbiters take the items in turn and each
    item's remaining (1 - overlap) of its work is serial, so the copies act as at most
    1 / (1 - overlap) copies, however many there are."""
    effective = copies if overlap >= 1.0 else min(copies, 1.0 / (1.0 - overlap))
    return max(work / effective, tail) + per_copy * copies


def plan_unroll(kernel: Kernel, calls: list[dict[str, FiberTree]], chip: ChipConfig,
                work: float, tail: float, compile_fn: Any) -> tuple[Kernel, UnrollChoice]:
    """Unroll ``kernel`` (unplaced) as ``chip.compiler.unroll`` asks; returns the placed,
    routed kernel ``compile_fn`` made of the chosen factor, and the choice.

    A forced N is honoured or refused with a CompileError naming the limit. ``auto`` ranks
    the factors the static limits allow by :func:`estimate_cycles` (``work``: the one-copy
    work bound, compiler.order.work_bound; ``tail``: :func:`output_bound`; the loads at the
    links' bandwidth; per kernel call: ``calls`` holds each call's input images, one for an
    untiled kernel, one per tile for a tiled one), and takes the best that places and routes
    (falling back to smaller factors, then to 1). N never exceeds the outer positions of the
    call that has the fewest.
    """
    want = parse_unroll(chip.compiler.unroll)
    requested = "auto" if want is None else str(want)
    shape = kernel_shape(kernel)
    if want == 1:
        return compile_fn(kernel), UnrollChoice(1, requested, "compiler.unroll=1")
    if shape.why_not is not None:
        if want is not None:
            raise CompileError(f"unroll: compiler.unroll={want}: kernel {kernel.name} cannot "
                               f"be unrolled: {shape.why_not}")
        return compile_fn(kernel), UnrollChoice(1, requested, f"not unrollable: "
                                                              f"{shape.why_not}")
    # every kernel call (a tiled kernel's tiles) must feed every copy an outer position
    positions = min(outer_positions(kernel, shape, images) for images in calls)
    work, tail = work / len(calls), tail / len(calls)      # per call
    limits = max_copies(kernel, shape, chip, positions)
    bound = min(limits.values())
    if want is not None:
        if want > bound:
            name = min(limits, key=lambda k: limits[k])
            raise CompileError(f"unroll: compiler.unroll={want} exceeds what kernel "
                               f"{kernel.name} allows on chip {chip.name}: {name} allow "
                               f"{limits[name]} (limits: {_fmt(limits)})")
        return compile_fn(unroll_kernel(kernel, want, shape)), UnrollChoice(
            want, requested, f"forced (limits: {_fmt(limits)})", limits)
    from isa.bitstream import config_bits

    base = compile_fn(kernel)
    load = sum(t.nbytes(2) for images in calls for t in images.values()) / len(calls) \
        / chip.glb.array_bytes_per_cycle
    per_copy = max(load, config_bits(base) / chip.controller.config_bits_per_cycle)
    buffer = chip.compiler.max_buffer_entries if chip.compiler.balance_fifos \
        else chip.pe.fifo_depth
    overlap = min(1.0, buffer * max(positions, 1) / tail) if tail > 0 else 1.0

    def est(n: int) -> float:
        return estimate_cycles(work, tail, per_copy, n, overlap)

    ranked = sorted(range(1, max(bound, 1) + 1), key=lambda n: (est(n), -n))
    failed: list[str] = []
    for n in ranked:
        if n == 1:
            break
        try:
            placed = compile_fn(unroll_kernel(kernel, n, shape))
        except CompileError as exc:        # does not place or route
            failed.append(f"{n}: {str(exc).splitlines()[0]}")
            continue
        why = (f"auto: {n} copies, least estimated cycles "
               f"({est(n):,.0f} vs "
               f"{est(1):,.0f} for 1) of the factors the limits "
               f"allow ({_fmt(limits)})")
        if failed:
            why += f"; did not place/route: {'; '.join(failed)}"
        return placed, UnrollChoice(n, requested, why, limits)
    why = (f"auto: 1 copy, least estimated cycles ({est(1):,.0f})"
           f" (limits: {_fmt(limits)})")
    if failed:
        why += f"; did not place/route: {'; '.join(failed)}"
    return base, UnrollChoice(1, requested, why, limits)


def _fmt(limits: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in limits.items())


__all__ = ["UnrollChoice", "copies_of", "kernel_shape", "lane_limits", "parse_unroll",
           "plan_unroll", "stream_depths", "unroll_kernel"]
