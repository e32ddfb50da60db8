"""CPU presets: what the baseline model knows of a CPU, loaded from ``configs/cpus/*.yaml``.

A preset is a frozen :class:`CpuPreset` (clock, cores, FLOP/cycle, memory bandwidth, LLC,
power, DRAM energy) with per-kernel instruction-issue costs (:class:`SparseCost`) and the dense
GEMM's efficiency (:class:`DenseCost`). Files are read through :func:`isa.schema.load_dataclass`
(unknown keys rejected, one ConfigError listing every problem, semantic checks included); a bare
name (``xeon-12c``) is looked up in ``configs/cpus`` of the current directory, then of this
source tree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from isa.configpath import config_search_path, list_named_files
from isa.schema import Problem, load_dataclass, resolve_named_file
from simulator.config import read_yaml

__all__ = [
    "DEFAULT_CPU_ROOT",
    "CpuPreset",
    "DenseCost",
    "MergeCost",
    "SparseCost",
    "SpgemmCost",
    "SpmmCost",
    "SpmvCost",
    "cpu_preset_from_dict",
    "list_cpu_presets",
    "load_cpu_preset",
    "resolve_cpu_preset",
]

DEFAULT_CPU_ROOT = Path("configs/cpus")
"""Where bare preset names are looked up, relative to the current directory."""


def load_cpu_preset(name_or_path: str | Path, root: str | Path = DEFAULT_CPU_ROOT) -> CpuPreset:
    """Read and validate a preset file (or a bare name looked up in ``configs/cpus``)."""
    file = resolve_cpu_preset(name_or_path, root)
    where = str(file)
    data = read_yaml(file, where=where)
    return cpu_preset_from_dict(data, where=where)


def resolve_cpu_preset(name_or_path: str | Path, root: str | Path = DEFAULT_CPU_ROOT) -> Path:
    """The YAML file of a preset given as a path or a bare name (``xeon-12c``)."""
    return resolve_named_file(name_or_path, _search_path(root), "CPU preset")


def list_cpu_presets(root: str | Path = DEFAULT_CPU_ROOT) -> list[tuple[str, Path]]:
    """(name, path) of every preset file found by bare-name lookup, sorted by name."""
    return list_named_files(_search_path(root))


def cpu_preset_from_dict(data: Any, *, where: str) -> CpuPreset:
    """Validate parsed YAML into a CpuPreset; one ConfigError listing every problem."""
    return load_dataclass(CpuPreset, data, where=where)


@dataclass(frozen=True)
class CpuPreset:
    """A CPU as the baseline model sees it; loaded from ``configs/cpus/*.yaml``.

    Rates are per core at ``freq_ghz``; ``peak_gflops`` is derived. Bytes are counted with
    ``value_bytes`` per value and ``index_bytes`` per coordinate, whatever dtype the layer's
    tensors have (the CPU library's data types, e.g. MKL fp32 with int32 indices).

    Two libraries run the sparse kernels, as in Onyx's baselines: ``sparse`` holds the vendor
    library's costs (MKL: vectorised, on ``sparse.cores_used`` threads), ``taco`` those of
    TACO-generated C (scalar, its own core count). ``library`` says which one the preset runs
    where a kernel exists in both; a kernel only one library offers runs on that one.
    Power: every core a call runs on draws ``core_power_w``, and the uncore (L3, mesh, memory
    controller, I/O) draws ``uncore_power_w`` while the call runs; idle cores draw nothing.
    """

    name: str
    description: str
    cores: int
    freq_ghz: float
    fp32_flops_per_cycle_per_core: float
    """Peak fp32 FLOP per cycle per core with the widest vectors (an FMA counts 2)."""
    mem_bandwidth_gb_per_s: float
    """Peak DRAM bandwidth available to the cores in use, GB/s (1e9 bytes/s)."""
    stream_efficiency: float
    """Fraction of mem_bandwidth_gb_per_s a streaming kernel sustains (0, 1]."""
    llc_bytes: int
    """Last-level cache capacity, bytes."""
    core_power_w: float
    """Active power of one core running a kernel (its share of the package), watts."""
    uncore_power_w: float
    """Power of the uncore (L3, mesh, memory controller, I/O) while a kernel runs, watts."""
    dram_pj_per_bit: float
    """DRAM access energy including I/O, picojoules per bit transferred."""
    dense: DenseCost
    sparse: SparseCost
    """The vendor library's sparse kernels (MKL)."""
    taco: SparseCost
    """TACO-generated code for the same kernels (and those the vendor library lacks)."""
    library: Literal["mkl", "taco"] = "mkl"
    """The library this preset runs where a kernel exists in both."""
    fork_join_us: float = 0.0
    """One fork/join of MKL's thread team, microseconds: a call MKL runs on one thread (when
    that is faster, MKL_DYNAMIC) saves it once per parallel phase."""
    cache_line_bytes: int = 64
    value_bytes: int = 4
    index_bytes: int = 4
    energy_model: Literal["active_power", "per_instruction"] = "active_power"
    energy_per_instruction_pj: float | None = None
    instructions_per_cycle: float | None = None
    """Sustained instructions per core-cycle (converts busy cycles to instructions)."""

    @property
    def peak_gflops(self) -> float:
        """Peak fp32 GFLOP/s of all cores."""
        return self.cores * self.freq_ghz * self.fp32_flops_per_cycle_per_core

    @property
    def package_power_w(self) -> float:
        """Power with every core active: cores x core_power_w + uncore_power_w, watts."""
        return self.cores * self.core_power_w + self.uncore_power_w

    @property
    def sustained_bandwidth_gb_per_s(self) -> float:
        """The streaming bandwidth the memory roof uses, GB/s."""
        return self.mem_bandwidth_gb_per_s * self.stream_efficiency

    def library_cost(self, library: str) -> SparseCost:
        """The sparse costs of ``library`` (``mkl`` or ``taco``)."""
        return self.taco if library == "taco" else self.sparse

    def problems(self) -> list[Problem]:
        """Semantic checks, reported with the loader's type errors."""
        out: list[Problem] = []
        if self.cores < 1:
            out.append(("cores", f"must be >= 1, got {self.cores}"))
        for name in ("freq_ghz", "fp32_flops_per_cycle_per_core", "mem_bandwidth_gb_per_s",
                     "llc_bytes", "cache_line_bytes", "core_power_w"):
            _positive(out, name, getattr(self, name))
        _fraction(out, "stream_efficiency", self.stream_efficiency)
        _non_negative(out, "dram_pj_per_bit", self.dram_pj_per_bit)
        _non_negative(out, "uncore_power_w", self.uncore_power_w)
        _non_negative(out, "fork_join_us", self.fork_join_us)
        for name in ("value_bytes", "index_bytes"):
            if getattr(self, name) not in (1, 2, 4, 8):
                out.append((name, f"must be 1, 2, 4 or 8, got {getattr(self, name)}"))
        for lib in ("sparse", "taco"):
            cost: SparseCost = getattr(self, lib)
            if cost.cores_used > self.cores:
                out.append((f"{lib}.cores_used",
                            f"must be <= cores ({self.cores}), got {cost.cores_used}"))
            flops = cost.fp32_flops_per_cycle_per_core
            if flops is not None and flops > self.fp32_flops_per_cycle_per_core:
                out.append((f"{lib}.fp32_flops_per_cycle_per_core", f"must be <= "
                            f"fp32_flops_per_cycle_per_core ({self.fp32_flops_per_cycle_per_core})"
                            f", got {flops}"))
        if self.energy_model == "per_instruction":
            for name in ("energy_per_instruction_pj", "instructions_per_cycle"):
                if getattr(self, name) is None:
                    out.append((name, "required when energy_model is per_instruction"))
        for name in ("energy_per_instruction_pj", "instructions_per_cycle"):
            value = getattr(self, name)
            if value is not None:
                _positive(out, name, value)
        return out


@dataclass(frozen=True)
class SparseCost:
    """One library's instruction-issue costs of the sparse kernels and how they parallelise."""

    cores_used: int
    """Cores the library runs on (rows split across them)."""
    parallel_efficiency: float
    """Fraction of linear speed-up over cores_used (load imbalance, synchronisation) (0, 1]."""
    spmv: SpmvCost
    spmm: SpmmCost
    spgemm: SpgemmCost
    merge: MergeCost
    fp32_flops_per_cycle_per_core: float | None = None
    """The compute roof of this library's code, FLOP per cycle per core (None: the preset's
    vector peak; scalar code without FMA reaches far less)."""

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        if self.cores_used < 1:
            out.append(("cores_used", f"must be >= 1, got {self.cores_used}"))
        _fraction(out, "parallel_efficiency", self.parallel_efficiency)
        if self.fp32_flops_per_cycle_per_core is not None:
            _positive(out, "fp32_flops_per_cycle_per_core", self.fp32_flops_per_cycle_per_core)
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


class _IssueCost:
    """A per-kernel instruction-issue cost: every field is a non-negative rate or overhead."""

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _non_negative(out, f.name, getattr(self, f.name))
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


def _search_path(root: str | Path) -> list[Path]:
    return config_search_path("cpus", root)


def _positive(problems: list[Problem], path: str, value: float) -> None:
    if not value > 0:
        problems.append((path, f"must be > 0, got {value}"))


def _non_negative(problems: list[Problem], path: str, value: float) -> None:
    if not value >= 0:
        problems.append((path, f"must be >= 0, got {value}"))


def _fraction(problems: list[Problem], path: str, value: float) -> None:
    if not 0 < value <= 1:
        problems.append((path, f"must be in (0, 1], got {value}"))
