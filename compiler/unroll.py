"""Unrolling: N copies of a kernel's graph on the array, the outer loop dealt to them.

Onyx's compiler unrolls a sparse kernel over the array (IEEE Micro 2025: a stream filter, a
round-robin stream arbiter and an output address generator; up to 7.5x utilisation, limited
by load imbalance and the 16 GLB links each way). Here:

- The *region* is the units of the outermost loop level: the nodes every output of which is
  a stream of the outermost fiber (depth 0: root scanners, the joiners and repeaters of the
  first index variable). Every other node is the *body*; the level writers (and the
  coordinate droppers feeding them) are its output side.
- Each copy c of N is a whole copy of the graph: its own region, body and writers (its own
  MEM tiles: every input is loaded into every copy, and the load commands count the
  replicated bytes). Every depth-0 stream from the region to any other unit passes a
  ``filter`` (copy c of N): element p of the outer fiber goes to copy p mod N, round-robin
  by position. Round-robin deals neighbouring outer fibers to different copies, so a copy's
  share follows the data's average rather than one dense block of rows; and it needs no
  data-dependent bounds in the configuration.
- Copy c's writers carry ``copy=c copies=N``: the output address generator (isa.copies).
  They write the output fibers of the outer positions dealt to copy c, and the output is
  the union of the copies' parts, by outer coordinate. No copy waits on another at the
  output, so the copies cannot deadlock there and each writes at its own pace (the one
  shared tail of an arbiter merge wrote about one output coordinate per cycle for all).
  The ``arbiter`` primitive (a fixed-order merge of two copies' streams) stays in the ISA
  with its tests, but the unroller no longer emits it: the output links (one per copy,
  below) never run out before the input links do.

Legality: the output's outer level must be the dealt loop's index, so that the copies'
outer coordinates are disjoint: the level-0 writer's coordinates come (through droppers'
outer ports) from the region. A kernel whose outer index is contracted (the copies' outputs
would overlap and need adding) or whose output is a scalar is not unrolled.

``compiler.unroll: auto`` picks N as the estimated best of the feasible factors (see
:func:`plan_unroll`): the tiles, the GLB links, the outer positions, and placing and routing
it (tracks). GLB links (MICRO25: at most 16 each way) are counted per copy: one inbound (its
loads arrive on one ID-tagged stream, which its filters select from) and one outbound (its
writers' arrays leave through the output address generator, which tags each word with its
address). # ASSUMPTION: one link per copy each way. MICRO25 unrolls SpM*SpM 7 times within
its 16 links while each copy writes three arrays and reads six, so the streams of one copy
must share a link; the paper does not give the exact mapping.

Tile dealing (garnet's unrolling under tile pipelining). A tiled kernel whose tiles stream
through kernel calls in runs (``controller.tile_pipelining``) may instead deal whole tiles:
garnet concat_tiles.py concatenates a run's tiles into one stream per input, each tile tagged
with a stream ID (its place in the run mod the unroll factor), so that copy c takes the
tiles whose ID is c (isa.copies.tile_copy). :func:`deal_tiles` builds that graph: N whole
copies with no stream filter, each copy's writers ``copy=c copies=N`` (each writes its own
tiles' outputs). Every copy has its own MEM tiles and so its own depth-2 level FIFOs; a copy
loads only its own tiles (an operand tile is reloaded when it differs from the copy's
previous tile's: :func:`dealt_loads`), and the copies load, compute and unload at once. Any
kernel with a stored output level can take whole tiles (a contracted outer index too: tiles
of one output block on different copies are partial outputs merged by the firmware, as on
one copy). ``compiler.unroll_deal: auto | positions | tiles`` picks the mode; ``auto`` ranks
both modes' factors by the estimate (:func:`estimate_tile_deal` for tiles).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from isa.arch import ChipConfig
from isa.errors import CompileError, IsaError
from isa.fibertree import FiberTree
from isa.ops import SIGNATURES, WRITERS, Opcode, TileKind, signature
from isa.program import Edge, Kernel, Node

Port = tuple[str, str]

_DEPTH_STEP = {Opcode.SCAN: 1, Opcode.SCAN_BV: 1, Opcode.REDUCE: -1, Opcode.VREDUCE: -1}
"""Output stream depth relative to the input's: a scanner opens a level, a reducer closes
one; every other unit keeps its inputs' depth (a dropper and a hold port by port)."""


