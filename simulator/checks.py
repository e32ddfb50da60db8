"""Output checks: every path (sparse kernel, systolic kernel, model layer) verifies here.

A check is True or False, or a string saying why it was not made (never a silent pass).

- A kernel program's outputs against the numpy reference: exact for integers, rtol 1e-9 for
  floats; a SAM kernel also against the ISA interpreter (the living definition of every
  instruction): sampled by default (every unit's first steps re-run by the ISA's behaviour
  on the burst streams, simulator.unit_check), whole with ``check="full"`` up to
  :data:`INTERPRETER_MAX_TOKENS` tokens; a systolic kernel has no SAM graph for the
  interpreter, which is recorded as a string.
- An unrolled kernel's output (its copies' writers each write a part: the output address
  generator, isa.copies): each copy's part on its own against numpy's rows at the part's
  outer coordinates, the parts' outer coordinates disjoint, and every nonzero outer fiber of
  the reference in some part (``output_copies``), so a wrong union cannot hide behind the
  interpreter check, which assembles with the same union. A tiled unrolled kernel: the same
  per tile call, against numpy's rows of the call's output block (partial calls of one
  block: their parts summed at their own coordinates against the block). Copies that take
  whole tiles (isa.copies): each tile's output, written by its one copy, is its call's one
  part, checked the same way.
- A model layer's assembled output against the numpy forward pass of the same weights,
  routing and activations within :data:`LAYER_RTOL` of the output's largest magnitude (tiles
  hold float32 values, the reference is float64; float32 at analytic, where it checks only
  the lowering: simulator.layers), and against the layer's independent full
  forward pass when it was computed (docs/fidelity.md). At analytic fidelity those values
  are numpy's, so they check only the lowering; the independent check is the tile sample
  (simulator.layers.run_tile_sample: a few tiles re-run on burst, values compared).

A run is verified (:func:`simulator.summary.verified`) when no check failed and at least one
independent check passed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isa.fibertree import FiberTree
from isa.interp import assemble_output, run_kernel
from isa.program import Program, SystolicKernel
from simulator.chip import RunResult

INTERPRETER_MAX_TOKENS = 2_000_000
"""Largest kernel (tokens over all streams) also re-run on the pure-Python ISA interpreter for
the output check; beyond it the check is numpy's alone (the burst engine's functional pass is
itself tested equal to the interpreter, tests/test_burst.py)."""

LAYER_RTOL = 1e-4
"""Relative tolerance of a model layer's output (float32 tiles against a float64 forward)."""


def same_values(got: np.ndarray, ref: np.ndarray) -> bool:
    """Exact equality for integers, rtol 1e-9 for floats (shapes must match)."""
    if ref.dtype.kind in "iub" and got.dtype.kind in "iub":
        return bool(np.array_equal(got, ref))
    return bool(got.shape == ref.shape and np.allclose(got, ref, rtol=1e-9, atol=1e-12))


def check_program_outputs(result: RunResult, program: Program, reference: Any,
                          check: str = "sample") -> dict[str, Any]:
    """The outputs of a kernel program's first kernel against numpy and the interpreter
    (``check``: ``sample`` or ``full``, module docstring)."""
    kernel = program.kernels[0]
    ref = np.asarray(reference)
    checks: dict[str, Any] = {}
    if isinstance(kernel, SystolicKernel):
        out = kernel.tensors[-1].name
        checks["numpy"] = same_values(result.outputs[out].to_dense(), ref)
        checks["interpreter"] = "not applicable: a systolic kernel has no SAM graph"
        return checks
    from simulator.unit_check import sampled_check

    if program.tiling is not None:
        return _check_tiled(result, program, kernel, ref, check)
    tokens = result.total("token_count")
    full = check == "full" and tokens <= INTERPRETER_MAX_TOKENS
    interp = run_kernel(kernel, program.images) if full else None
    if not full:
        run = result.kernel_runs.get(kernel.name)
        checks.update(sampled_check(kernel, program.images, getattr(run, "fired", None)))
        if run is not None and hasattr(run, "fired"):
            run.fired = None                # the firing tables are large: not kept past here
    for decl in kernel.tensors:
        if not decl.is_output:
            continue
        sim = result.outputs[decl.name]
        checks["numpy"] = same_values(sim.to_dense(), ref)
        run = result.kernel_runs.get(kernel.name)
        if run is not None and decl.name in run.memory.copies:
            checks["output_copies"] = _copies_match(decl, run.memory, ref)
        if interp is not None:
            checks["interpreter"] = _same_tree(sim, assemble_output(decl, interp.memory))
        elif check == "full":
            checks["interpreter"] = (f"skipped: {tokens:,} tokens > {INTERPRETER_MAX_TOKENS:,}"
                                     " (simulator.checks.INTERPRETER_MAX_TOKENS)")
    return checks


