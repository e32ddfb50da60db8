"""The compiler pipeline, listed in one place.

    parse      index notation + formats + loop order           (compiler.notation)
    images     workload tensors -> fibertree memory images     (isa.fibertree)
    lower      Custard's algorithm -> SAM graph                 (compiler.lower)
    tile       cut levels larger than a MEM tile into tile calls (compiler.tiling)
    unroll     N copies, stream filters, per-copy writers       (compiler.unroll)
    place      one instruction per PE/MEM tile                  (compiler.place)
    route      every stream over the mesh, PathFinder           (compiler.route)
    balance    FIFO entries for reconvergent paths' slack       (compiler.balance)
    emit       isa.Program with the controller schedule         (compile_layer below)

The ISA verifier runs after every pass that changes the graph. :func:`compile_kernel` is the
entry for any kernel workload: a dense GEMM lowers to a systolic kernel instead
(compiler.dense); model layers have their own lowering (compiler.layers).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from compiler.balance import balance_kernel
from compiler.lower import lower_assignment, output_formats
from compiler.notation import parse_expr, parse_order
from compiler.place import place_kernel
from compiler.route import route_kernel
from compiler.tiling import plan_tiling, with_pipelining
from isa.arch import ELEMENT_BYTES, ChipConfig
from isa.errors import CompileError, IsaError
from isa.fibertree import FiberTree, parse_formats
from isa.program import Command, Kernel, Program, TensorDecl
from isa.tiles import Tiling
from isa.verify import verify_kernel


def _verified(kernel: Kernel, after: str, chip: ChipConfig | None = None) -> Kernel:
    try:
        verify_kernel(kernel, chip.array if chip is not None else None)
    except IsaError as exc:
        raise CompileError(f"{after}: produced an invalid kernel: {exc}") from None
    return kernel


def build_images(layer: Any) -> tuple[dict[str, FiberTree], dict[str, TensorDecl]]:
    """Memory images and declarations of a layer's operands, in their storage formats."""
    images, decls = {}, {}
    for name, data in layer.tensors.items():
        try:
            fmts, order = parse_formats(layer.formats[name])
        except IsaError as exc:
            raise CompileError(f"images: tensor {name}: {exc}") from None
        ndim = len(data.shape)
        if len(fmts) != ndim:
            raise CompileError(f"images: tensor {name} has {ndim} modes but format "
                               f"{layer.formats[name]!r} gives {len(fmts)} levels")
        order = order or tuple(range(ndim))
        if sp.issparse(data):
            tree = FiberTree.from_scipy(name, data, fmts, order)
        else:
            arr = np.asarray(data)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise CompileError(f"images: tensor {name} contains NaN or infinite values")
            # dense levels store every coordinate; compressed levels only nonzeros
            tree = FiberTree.from_dense(name, arr, fmts, order)
        if tree.vals.dtype.kind == "f" and not np.isfinite(tree.vals).all():
            raise CompileError(f"images: tensor {name} contains NaN or infinite values")
        images[name] = tree
        decls[name] = TensorDecl(name, tuple(tree.shape), fmts, order)
    return images, decls


def lower_layer(layer: Any, chip: ChipConfig) -> tuple[Kernel, dict[str, FiberTree]]:
    """parse + images + lower (unplaced kernel), with the verifier after lowering. A layer
    without a loop order gets the first legal one (compiler.order.default_order, formats
    following it; the estimated choice is compiler.order.choose_order)."""
    kernel, images, _assign, _order = _lower(layer, chip)
    return kernel, images