GLB_LINKS_IN_PER_COPY = 1
"""GLB->array links a copy takes: its loads arrive on one ID-tagged stream (module
docstring). # ASSUMPTION: MICRO25 unrolls SpM*SpM 7x within 16 links, so a copy's six input
arrays share one link; the exact mapping is not published."""

GLB_LINKS_OUT_PER_COPY = 1
"""Array->GLB links a copy takes: its writers' arrays leave through the output address
generator on one stream (module docstring). # ASSUMPTION: as GLB_LINKS_IN_PER_COPY (three
output arrays per SpM*SpM copy, 7 copies within 16 links in MICRO25)."""


@dataclass(frozen=True)
class UnrollChoice:
    """The unroll factor a kernel got, why, and which limit binds (``summary.unroll``)."""

    copies: int
    requested: str                       # "auto" or the forced factor
    why: str
    limits: dict[str, int] = field(default_factory=dict)   # the bound each limit sets
    binds: str = ""      # what stopped N growing: a limit's name, "estimate", "place_route",
                         # "compiler.unroll" (forced or 1) or "kernel" (cannot be unrolled)
    deal: str = ""       # what the copies take: "positions" (stream filters deal each call's
                         # outer positions), "tiles" (whole tiles), "" (one copy)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the summary."""
        out = {"copies": self.copies, "requested": self.requested, "why": self.why,
               "limits": dict(self.limits), "binds": self.binds}
        if self.deal:
            out["deal"] = self.deal
        return out


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


def _region(kernel: Kernel, depth: dict[Port, int]) -> set[str]:
    """Nodes other than writers fed only by region nodes (or by nothing), all of whose
    outputs are streams of the outermost fiber."""
    region: set[str] = set()
    for n in kernel.topo_order():
        outs = signature(n.op, n.a).outputs
        if n.op not in WRITERS and outs and all(depth[(n.id, p)] == 0 for p in outs) \
                and all(e.src in region for e in kernel.in_edges(n.id)):
            region.add(n.id)
    return region


@dataclass(frozen=True)
class Shape:
    """A kernel's parts for unrolling: its region's node ids (the outer loop level, dealt
    by filters) and why it cannot be unrolled (None when it can)."""

    region: frozenset[str]
    why_not: str | None = None


def _outer_source(kernel: Kernel, writer: Node) -> Port:
    """The port whose coordinates ``writer`` (a level-0 writer) writes, traced back through
    droppers' and holds' outer ports (they pass a subset of those coordinates)."""
    e = kernel.in_edges(writer.id)[0]
    while kernel.node(e.src).op in (Opcode.CRDDROP, Opcode.CRDHOLD) and e.src_port == "outer":
        e = next(x for x in kernel.in_edges(e.src) if x.dst_port == "outer")
    return e.src, e.src_port


def kernel_shape(kernel: Kernel) -> Shape:
    """Split ``kernel`` for unrolling; ``why_not`` says why it cannot be unrolled."""
    depth = stream_depths(kernel)
    region = _region(kernel, depth)
    if any(n.op in (Opcode.FILTER, Opcode.ARBITER) or (n.op in WRITERS and "copies" in n.a)
           for n in kernel.nodes):
        return Shape(frozenset(region), "it is already unrolled")
    if not region or all(n.id in region or n.op in WRITERS for n in kernel.nodes):
        return Shape(frozenset(region), "no outer loop level to deal (the whole graph is "
                                        "one level)")
    for decl in kernel.tensors:
        if not decl.is_output:
            continue
        first = [n for n in kernel.nodes if n.op in (Opcode.WRITE_CRD, Opcode.WRITE_BV)
                 and n.a.get("tensor") == decl.name and n.a.get("level") == 0]
        if not decl.formats or not first:
            return Shape(frozenset(region), f"its output {decl.name} is a scalar (every "
                         "index is contracted): copies' partial results would need adding, "
                         "not placing")
        src, port = _outer_source(kernel, first[0])
        if src not in region:
            return Shape(frozenset(region), (
                f"its output {decl.name}'s outer level is not the dealt loop ({src}.{port} "
                f"writes it from inside the loop: the outer index is contracted, so the "
                "copies' outputs would overlap and need adding)"))
    return Shape(frozenset(region))