def _check_tiled(result: RunResult, program: Program, kernel: Any, ref: np.ndarray,
                 check: str) -> dict[str, Any]:
    """A tiled kernel: the assembled output against numpy; the interpreter re-runs the first
    tile's units (sampled) or, with ``check="full"``, every tile, whose outputs are assembled
    the same way (isa.tiles.Accumulator) and compared with the simulated assembly."""
    from isa.copies import copy_alone, tile_copies
    from isa.tiles import Accumulator
    from simulator.unit_check import sampled_check

    tiling = program.tiling
    decl = next(d for d in kernel.tensors if d.is_output)
    if tile_copies(kernel) > 1:
        # copies that take whole tiles: a tile's output is its copy's alone, and the copies
        # are one graph placed N times (the interpreter ignores placement): copy 0 re-runs
        kernel = copy_alone(kernel, 0)
    sim = result.outputs[decl.name]
    checks: dict[str, Any] = {"numpy": same_values(sim.to_dense(), ref)}
    run = result.kernel_runs.get(kernel.name)
    parts = getattr(run, "tile_parts", None)
    if parts is not None:
        checks["output_copies"] = _tile_copies_match(decl, tiling, parts, ref)
    tokens = result.total("token_count")
    if check == "full" and tokens <= INTERPRETER_MAX_TOKENS:
        acc = Accumulator(tiling, sim.vals.dtype)
        for tile in tiling.tiles:
            acc.add(tile, assemble_output(decl, run_kernel(kernel, tile.images).memory))
        checks["interpreter"] = _same_tree(sim, acc.tree(decl.name, decl.formats,
                                                         decl.mode_order))
    elif check == "full":
        checks["interpreter"] = (f"skipped: {tokens:,} tokens > {INTERPRETER_MAX_TOKENS:,}"
                                 " (simulator.checks.INTERPRETER_MAX_TOKENS)")
    elif tiling.tiles:
        sample = sampled_check(kernel, tiling.tiles[0].images)
        checks.update({k: (f"{v} (the first of {len(tiling.tiles)} tiles)"
                           if isinstance(v, str) else v) for k, v in sample.items()})
    else:
        checks["interpreter"] = "skipped: every tile was skipped (an operand empty)"
    return checks


def _copies_match(decl: Any, memory: Any, ref: np.ndarray) -> bool:
    """Each copy's part of output ``decl`` (module docstring) against numpy's ``ref``."""
    parts = [assemble_output(decl, memory, c) for c in range(memory.copies[decl.name])]
    axis = decl.mode_order[0]
    return _parts_match(parts, axis, ref.shape[axis], lambda crd: np.take(ref, crd, axis))


def _parts_match(parts: list[FiberTree], axis: int, rows: int, want: Any) -> bool:
    """Copy parts of one output block against numpy: their outer coordinates disjoint, each
    part equal, on its own rows only, to ``want(crd)`` (numpy's block at local rows ``crd``
    along ``axis``), and numpy's other rows of the block (of ``rows``) empty."""
    outer = [p.levels[0].crd for p in parts]
    seen = np.concatenate(outer) if outer else np.zeros(0, dtype=np.int64)
    if len(np.unique(seen)) != len(seen):
        return False
    for p, crd in zip(parts, outer):
        if not same_values(_rows_of(p, crd, axis), want(crd)):
            return False
    return bool(not want(np.setdiff1d(np.arange(rows), seen)).any())


def _tile_copies_match(decl: Any, tiling: Any, tile_parts: list[dict[str, list[FiberTree]]],
                       ref: np.ndarray) -> bool:
    """Each tile call's copy parts of an unrolled tiled kernel against numpy: in every call
    the parts' outer coordinates are disjoint; a call alone in its output block (no
    contracted index split) has each part equal, on its own rows only, to numpy's rows of
    the block, and numpy's other rows of the block empty; the partial calls of a block have
    their parts' rows, each placed at its own outer coordinates and summed over the block's
    calls, equal to numpy's block (the parts are never merged by the union under test)."""
    axis = decl.mode_order[0]
    blocks: dict[tuple[int, ...], list[tuple[Any, list[FiberTree]]]] = {}
    for tile, named in zip(tiling.tiles, tile_parts):
        parts = named.get(decl.name, [])
        crd = [p.levels[0].crd for p in parts]
        seen = np.concatenate(crd) if crd else np.zeros(0, dtype=np.int64)
        if len(np.unique(seen)) != len(seen):
            return False
        blocks.setdefault(tiling.origin(tile), []).append((tile, parts))
    for origin, calls in blocks.items():
        parts = [p for _, ps in calls for p in ps]
        if not parts:
            continue
        shape = parts[0].shape
        if len(calls) == 1:
            if not _parts_match(parts, axis, shape[axis],
                                lambda crd, o=origin, s=shape: _box_rows(ref, o, s, axis, crd)):
                return False
            continue
        acc = np.zeros(shape, dtype=np.result_type(ref.dtype, *[p.vals.dtype for p in parts]))
        for p in parts:
            crd = p.levels[0].crd
            acc[tuple(crd if a == axis else slice(None) for a in range(len(shape)))] += \
                _rows_of(p, crd, axis)
        if not same_values(acc, _box_rows(ref, origin, shape, axis, np.arange(shape[axis]))):
            return False
    return True