def _lower(layer: Any, chip: ChipConfig, tile_sizes: dict[str, int] | None = None
           ) -> tuple[Kernel, dict[str, FiberTree], Any, tuple[str, ...]]:
    """:func:`lower_layer`, also returning the assignment and loop order; with
    ``tile_sizes`` (index variable -> tile size) the kernel is lowered for tiles of those
    sizes (its tensors declared with the tile shapes; the images stay whole)."""
    if getattr(layer, "order", None) in (None, ""):
        from compiler.order import default_order, with_order

        layer = with_order(layer, default_order(layer))
    assign = parse_expr(layer.expr)
    order = parse_order(layer.order, assign)
    images, decls = build_images(layer)
    for acc in assign.operands:
        if acc.tensor not in decls:
            raise CompileError(f"parse: {layer.expr}: no data for tensor {acc.tensor}")
        if len(acc.indices) != len(decls[acc.tensor].shape):
            raise CompileError(f"parse: {layer.expr}: {acc.tensor} is indexed by "
                               f"{len(acc.indices)} variables but has "
                               f"{len(decls[acc.tensor].shape)} modes")
    sizes: dict[str, int] = {}
    for acc in assign.operands:
        for v, n in zip(acc.indices, decls[acc.tensor].shape):
            if sizes.setdefault(v, n) != n:
                raise CompileError(f"parse: {layer.expr}: index {v} has size {sizes[v]} and "
                                   f"{n} (shape mismatch at tensor {acc.tensor})")
    if tile_sizes is not None:
        sizes = dict(tile_sizes)
        for acc in assign.operands:
            decls[acc.tensor] = replace(decls[acc.tensor],
                                        shape=tuple(sizes[v] for v in acc.indices))
    out = assign.out
    decls[out.tensor] = TensorDecl(out.tensor, tuple(sizes[v] for v in out.indices),
                                   output_formats(layer, out.tensor, len(out.indices)),
                                   tuple(range(len(out.indices))), True)
    zeros = {n: bool((t.vals == 0).any()) for n, t in images.items()}
    policy = (chip.pe.zero_policy.a, chip.pe.zero_policy.b)
    kernel = lower_assignment(assign, order, decls, zero_policy=policy, explicit_zeros=zeros,
                              name=f"{layer.name}_{''.join(order)}",
                              locate=chip.compiler.locate, bitvector=chip.compiler.bitvector)
    return _verified(kernel, "lower"), images, assign, order


def compile_layer(layer: Any, chip: ChipConfig) -> Program:
    """Compile a workload layer for ``chip``: the whole pipeline, returning a Program. A
    kernel whose levels exceed a MEM tile is tiled (compiler.tiling) and lowered once for
    the tile shape: every tile call runs the same configured graph, unrolled
    (compiler.unroll) over copies that each call's outer positions can feed."""
    from dataclasses import replace

    from compiler.order import default_order, work_bound
    from compiler.unroll import output_bound, plan_unroll

    kernel, images, assign, order = _lower(layer, chip)
    check_glb(images, chip)
    out_formats = next(d.formats for d in kernel.tensors if d.is_output)
    tiling = plan_tiling(assign, order, images, chip, out_formats)
    # the mode the tiling was cut for (controller.tile_pipelining auto: chosen there; an
    # untiled kernel is one call, nothing to pipeline)
    chip = with_pipelining(chip, tiling is not None and tiling.pipelined)
    if tiling is not None:
        # the graph is lowered as for the whole tensors (same zero flags), with the tile
        # shapes: a dense level's padding in a last, shorter tile holds zeros, which the
        # kernel computes with like any stored value and the assembly crops away
        kernel, _, _, _ = _lower(layer, chip, dict(zip(tiling.variables, tiling.sizes)))
    work = tail = 0.0
    if chip.compiler.unroll == "auto":
        seq = getattr(layer, "order", None) or default_order(layer)
        work, tail = work_bound(layer, seq), output_bound(layer, seq)
    calls = [t.images for t in tiling.tiles] if tiling is not None else [images]
    loads = [t.loads for t in tiling.tiles] if tiling is not None else [tuple(images)]
    kernel, choice = plan_unroll(kernel, calls, loads, chip, work, tail,
                                 lambda k: place_route_balance(_verified(k, "unroll"), chip),
                                 tiling)
    return replace(emit_program(kernel, images, chip, tiling), unroll=choice)


def place_route_balance(kernel: Kernel, chip: ChipConfig) -> Kernel:
    """place, route and balance an unplaced kernel, verified after each."""
    kernel = _verified(place_kernel(kernel, chip), "place", chip)
    kernel = _verified(route_kernel(kernel, chip), "route", chip)
    return _verified(balance_kernel(kernel, chip), "balance", chip)


