"""Lowering model layers (MoE, FFN, linear) to tiled kernels on array regions.

Every matrix product of a layer, ``Y(t, n) = sum_i A(t, i) W(n, i)`` with A the token
activations (dense, or sparse after ReLU/TEAL) and W a (pruned) weight, is the Gustavson
SpM*SpM kernel ``X(i,j) = B(i,k) * C(k,j)`` (order ikj) with B = A and C = W^T stored
compressed: zeros of A (activation sparsity), zeros of W (pruning) and, in an MoE layer, the
zeros of the gating tensor G(t, e) (a token is simply absent from an expert's A) are never
visited. The compiler builds that kernel once, placed and routed on one *region* of the array
(a band of columns); the array holds ``lanes`` copies, one per region, which run tiles in
parallel (experts in parallel, or row blocks of one matrix in parallel).

Tiles. Each fibertree level of a tile lives in one memory tile, so a tile holds at most
``level_words`` coordinates (a MEM tile's SRAM in 16-bit words): the tiling of each product
(K chunks of A and W, N blocks of W) is chosen from the data by the simulator's layer engine
(:mod:`simulator.layers`) under that bound. Partial sums of K chunks accumulate in the GLB.

Dense mode: when weights and activations are dense, the same products run on the fabric's
dense MAC block as a systolic array (simulator.systolic); the engine picks the mode whose
estimated cycles are lower (``compiler.layer_mode: auto``) or the one configured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from compiler.pipeline import compile_layer
from isa.arch import ChipConfig
from isa.errors import CompileError
from isa.program import Kernel, Program

TEMPLATE_EXPR = "X(i,j)=B(i,k)*C(k,j)"
"""The tile kernel: B = token activations A (T x K), C = W^T (K x N), order ikj."""


@dataclass(frozen=True)
class _TemplateLayer:
    name: str
    expr: str
    tensors: dict
    formats: dict
    order: str
    out_shape: tuple[int, int]


@dataclass(frozen=True)
class LayerPlan:
    """What the compiler decides for a layer: the tile kernel and the array's regions."""

    program: Program           # the template kernel placed on one region (with tiny images)
    region: ChipConfig         # the region as a chip (array columns narrowed)
    lanes: int                 # regions on the array = kernel copies running in parallel
    level_words: int           # coordinates one MEM tile holds (one fibertree level)
    f_chunk: int               # FFN columns produced and consumed per step (fusion)

    @property
    def kernel(self) -> Kernel:
        return self.program.kernels[0]

    @property
    def mean_hops(self) -> float:
        """Mean links crossed per stream of the placed kernel (interconnect energy)."""
        edges = self.kernel.edges
        return float(np.mean([max(e.hops, 1) for e in edges]))


def _tiny_layer() -> _TemplateLayer:
    a = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.int64))
    w = sp.csr_matrix(np.array([[1, 0], [0, 2], [3, 4]], dtype=np.int64))
    return _TemplateLayer("layer_tile", TEMPLATE_EXPR, {"B": a, "C": w},
                          {"B": "ss", "C": "ss"}, "ikj", (2, 2))


def region_chip(chip: ChipConfig, cols: int) -> ChipConfig:
    """``chip`` narrowed to its first ``cols`` array columns (one region)."""
    return dataclasses.replace(chip, array=dataclasses.replace(chip.array, cols=cols))


def plan_layer(chip: ChipConfig, *, f_chunk: int = 512) -> LayerPlan:
    """The tile kernel compiled on the narrowest column band that places and routes it
    (bands are whole MEM-column groups), and the number of such bands on ``chip``.

    Raises: CompileError when the kernel fits no band of the array.
    """
    period = chip.array.mem_column_period
    layer = _tiny_layer()
    last: Exception | None = None
    cols = period
    while cols <= chip.array.cols:
        region = region_chip(chip, cols)
        try:
            program = compile_layer(layer, region)
        except CompileError as exc:
            last = exc
            cols += period
            continue
        lanes = chip.array.cols // cols
        words = chip.mem_tile.size_bytes * 8 // 16
        return LayerPlan(program, region, lanes, words, f_chunk)
    raise CompileError(f"layers: the tile kernel {TEMPLATE_EXPR} fits no column band of "
                       f"chip {chip.name} ({chip.array.rows}x{chip.array.cols}): {last}")

