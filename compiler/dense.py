"""Dense mode: the MAC block of the CGRA, and the lowering of a GEMM to a systolic Program.

The mapping. A dense GEMM runs on the chip's ``systolic`` section when it has one, else on
the CGRA's dense MAC block: output stationary, each MAC PE holding one C element. The block
is every array row by the PE columns of all but :data:`DENSE_GEMM_IO_GROUPS` MEM-column
groups (a group is one MEM column and the ``mem_column_period - 1`` PE columns it feeds).
The reserved group streams A in from the GLB (its MEM column buffers one A word per row per
cycle, which is exactly the 16 GLB links of Onyx) and drains C; its PEs forward and do no
MACs. On Onyx that leaves 7 of 8 groups, 16 x 21 = 336 of 384 PEs. This is a mapping
assumption, not a silicon measurement: Onyx's published 571 GOPS at 850 MHz is 672
ops/cycle, exactly 7/8 of 384 x 2, which is consistent with (and was read as support for)
it; docs/energy.md discusses the alternatives.

The lowering (:func:`compile_gemm`). A ``gemm`` workload becomes a Program of one
:class:`~isa.program.SystolicKernel` (block size, dataflow: the workload's ``-p dataflow``,
else the chip's, else output-stationary; the N:M pattern of B) with A and B as dense memory
images, and the same firmware as a sparse kernel: configure, DMA each input DRAM -> GLB and
load it GLB -> array, launch, wait, unload and DMA the output back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isa.arch import ELEMENT_BYTES, SYSTOLIC_DATAFLOWS, ChipConfig
from isa.bitstream import config_bits
from isa.errors import CompileError, IsaError
from isa.fibertree import FiberTree
from isa.ops import TileKind
from isa.program import Command, Program, SystolicKernel, TensorDecl
from isa.verify import verify_kernel
from isa.weight_formats import bsr_bytes
from workloads import KernelLayer, WorkloadError
from workloads.kernels import GEMM_PATTERNS, gemm_block

DENSE_GEMM_IO_GROUPS = 1
"""MEM-column groups a dense GEMM mapping gives to I/O instead of MACs (module docstring)."""

DENSE_WORKLOADS = frozenset({"gemm"})
"""Kernel workloads that lower to a systolic kernel instead of a SAM graph."""

DENSE = ("dense", "dense")


@dataclass(frozen=True)
class DenseMapping:
    """The output-stationary MAC block a dense GEMM uses on a chip."""

    rows: int                     # r: MAC PE rows (= array rows)
    cols: int                     # c: MAC PE columns
    io_groups: int                # MEM-column groups reserved for I/O

    @property
    def mac_pes(self) -> int:
        return self.rows * self.cols


def dense_mapping(chip: ChipConfig) -> DenseMapping:
    """The MAC block of :data:`DENSE_GEMM_IO_GROUPS`: all rows, the PE columns of the other
    MEM-column groups (Onyx: 16 x 21 = 336 of 384 PEs)."""
    arr = chip.array
    pe_cols = arr.cols - len({c for _, c in arr.tiles(TileKind.MEM)})
    groups = arr.cols // arr.mem_column_period
    per_group = arr.mem_column_period - 1
    io = min(DENSE_GEMM_IO_GROUPS, max(groups - 1, 0))
    return DenseMapping(rows=arr.rows, cols=max(pe_cols - io * per_group, 1), io_groups=io)


def dense_peak_gops(chip: ChipConfig, *, freq_mhz: float | None = None) -> float:
    """Peak dense INT16 throughput: MAC PEs x 2 ops (fused MAC) x clock, in GOPS."""
    freq = chip.clock.freq_mhz if freq_mhz is None else float(freq_mhz)
    return dense_mapping(chip).mac_pes * 2 * freq * 1e6 / 1e9


def program_peak_gops(program: Program, chip: ChipConfig) -> float:
    """The compute roof of a run of ``program``: the systolic array its first kernel runs on
    (rows x cols MACs x 2 ops x clock), else the chip's dense MAC block."""
    kernel = program.kernels[0] if program.kernels else None
    if isinstance(kernel, SystolicKernel) and not program.jobs:
        return kernel.rows * kernel.cols * 2 * chip.clock.freq_mhz * 1e6 / 1e9
    return dense_peak_gops(chip)


def mac_block_kernel(chip: ChipConfig, name: str = "mac_block") -> SystolicKernel:
    """The CGRA's MAC block as a template systolic kernel (output stationary, no tensors):
    the dense-mode kernel of model layers, whose products each bring their own shapes."""
    block = dense_mapping(chip)
    return SystolicKernel(name, block.rows, block.cols, "os")


def is_dense(layer: Any) -> bool:
    """True when ``layer`` lowers to a systolic kernel rather than a SAM graph."""
    return getattr(layer, "name", None) in DENSE_WORKLOADS