def check_glb(images: dict[str, FiberTree], chip: ChipConfig) -> None:
    """CompileError (``emit:``) when the inputs do not fit the chip's global buffer."""
    total = sum(t.nbytes(ELEMENT_BYTES) for t in images.values())
    if total > chip.glb.size_bytes:
        raise CompileError(f"emit: inputs need {total} bytes of global buffer but chip "
                           f"{chip.name} has {chip.glb.size_bytes} (a kernel's inputs sit in "
                           "the global buffer whole; tiles cut only the MEM-tile levels): "
                           "use a smaller problem")


def emit_program(kernel: Kernel, images: dict[str, FiberTree], chip: ChipConfig,
                 tiling: Tiling | None = None) -> Program:
    """The controller schedule: DMA inputs DRAM->GLB, load them into the memory tiles,
    configure (overlapping the loads), launch, wait, unload and DMA the output back. A tiled
    kernel is configured once and its inputs DMAed whole; then per tile call: load the
    operand tiles that changed, launch, wait and unload the output tile (``tile=N``); the
    assembled output is DMAed out at the end. Copies that take whole tiles (isa.copies) load
    each tile into its own copy only: the operand tiles that differ from that copy's previous
    tile's (compiler.unroll.dealt_loads)."""
    from isa.bitstream import config_bits

    check_glb(images, chip)
    outs = [d.name for d in kernel.tensors if d.is_output]
    sched = [Command("configure", kernel.name, (config_bits(kernel) + 7) // 8)]
    for name in sorted(images):
        sched.append(Command("dma_in", name, images[name].nbytes(ELEMENT_BYTES)))
    from compiler.unroll import copies_of, dealt_loads, operand_variables
    from isa.copies import tile_copies

    dealt = tile_copies(kernel)    # copies that take whole tiles: each loads its own
    copies = 1 if dealt > 1 else copies_of(kernel)   # else every copy holds every input
    if tiling is None:
        for name in sorted(images):
            sched.append(Command("load", name, images[name].nbytes(ELEMENT_BYTES) * copies))
        sched += [Command("launch", kernel.name), Command("wait", kernel.name)]
        for name in outs:
            sched += [Command("unload", name), Command("dma_out", name)]
        return Program(kernel.name, (kernel,), images, tuple(sched))
    loads = (dealt_loads(tiling, operand_variables(kernel), dealt,
                         chip.controller.pipelined_tiles_per_call)
             if dealt > 1 else [tile.loads for tile in tiling.tiles])
    for t, (tile, tile_loads) in enumerate(zip(tiling.tiles, loads)):
        for name in sorted(tile_loads):
            sched.append(Command("load", name,
                                 tile.images[name].nbytes(ELEMENT_BYTES) * copies, t))
        sched += [Command("launch", kernel.name, 0, t), Command("wait", kernel.name, 0, t)]
        sched += [Command("unload", name, 0, t) for name in outs]
    sched += [Command("dma_out", name) for name in outs]
    return Program(kernel.name, (kernel,), images, tuple(sched), tiling=tiling)


def compile_kernel(layer: Any, chip: ChipConfig) -> Program:
    """Any kernel workload to a Program: ``gemm`` through compiler.dense, the rest through
    the SAM pipeline above."""
    from compiler.dense import compile_gemm, is_dense

    return compile_gemm(layer, chip) if is_dense(layer) else compile_layer(layer, chip)


def dense_equivalent_ops(expr: str, tensors: dict[str, Any]) -> int:
    """Ops of the dense computation: per point of the iteration space, one op per operand
    after the first (multiplies for ``*``, adds for ``+``), plus one add when an index is
    contracted (e.g. SDDMM and MTTKRP: 2 multiplies + 1 add; a GEMM: 2 M N K)."""
    assign = parse_expr(expr)
    sizes: dict[str, int] = {}
    for acc in assign.operands:
        for v, n in zip(acc.indices, tensors[acc.tensor].shape):
            sizes[v] = int(n)
    points = int(np.prod([sizes[v] for v in assign.index_vars], dtype=np.float64))
    contracted = any(v not in assign.out.indices for v in assign.index_vars)
    return points * (len(assign.operands) - 1 + int(contracted and assign.op == "*"))