def unroll_kernel(kernel: Kernel, copies: int, shape: Shape | None = None) -> Kernel:
    """N whole copies of ``kernel``, the outer loop dealt to them by filters, each copy's
    writers writing its part of the output (``copy=c copies=N``: the output address
    generator, isa.copies).

    Pre:  ``kernel`` is unplaced and ``kernel_shape(kernel).why_not`` is None; copies >= 1.
    Post: a kernel computing the same output (same tensors; the union of the copies' parts
          is the one-copy output); copy c's nodes are the original ids suffixed ``_u<c>``;
          unplaced and unrouted. copies == 1 returns ``kernel`` unchanged.
    Raises: CompileError if the kernel cannot be unrolled.
    """
    if copies == 1:
        return kernel
    shape = shape or kernel_shape(kernel)
    if shape.why_not is not None:
        raise CompileError(f"unroll: kernel {kernel.name} cannot be unrolled: {shape.why_not}")
    region = shape.region
    nodes: list[Node] = []
    edges: list[Edge] = []

    def cid(nid: str, c: int) -> str:
        return f"{nid}_u{c}"

    for c in range(copies):
        for n in kernel.nodes:
            attrs = dict(n.attrs)
            if n.op in WRITERS:
                attrs.update(copy=c, copies=copies)
            nodes.append(Node(cid(n.id, c), n.op, tuple(sorted(attrs.items()))))
    filtered: set[tuple[str, str, int]] = set()
    for e in kernel.edges:
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
    return Kernel(kernel.name, tuple(nodes), tuple(edges), kernel.tensors, kernel.expr)


def tiles_why_not(kernel: Kernel) -> str | None:
    """Why ``kernel``'s copies cannot take whole tiles (None when they can): it is already
    unrolled, or its output is a scalar (the output address generator places a copy's fibers
    by a stored outer level, isa.verify)."""
    if any(n.op in (Opcode.FILTER, Opcode.ARBITER) or (n.op in WRITERS and "copies" in n.a)
           for n in kernel.nodes):
        return "it is already unrolled"
    for decl in kernel.tensors:
        if decl.is_output and (not decl.formats or decl.formats[0] == "dense"):
            return (f"its output {decl.name} has no stored outer level (a scalar): the "
                    "copies' writers have no outer coordinate to place their tiles' fibers by")
    return None


def deal_tiles(kernel: Kernel, copies: int) -> Kernel:
    """N whole copies of ``kernel`` that take whole tiles (module docstring): no stream
    filter; copy c's nodes are the original ids suffixed ``_u<c>`` and its writers carry
    ``copy=c copies=N``.

    Pre:  ``kernel`` is unplaced and ``tiles_why_not(kernel)`` is None; copies >= 2.
    Post: ``isa.copies.tile_copies`` of the result is ``copies``; ``isa.copies.copy_alone(
          result, c)`` is ``kernel`` with renamed ids; unplaced and unrouted.
    Raises: CompileError if the kernel cannot take whole tiles.
    """
    why = tiles_why_not(kernel)
    if why is not None:
        raise CompileError(f"unroll: kernel {kernel.name} cannot deal tiles: {why}")
    nodes: list[Node] = []
    edges: list[Edge] = []
    for c in range(copies):
        for n in kernel.nodes:
            attrs = dict(n.attrs)
            if n.op in WRITERS:
                attrs.update(copy=c, copies=copies)
            nodes.append(Node(f"{n.id}_u{c}", n.op, tuple(sorted(attrs.items()))))
        edges += [Edge(f"{e.src}_u{c}", e.src_port, f"{e.dst}_u{c}", e.dst_port, e.kind)
                  for e in kernel.edges]
    return Kernel(kernel.name, tuple(nodes), tuple(edges), kernel.tensors, kernel.expr)


def dealt_loads(tiling: Any, operands: dict[str, tuple[str, ...]], copies: int,
                per_call: int) -> list[tuple[str, ...]]:
    """The operands each tile loads when ``copies`` copies take whole tiles: a copy's MEM
    tiles keep its previous tile's operand tiles, so an operand is loaded when its tile (its
    block of the operand's index variables, ``operands``: tensor -> variables) differs from
    the one the copy's previous tile used (isa.copies.tile_copy deals the tiles; one copy:
    the tiling's own ``Tile.loads``)."""
    from isa.copies import tile_copy

    if copies == 1:
        return [t.loads for t in tiling.tiles]
    where = {v: i for i, v in enumerate(tiling.variables)}
    held: list[dict[str, tuple[int, ...]]] = [{} for _ in range(copies)]
    out: list[tuple[str, ...]] = []
    for i, tile in enumerate(tiling.tiles):
        mine = held[tile_copy(i, copies, per_call)]
        loads = []
        for name in tile.images:
            key = tuple(tile.index[where[v]] for v in operands[name])
            if mine.get(name) != key:
                loads.append(name)
                mine[name] = key
        out.append(tuple(loads))
    return out