def gemm_kernel(chip: ChipConfig, m: int, n: int, k: int, *, dataflow: str = "",
                nm: tuple[int, int] | None = None) -> SystolicKernel:
    """The systolic kernel of an M x K by K x N GEMM on ``chip``: the chip's ``systolic``
    section, else the CGRA's MAC block; ``dataflow`` (empty: the section's, else ``os``)."""
    if chip.systolic is not None:
        rows, cols, default = chip.systolic.rows, chip.systolic.cols, chip.systolic.dataflow
    else:
        block = dense_mapping(chip)
        rows, cols, default = block.rows, block.cols, "os"
    flow = dataflow or default
    name = f"gemm_{flow}_{rows}x{cols}" + ("" if nm is None else f"_{nm[0]}of{nm[1]}")
    tensors = (TensorDecl("A", (m, k), DENSE, (0, 1)), TensorDecl("B", (k, n), DENSE, (0, 1)),
               TensorDecl("X", (m, n), DENSE, (0, 1), True))
    return SystolicKernel(name, rows, cols, flow, nm, tensors)


def nm_bytes(k: int, n: int, nm: tuple[int, int] | None) -> int:
    """Bytes of a K x N weight stored as the array reads it: dense, or N:M compressed along
    K, the kept values plus a log2(M)-bit position per value (NVIDIA's 2:4 format: 2-bit
    indices, "NVIDIA A100 Tensor Core GPU Architecture" whitepaper, 2020, Fig. 9)."""
    if nm is None:
        return k * n * ELEMENT_BYTES
    keep, group = nm
    values = -(-k // group) * keep * n
    return values * ELEMENT_BYTES + -(-values * max(1, (group - 1).bit_length()) // 8)


def _operand(layer: KernelLayer, name: str) -> np.ndarray:
    x = layer.tensors.get(name)
    if x is None:
        raise WorkloadError(f"workload {layer.name}: tensor {name} missing (have "
                            f"{', '.join(layer.tensors)})")
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def compile_gemm(layer: KernelLayer, chip: ChipConfig) -> Program:
    """Lower a ``gemm`` workload to a Program (module docstring).

    Raises: WorkloadError for an unknown pattern or dataflow; CompileError for operands that
    do not make a GEMM, hold NaN, or a kernel the verifier rejects.
    """
    pattern = layer.params.get("pattern", "dense")
    block = gemm_block(pattern)
    if pattern not in GEMM_PATTERNS and block is None:
        raise WorkloadError(f"workload {layer.name}: parameter pattern: use one of "
                            f"{', '.join(GEMM_PATTERNS)} or blockHxW, got {pattern!r}")
    dataflow = layer.params.get("dataflow", "")
    if dataflow not in ("", *SYSTOLIC_DATAFLOWS):
        raise WorkloadError(f"workload {layer.name}: parameter dataflow: use os, ws or is, "
                            f"got {dataflow!r}")
    a, b = _operand(layer, "A"), _operand(layer, "B")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise CompileError(f"lower: {layer.name}: A {a.shape} and B {b.shape} do not make a "
                           "GEMM")
    for name, x in (("A", a), ("B", b)):
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise CompileError(f"images: tensor {name} contains NaN or infinite values")
    kernel = gemm_kernel(chip, a.shape[0], b.shape[1], a.shape[1], dataflow=dataflow,
                         nm=GEMM_PATTERNS.get(pattern))
    try:
        verify_kernel(kernel, chip.array if chip.systolic is None else None)
    except IsaError as exc:
        raise CompileError(f"lower: produced an invalid kernel: {exc}") from None
    images = {"A": FiberTree.dense("A", a), "B": FiberTree.dense("B", b)}
    # B as the DMA moves it: dense, N:M compressed, or a block-pruned B's BSR image (the MAC
    # block still multiplies its zero blocks: the GLB's read port expands them)
    sizes = {"A": a.size * ELEMENT_BYTES,
             "B": nm_bytes(b.shape[0], b.shape[1], kernel.nm) if block is None
             else bsr_bytes(b, block, ELEMENT_BYTES)}
    if sizes["A"] + sizes["B"] > chip.glb.size_bytes:
        raise CompileError(f"emit: inputs need {sizes['A'] + sizes['B']} bytes of global buffer"
                           f" but chip {chip.name} has {chip.glb.size_bytes} (tiling is not "
                           "implemented for this kernel; use a smaller problem)")
    sched = [Command("configure", kernel.name, (config_bits(kernel) + 7) // 8)]
    for name in ("A", "B"):
        sched += [Command("dma_in", name, sizes[name]), Command("load", name, sizes[name])]
    sched += [Command("launch", kernel.name), Command("wait", kernel.name),
              Command("unload", "X"), Command("dma_out", "X")]
    return Program(kernel.name, (kernel,), images, tuple(sched))
