"""The bodies of a model layer's jobs: what each job computes, handed to an engine.

A products-stage job of a layer's Program (compiler.layers) references its work lazily as a
task: a small picklable object whose call ``task(engine)`` builds the job's operands from the
workload (token rows, TEAL, a chunk of weights generated on demand), hands every matrix
product and ALU pass to ``engine`` (the simulator's layer engine, which times and counts
them and returns the values), computes the next operands from those values (the activation
of gate x up) and returns its contribution to the layer's output together with the
reference of the same weight chunk (in the engine's ``reference_dtype``: float64, or float32
at analytic fidelity, simulator.layers). Tasks are pure functions of their fields and the
engine, so independent jobs may run in any process (the controller's ``mapper``) and fold in
order.

- :class:`FFNTask`: an FFN on some token rows, chunk by chunk along f (512 columns): per
  chunk the gate and up products, the ALU pass h = act(gate) * up, then the down product, on
  the lane the compiler chose for that chunk (round-robin over the job's lanes). An expert's
  output is scaled by its gating weights G(t, e).
- :class:`LinearTask`: a block of output rows of a linear layer on one lane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isa.copies import dealt_copy


@dataclass(frozen=True)
class Contribution:
    """A job's part of the layer output: ``out[rows, col0:col0 + w] += values`` (rows None:
    every token), and the same for the reference."""

    rows: np.ndarray | None
    col0: int
    values: np.ndarray
    reference: np.ndarray


def nm_of(w: Any) -> tuple[int, int] | None:
    """A synthetic weight's N:M pattern along its input dimension (the product's K), which
    the MAC block runs compressed in dense mode; None for any other pattern or real data."""
    from workloads.pruning import parse_pattern

    if getattr(w, "data", None) is not None:
        return None
    pat = parse_pattern(w.pattern) if w.pattern not in ("dense", "") else None
    return (pat.n, pat.m) if pat is not None and pat.kind == "nm" else None


def block_of(w: Any) -> tuple[int, int] | None:
    """A synthetic block-pruned weight's block shape in the product's orientation (along K =
    W's input dimension, along N = its output dimension), whose kept blocks dense mode moves
    as BSR; None for any other pattern or real data."""
    from workloads.pruning import parse_pattern

    if getattr(w, "data", None) is not None or w.pattern in ("dense", ""):
        return None
    pat = parse_pattern(w.pattern)
    return (pat.bw, pat.bh) if pat.kind == "block" else None


@dataclass(frozen=True, eq=False)
class FFNTask:
    """One FFN (``ffn``: the layer's; ``shared``/``expert``: an MoE layer's) over ``chunks``
    of f, chunk c on ``lanes[dealt_copy(c, len(lanes))]``; ``tok`` and ``scale``: an
    expert's token rows and gating weights (None: every token, unscaled)."""

    layer: Any
    which: str
    index: int
    lanes: tuple[int, ...]
    chunks: tuple[tuple[int, int], ...]
    label: str
    tok: np.ndarray | None = None
    scale: np.ndarray | None = None

    @property
    def items(self) -> int:
        """Progress items of the job: its chunks."""
        return len(self.chunks)

    @property
    def unit(self) -> str:
        return "chunks" if self.which == "ffn" else "FFN chunks"

    def weights(self) -> Any:
        if self.which == "ffn":
            return self.layer.ffn
        return (self.layer.shared if self.which == "shared" else self.layer.experts)[self.index]

    def __call__(self, eng: Any) -> Contribution:
        from workloads.layers import (
            ffn_chunk,
            intermediate,
            neuron_thresholds,
            teal,
            teal_h_threshold,
        )

        w, sparsity = self.weights(), self.layer.sparsity
        x = self.layer.x if self.tok is None else self.layer.x[self.tok]
        xs = teal(x.astype(np.float64), sparsity)
        dt = eng.reference_dtype
        xr = xs.astype(dt)          # exact: xs holds x's float32 values or zeros
        tau_h = teal_h_threshold(w, xs, sparsity)   # h's one TEAL threshold, not per chunk
        y = np.zeros((x.shape[0], w.d))
        ref = np.zeros_like(y)
        expert = self.index if self.which == "expert" else -1
        for c, (f0, f1) in enumerate(self.chunks):
            lane = self.lanes[dealt_copy(c, len(self.lanes))]
            g_rows = None if w.gate is None else w.gate.rows(f0, f1)
            u_rows = w.up.rows(f0, f1)
            d_cols = w.down.cols(f0, f1)               # [fc x d] = W_down[:, f0:f1]^T
            theta = neuron_thresholds(w, sparsity, f0, f1, g_rows if g_rows is not None
                                      else u_rows)
            tag = f"{self.label}[{f0}:{f1}]"
            gate = None if g_rows is None else eng.product(
                xs, g_rows.T, lane=lane, expert=expert, label=f"{tag}.gate", nm=nm_of(w.gate),
                block=block_of(w.gate))
            up = eng.product(xs, u_rows.T, lane=lane, expert=expert, label=f"{tag}.up",
                             nm=nm_of(w.up), block=block_of(w.up))
            h = teal(intermediate(w.act, sparsity, gate, up, theta), sparsity, tau_h)
            eng.elementwise_job(h.size * (2 if gate is not None else 1), lane=lane,
                                expert=expert, label=f"{tag}.act")
            y += eng.product(h, d_cols, lane=lane, expert=expert, label=f"{tag}.down",
                             nm=nm_of(w.down), block=block_of(w.down))
            # the reference: the layer's forward on the same weight chunk, in ``dt``
            hr = teal(ffn_chunk(w, xr, f0, f1, sparsity, g_rows, u_rows, theta=theta),
                      sparsity, tau_h)
            ref += hr.astype(dt, copy=False) @ d_cols.astype(dt, copy=False)
            eng.progress.advance(1, tag)
        if self.scale is not None:
            y, ref = self.scale[:, None] * y, self.scale[:, None] * ref
        return Contribution(self.tok, 0, y, ref)


@dataclass(frozen=True, eq=False)
class LinearTask:
    """Output rows [r0, r1) of a linear layer y = x W^T on ``lane``."""

    layer: Any
    r0: int
    r1: int
    lane: int
    items = 1
    unit = "row blocks"

    def __call__(self, eng: Any) -> Contribution:
        from workloads.layers import teal

        x = teal(self.layer.x.astype(np.float64), self.layer.sparsity)
        rows = self.layer.weight.rows(self.r0, self.r1)
        y = eng.product(x, rows.T, lane=self.lane, expert=-1,
                        label=f"linear[{self.r0}:{self.r1}]", nm=nm_of(self.layer.weight),
                        block=block_of(self.layer.weight))
        eng.progress.advance(1, f"rows {self.r0}:{self.r1}")
        dt = eng.reference_dtype
        return Contribution(None, self.r0, y, x.astype(dt) @ rows.astype(dt, copy=False).T)