def operand_variables(kernel: Kernel) -> dict[str, tuple[str, ...]]:
    """Each operand's index variables, from the kernel's index notation."""
    from compiler.notation import parse_expr

    return {acc.tensor: tuple(acc.indices) for acc in parse_expr(kernel.expr).operands}


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
    """The unroll factor of a (possibly) unrolled kernel: its filters' ``copies``, or its
    writers' when its copies take whole tiles, or 1."""
    from isa.copies import tile_copies

    return max(max((int(n.attr("copies")) for n in kernel.nodes if n.op is Opcode.FILTER),
                   default=1), tile_copies(kernel))


def _array_limits(kernel: Kernel, chip: ChipConfig, extra_pe: int = 0) -> dict[str, int]:
    """The largest factor the array allows whole copies of ``kernel`` (plus ``extra_pe``
    PE tiles each): its PE and MEM tiles and the GLB links each way (GLB_LINKS_IN_PER_COPY
    and GLB_LINKS_OUT_PER_COPY per copy)."""
    per = tile_counts(kernel)
    have = {k: len(chip.array.tiles(k)) for k in TileKind}
    links = chip.glb.array_links_per_direction
    return {"pe_tiles": have[TileKind.PE] // max(per[TileKind.PE] + extra_pe, 1),
            "mem_tiles": have[TileKind.MEM] // max(per[TileKind.MEM], 1),
            "glb_links_in": links // GLB_LINKS_IN_PER_COPY,
            "glb_links_out": links // GLB_LINKS_OUT_PER_COPY}


def max_copies(kernel: Kernel, shape: Shape, chip: ChipConfig, positions: int
               ) -> dict[str, int]:
    """The largest factor each static limit allows: the array's (:func:`_array_limits`, a
    whole graph and its filters per copy) and the outer fiber's positions."""
    filters = len({(e.src, e.src_port) for e in kernel.edges
                   if e.src in shape.region and e.dst not in shape.region})
    return {**_array_limits(kernel, chip, filters), "outer_positions": positions}


def max_tile_copies(kernel: Kernel, chip: ChipConfig, tiles: int) -> dict[str, int]:
    """The largest factor each static limit allows copies that take whole tiles: the
    array's (:func:`_array_limits`, a whole graph per copy, no filters) and the tiles (a
    copy dealt no tile would idle)."""
    return {**_array_limits(kernel, chip), "tiles": tiles}


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
    """A rough count of the output's coordinates (the tokens the writers write, one per
    cycle; an unrolled graph's copies write their parts at once): per output index in loop
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


def estimate_cycles(work: float, tail: float, first: float, later: list[float], copies: int,
                    positions: list[int] | tuple[int, ...] = (), pipelined: bool = False,
                    fill: float = 0.0) -> float:
    """The planner's cheap bound of a factor's cycles per kernel call.

    The kernel: ``fill`` (the graph's pipeline depth, :func:`fill_cycles`: the first token's
    way through it, which copies do not shorten) plus the larger of the one-copy work (unit
    steps) and the output its writers write, shared by the copies: each copy's share of a
    call is its ``ceil(p / copies)`` of the call's ``p`` outer positions (``positions``, one
    per call: the load imbalance of dealing whole positions, each taken as the average
    work), averaged over the calls; every copy has its own writers (the output address
    generator), so the output is shared too. What each copy adds over the GLB links:
    ``first``, before the first call (its configuration or its replicated input loads,
    whichever is longer: the controller configures while it loads), and ``later``, each
    later call's loads (the operand tiles that changed). One tile at a time, every load
    waits for the call before it to end and adds to the kernel; ``pipelined``
    (``controller.tile_pipelining``: the level buffer a depth-2 FIFO of tiles) a later
    call's loads stream in while the call before it computes, so each later call costs the
    slower of the two. Averaged over the ``len(later) + 1`` calls."""
    shares = [-(-p // copies) / p for p in positions if p > 0]
    share = sum(shares) / len(shares) if shares else 1.0 / copies
    kernel = fill + max(work, tail) * share
    calls = len(later) + 1
    if not pipelined:
        return kernel + copies * (first + sum(later)) / calls
    return (copies * first + kernel + sum(max(kernel, copies * t) for t in later)) / calls


def estimate_tile_deal(work: float, tail: float, first: float, loads: list[float],
                       copies: int, fill: float = 0.0) -> float:
    """The planner's cheap bound of the cycles per tile call when ``copies`` copies take
    whole tiles (pipelined tiles), in the terms of :func:`estimate_cycles`: each tile runs
    whole on one copy (``fill`` plus the larger of the one-copy work and output, per call);
    the copies compute ``copies`` consecutive tiles (a *wave*) at once while the loads, each
    tile's own (``loads[t]``, no replication; each copy reloads what differs from its
    previous tile, :func:`dealt_loads`), share the GLB links in tile order. The first wave's
    loads and the configuration of every copy (``first``: one copy's) overlap and come
    first; each later wave costs the slower of a tile's kernel and that wave's loads.
    Averaged over the calls. One copy gives :func:`estimate_cycles`' pipelined figure."""
    kernel = fill + max(work, tail)
    calls = len(loads)
    waves = [sum(loads[w:w + copies]) for w in range(0, calls, copies)]
    head = max(copies * first, waves[0] if waves else 0.0)
    return (head + kernel + sum(max(kernel, w) for w in waves[1:])) / max(calls, 1)


def fill_cycles(kernel: Kernel, chip: ChipConfig) -> int:
    """A placed kernel's pipeline depth: the cycle its deepest unit sees its first token in
    an as-soon-as-possible schedule (one cycle per unit, each stream's hops; as
    compiler.balance), plus its own cycle."""
    hop = chip.interconnect.hop_latency_cycles
    ready: dict[str, int] = {}
    for node in kernel.topo_order():
        ready[node.id] = max((ready[e.src] + 1 + max(e.hops, 1) * hop
                              for e in kernel.in_edges(node.id)), default=0)
    return max(ready.values(), default=0) + 1


def loaded_bytes(calls: list[dict[str, FiberTree]], loads: list[tuple[str, ...]]) -> list[int]:
    """Bytes each kernel call loads into one copy's MEM tiles: the operands the schedule
    loads for it (``loads``: a tiled kernel's ``Tile.loads``, the operand tiles that changed,
    compiler.tiling; an untiled kernel's one call loads every operand)."""
    return [sum(images[name].nbytes(2) for name in names)
            for images, names in zip(calls, loads)]


def plan_unroll(kernel: Kernel, calls: list[dict[str, FiberTree]],
                loads: list[tuple[str, ...]], chip: ChipConfig, work: float, tail: float,
                compile_fn: Any, tiling: Any = None) -> tuple[Kernel, UnrollChoice]:
    """Unroll ``kernel`` (unplaced) as ``chip.compiler.unroll`` and ``unroll_deal`` ask;
    returns the placed, routed kernel ``compile_fn`` made of the chosen factor, and the choice.

    A forced N is honoured or refused with a CompileError naming the limit. ``auto`` ranks
    the factors the static limits allow by :func:`estimate_cycles` (``work``: the one-copy
    work bound, compiler.order.work_bound; ``tail``: :func:`output_bound`; the loads that
    change between calls (:func:`loaded_bytes`; ``loads``: the operands each call loads) at
    the links' bandwidth, the configuration once, overlapping the call before when tiles are
    pipelined; per kernel call: ``calls`` holds each call's input images, one for an
    untiled kernel, one per tile for a tiled one, cut for the chip's mode), and takes
    the best that places and routes (falling back to smaller factors, then to 1). N never
    exceeds the outer positions of the call that has the fewest. The choice's ``binds``
    names what stopped N growing.

    Tile dealing (module docstring): when the kernel is tiled (``tiling``) and its tiles are
    pipelined, the copies may take whole tiles instead (``unroll_deal``: ``auto`` ranks
    both modes' factors together, :func:`estimate_tile_deal` for tiles; a forced N takes
    the mode estimated better at N). ``tiles`` never exceeds the tile calls.
    """
    want = parse_unroll(chip.compiler.unroll)
    requested = "auto" if want is None else str(want)
    deal = chip.compiler.unroll_deal
    if want == 1:
        return compile_fn(kernel), UnrollChoice(1, requested, "compiler.unroll=1",
                                                binds="compiler.unroll")
    shape = kernel_shape(kernel)
    pipelined = chip.controller.tile_pipelining       # the tiles' mode (compiler.tiling)
    why_tiles = (tiles_why_not(kernel) if tiling is not None and pipelined and len(calls) > 1
                 else "its tiles are not pipelined (controller.tile_pipelining)"
                 if tiling is not None and not pipelined
                 else "it is not tiled" if tiling is None else "it runs one tile call")
    why_pos = shape.why_not
    if deal == "positions" or (deal == "auto" and why_tiles is not None):
        return _plan_positions(kernel, shape, calls, loads, chip, work, tail, compile_fn,
                               pipelined)
    if deal == "tiles" and why_tiles is not None:
        if want is not None:
            raise CompileError(f"unroll: compiler.unroll={want} with compiler.unroll_deal="
                               f"tiles: kernel {kernel.name} cannot deal tiles: {why_tiles}")
        return compile_fn(kernel), UnrollChoice(1, requested, f"tiles cannot be dealt: "
                                                              f"{why_tiles}", binds="kernel")
    # the tiles can be dealt (and, with unroll_deal auto, maybe the positions too)
    from isa.bitstream import config_bits

    per_call = chip.controller.pipelined_tiles_per_call
    operands = operand_variables(kernel)
    rate = chip.glb.array_bytes_per_cycle
    t_limits = max_tile_copies(kernel, chip, len(calls))
    t_bind = min(t_limits, key=lambda k: t_limits[k])
    per_call_pos = ([outer_positions(kernel, shape, images) for images in calls]
                    if deal == "auto" and why_pos is None else [])
    p_limits = (max_copies(kernel, shape, chip, min(per_call_pos)) if per_call_pos else {})
    p_bind = min(p_limits, key=lambda k: p_limits[k]) if p_limits else ""
    base = compile_fn(kernel)
    one_loads = [b / rate for b in loaded_bytes(calls, loads)]
    config = config_bits(base) / chip.controller.config_bits_per_cycle
    fill = fill_cycles(base, chip)
    w, t = work / len(calls), tail / len(calls)       # per call

    @functools.cache
    def est(mode: str, n: int) -> float:
        if mode == "positions" or n == 1:
            return estimate_cycles(w, t, max(config, one_loads[0]), one_loads[1:], n,
                                   per_call_pos, pipelined, fill)
        got = dealt_loads(tiling, operands, n, per_call)
        return estimate_tile_deal(w, t, config, [b / rate for b in loaded_bytes(calls, got)],
                                  n, fill)

    def build(mode: str, n: int) -> Kernel:
        return compile_fn(deal_tiles(kernel, n) if mode == "tiles"
                          else unroll_kernel(kernel, n, shape))

    def limits_of(mode: str) -> tuple[dict[str, int], str]:
        return (t_limits, t_bind) if mode == "tiles" else (p_limits, p_bind)

    modes = ["tiles"] + (["positions"] if p_limits else [])
    if want is not None:
        fits = [m for m in modes if want <= limits_of(m)[0][limits_of(m)[1]]]
        if not fits:
            raise CompileError(f"unroll: compiler.unroll={want} exceeds what kernel "
                               f"{kernel.name} allows on chip {chip.name}: " + "; ".join(
                                   f"{m} dealt, {limits_of(m)[1]} allow "
                                   f"{limits_of(m)[0][limits_of(m)[1]]} (limits: "
                                   f"{_fmt(limits_of(m)[0])})" for m in modes))
        mode = min(fits, key=lambda m: (est(m, want), modes.index(m)))
        lim, bind = limits_of(mode)
        return build(mode, want), UnrollChoice(
            want, str(want), f"forced, {mode} dealt (limits: {_fmt(lim)})", lim,
            bind if want == lim[bind] else "compiler.unroll", mode)
    return _auto(modes, est, build, limits_of, requested, base)


def _auto(modes: list[str], est: Any, build: Any, limits_of: Any, requested: str,
          base: Kernel) -> tuple[Kernel, UnrollChoice]:
    """``compiler.unroll: auto``: every factor each deal of ``modes`` allows (``limits_of``:
    mode -> (limits, the binding one)) and one copy, ranked by ``est(mode, n)`` (ties: more
    copies, then tiles dealt); the best that ``build(mode, n)`` places and routes, else one
    copy (``base``). The choice's ``why`` names the estimates, the other deals' best, the
    limits, what bound N and the factors that did not place or route."""
    cands = [(m, n) for m in modes for n in range(2, limits_of(m)[0][limits_of(m)[1]] + 1)]
    cands.append(("", 1))
    ranked = sorted(cands, key=lambda c: (est(c[0], c[1]), -c[1], c[0] != "tiles"))
    best = ranked[0]
    failed: list[str] = []
    one = est("", 1)
    for mode, n in ranked:
        if n == 1:
            break
        try:
            placed = build(mode, n)
        except CompileError as exc:        # does not place or route
            failed.append(f"{n} ({mode}): {str(exc).splitlines()[0]}")
            continue
        lim, bind = limits_of(mode)
        binds = bind if n == lim[bind] else "estimate" if (mode, n) == best else "place_route"
        other = [m for m in modes if m != mode]
        why = (f"auto: {n} copies, {mode} dealt, least estimated cycles ({est(mode, n):,.0f}"
               f" vs {one:,.0f} for 1"
               + "".join(f"; best {m} dealt: {_best(m, est, limits_of(m)[0])}" for m in other)
               + f") of the factors the limits allow ({_fmt(lim)}); bound by {binds}")
        if failed:
            why += f"; did not place/route: {'; '.join(failed)}"
        return placed, UnrollChoice(n, requested, why, lim, binds, mode)
    lim, bind = limits_of(modes[0])
    binds = bind if lim[bind] <= 1 else "estimate" if best[1] == 1 else "place_route"
    why = (f"auto: 1 copy, least estimated cycles ({one:,.0f}) (limits, {modes[0]} dealt: "
           f"{_fmt(lim)}); bound by {binds}")
    if failed:
        why += f"; did not place/route: {'; '.join(failed)}"
    return base, UnrollChoice(1, requested, why, lim, binds)


def _best(mode: str, est: Any, limits: dict[str, int]) -> str:
    """The best factor of ``mode`` by ``est`` within ``limits``, for the choice's why."""
    bound = min(limits.values())
    if bound < 2:
        return f"none ({_fmt(limits)})"
    n = min(range(2, bound + 1), key=lambda k: (est(mode, k), -k))
    return f"{n} copies, {est(mode, n):,.0f}"


def _plan_positions(kernel: Kernel, shape: Shape, calls: list[dict[str, FiberTree]],
                    loads: list[tuple[str, ...]], chip: ChipConfig, work: float, tail: float,
                    compile_fn: Any, pipelined: bool) -> tuple[Kernel, UnrollChoice]:
    """:func:`plan_unroll` dealing outer positions only (stream filters; ``pipelined``:
    whether the tiles are)."""
    want = parse_unroll(chip.compiler.unroll)
    requested = "auto" if want is None else str(want)
    if shape.why_not is not None:
        if want is not None:
            raise CompileError(f"unroll: compiler.unroll={want}: kernel {kernel.name} cannot "
                               f"be unrolled: {shape.why_not}")
        return compile_fn(kernel), UnrollChoice(1, requested, f"not unrollable: "
                                                              f"{shape.why_not}", binds="kernel")
    # every kernel call (a tiled kernel's tiles) must feed every copy an outer position
    per_call = [outer_positions(kernel, shape, images) for images in calls]
    positions = min(per_call)
    work, tail = work / len(calls), tail / len(calls)      # per call
    limits = max_copies(kernel, shape, chip, positions)
    binding = min(limits, key=lambda k: limits[k])
    if want is not None:
        return _forced(kernel, shape, want, limits, f"what kernel {kernel.name}", chip,
                       compile_fn)
    from isa.bitstream import config_bits

    base = compile_fn(kernel)
    loads = [b / chip.glb.array_bytes_per_cycle for b in loaded_bytes(calls, loads)]
    config = config_bits(base) / chip.controller.config_bits_per_cycle
    # what a copy adds: the kernel is configured once, while the first call's operands load;
    # every later call loads the operands that changed (streamed behind the call before it
    # when tiles are pipelined)
    fill = fill_cycles(base, chip)

    def est(_mode: str, n: int) -> float:
        return estimate_cycles(work, tail, max(config, loads[0]), loads[1:], n, per_call,
                               pipelined, fill)

    return _auto(["positions"], est,
                 lambda _mode, n: compile_fn(unroll_kernel(kernel, n, shape)),
                 lambda _mode: (limits, binding), requested, base)


def _forced(kernel: Kernel, shape: Shape, want: int, limits: dict[str, int], what: str,
            chip: ChipConfig, compile_fn: Any) -> tuple[Kernel, UnrollChoice]:
    """A forced ``compiler.unroll=want``: ``want`` copies compiled by ``compile_fn``, or a
    CompileError naming the limit that binds (``what``: what the limits are of)."""
    binding = min(limits, key=lambda k: limits[k])
    if want > limits[binding]:
        raise CompileError(f"unroll: compiler.unroll={want} exceeds {what} allows on chip "
                           f"{chip.name}: {binding} allow {limits[binding]} "
                           f"(limits: {_fmt(limits)})")
    return compile_fn(unroll_kernel(kernel, want, shape)), UnrollChoice(
        want, str(want), f"forced (limits: {_fmt(limits)})", limits,
        binding if want == limits[binding] else "compiler.unroll", "positions")


def _fmt(limits: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in limits.items())


# ------------------------------------------------------------------------------ layer lanes
def plan_lanes(kernel: Kernel, chip: ChipConfig, compile_fn: Any
               ) -> tuple[Kernel, UnrollChoice]:
    """A model layer's lanes: N copies of its *batched* tile kernel (unplaced; compiler.layers:
    the outer loop ``b`` runs over the layer's jobs, each job one position), unrolled by
    :func:`unroll_kernel` like any kernel and placed and routed on the whole array by
    ``compile_fn``; returns the placed N-copy kernel and the choice.

    One planner: the limits are :func:`max_copies`' (PE and MEM tiles of a whole copy and its
    filters, GLB links each way), except ``outer_positions``: the jobs are not known when a
    chip's layer plan is made (one plan serves every layer), and a copy dealt no job idles.
    A forced ``compiler.unroll`` is honoured or refused naming the limit (as for kernels);
    ``auto`` takes the largest factor the limits allow that places and routes, falling back
    to smaller ones (``binds``: the limit, or ``place_route``). A lane's jobs are whole tile
    sequences, so a factor's estimate would be the layer's schedule, which needs the layer:
    more copies are more lanes in parallel, at smaller shares of the GLB and its links.

    Raises: CompileError when the kernel cannot be unrolled, a forced factor exceeds the
    limits or does not place, or not even one copy places.
    """
    want = parse_unroll(chip.compiler.unroll)
    requested = "auto" if want is None else str(want)
    shape = kernel_shape(kernel)
    if shape.why_not is not None:
        raise CompileError(f"unroll: layer tile kernel {kernel.name} cannot be unrolled "
                           f"into lanes: {shape.why_not}")
    limits = {k: v for k, v in max_copies(kernel, shape, chip, 0).items()
              if k != "outer_positions"}
    binding = min(limits, key=lambda k: limits[k])
    bound = limits[binding]
    if want is not None:
        return _forced(kernel, shape, want, limits,
                       f"the lanes layer tile kernel {kernel.name}", chip, compile_fn)
    failed: list[str] = []
    for n in range(max(bound, 1), 0, -1):
        try:
            placed = compile_fn(unroll_kernel(kernel, n, shape))
        except CompileError as exc:        # does not place or route
            if n == 1:
                raise
            failed.append(f"{n}: {str(exc).splitlines()[0]}")
            continue
        binds = binding if n == bound else "place_route"
        why = (f"auto: {n} lanes, the most copies of the batched tile kernel the limits "
               f"allow ({_fmt(limits)}) that place and route; bound by {binds}")
        if failed:
            why += f"; did not place/route: {'; '.join(failed)}"
        return placed, UnrollChoice(n, requested, why, limits, binds)
    raise CompileError(f"unroll: no factor of {kernel.name} to try")   # bound >= 1 above


def copy_kernel(kernel: Kernel, copy: int) -> Kernel:
    """Copy ``copy`` of an unrolled kernel on its own, as placed and routed: its units (ids
    ``*_u<copy>``, its filters included) and the streams between them (copies share none).
    A kernel that is not unrolled is its own copy 0."""
    if copies_of(kernel) == 1 and not any("copies" in n.a for n in kernel.nodes):
        if copy != 0:
            raise CompileError(f"unroll: kernel {kernel.name} has one copy, not {copy + 1}")
        return kernel
    from isa.copies import copy_units

    try:
        return copy_units(kernel, copy)
    except IsaError as exc:
        raise CompileError(f"unroll: kernel {kernel.name} has no copy {copy}") from exc


__all__ = ["GLB_LINKS_IN_PER_COPY", "GLB_LINKS_OUT_PER_COPY", "UnrollChoice",
           "copies_of", "copy_kernel", "deal_tiles", "dealt_loads", "estimate_tile_deal",
           "kernel_shape", "max_tile_copies", "parse_unroll", "plan_lanes", "plan_unroll",
           "stream_depths", "tiles_why_not", "unroll_kernel"]
