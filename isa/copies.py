"""The output address generator: an unrolled kernel's output, assembled from its copies'.

Onyx unrolls a sparse kernel over the array with a stream filter, a round-robin stream
arbiter and an output address generator (IEEE Micro 2025). Here the output address generator
is the level writers' ``copy``/``copies`` attributes (isa.ops): the writers of copy ``c`` of
``N`` write the output fibers of the outer positions dealt to copy ``c`` (its filters pass
positions p with p mod N == c), each copy to its own part of the output, and no copy waits on
another at the output. The ISA defines the output as the union of the N parts:

- every part is a fibertree of the output's shape and formats, assembled from its copy's
  writers exactly as a whole output is from its writers (``isa.interp.assemble_output``);
- the parts' outer (level-0) coordinates are disjoint: a stored outer level (compressed or
  bitmap) is required, since a dense one has no coordinates to place a part's fibers by;
- the output's outer fiber is the parts' outer coordinates in increasing order, each with
  its part's subtree below it, unchanged (inner fibers, explicit zeros and empty fibers as
  the part wrote them).

Placing each subtree at its outer coordinate is the generator's address arithmetic: a
part's segment entries are offset by the positions the other parts hold before them. On the
unrolled graph of a kernel whose output's outer index is the dealt loop (compiler.unroll),
the union equals the output the one-copy graph writes.

Copies that take whole tiles (tile dealing, garnet's unrolling under tile pipelining): a tiled
kernel whose tiles stream through kernel calls in runs (``controller.tile_pipelining``) may be
unrolled by dealing whole tiles instead of outer positions. Its graph is N whole copies with
no stream filter, each copy's writers carrying ``copy=c copies=N`` (each copy writes the
outputs of its own tiles); :func:`tile_copy` says which copy takes which tile, and
:func:`copy_alone` is the one-copy graph a tile runs on (its output is the whole tile's).
"""

from __future__ import annotations

import numpy as np

from isa.errors import IsaError
from isa.fibertree import FiberTree, Level, _ranges
from isa.ops import WRITERS, Opcode
from isa.program import Kernel, Node


def dealt_copy(position, copies: int):
    """The copy that outer position ``position`` is dealt to among ``copies``: round-robin,
    ``position mod copies`` (an int, or a numpy array of them elementwise). The one rule of
    unrolling's dealing: the stream filter (``isa.interp.filter_``, the burst engine's
    ``fire_filter``) passes element p to copy ``dealt_copy(p, copies)``, and a model layer's
    jobs, positions of the batched tile kernel's outer loop, go to the lanes by it
    (compiler.layers)."""
    return position % copies


def union_of_copies(decl, parts: list[FiberTree]) -> FiberTree:
    """The output ``decl`` (a TensorDecl) from its copies' ``parts`` (part c: copy c's).

    Raises IsaError when there is no part, the output has no stored outer level, or two
    parts hold the same outer coordinate.
    """
    if not parts:
        raise IsaError(f"output {decl.name}: no copy wrote it")
    if not decl.formats or decl.formats[0] == "dense":
        raise IsaError(f"output {decl.name}: written by {len(parts)} copies but its outer "
                       "level is not stored (compressed or bitmap), so the copies' fibers "
                       "have no outer coordinate to be placed by")
    first = [p.levels[0] for p in parts]
    crd = np.concatenate([lv.crd for lv in first]).astype(np.int64)
    pos = np.argsort(crd, kind="stable")
    sorted_crd = crd[pos]
    if len(sorted_crd) > 1 and (np.diff(sorted_crd) == 0).any():
        dup = int(sorted_crd[np.flatnonzero(np.diff(sorted_crd) == 0)[0]])
        raise IsaError(f"output {decl.name}: two copies wrote outer coordinate {dup} (the "
                       "copies' outer coordinates must be disjoint)")
    levels = [Level(decl.formats[0], first[0].size, np.array([0, len(crd)], np.int64),
                    sorted_crd)]
    for lvl in range(1, len(decl.formats)):
        lvs = [p.levels[lvl] for p in parts]
        fmt, size = decl.formats[lvl], lvs[0].size
        if fmt == "dense":       # a part's positions follow its parent positions in blocks
            pos = (pos[:, None] * size + np.arange(size)).reshape(-1)
            levels.append(Level("dense", size))
            continue
        # global parent position g (into the parts' concatenated positions) -> its fiber
        offsets = np.cumsum([0] + [len(lv.crd) for lv in lvs[:-1]])
        starts = np.concatenate([lv.seg[:-1] + o for lv, o in zip(lvs, offsets)])
        ends = np.concatenate([lv.seg[1:] + o for lv, o in zip(lvs, offsets)])
        counts = (ends - starts)[pos]
        child = _ranges(starts[pos], counts)
        seg = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        levels.append(Level(fmt, size, seg, np.concatenate([lv.crd for lv in lvs])[child]))
        pos = child
    vals = np.concatenate([p.vals for p in parts])[pos]
    tree = FiberTree(decl.name, tuple(decl.shape), tuple(decl.mode_order), tuple(levels), vals)
    tree.check()
    return tree


def tile_copy(position, copies: int, per_call: int):
    """The copy that takes the tile at ``position`` (its place in the schedule's tile calls)
    when copies take whole tiles: garnet concat_tiles.py concatenates a run's tiles (the
    ``per_call`` tiles of one kernel call, ``controller.pipelined_tiles_per_call``) into one
    stream per input and tags each tile with the stream ID (its place in the run) mod the
    unroll factor, restarting at 0 with every run; the copy whose ID it is takes it. Equal to
    ``position mod copies`` when ``copies`` divides ``per_call``."""
    return dealt_copy(position % per_call, copies)


def tile_copies(kernel: Kernel) -> int:
    """N when ``kernel``'s copies take whole tiles (its writers dealt over N > 1 copies and no
    stream filter deals positions), else 1."""
    if any(n.op is Opcode.FILTER for n in kernel.nodes):
        return 1
    return max((int(n.a["copies"]) for n in kernel.nodes
                if n.op in WRITERS and "copies" in n.a), default=1)


def copy_units(kernel: Kernel, copy: int) -> Kernel:
    """Copy ``copy`` of an unrolled kernel on its own, as placed and routed: its units (ids
    ``*_u<copy>``, filters included) and the streams between them (copies share none).

    Raises IsaError when the kernel has no such copy."""
    tail = f"_u{copy}"
    mine = {n.id for n in kernel.nodes if n.id.endswith(tail)}
    if not mine:
        raise IsaError(f"kernel {kernel.name}: no copy {copy}")
    return Kernel(kernel.name, tuple(n for n in kernel.nodes if n.id in mine),
                  tuple(e for e in kernel.edges if e.src in mine and e.dst in mine),
                  kernel.tensors, kernel.expr)


def copy_alone(kernel: Kernel, copy: int) -> Kernel:
    """Copy ``copy`` of a kernel whose copies take whole tiles, as a kernel of its own
    (:func:`copy_units`), its writers plain (it writes the whole output of the tile it runs).

    Raises IsaError when the kernel has no such copy."""
    part = copy_units(kernel, copy)
    return part.with_nodes(tuple(
        Node(n.id, n.op, tuple((k, v) for k, v in n.attrs
                               if n.op not in WRITERS or k not in ("copy", "copies")), n.tile)
        for n in part.nodes))


__all__ = ["copy_alone", "copy_units", "dealt_copy", "tile_copies", "tile_copy", "union_of_copies"]