def _box_rows(ref: np.ndarray, origin: tuple[int, ...], shape: tuple[int, ...], axis: int,
              crd: np.ndarray) -> np.ndarray:
    """numpy's output in the tile box at ``origin`` of ``shape`` (tile-local coordinates;
    zeros where a last, shorter tile's box passes the output's edge), at the local rows
    ``crd`` along ``axis`` only."""
    out = np.zeros(tuple(len(crd) if a == axis else n for a, n in enumerate(shape)),
                   dtype=ref.dtype)
    rows = origin[axis] + np.asarray(crd, dtype=np.int64)
    keep = np.flatnonzero(rows < ref.shape[axis])
    ends = [min(o + n, ref.shape[a]) for a, (o, n) in enumerate(zip(origin, shape))]
    src = np.take(ref[tuple(slice(None) if a == axis else slice(o, e)
                            for a, (o, e) in enumerate(zip(origin, ends)))], rows[keep], axis)
    out[tuple(keep if a == axis else slice(0, e - o)
              for a, (o, e) in enumerate(zip(origin, ends)))] = src
    return out


def _rows_of(part: FiberTree, crd: np.ndarray, axis: int) -> np.ndarray:
    """``part`` densified only at its outer coordinates ``crd`` (increasing) along ``axis``:
    a part holds 1/N of the output, so its whole dense shape is not built."""
    shape = list(part.shape)
    shape[axis] = len(crd)
    out = np.zeros(shape, dtype=part.vals.dtype)
    coords, vals = part.coo()
    if len(vals):
        coords[:, axis] = np.searchsorted(crd, coords[:, axis])
        out[tuple(coords.T)] = vals
    return out


def _same_tree(a: FiberTree, b: FiberTree) -> bool:
    if a.formats != b.formats or len(a.levels) != len(b.levels):
        return False
    for la, lb in zip(a.levels, b.levels):
        if la.fmt in ("compressed", "bitmap") and not (np.array_equal(la.seg, lb.seg)
                                            and np.array_equal(la.crd, lb.crd)):
            return False
    return bool(np.array_equal(a.vals, b.vals))


def close_to(output: np.ndarray, ref: np.ndarray, rtol: float = LAYER_RTOL) -> bool:
    """``output`` equals ``ref`` within ``rtol`` of ref's largest magnitude, and is finite."""
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return bool(output.shape == ref.shape and np.all(np.isfinite(output))
                and np.allclose(output, ref, rtol=rtol, atol=rtol * scale + 1e-12))


def check_layer_output(output: np.ndarray, reference: np.ndarray,
                       full_forward: np.ndarray | str, fidelity: str,
                       sample: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A model layer's checks (module docstring). At burst/cycle the tiles' values are the
    engine's: ``numpy`` (against the chunk-wise forward) and ``numpy_full_forward`` are
    independent. At analytic the tiles' values are numpy's own products, so those two only
    check the lowering (``lowering``, ``lowering_full_forward``, not counted by
    ``verified``) and the independent check is ``tile_sample``: the sampled tiles' burst
    values against the analytic path's."""
    full = (full_forward if isinstance(full_forward, str) else close_to(output, full_forward))
    interp = ("skipped: the burst engine's functional pass is the tiles' interpreter (tested "
              "equal to it, tests/test_burst.py); no SAM graph is re-run per layer")
    if fidelity != "analytic":
        return {"numpy": close_to(output, reference), "numpy_full_forward": full,
                "interpreter": interp,
                "tile_sample": f"skipped: not needed, every tile ran on {fidelity}"}
    tiles: bool | str = "skipped: no tile with nonzeros in both operands"
    if sample:
        tiles = all(close_to(s["values"], s["analytic_values"]) for s in sample)
    return {"numpy": "skipped: not independent at analytic (the tiles' values are numpy's "
                     "own products; see tile_sample)",
            "lowering": close_to(output, reference), "lowering_full_forward": full,
            "interpreter": interp, "tile_sample": tiles}


def check_outputs(result: RunResult, program: Program, reference: Any,
                  check: str = "sample") -> dict[str, Any]:
    """The checks of any run: a kernel program's (``reference``: the numpy result) or a
    model layer's (``reference``: its independent full forward pass, or why not computed;
    the chunk-wise reference came with the run)."""
    if program.jobs:
        run = result.kernel_runs["layer"]
        return check_layer_output(run.output, run.reference, reference, result.fidelity,
                                  run.sample)
    return check_program_outputs(result, program, reference, check)
