"""Does a workload fit the chip and this machine? Checked from its parameters, before any
tensor is built (workloads.footprint estimates the sizes).

- Global buffer: a SAM kernel's inputs are DMA'd into the GLB whole (tiling cuts only the
  MEM-tile levels, compiler.pipeline.emit_program), and every stored value takes ELEMENT_BYTES, so
  ``nonzeros x ELEMENT_BYTES`` is a lower bound of what it needs.
- Host memory: the workload's arrays (workloads.footprint) plus the compiler's and simulator's
  per-tile structures (placement grid, routing graph), TILE_HOST_BYTES per array tile.
"""

from __future__ import annotations

from typing import Any

from isa.arch import ELEMENT_BYTES, ChipConfig
from isa.errors import CompileError
from workloads.base import WorkloadError
from workloads.footprint import Footprint, available_memory_bytes, estimate

__all__ = ["TILE_HOST_BYTES", "check_fits", "chip_host_bytes"]

TILE_HOST_BYTES = 2048
"""Host bytes per array tile of the placement and routing structures. Measured: tracemalloc
peak of ``sieve.run('onyx', 'spmspm', shape 8,8,8)`` with array.cols=2000 and 8000 (16 rows):
109 MB and 295 MB, i.e. 1.9 KB per added tile."""


def chip_host_bytes(chip: ChipConfig) -> int:
    """Host memory the compiler and simulator take for the chip's tile array."""
    return chip.array.rows * chip.array.cols * TILE_HOST_BYTES


def check_fits(chip: ChipConfig, name: str, params: dict[str, Any],
               available: int | None = None) -> Footprint | None:
    """Refuse, with the figures, a workload (catalog ``name``, resolved ``params``) whose
    inputs cannot fit ``chip``'s global buffer or whose run cannot fit this machine's memory
    (``available`` bytes; default: workloads.footprint.available_memory_bytes).

    Raises: CompileError (global buffer) or WorkloadError (host memory).
    Returns: the footprint estimated (None for a workload sized by its data file).
    """
    fp = estimate(name, params)
    if fp is not None and fp.stored_elements is not None:
        need = fp.stored_elements * ELEMENT_BYTES
        if need > chip.glb.size_bytes:
            raise CompileError(
                f"emit: workload {name}: its inputs hold {fp.stored_elements:,} nonzeros, at "
                f"least {need:,} bytes of global buffer, but chip {chip.name} has "
                f"{chip.glb.size_bytes:,} (glb.tiles x glb.tile_size_bytes; a SAM kernel's "
                "inputs sit in the GLB whole, tiles cut only MEM-tile levels): use a smaller "
                "shape or density")
    have = available_memory_bytes() if available is None else available
    tiles = chip_host_bytes(chip)
    host = tiles + (fp.host_bytes if fp is not None else 0)
    if host > have:
        terms = dict(fp.terms) if fp is not None else {}
        terms[f"{chip.array.rows}x{chip.array.cols} tile array"] = tiles
        parts = ", ".join(f"{k} {_size(v)}" for k, v in terms.items() if v >= host // 100)
        raise WorkloadError(f"workload {name} on chip {chip.name}: needs about {_size(host)} "
                            f"of memory ({parts}) but this machine has {_size(have)} "
                            "available: use a smaller shape, density, tokens or array")
    return fp


def _size(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"
