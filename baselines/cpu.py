"""The CPU baseline: a roofline model with efficiency factors, and host calibration.

The model runs the same layer object as the chip, as an MKL/TACO-class CPU library would run
it. Each supported layer kind has one *work function*, registered by layer name with
``@cpu_kernel("name")``, that counts the kernel's work from the actual tensors (nonzeros, rows,
Gustavson products, output nonzeros computed with scipy) into a :class:`KernelWork`. One
generic roofline, :func:`estimate_work`, turns the work into time and energy:

    t_compute = executed_flops / (cores_used * f * flops_per_cycle_per_core * compute_eff)
    t_memory  = dram_bytes / (mem_bandwidth * stream_efficiency)
    t_issue   = issue_cycles / (cores_used * f * parallel_efficiency)
    seconds   = max(t_compute, t_memory, t_issue) + call_overhead      bound = the argmax
    energy    = package_power * seconds + dram_bytes * 8 * dram_pj_per_bit
                (energy_model "per_instruction": idle_power * seconds
                 + instructions * energy_per_instruction + the same DRAM term, where
                 instructions = busy core-cycles * instructions_per_cycle)

``issue_cycles`` is the sparse kernels' instruction-issue ceiling, in one-core cycles:

    CSR SpMV      cycles_per_nnz * nnz(B) + cycles_per_row * M
    CSR SpMM      cycles_per_mac * nnz(B) * N + cycles_per_output * M * N
    SpGEMM        cycles_per_product * P + cycles_per_left_nnz * nnz(B)
                  + cycles_per_output_nnz * nnz(X) + cycles_per_row * M
                  + cycles_per_branch_miss * 2 P q (1 - q),   q = nnz(X) / P
    CSR merge     cycles_per_input_nnz * (nnz(B) + nnz(C)) + cycles_per_output_nnz * nnz(X)
                  + cycles_per_row * M

where P = sum_k nnz(B(:,k)) nnz(C(k,:)) is Gustavson's multiply-add count. Dense GEMM has no
issue term; it runs at ``gemm_efficiency`` of peak. ``dram_bytes`` is the compulsory traffic
of the CSR arrays, dense operands and output (cold caches, no write-allocate), plus capacity
misses of the operand a kernel gathers from when that operand is larger than the last-level
cache. Like any roofline, the max() assumes issue and memory time overlap perfectly, which is
optimistic for one scalar core streaming from DRAM (measured on the host: an out-of-LLC SpMV
takes ~2x the prediction; in-cache kernels within ~25%).

Presets are YAML files in ``configs/cpus`` loaded through :func:`isa.schema.load_dataclass`
(one ConfigError listing every problem). :func:`calibrate_host` measures the machine it runs
on (numpy GEMM, scipy sparse kernels, streaming bandwidth) and writes a host preset.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import difflib
import json
import logging
import os
import platform
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import scipy
import scipy.sparse as sp
import yaml

from isa.schema import (
    Problem,
    load_dataclass,
    resolve_named_file,
    search_path,
)
from simulator.config import read_yaml
from workloads import WorkloadError
from workloads.base import random_sparse

__all__ = [
    "CPU_KERNELS",
    "blas_threads",
    "CpuEstimate",
    "CpuPreset",
    "DenseCost",
    "KernelWork",
    "MergeCost",
    "SparseCost",
    "SpgemmCost",
    "SpmmCost",
    "SpmvCost",
    "calibrate_host",
    "cpu_kernel",
    "cpu_preset_from_dict",
    "estimate",
    "estimate_gemm",
    "estimate_spmm",
    "estimate_work",
    "gemm_layer_work",
    "gemm_work",
    "list_cpu_presets",
    "load_cpu_preset",
    "resolve_cpu_preset",
    "spgemm_branch_misses",
    "spmm_shape_work",
    "spmm_work",
    "layer_estimate",
    "time_call",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Presets


def _positive(problems: list[Problem], path: str, value: float) -> None:
    if not value > 0:
        problems.append((path, f"must be > 0, got {value}"))


def _non_negative(problems: list[Problem], path: str, value: float) -> None:
    if not value >= 0:
        problems.append((path, f"must be >= 0, got {value}"))


def _fraction(problems: list[Problem], path: str, value: float) -> None:
    if not 0 < value <= 1:
        problems.append((path, f"must be in (0, 1], got {value}"))


class _IssueCost:
    """A per-kernel instruction-issue cost: every field is a non-negative rate or overhead."""

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _non_negative(out, f.name, getattr(self, f.name))
        return out


@dataclass(frozen=True)
class DenseCost:
    """Dense GEMM on the vector units (BLAS/MKL)."""

    gemm_efficiency: float
    """Fraction of peak fp32 FLOP/s a GEMM sustains on all cores (0, 1]."""
    call_overhead_us: float
    """Fixed cost of one call (library dispatch, thread fork/join), microseconds."""

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        _fraction(out, "gemm_efficiency", self.gemm_efficiency)
        _non_negative(out, "call_overhead_us", self.call_overhead_us)
        return out


@dataclass(frozen=True)
class SpmvCost(_IssueCost):
    """CSR sparse matrix times dense vector: one-core issue cycles."""

    cycles_per_nnz: float
    """Core cycles per stored nonzero of the matrix (load index and value, gather, FMA)."""
    cycles_per_row: float
    """Core cycles per matrix row (row-pointer loads, loop setup, the result store)."""
    call_overhead_us: float
    """Fixed cost of one call, microseconds."""


@dataclass(frozen=True)
class SpmmCost(_IssueCost):
    """CSR sparse matrix times dense matrix (N columns): one-core issue cycles."""

    cycles_per_mac: float
    """Core cycles per multiply-add (stored nonzero x dense column)."""
    cycles_per_output: float
    """Core cycles per element of the dense output (initialise and store)."""
    call_overhead_us: float
    """Fixed cost of one call, microseconds."""


@dataclass(frozen=True)
class SpgemmCost(_IssueCost):
    """Gustavson (row-by-row) sparse x sparse product with a hash or dense accumulator."""

    cycles_per_product: float
    """Core cycles per scalar multiply-add B(i,k)*C(k,j) including its accumulator update."""
    cycles_per_left_nnz: float
    """Core cycles per nonzero B(i,k): locating and starting the scan of row k of C."""
    cycles_per_output_nnz: float
    """Core cycles per output nonzero (symbolic pass, gathering/sorting the output row)."""
    cycles_per_row: float
    """Core cycles per output row (row setup, accumulator reset)."""
    cycles_per_branch_miss: float
    """Core cycles per mispredicted insert-or-accumulate branch (see spgemm_branch_misses)."""
    call_overhead_us: float
    """Fixed cost of one call, microseconds."""


@dataclass(frozen=True)
class MergeCost(_IssueCost):
    """Two-finger merge of two CSR matrices (element-wise add: union; multiply: intersection)."""

    cycles_per_input_nnz: float
    """Core cycles per stored element of either input (compare, branch, advance)."""
    cycles_per_output_nnz: float
    """Core cycles per output nonzero (compute and store value and coordinate)."""
    cycles_per_row: float
    """Core cycles per row."""
    call_overhead_us: float
    """Fixed cost of one call, microseconds."""


@dataclass(frozen=True)
class SparseCost:
    """Instruction-issue costs of the sparse kernels and how they parallelise."""

    cores_used: int
    """Cores the sparse library runs on (rows split across them)."""
    parallel_efficiency: float
    """Fraction of linear speed-up over cores_used (load imbalance, synchronisation) (0, 1]."""
    spmv: SpmvCost
    spmm: SpmmCost
    spgemm: SpgemmCost
    merge: MergeCost

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        if self.cores_used < 1:
            out.append(("cores_used", f"must be >= 1, got {self.cores_used}"))
        _fraction(out, "parallel_efficiency", self.parallel_efficiency)
        return out


@dataclass(frozen=True)
class CpuPreset:
    """A CPU as the baseline model sees it; loaded from ``configs/cpus/*.yaml``.

    Rates are per core at ``freq_ghz``; ``peak_gflops`` is derived. Bytes are counted with
    ``value_bytes`` per value and ``index_bytes`` per coordinate, whatever dtype the layer's
    tensors have (the CPU library's data types, e.g. MKL fp32 with int32 indices).
    """

    name: str
    description: str
    cores: int
    freq_ghz: float
    fp32_flops_per_cycle_per_core: float
    """Peak fp32 FLOP per cycle per core (an FMA counts 2)."""
    mem_bandwidth_gb_per_s: float
    """Peak DRAM bandwidth available to the cores in use, GB/s (1e9 bytes/s)."""
    stream_efficiency: float
    """Fraction of mem_bandwidth_gb_per_s a streaming kernel sustains (0, 1]."""
    llc_bytes: int
    """Last-level cache capacity, bytes."""
    package_power_w: float
    """Package power while running a kernel, watts."""
    dram_pj_per_bit: float
    """DRAM access energy including I/O, picojoules per bit transferred."""
    dense: DenseCost
    sparse: SparseCost
    cache_line_bytes: int = 64
    value_bytes: int = 4
    index_bytes: int = 4
    idle_power_w: float | None = None
    """Package power when idle, watts (static share in the per_instruction energy model)."""
    energy_model: Literal["package_power", "per_instruction"] = "package_power"
    energy_per_instruction_pj: float | None = None
    instructions_per_cycle: float | None = None
    """Sustained instructions per core-cycle (converts busy cycles to instructions)."""

    @property
    def peak_gflops(self) -> float:
        """Peak fp32 GFLOP/s of all cores."""
        return self.cores * self.freq_ghz * self.fp32_flops_per_cycle_per_core

    @property
    def sustained_bandwidth_gb_per_s(self) -> float:
        """The streaming bandwidth the memory roof uses, GB/s."""
        return self.mem_bandwidth_gb_per_s * self.stream_efficiency

    def problems(self) -> list[Problem]:
        """Semantic checks, reported with the loader's type errors."""
        out: list[Problem] = []
        if self.cores < 1:
            out.append(("cores", f"must be >= 1, got {self.cores}"))
        for name in ("freq_ghz", "fp32_flops_per_cycle_per_core", "mem_bandwidth_gb_per_s",
                     "llc_bytes", "cache_line_bytes", "package_power_w"):
            _positive(out, name, getattr(self, name))
        _fraction(out, "stream_efficiency", self.stream_efficiency)
        _non_negative(out, "dram_pj_per_bit", self.dram_pj_per_bit)
        for name in ("value_bytes", "index_bytes"):
            if getattr(self, name) not in (1, 2, 4, 8):
                out.append((name, f"must be 1, 2, 4 or 8, got {getattr(self, name)}"))
        if self.sparse.cores_used > self.cores:
            out.append(("sparse.cores_used",
                        f"must be <= cores ({self.cores}), got {self.sparse.cores_used}"))
        if self.idle_power_w is not None:
            _non_negative(out, "idle_power_w", self.idle_power_w)
            if self.idle_power_w > self.package_power_w:
                out.append(("idle_power_w", f"must be <= package_power_w "
                            f"({self.package_power_w}), got {self.idle_power_w}"))
        if self.energy_model == "per_instruction":
            for name in ("energy_per_instruction_pj", "instructions_per_cycle", "idle_power_w"):
                if getattr(self, name) is None:
                    out.append((name, "required when energy_model is per_instruction"))
        for name in ("energy_per_instruction_pj", "instructions_per_cycle"):
            value = getattr(self, name)
            if value is not None:
                _positive(out, name, value)
        return out


DEFAULT_CPU_ROOT = Path("configs/cpus")
"""Where bare preset names are looked up, relative to the current directory."""

_SOURCE_CPU_ROOT = Path(__file__).resolve().parents[1] / "configs" / "cpus"
"""The preset folder of this source tree: the fallback when the current directory has none."""


def cpu_preset_from_dict(data: Any, *, where: str) -> CpuPreset:
    """Validate parsed YAML into a CpuPreset; one ConfigError listing every problem."""
    return load_dataclass(CpuPreset, data, where=where)


def _search_path(root: str | Path) -> list[Path]:
    return search_path(root, _SOURCE_CPU_ROOT)


def list_cpu_presets(root: str | Path = DEFAULT_CPU_ROOT) -> list[tuple[str, Path]]:
    """(name, path) of every preset file found by bare-name lookup, sorted by name."""
    found: dict[str, Path] = {}
    for folder in _search_path(root):
        for file in sorted(folder.glob("*.yaml")):
            found.setdefault(file.stem, file)
    return sorted(found.items())


def resolve_cpu_preset(name_or_path: str | Path, root: str | Path = DEFAULT_CPU_ROOT) -> Path:
    """The YAML file of a preset given as a path or a bare name (``xeon-12c``)."""
    return resolve_named_file(name_or_path, _search_path(root), "CPU preset")


def load_cpu_preset(name_or_path: str | Path, root: str | Path = DEFAULT_CPU_ROOT) -> CpuPreset:
    """Read and validate a preset file (or a bare name looked up in ``configs/cpus``)."""
    file = resolve_cpu_preset(name_or_path, root)
    where = str(file)
    data = read_yaml(file, where=where)
    return cpu_preset_from_dict(data, where=where)


# ---------------------------------------------------------------------------------------------
# Work, estimates and the roofline


@dataclass(frozen=True)
class KernelWork:
    """What one kernel call asks of a CPU preset, counted from the tensors; before timing."""

    kernel: str
    """The algorithm, e.g. ``csr_spmv``, ``gustavson_spgemm``, ``gemm``."""
    executed_flops: float
    """Floating-point ops the CPU issues (stored zeros of a dense operand included)."""
    useful_flops: float
    """Effectual ops: every operand nonzero."""
    dense_equivalent_flops: float
    """Ops of the same layer computed densely."""
    issue_cycles: float
    """One-core cycles of the instruction-issue ceiling (0: no issue bound, e.g. GEMM)."""
    dram_bytes: dict[str, float]
    """DRAM traffic by operand (compulsory, plus ``*_capacity_misses``), bytes."""
    cores_used: int
    compute_efficiency: float
    """Fraction of peak FLOP/s the compute roof uses for this kernel."""
    parallel_efficiency: float
    """Fraction of linear speed-up of the issue ceiling over cores_used."""
    call_overhead_s: float
    counts: dict[str, float] = field(default_factory=dict)
    """Structural counts (nnz, rows, products ...) copied into the breakdown."""


Bound = Literal["compute", "memory", "issue"]


@dataclass(frozen=True)
class CpuEstimate:
    """Time and energy of one layer on one CPU preset.

    ``flops`` are useful (effectual) ops; ``bytes`` DRAM traffic; ``bound`` the roof that set
    the time. ``breakdown`` holds every term: roof times (``*_s``), traffic by operand
    (``dram_bytes_*``), energy terms (``energy_*_j``) and structural counts.
    """

    seconds: float
    energy_j: float
    flops: float
    dense_equivalent_flops: float
    bytes: float
    bound: Bound
    breakdown: dict[str, float]
    layer: str = ""
    preset: str = ""

    @property
    def edp_j_s(self) -> float:
        """Energy-delay product, joule-seconds."""
        return self.energy_j * self.seconds

    @property
    def useful_gflops_per_s(self) -> float:
        """Useful (effectual) GFLOP/s."""
        return self.flops / self.seconds / 1e9

    def __str__(self) -> str:
        return (f"{self.layer} on {self.preset}: {self.seconds * 1e6:,.2f} us, "
                f"{self.energy_j * 1e6:,.2f} uJ, {self.bound}-bound, "
                f"{self.useful_gflops_per_s:.3g} useful GFLOP/s")


def estimate_work(work: KernelWork, preset: CpuPreset, *, layer: str = "") -> CpuEstimate:
    """Time and energy of ``work`` on ``preset`` from the roofline in the module docstring."""
    hz = preset.freq_ghz * 1e9
    compute_rate = (work.cores_used * hz * preset.fp32_flops_per_cycle_per_core
                    * work.compute_efficiency)
    total_bytes = float(sum(work.dram_bytes.values()))
    times: dict[Bound, float] = {
        "compute": work.executed_flops / compute_rate,
        "memory": total_bytes / (preset.sustained_bandwidth_gb_per_s * 1e9),
        "issue": work.issue_cycles / (work.cores_used * hz * work.parallel_efficiency),
    }
    bound: Bound = max(times, key=lambda k: times[k])
    busy_s = times[bound]
    seconds = busy_s + work.call_overhead_s
    dram_j = total_bytes * 8.0 * preset.dram_pj_per_bit * 1e-12
    breakdown: dict[str, float] = {
        "compute_s": times["compute"], "memory_s": times["memory"], "issue_s": times["issue"],
        "overhead_s": work.call_overhead_s, "executed_flops": work.executed_flops,
        "issue_cycles": work.issue_cycles, "cores_used": float(work.cores_used),
    }
    breakdown |= {f"dram_bytes_{k}": float(v) for k, v in work.dram_bytes.items()}
    if preset.energy_model == "package_power":
        core_j = preset.package_power_w * seconds
        breakdown["energy_package_j"] = core_j
    else:
        assert preset.idle_power_w is not None and preset.instructions_per_cycle is not None
        assert preset.energy_per_instruction_pj is not None
        instructions = busy_s * hz * work.cores_used * preset.instructions_per_cycle
        static_j = preset.idle_power_w * seconds
        instr_j = instructions * preset.energy_per_instruction_pj * 1e-12
        core_j = static_j + instr_j
        breakdown |= {"instructions": instructions, "energy_static_j": static_j,
                      "energy_instructions_j": instr_j}
    breakdown["energy_dram_j"] = dram_j
    breakdown |= {k: float(v) for k, v in work.counts.items()}
    return CpuEstimate(seconds=seconds, energy_j=core_j + dram_j, flops=work.useful_flops,
                       dense_equivalent_flops=work.dense_equivalent_flops, bytes=total_bytes,
                       bound=bound, breakdown=breakdown, layer=layer or work.kernel,
                       preset=preset.name)


class LayerLike(Protocol):
    """What the CPU model reads from a layer: its kind and its tensors."""

    @property
    def name(self) -> str: ...

    @property
    def tensors(self) -> Mapping[str, Any]: ...


CpuKernel = Callable[[Any, CpuPreset], KernelWork]
CPU_KERNELS: dict[str, CpuKernel] = {}
"""Layer name -> work function; add a layer kind with ``@cpu_kernel("name")``."""


def cpu_kernel(name: str) -> Callable[[CpuKernel], CpuKernel]:
    """Register the work function of the layers named ``name``."""
    def register(fn: CpuKernel) -> CpuKernel:
        if name in CPU_KERNELS:
            raise ValueError(f"CPU kernel {name!r} is already registered")
        CPU_KERNELS[name] = fn
        return fn
    return register


def estimate(layer: LayerLike, preset: CpuPreset) -> CpuEstimate:
    """Time and energy of ``layer`` on ``preset``; WorkloadError for a layer with no model."""
    fn = CPU_KERNELS.get(layer.name)
    if fn is None:
        close = difflib.get_close_matches(layer.name, CPU_KERNELS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise WorkloadError(f"CPU baseline: no model for layer {layer.name!r}{hint}; "
                            f"supported: {', '.join(sorted(CPU_KERNELS))}")
    return estimate_work(fn(layer, preset), preset, layer=layer.name)


# ---------------------------------------------------------------------------------------------
# Counting helpers


def _matrix(layer: LayerLike, key: str) -> sp.csr_matrix:
    """Tensor ``key`` of ``layer`` as a canonical CSR matrix (stored entries are work)."""
    if key not in layer.tensors:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} missing "
                            f"(tensors: {', '.join(layer.tensors)})")
    value = layer.tensors[key]
    if sp.issparse(value) and value.ndim == 2:
        out = sp.csr_matrix(value, copy=True)
        out.sum_duplicates()
        return out
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return sp.csr_matrix(value)
    raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} must be a 2-D "
                        f"matrix, got {type(value).__name__}")


def _vector(layer: LayerLike, key: str, length: int) -> np.ndarray:
    if key not in layer.tensors:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} missing "
                            f"(tensors: {', '.join(layer.tensors)})")
    value = layer.tensors[key]
    vec = np.asarray(value.toarray() if sp.issparse(value) else value).reshape(-1)
    if vec.shape[0] != length:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} has length "
                            f"{vec.shape[0]}, expected {length}")
    return vec


def _pattern(m: sp.csr_matrix) -> sp.csr_matrix:
    """The sparsity pattern of ``m`` with value 1 at every stored entry."""
    return sp.csr_matrix((np.ones(m.nnz), m.indices, m.indptr), shape=m.shape)


def _csr_bytes(preset: CpuPreset, rows: int, nnz: float) -> float:
    """Bytes of a CSR matrix: values and column indices per nonzero, rows + 1 pointers."""
    return nnz * (preset.value_bytes + preset.index_bytes) + (rows + 1) * preset.index_bytes


def _miss_fraction(preset: CpuPreset, footprint_bytes: float) -> float:
    """Fraction of re-references to an operand that miss the LLC (0 when it fits)."""
    if footprint_bytes <= preset.llc_bytes:
        return 0.0
    return 1.0 - preset.llc_bytes / footprint_bytes


def _sparse_work(preset: CpuPreset, kernel: str, *, executed: float, useful: float,
                 dense: float, issue: float, dram: dict[str, float], overhead_us: float,
                 counts: dict[str, float]) -> KernelWork:
    return KernelWork(kernel=kernel, executed_flops=float(executed), useful_flops=float(useful),
                      dense_equivalent_flops=float(dense), issue_cycles=float(issue),
                      dram_bytes=dram, cores_used=preset.sparse.cores_used,
                      compute_efficiency=1.0,
                      parallel_efficiency=preset.sparse.parallel_efficiency,
                      call_overhead_s=overhead_us * 1e-6, counts=counts)


# ---------------------------------------------------------------------------------------------
# Kernels


@cpu_kernel("spmv")
def spmv_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """x = B c as CSR SpMV with a dense c (MKL ``mkl_sparse_s_mv``): one MAC per nonzero of B.

    Useful flops count only nonzeros of B that meet a nonzero of c.
    """
    b = _matrix(layer, "B")
    m, n = b.shape
    c = _vector(layer, "c", n)
    nnz = b.nnz
    cost = preset.sparse.spmv
    effectual = int(np.count_nonzero(c[b.indices]))
    gathers = max(0, nnz - n)
    dram = {
        "B": _csr_bytes(preset, m, nnz),
        "c": n * preset.value_bytes,
        "output": m * preset.value_bytes,
        "c_capacity_misses": gathers * preset.cache_line_bytes
        * _miss_fraction(preset, n * preset.value_bytes),
    }
    return _sparse_work(preset, "csr_spmv", executed=2 * nnz, useful=2 * effectual,
                        dense=2 * m * n, issue=cost.cycles_per_nnz * nnz + cost.cycles_per_row * m,
                        dram=dram, overhead_us=cost.call_overhead_us,
                        counts={"rows": m, "nnz_B": nnz, "nnz_c": int(np.count_nonzero(c))})


def spgemm_branch_misses(products: float, out_nnz: float) -> float:
    """Expected mispredictions of Gustavson's insert-or-accumulate branch.

    Each product either inserts a new output entry (``out_nnz`` of them) or accumulates into
    an existing one; treated as a random branch taken with q = out_nnz / products, a dynamic
    predictor mispredicts about 2 q (1 - q) of the time: few misses when nearly every product
    is new (very sparse) or nearly every one collides (dense rows), most near q = 1/2.
    """
    if products <= 0:
        return 0.0
    q = min(1.0, out_nnz / products)
    return 2.0 * products * q * (1.0 - q)


@cpu_kernel("spmspm")
def spgemm_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X = B C as Gustavson SpGEMM (MKL ``mkl_sparse_spmm``), whatever loop order the chip uses.

    Products = sum over k of nnz(B(:,k)) * nnz(C(k,:)); output nonzeros are structural
    (the pattern product), so no cancellation is assumed.
    """
    b, c = _matrix(layer, "B"), _matrix(layer, "C")
    m, k = b.shape
    if c.shape[0] != k:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: B is {m}x{k} but C is "
                            f"{c.shape[0]}x{c.shape[1]}")
    n = c.shape[1]
    products = float(np.bincount(b.indices, minlength=k).astype(np.float64)
                     @ np.diff(c.indptr).astype(np.float64))
    out_nnz = (_pattern(b) @ _pattern(c)).nnz
    cost = preset.sparse.spgemm
    c_bytes = _csr_bytes(preset, k, c.nnz)
    dram = {
        "B": _csr_bytes(preset, m, b.nnz),
        "C": c_bytes,
        "output": _csr_bytes(preset, m, out_nnz),
        "C_capacity_misses": max(0.0, products - c.nnz)
        * (preset.value_bytes + preset.index_bytes) * _miss_fraction(preset, c_bytes),
    }
    misses = spgemm_branch_misses(products, out_nnz)
    issue = (cost.cycles_per_product * products + cost.cycles_per_left_nnz * b.nnz
             + cost.cycles_per_output_nnz * out_nnz + cost.cycles_per_row * m
             + cost.cycles_per_branch_miss * misses)
    return _sparse_work(preset, "gustavson_spgemm", executed=2 * products, useful=2 * products,
                        dense=2 * m * k * n, issue=issue, dram=dram,
                        overhead_us=cost.call_overhead_us,
                        counts={"rows": m, "nnz_B": b.nnz, "nnz_C": c.nnz,
                                "products": products, "nnz_out": out_nnz,
                                "branch_misses": misses})


def _merge_work(layer: LayerLike, preset: CpuPreset, union: bool) -> KernelWork:
    b, c = _matrix(layer, "B"), _matrix(layer, "C")
    if b.shape != c.shape:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: B is {b.shape[0]}x{b.shape[1]} "
                            f"but C is {c.shape[0]}x{c.shape[1]}")
    m, n = b.shape
    pb, pc = _pattern(b), _pattern(c)
    n_union, n_inter = (pb + pc).nnz, pb.multiply(pc).nnz
    out_nnz = n_union if union else n_inter
    cost = preset.sparse.merge
    dram = {"B": _csr_bytes(preset, m, b.nnz), "C": _csr_bytes(preset, m, c.nnz),
            "output": _csr_bytes(preset, m, out_nnz)}
    issue = (cost.cycles_per_input_nnz * (b.nnz + c.nnz) + cost.cycles_per_output_nnz * out_nnz
             + cost.cycles_per_row * m)
    # One op per coordinate where both operands are stored; elsewhere a merge copies (add)
    # or skips (multiply) without arithmetic.
    return _sparse_work(preset, "csr_merge_union" if union else "csr_merge_intersection",
                        executed=n_inter, useful=n_inter, dense=m * n, issue=issue, dram=dram,
                        overhead_us=cost.call_overhead_us,
                        counts={"rows": m, "nnz_B": b.nnz, "nnz_C": c.nnz, "nnz_union": n_union,
                                "nnz_intersection": n_inter, "nnz_out": out_nnz})


@cpu_kernel("elemadd")
def elemadd_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X = B + C as a CSR union merge (MKL ``mkl_sparse_s_add``; TACO's generated merge)."""
    return _merge_work(layer, preset, union=True)


@cpu_kernel("elemmul")
def elemmul_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X = B * C as a CSR intersection merge (TACO-style; MKL has no sparse .* sparse)."""
    return _merge_work(layer, preset, union=False)


# The tensor kernels (SAM/Onyx evaluation kernels) as TACO generates them: the sparse operand
# B in CSR (a matrix) or CSF (a 3-tensor: compressed at every level), factor matrices and
# vectors dense and laid out so the innermost loop reads them contiguously, whatever format
# the chip stores them in. Flops, bytes and
# issue cycles are counted from the data. Kernels whose inner loop runs over a dense factor
# (SDDMM over k, TTM over k, MTTKRP over j) are costed with the SpMM issue rates, one
# ``cycles_per_mac`` per two flops of that loop; TTV with the SpMV rates (one product per
# nonzero, a CSF fiber plays a CSR row); the inner product with the merge rates.


def _array(layer: LayerLike, key: str, rank: int) -> np.ndarray:
    """Tensor ``key`` of ``layer`` as a dense array of ``rank`` modes (stored nonzeros are
    the sparse operands' work)."""
    if key not in layer.tensors:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} missing "
                            f"(tensors: {', '.join(layer.tensors)})")
    value = layer.tensors[key]
    arr = np.asarray(value.toarray() if sp.issparse(value) else value)
    if arr.ndim != rank or arr.dtype.kind not in "iuf":
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} must be a "
                            f"{rank}-D numeric array, got shape {arr.shape}")
    return arr


def _csf_fibers(b: np.ndarray) -> list[int]:
    """Nonempty fibers per CSF level of ``b`` (compressed at every level, modes in order):
    [#i, #(i,j), ..., nnz]."""
    nz = b != 0
    return [int(np.count_nonzero(nz.any(axis=tuple(range(d + 1, b.ndim)))))
            for d in range(b.ndim)]


def _csf_bytes(preset: CpuPreset, fibers: list[int]) -> float:
    """Bytes of a CSF tensor: a pointer array (parent fibers + 1) and a coordinate per fiber
    at every level, and a value per nonzero."""
    parents = [1] + fibers[:-1]
    return (sum(p + 1 for p in parents) + sum(fibers)) * preset.index_bytes \
        + fibers[-1] * preset.value_bytes


def _same_sizes(layer: LayerLike, sizes: dict[str, list[int]]) -> dict[str, int]:
    """One size per index variable; WorkloadError naming the tensors that disagree."""
    out: dict[str, int] = {}
    for index, found in sizes.items():
        if len(set(found)) != 1:
            raise WorkloadError(f"CPU baseline: layer {layer.name}: index {index} has sizes "
                                f"{', '.join(map(str, found))} across the tensors")
        out[index] = found[0]
    return out


@cpu_kernel("sddmm")
def sddmm_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X = B .* (C D^T) (TACO: for (i,j) in CSR B, for k: X(i,j) += B(i,j) C(i,k) D(j,k)).

    Two multiplies and one add per stored B(i,j) and k; useful ops where all three operands
    are nonzero. Rows of D are gathered once per nonzero of B.
    """
    b, c, d = _array(layer, "B", 2), _array(layer, "C", 2), _array(layer, "D", 2)
    n = _same_sizes(layer, {"i": [b.shape[0], c.shape[0]], "j": [b.shape[1], d.shape[0]],
                            "k": [c.shape[1], d.shape[1]]})
    m, cols, k = n["i"], n["j"], n["k"]
    csr = sp.csr_matrix(b)
    rows, js = np.repeat(np.arange(m), np.diff(csr.indptr)), csr.indices
    meets = float(np.count_nonzero((c[rows] != 0) & (d[js] != 0))) if csr.nnz else 0.0
    macs = 1.5 * csr.nnz * k
    vb, line = preset.value_bytes, preset.cache_line_bytes
    d_bytes = cols * k * vb
    dram = {"B": _csr_bytes(preset, m, csr.nnz), "C": float(m * k * vb), "D": float(d_bytes),
            "output": _csr_bytes(preset, m, csr.nnz),
            "D_capacity_misses": max(0, csr.nnz - cols) * (-(-k * vb // line) * line)
            * _miss_fraction(preset, d_bytes)}
    cost = preset.sparse.spmm
    return _sparse_work(preset, "taco_sddmm", executed=3.0 * csr.nnz * k, useful=3.0 * meets,
                        dense=3.0 * m * cols * k,
                        issue=cost.cycles_per_mac * macs + cost.cycles_per_output * csr.nnz,
                        dram=dram, overhead_us=cost.call_overhead_us,
                        counts={"rows": m, "nnz_B": csr.nnz, "K": k, "products": meets})


@cpu_kernel("ttv")
def ttv_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X(i,j) = sum_k B(i,j,k) c(k) (TACO: CSF B, dense c; one multiply-add per nonzero).

    Each (i,j) fiber of B is a CSR row of SpMV; the output holds one value per nonempty
    fiber. Useful ops: nonzeros of B that meet a nonzero of c.
    """
    b = _array(layer, "B", 3)
    i, j, k = b.shape
    c = _vector(layer, "c", k)
    fibers = _csf_fibers(b)
    nnz = fibers[-1]
    effectual = int(np.count_nonzero((b != 0) & (c != 0)[None, None, :]))
    cost = preset.sparse.spmv
    dram = {"B": _csf_bytes(preset, fibers), "c": float(k * preset.value_bytes),
            "output": _csr_bytes(preset, i, fibers[1])}
    return _sparse_work(preset, "taco_ttv", executed=2 * nnz, useful=2 * effectual,
                        dense=2 * i * j * k,
                        issue=cost.cycles_per_nnz * nnz + cost.cycles_per_row * fibers[1],
                        dram=dram, overhead_us=cost.call_overhead_us,
                        counts={"nnz_B": nnz, "fibers_B": fibers[1],
                                "nnz_c": int(np.count_nonzero(c))})


@cpu_kernel("ttm")
def ttm_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X(i,j,k) = sum_l B(i,j,l) C(k,l) (TACO: CSF B, dense C; for every nonzero B(i,j,l)
    a multiply-add into each of the K outputs of its fiber).

    The output is one dense K-vector per nonempty (i,j) fiber. Useful ops: pairs of a
    nonzero B(i,j,l) and a nonzero C(k,l).
    """
    b, c = _array(layer, "B", 3), _array(layer, "C", 2)
    n = _same_sizes(layer, {"l": [b.shape[2], c.shape[1]]})
    i, j, k, el = b.shape[0], b.shape[1], c.shape[0], n["l"]
    fibers = _csf_fibers(b)
    nnz = fibers[-1]
    per_l = np.count_nonzero(b != 0, axis=(0, 1)).astype(np.float64)
    useful = float(per_l @ np.count_nonzero(c != 0, axis=0).astype(np.float64))
    vb, line = preset.value_bytes, preset.cache_line_bytes
    c_bytes = k * el * vb
    cost = preset.sparse.spmm
    dram = {"B": _csf_bytes(preset, fibers), "C": float(c_bytes),
            "output": _csr_bytes(preset, i, fibers[1]) + fibers[1] * k * vb,
            "C_capacity_misses": max(0, nnz - el) * (-(-k * vb // line) * line)
            * _miss_fraction(preset, c_bytes)}
    return _sparse_work(preset, "taco_ttm", executed=2.0 * nnz * k, useful=2.0 * useful,
                        dense=2.0 * i * j * k * el,
                        issue=cost.cycles_per_mac * nnz * k
                        + cost.cycles_per_output * fibers[1] * k,
                        dram=dram, overhead_us=cost.call_overhead_us,
                        counts={"nnz_B": nnz, "fibers_B": fibers[1], "K": k,
                                "products": useful})


@cpu_kernel("innerprod")
def innerprod_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """x = sum_ijk B(i,j,k) C(i,j,k) (TACO: two CSF tensors co-iterated level by level).

    A multiply and an add per coordinate both store; the merge cost counts the stored
    elements of both and one row cost per (i,j) fiber of either.
    """
    b, c = _array(layer, "B", 3), _array(layer, "C", 3)
    if b.shape != c.shape:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: B is {b.shape} but C is "
                            f"{c.shape}")
    i, j, k = b.shape
    fb, fc = _csf_fibers(b), _csf_fibers(c)
    both = int(np.count_nonzero((b != 0) & (c != 0)))
    rows = int(np.count_nonzero(((b != 0) | (c != 0)).any(axis=2)))
    cost = preset.sparse.merge
    dram = {"B": _csf_bytes(preset, fb), "C": _csf_bytes(preset, fc),
            "output": float(preset.value_bytes)}
    return _sparse_work(preset, "taco_innerprod", executed=2 * both, useful=2 * both,
                        dense=2 * i * j * k,
                        issue=cost.cycles_per_input_nnz * (fb[-1] + fc[-1])
                        + cost.cycles_per_output_nnz * both + cost.cycles_per_row * rows,
                        dram=dram, overhead_us=cost.call_overhead_us,
                        counts={"nnz_B": fb[-1], "nnz_C": fc[-1], "nnz_intersection": both,
                                "fibers_union": rows})


@cpu_kernel("mttkrp")
def mttkrp_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X(i,j) = sum_kl B(i,k,l) C(j,k) D(j,l) (TACO: CSF B, dense C and D; for every nonzero
    B(i,k,l) and every j, two multiplies and an add into X(i,j)).

    The output is dense in j for every nonempty i slice. Useful ops: the (i,k,l,j) where
    B(i,k,l), C(j,k) and D(j,l) are all nonzero.
    """
    b, c, d = _array(layer, "B", 3), _array(layer, "C", 2), _array(layer, "D", 2)
    n = _same_sizes(layer, {"j": [c.shape[0], d.shape[0]], "k": [b.shape[1], c.shape[1]],
                            "l": [b.shape[2], d.shape[1]]})
    i, rank, k, el = b.shape[0], n["j"], n["k"], n["l"]
    fibers = _csf_fibers(b)
    nnz = fibers[-1]
    pair = (c != 0).astype(np.float64).T @ (d != 0).astype(np.float64)   # K x L: j that meet
    useful = float(np.count_nonzero(b != 0, axis=0).astype(np.float64).ravel()
                   @ pair.ravel())
    vb, line = preset.value_bytes, preset.cache_line_bytes
    factors = (k + el) * rank * vb
    cost = preset.sparse.spmm
    dram = {"B": _csf_bytes(preset, fibers), "C": float(k * rank * vb),
            "D": float(el * rank * vb), "output": float(fibers[0] * rank * vb),
            "factor_capacity_misses": max(0, 2 * nnz - k - el) * (-(-rank * vb // line) * line)
            * _miss_fraction(preset, factors)}
    return _sparse_work(preset, "taco_mttkrp", executed=3.0 * nnz * rank, useful=3.0 * useful,
                        dense=3.0 * i * rank * k * el,
                        issue=cost.cycles_per_mac * 1.5 * nnz * rank
                        + cost.cycles_per_output * fibers[0] * rank,
                        dram=dram, overhead_us=cost.call_overhead_us,
                        counts={"nnz_B": nnz, "slices_B": fibers[0], "J": rank,
                                "products": useful})


def gemm_work(m: int, n: int, k: int, preset: CpuPreset) -> KernelWork:
    """Dense GEMM X(M,N) = A(M,K) B(K,N) on all cores at ``dense.gemm_efficiency`` of peak.

    Traffic is compulsory: each operand and the output once (blocked GEMM keeps its re-reads
    in cache for the sizes that matter here).
    """
    for label, size in (("M", m), ("N", n), ("K", k)):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise WorkloadError(f"CPU baseline: gemm: {label} must be a positive int, "
                                f"got {size!r}")
    flops = 2.0 * m * n * k
    vb = preset.value_bytes
    return KernelWork(kernel="gemm", executed_flops=flops, useful_flops=flops,
                      dense_equivalent_flops=flops, issue_cycles=0.0,
                      dram_bytes={"A": float(m * k * vb), "B": float(k * n * vb),
                                  "output": float(m * n * vb)},
                      cores_used=preset.cores, compute_efficiency=preset.dense.gemm_efficiency,
                      parallel_efficiency=1.0,
                      call_overhead_s=preset.dense.call_overhead_us * 1e-6,
                      counts={"M": m, "N": n, "K": k})


@cpu_kernel("gemm")
def gemm_layer_work(layer: LayerLike, preset: CpuPreset) -> KernelWork:
    """X = A B as a dense BLAS GEMM (MKL ``sgemm``): :func:`gemm_work` of the operands' shapes.

    A dense library issues every MAC, so zeros of A and N:M-pruned weights of B save nothing.
    """
    a, b = layer.tensors.get("A"), layer.tensors.get("B")
    if a is None or b is None or len(a.shape) != 2 or len(b.shape) != 2:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: expected 2-D tensors A and B")
    (m, k), (k_b, n) = a.shape, b.shape
    if k != k_b:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: A is {m}x{k} but B is "
                            f"{k_b}x{n}")
    return gemm_work(int(m), int(n), int(k), preset)


def estimate_gemm(m: int, n: int, k: int, preset: CpuPreset) -> CpuEstimate:
    """Time and energy of a dense (M,K) x (K,N) GEMM on ``preset``."""
    return estimate_work(gemm_work(m, n, k, preset), preset, layer="gemm")


def spmm_work(b: Any, n_cols: int, preset: CpuPreset) -> KernelWork:
    """CSR B (M,K) times a dense (K, n_cols) matrix (MKL ``mkl_sparse_s_mm``).

    The dense operand's rows are gathered once per nonzero; when it exceeds the LLC those
    gathers miss at the capacity rate.
    """
    if not isinstance(n_cols, (int, np.integer)) or n_cols < 1:
        raise WorkloadError(f"CPU baseline: spmm: n_cols must be a positive int, got {n_cols!r}")
    csr = sp.csr_matrix(b, copy=True)
    csr.sum_duplicates()
    m, k = csr.shape
    return spmm_shape_work(m, k, csr.nnz, n_cols, preset)


def spmm_shape_work(m: int, k: int, nnz: int, n_cols: int, preset: CpuPreset) -> KernelWork:
    """:func:`spmm_work` from the CSR operand's shape (M, K) and nonzero count alone."""
    macs = float(nnz) * n_cols
    cost = preset.sparse.spmm
    vb, line = preset.value_bytes, preset.cache_line_bytes
    row_bytes = -(-n_cols * vb // line) * line
    dense_bytes = k * n_cols * vb
    dram = {"B": _csr_bytes(preset, m, nnz), "dense": float(dense_bytes),
            "output": float(m * n_cols * vb),
            "dense_capacity_misses": max(0, nnz - k) * row_bytes
            * _miss_fraction(preset, dense_bytes)}
    return _sparse_work(preset, "csr_spmm", executed=2 * macs, useful=2 * macs,
                        dense=2.0 * m * k * n_cols,
                        issue=cost.cycles_per_mac * macs + cost.cycles_per_output * m * n_cols,
                        dram=dram, overhead_us=cost.call_overhead_us,
                        counts={"rows": m, "nnz_B": nnz, "n_cols": n_cols, "macs": macs})


def estimate_spmm(b: Any, n_cols: int, preset: CpuPreset) -> CpuEstimate:
    """Time and energy of CSR ``b`` times a dense matrix with ``n_cols`` columns."""
    return estimate_work(spmm_work(b, n_cols, preset), preset, layer="spmm")


def layer_estimate(products: list[Mapping[str, Any]], preset: CpuPreset, *, layer: str,
                   moe_pairs: int = 0, d_model: int = 0, elementwise_ops: int = 0
                   ) -> CpuEstimate:
    """A model layer (MoE, FFN, linear) as a CPU library runs it: one call per matrix
    product, in sequence (times and energies add).

    Each product ``Y (m x n) = A (m x k) W^T`` with ``w_nnz`` weight nonzeros is a dense
    GEMM (:func:`gemm_work`) when W is dense, else CSR W times the dense activations
    (:func:`spmm_shape_work`, MKL ``mkl_sparse_s_mm``): a CPU library does not skip zero
    activations, so their sparsity saves nothing here. An MoE layer adds the gather and
    scatter of its ``moe_pairs`` routed token rows (d_model values each, read and written
    once) as memory traffic, and its ``elementwise_ops`` (activations, gating, combine) at
    the compute roof.
    """
    ests: list[CpuEstimate] = []
    breakdown: dict[str, float] = {"calls": 0.0}
    for p in products:
        m, k, n, nnz = int(p["m"]), int(p["k"]), int(p["n"]), int(p["w_nnz"])
        if m == 0 or k == 0 or n == 0:
            continue
        work = gemm_work(m, n, k, preset) if nnz >= k * n else \
            spmm_shape_work(n, k, nnz, m, preset)
        ests.append(estimate_work(work, preset, layer=layer))
        breakdown["calls"] += 1
        key = f"{ests[-1].bound}_bound_calls"
        breakdown[key] = breakdown.get(key, 0) + 1
    extra_bytes = 2.0 * moe_pairs * d_model * preset.value_bytes
    if extra_bytes or elementwise_ops:
        work = KernelWork(kernel="moe_gather_scatter", executed_flops=float(elementwise_ops),
                          useful_flops=float(elementwise_ops),
                          dense_equivalent_flops=float(elementwise_ops), issue_cycles=0.0,
                          dram_bytes={"gather_scatter": extra_bytes}, cores_used=preset.cores,
                          compute_efficiency=preset.dense.gemm_efficiency,
                          parallel_efficiency=1.0, call_overhead_s=0.0,
                          counts={"pairs": moe_pairs})
        ests.append(estimate_work(work, preset, layer=layer))
    bound: Bound = max((b for b in ("compute", "memory", "issue")),
                       key=lambda b: breakdown.get(f"{b}_bound_calls", 0))
    return CpuEstimate(seconds=sum(e.seconds for e in ests),
                       energy_j=sum(e.energy_j for e in ests),
                       flops=sum(e.flops for e in ests),
                       dense_equivalent_flops=sum(e.dense_equivalent_flops for e in ests),
                       bytes=sum(e.bytes for e in ests), bound=bound, breakdown=breakdown,
                       layer=layer, preset=preset.name)


# ---------------------------------------------------------------------------------------------
# Host calibration


def time_call(fn: Callable[[], Any], *, repeats: int = 5,
              min_seconds: float = 0.01) -> tuple[float, float]:
    """(median, best) seconds per call of ``fn`` over ``repeats`` timed repetitions.

    One warm-up call first; each repetition runs ``fn`` enough times in a row to last at least
    ``min_seconds`` (measured with ``time.perf_counter``) and divides.
    """
    def run(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start

    fn()
    number, limit = 1, 1 << 20
    elapsed = run(number)
    while elapsed < min_seconds and number < limit:
        number = min(limit, max(2 * number, int(1.2 * number * min_seconds / max(elapsed, 1e-9))))
        elapsed = run(number)
    samples = [elapsed / number] + [run(number) / number for _ in range(repeats - 1)]
    return float(np.median(samples)), float(min(samples))


@dataclass(frozen=True)
class _Plan:
    """Case lists for one calibration (full or quick)."""

    gemm: tuple[int, ...]
    spmv: tuple[tuple[int, int, float], ...]
    spmm: tuple[tuple[int, int, float, int], ...]
    spgemm: tuple[tuple[int, int, int, float], ...]
    merge: tuple[tuple[int, int, float], ...]
    stream_bytes: int
    min_seconds: float


_FULL = _Plan(
    gemm=(8, 256, 512, 1024),
    spmv=((8, 8, 0.5), (4096, 4096, 0.01), (2048, 2048, 0.05), (1024, 8192, 0.05),
          (16384, 512, 0.01)),
    spmm=((8, 8, 0.5, 4), (4096, 4096, 0.01, 32), (4096, 4096, 0.05, 32),
          (16384, 1024, 0.005, 16)),
    spgemm=((8, 8, 8, 0.5), (1024, 1024, 1024, 0.01), (1024, 1024, 1024, 0.04),
            (1024, 1024, 1024, 0.08), (2048, 2048, 2048, 0.005), (4096, 512, 256, 0.02),
            (400, 8000, 300, 0.008), (1024, 1024, 8192, 0.01)),
    merge=((8, 8, 0.5), (2048, 2048, 0.01), (2048, 2048, 0.05), (16384, 256, 0.02)),
    stream_bytes=256 << 20,
    min_seconds=0.03,
)
_QUICK = _Plan(
    gemm=(8, 128, 256),
    spmv=((8, 8, 0.5), (1024, 1024, 0.02), (4096, 256, 0.01)),
    spmm=((8, 8, 0.5, 4), (1024, 1024, 0.02, 16), (2048, 256, 0.01, 8)),
    spgemm=((8, 8, 8, 0.5), (256, 256, 256, 0.02), (512, 512, 512, 0.04), (256, 256, 256, 0.1),
            (1024, 128, 64, 0.05), (128, 2048, 128, 0.01)),
    merge=((8, 8, 0.5), (512, 512, 0.02), (4096, 64, 0.02)),
    stream_bytes=64 << 20,
    min_seconds=0.002,
)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _machine() -> dict[str, Any]:
    """What the calibration ran on (for the YAML header and the returned measurements)."""
    cpuinfo = _read_text("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return {
        "model_name": fields.get("model name", platform.processor() or "unknown"),
        "cpu_mhz": float(fields["cpu MHz"]) if "cpu MHz" in fields else None,
        "flags": fields.get("flags", "").split(),
        "cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "llc_bytes": _cache_size_bytes(3),
        "cache_line_bytes": _cache_line_bytes(),
    }


def _cache_size_bytes(level: int) -> int | None:
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")) if base.is_dir() else []:
        if _read_text(str(index / "level")).strip() == str(level):
            text = _read_text(str(index / "size")).strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            digits = text.rstrip("KMG")
            return int(digits) * scale if digits.isdigit() else None
    return None


def _cache_line_bytes() -> int | None:
    text = _read_text("/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size").strip()
    return int(text) if text.isdigit() else None


_BLAS_THREAD_SETTERS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[bool]:
    """Run the BLAS libraries in this process on ``count`` threads inside the block.

    Finds every OpenBLAS or MKL library loaded (``/proc/self/maps``; numpy and scipy may each
    bundle one) and calls its set-num-threads entry point, restoring the previous counts
    afterwards. Yields whether any was found; where none is, nothing changes.
    """
    np.dot(np.ones((2, 2)), np.ones((2, 2)))       # make sure numpy's BLAS is loaded
    paths = sorted({line.split()[-1] for line in _read_text("/proc/self/maps").splitlines()
                    if ("blas" in line.lower() or "mkl" in line.lower()) and "/" in line})
    controls: list[tuple[Any, int]] = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in _BLAS_THREAD_SETTERS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                controls.append((getattr(lib, setter), int(getattr(lib, getter)())))
                break
    for set_fn, _ in controls:
        set_fn(count)
    try:
        yield bool(controls)
    finally:
        for set_fn, previous in controls:
            set_fn(previous)


def _fit(columns: list[list[float]], seconds: list[float]) -> tuple[np.ndarray, list[float]]:
    """Non-negative least squares on relative error: seconds ~ columns @ coef.

    Returns the coefficients and each case's relative residual (model / measured - 1).
    """
    from scipy.optimize import nnls  # calibration only: keeps it off the CLI's start-up

    a = np.asarray(columns, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    weighted = a / t[:, None]
    scale = np.linalg.norm(weighted, axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(weighted / scale, np.ones_like(t))
    coef = coef / scale
    return coef, [float(x) for x in (a @ coef) / t - 1.0]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rand32(rng: np.random.Generator, shape: tuple[int, int], density: float) -> sp.csr_matrix:
    return random_sparse(rng, shape, density, "float").astype(np.float32)


def _measure_gemm(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(1)
    out = []
    for n in plan.gemm:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        med, best = time_call(lambda a=a, b=b: a @ b, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": n, "n": n, "k": n, "median_s": med, "best_s": best,
                    "gflops_median": 2.0 * n**3 / med / 1e9})
    return out


def _measure_spmv(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(2)
    out = []
    for m, n, d in plan.spmv:
        b = _rand32(rng, (m, n), d)
        x = rng.random(n, dtype=np.float32)
        med, best = time_call(lambda b=b, x=x: b @ x, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": m, "n": n, "density": d, "nnz": b.nnz, "median_s": med, "best_s": best})
    return out


def _measure_spmm(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(3)
    out = []
    for m, k, d, cols in plan.spmm:
        b = _rand32(rng, (m, k), d)
        x = rng.random((k, cols), dtype=np.float32)
        med, best = time_call(lambda b=b, x=x: b @ x, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": m, "k": k, "n_cols": cols, "density": d, "nnz": b.nnz,
                    "median_s": med, "best_s": best})
    return out


def _measure_spgemm(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(4)
    out = []
    for m, k, n, d in plan.spgemm:
        b, c = _rand32(rng, (m, k), d), _rand32(rng, (k, n), d)
        products = float(np.bincount(b.indices, minlength=k) @ np.diff(c.indptr))
        med, best = time_call(lambda b=b, c=c: b @ c, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": m, "k": k, "n": n, "density": d, "products": products,
                    "nnz_left": b.nnz,
                    "nnz_out": (_pattern(b) @ _pattern(c)).nnz, "median_s": med,
                    "best_s": best})
    return out


def _measure_merge(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(5)
    out = []
    for m, n, d in plan.merge:
        b, c = _rand32(rng, (m, n), d), _rand32(rng, (m, n), d)
        for op, fn in (("add", lambda b=b, c=c: b + c), ("mul", lambda b=b, c=c: b.multiply(c))):
            med, best = time_call(fn, repeats=repeats, min_seconds=plan.min_seconds)
            nnz_out = (b + c).nnz if op == "add" else b.multiply(c).nnz
            out.append({"op": op, "m": m, "n": n, "density": d, "nnz_in": b.nnz + c.nnz,
                        "nnz_out": nnz_out, "median_s": med, "best_s": best})
    return out


def _measure_stream(array_bytes: int, repeats: int) -> list[dict[str, Any]]:
    """Copy (2 streams) and numpy's two-pass triad (5 streams) on arrays far beyond the LLC."""
    n = array_bytes // 4
    a = np.ones(n, dtype=np.float32)
    b = np.full(n, 2.0, dtype=np.float32)
    c = np.full(n, 0.5, dtype=np.float32)

    def triad() -> None:
        np.multiply(c, np.float32(3.0), out=a)
        np.add(a, b, out=a)

    out = []
    for name, fn, streams in (("copy", lambda: np.copyto(b, a), 2), ("triad", triad, 5)):
        med, best = time_call(fn, repeats=max(repeats, 3), min_seconds=0.0)
        moved = streams * 4 * n
        out.append({"kernel": name, "array_bytes": 4 * n, "bytes_moved": moved,
                    "median_s": med, "best_s": best, "gb_per_s_median": moved / med / 1e9,
                    "gb_per_s_best": moved / best / 1e9})
    return out


def _fmt(value: float | int) -> str:
    """A YAML number with 4 significant digits that safe_load reads back as a number."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return np.format_float_positional(float(value), precision=4, unique=False,
                                      fractional=False, trim="-")


def calibrate_host(out_path: str | Path, *, repeats: int = 5,
                   quick: bool = False) -> dict[str, Any]:
    """Measure this machine, fit a host preset from the measurements, write it as YAML.

    Measurements (medians of ``repeats`` timed repetitions, ``time.perf_counter``), float32
    values, int32 indices, each operand built by ``workloads.base.random_sparse`` (seeded):

    * numpy GEMM at a few square sizes on one BLAS thread (:func:`blas_threads`; if the
      thread count cannot be set, on the default threads and ``cores`` = all CPUs) ->
      ``dense.gemm_efficiency`` (median over the sizes of measured FLOP/s over peak) and
      ``dense.call_overhead_us`` (the 8x8 case); peak = cores x OS clock x FLOP/cycle from the
      ISA flags. One thread because two-thread BLAS on a shared VM is dominated by contention
      (medians 5-10x below best), and scipy's sparse kernels are single-threaded anyway.
    * scipy CSR @ vector, CSR @ dense, CSR @ CSR, CSR + CSR and CSR .multiply CSR at several
      shapes and densities (in-cache, single-threaded as scipy runs) -> the ``sparse.*``
      cycles and call overheads, fitted jointly per kernel by non-negative least squares on
      relative error (cycles = seconds x the OS clock, so the model reproduces the seconds).
    * numpy copy and triad on arrays of 256 MiB (64 MiB quick) or 4x the LLC if larger ->
      ``mem_bandwidth_gb_per_s`` (best single repetition, uncontended capability) and
      ``stream_efficiency`` (best kernel's median / that best).

    Power cannot be measured in a VM without RAPL: the energy fields are ASSUMPTIONs. Returns
    the measurements, the fitted values and each fit's relative residuals.
    """
    plan = _QUICK if quick else _FULL
    repeats = max(1, repeats)
    machine = _machine()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    log.info("calibrating host CPU (%s, quick=%s)", machine["model_name"], quick)
    with blas_threads(1) as single_thread:
        gemm = _measure_gemm(plan, repeats)
    measured = {
        "gemm": gemm,
        "spmv": _measure_spmv(plan, repeats),
        "spmm": _measure_spmm(plan, repeats),
        "spgemm": _measure_spgemm(plan, repeats),
        "merge": _measure_merge(plan, repeats),
        "stream": _measure_stream(max(plan.stream_bytes, 4 * (machine["llc_bytes"] or 0)),
                                  repeats),
    }
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    # Clock and peak: the OS-reported clock; FLOP/cycle from the ISA flags.
    flags = set(machine["flags"])
    fpc = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    freq = (machine["cpu_mhz"] or 3000.0) / 1000.0
    cores = 1 if single_thread else int(machine["cores"])
    hz = freq * 1e9

    gemm_small = measured["gemm"][0]
    dense_overhead = gemm_small["median_s"]
    effs = [2.0 * g["m"] ** 3 / max(g["median_s"] - dense_overhead, 1e-12)
            / (cores * hz * fpc) for g in measured["gemm"][1:]]
    gemm_eff = float(np.median(effs))
    freq_raised = gemm_eff > 1.0
    if freq_raised:   # the BLAS beat the nominal peak: the clock must be higher than reported
        freq, hz, gemm_eff = freq * gemm_eff, hz * gemm_eff, 1.0

    def fit(rows: list[dict[str, Any]], features: Callable[[dict[str, Any]], list[float]]
            ) -> tuple[np.ndarray, list[float]]:
        return _fit([[1.0] + [x / hz for x in features(r)] for r in rows],
                    [r["median_s"] for r in rows])

    spmv_c, spmv_res = fit(measured["spmv"], lambda r: [r["nnz"], r["m"]])
    spmm_c, spmm_res = fit(measured["spmm"],
                           lambda r: [r["nnz"] * r["n_cols"], r["m"] * r["n_cols"]])
    spgemm_c, spgemm_res = fit(measured["spgemm"],
                               lambda r: [r["products"], r["nnz_left"], r["nnz_out"], r["m"],
                                          spgemm_branch_misses(r["products"], r["nnz_out"])])
    merge_c, merge_res = fit(measured["merge"], lambda r: [r["nnz_in"], r["nnz_out"], r["m"]])

    stream = measured["stream"]
    bw_peak = max(s["gb_per_s_best"] for s in stream)
    bw_sustained = max(s["gb_per_s_median"] for s in stream)

    fitted = {
        "cores": cores, "freq_ghz": freq, "fp32_flops_per_cycle_per_core": fpc,
        "mem_bandwidth_gb_per_s": bw_peak, "stream_efficiency": bw_sustained / bw_peak,
        "llc_bytes": machine["llc_bytes"] or 32 << 20,
        "cache_line_bytes": machine["cache_line_bytes"] or 64,
        "dense.gemm_efficiency": gemm_eff, "dense.call_overhead_us": dense_overhead * 1e6,
        "sparse.spmv.cycles_per_nnz": spmv_c[1], "sparse.spmv.cycles_per_row": spmv_c[2],
        "sparse.spmv.call_overhead_us": spmv_c[0] * 1e6,
        "sparse.spmm.cycles_per_mac": spmm_c[1], "sparse.spmm.cycles_per_output": spmm_c[2],
        "sparse.spmm.call_overhead_us": spmm_c[0] * 1e6,
        "sparse.spgemm.cycles_per_product": spgemm_c[1],
        "sparse.spgemm.cycles_per_left_nnz": spgemm_c[2],
        "sparse.spgemm.cycles_per_output_nnz": spgemm_c[3],
        "sparse.spgemm.cycles_per_row": spgemm_c[4],
        "sparse.spgemm.cycles_per_branch_miss": spgemm_c[5],
        "sparse.spgemm.call_overhead_us": spgemm_c[0] * 1e6,
        "sparse.merge.cycles_per_input_nnz": merge_c[1],
        "sparse.merge.cycles_per_output_nnz": merge_c[2],
        "sparse.merge.cycles_per_row": merge_c[3],
        "sparse.merge.call_overhead_us": merge_c[0] * 1e6,
    }
    fitted = {k: (v if isinstance(v, int) else float(v)) for k, v in fitted.items()}
    text = _host_yaml(fitted, measured, machine, when=when, repeats=repeats, quick=quick,
                      freq_raised=freq_raised, effs=effs, single_thread=single_thread)
    data = yaml.safe_load(text)
    cpu_preset_from_dict(data, where=str(out_path))    # never write a preset that fails to load
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    log.info("wrote host CPU preset %s", out)
    return {
        "when_utc": when, "quick": quick, "repeats": repeats,
        "gemm_single_thread": single_thread,
        "machine": {k: v for k, v in machine.items() if k != "flags"},
        "load_average_before": load_before, "load_average_after": load_after,
        **measured,
        "fitted": fitted,
        "fit_relative_residuals": {"spmv": spmv_res, "spmm": spmm_res, "spgemm": spgemm_res,
                                   "merge": merge_res},
        "preset": data,
    }


def _host_yaml(fitted: dict[str, Any], measured: dict[str, Any], machine: dict[str, Any], *,
               when: str, repeats: int, quick: bool, freq_raised: bool,
               effs: list[float], single_thread: bool) -> str:
    """The host preset as YAML text, with a source comment above every number."""
    lines: list[str] = []

    def comment(text: str, indent: int = 0) -> None:
        for part in textwrap.wrap(text, width=98 - indent, break_on_hyphens=False):
            lines.append(" " * indent + "# " + part)

    def put(key: str, note: str | None = None, tag: str = "") -> None:
        indent = 2 * key.count(".")
        if note:
            comment(note, indent)
        line = f"{' ' * indent}{key.rsplit('.', 1)[-1]}: {_fmt(fitted[key])}"
        lines.append(f"{line:<40}# {tag}" if tag else line)

    def sizes(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
        return ", ".join((f"{r['op']} " if "op" in r else "")
                         + "x".join(str(r[k]) for k in keys) + f"@{r['density']}"
                         for r in rows)

    gemm, spmv, spmm = measured["gemm"], measured["spmv"], measured["spmm"]
    spgemm, merge, stream = measured["spgemm"], measured["merge"], measured["stream"]
    med = f"median of {repeats} runs"
    fit_note = ("FITTED {when}: non-negative least squares on relative error over the {what} "
                "cases (cycles = seconds x freq_ghz); {med} each")
    comment(f"This host, measured by baselines.cpu.calibrate_host on {when}"
            + (" (quick mode: small cases, not a reference calibration)" if quick else "") + ".")
    comment(f"CPU: {machine['model_name']}, {machine['cores']} usable cores; numpy "
            f"{machine['numpy']}, scipy {machine['scipy']}, python {machine['python']}, "
            f"OPENBLAS_CORETYPE={machine['openblas_coretype']}, "
            f"OPENBLAS_NUM_THREADS={machine['openblas_num_threads']}.")
    comment("Timings are medians of repeated runs (time.perf_counter) on a possibly shared "
            "machine. Tags: MEASURED / FITTED (this calibration), OS-REPORTED (read from "
            "/proc or /sys), ASSUMPTION (not measurable here, with the reason).")
    n_cpus = int(machine["cores"])
    lines.append("name: host")
    scope = "one core" if single_thread else f"{n_cpus} cores"
    description = f"This machine ({machine['model_name']}, {n_cpus} CPUs): {scope}, {when}"
    lines.append(f"description: {json.dumps(description)}")
    if single_thread:
        put("cores", f"MEASURED: the calibration ran numpy's BLAS on one thread of the {n_cpus} "
            "(multi-thread BLAS on a shared VM is dominated by contention: energy_cpu.md section "
            "4) and scipy's sparse kernels are single-threaded, so this preset is one core")
    else:
        put("cores", "OS-REPORTED: CPUs this process may run on (the BLAS thread count could "
            "not be set, so the GEMM ran on the library's default threads)")
    clock = ("OS-REPORTED: /proc/cpuinfo 'cpu MHz' (a VM reports the nominal/TSC clock; the "
             "cycle counts below are seconds x this clock, so they are consistent with it)")
    if freq_raised:
        clock = (f"FITTED {when}: raised above the OS-reported {machine['cpu_mhz']} MHz to the "
                 "lowest clock at which the measured GEMM does not beat peak")
    put("freq_ghz", clock)
    put("fp32_flops_per_cycle_per_core",
        "ASSUMPTION: from the ISA flags: avx512f -> 2 x 512-bit FMA pipes (64; Zen 5 and "
        "Xeon Gold/Platinum: energy_cpu.md section 4 measured 64 on this host), avx2+fma -> 32")
    copy, triad = stream[0], stream[1]
    put("mem_bandwidth_gb_per_s",
        f"MEASURED {when}: best single repetition of numpy copy ({copy['gb_per_s_best']:.1f} "
        f"GB/s, 2 streams) and two-pass triad ({triad['gb_per_s_best']:.1f} GB/s, 5 streams) "
        f"on {copy['array_bytes'] >> 20} MiB float32 arrays")
    put("stream_efficiency",
        f"MEASURED {when}: best median ({copy['gb_per_s_median']:.1f} copy, "
        f"{triad['gb_per_s_median']:.1f} triad GB/s, {max(repeats, 3)} runs) over the best "
        "repetition above: the sustained share on this shared machine")
    put("llc_bytes", "OS-REPORTED: /sys/devices/system/cpu/cpu0/cache L3 size"
        if machine["llc_bytes"] else "ASSUMPTION: 32 MiB, /sys reported no L3")
    put("cache_line_bytes", "OS-REPORTED: /sys coherency_line_size"
        if machine["cache_line_bytes"] else "ASSUMPTION: 64-byte lines, /sys reported none")
    lines.append("value_bytes: 4           # MEASURED with float32 values (the calibration's "
                 "dtype)")
    lines.append("index_bytes: 4           # MEASURED with int32 indices (scipy's index type "
                 "at these sizes)")
    comment(f"ASSUMPTION: power is not measured (no RAPL in this VM: energy_cpu.md section "
            f"2.4). The {n_cpus}-CPU share of a Zen-class server package is charged while a "
            f"kernel runs (the VM holds all its CPUs): EPYC 9654 360 W / 96 cores = 3.75 W per "
            f"core (energy_cpu.md section 2.4) x {n_cpus}, plus 2.5 W of uncore/IO-die share.")
    lines.append(f"package_power_w: {_fmt(3.75 * n_cpus + 2.5)}")
    comment(f"ASSUMPTION: the {n_cpus}-CPU share of the 9654's ~100 W idle (energy_cpu.md "
            f"section 6): 100 / 96 x {n_cpus}.")
    lines.append(f"idle_power_w: {_fmt(100.0 / 96.0 * n_cpus)}")
    comment("energy_cpu.md section 1.5: DDR5 planning value 10-15 pJ/bit incl. I/O (the VM's "
            "DIMM type is not visible; ASSUMPTION: a DDR5 server).")
    lines.append("dram_pj_per_bit: 12")
    lines.append("dense:")
    gemm_list = ", ".join(f"{g['m']}^3 {g['gflops_median']:.0f} GFLOP/s" for g in gemm[1:])
    put("dense.gemm_efficiency",
        f"FITTED {when}: median over numpy float32 GEMM sizes ({gemm_list}; {med}; "
        f"{'one BLAS thread' if single_thread else 'default BLAS threads'}) of "
        f"(FLOP/s after the call overhead) / peak; per size: "
        + ", ".join(f"{e:.3f}" for e in effs))
    put("dense.call_overhead_us", f"MEASURED {when}: 8x8 numpy GEMM, {med}")
    lines.append("sparse:")
    lines.append("  cores_used: 1            # MEASURED: scipy's sparse kernels are "
                 "single-threaded")
    lines.append("  parallel_efficiency: 1.0 # MEASURED: one thread, no parallel loss")
    sections = (
        ("spmv", spmv, ("m", "n"), "scipy CSR @ float32 vector",
         ("cycles_per_nnz", "cycles_per_row", "call_overhead_us")),
        ("spmm", spmm, ("m", "k", "n_cols"), "scipy CSR @ dense float32 matrix",
         ("cycles_per_mac", "cycles_per_output", "call_overhead_us")),
        ("spgemm", spgemm, ("m", "k", "n"), "scipy CSR @ CSR (SMMP, Gustavson)",
         ("cycles_per_product", "cycles_per_left_nnz", "cycles_per_output_nnz", "cycles_per_row",
          "cycles_per_branch_miss", "call_overhead_us")),
        ("merge", merge, ("m", "n"), "scipy CSR + CSR and CSR .multiply CSR",
         ("cycles_per_input_nnz", "cycles_per_output_nnz", "cycles_per_row",
          "call_overhead_us")),
    )
    for name, rows, keys, what, params in sections:
        lines.append(f"  {name}:")
        comment(fit_note.format(when=when, what=f"{what} ({sizes(rows, keys)})", med=med), 4)
        for param in params:
            put(f"sparse.{name}.{param}", tag="FITTED (see the note above)")
    return "\n".join(lines) + "\n"
