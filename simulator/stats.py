"""Statistics: raw counters with a unit and a description, in a flat dotted namespace.

Every counter is declared with ``stat(unit, desc)`` and is always present. Ratios are
derived in reports, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def stat(unit: str, desc: str) -> Any:
    """Declare a counter field (default 0) with its unit and one-sentence description."""
    return field(default=0, metadata={"unit": unit, "desc": desc})


@dataclass
class UnitStats:
    """Counters of one configured tile (one SAM primitive)."""

    busy_cycles: int = stat("cycles", "Cycles in which the unit performed a step.")
    first_cycle: int = stat("cycle", "Kernel cycle of the unit's first step.")
    last_cycle: int = stat("cycle", "Kernel cycle of the unit's last step.")
    tokens_in_count: int = stat("tokens", "Tokens consumed from all input ports.")
    tokens_out_count: int = stat("tokens", "Tokens emitted on all output ports.")
    sram_read_words: int = stat("words", "64-bit SRAM words read (one-word cache misses).")
    sram_write_words: int = stat("words", "64-bit SRAM words written.")
    effectual_op_count: int = stat("ops", "ALU ops performed with all operands effectual.")
    ineffectual_op_count: int = stat("ops", "ALU ops performed at full energy on a zero "
                                     "operand (zero policy none).")
    gated_op_count: int = stat("ops", "ALU ops issued on a zero operand but clock-gated "
                               "(zero policy gate): cost a cycle, save energy.")
    skipped_zero_count: int = stat("elements", "Zero operand values dropped by a zero-"
                                   "skipping scanner (zero policy skip): no downstream work.")
    match_count: int = stat("coords", "Coordinates common to both inputs of a joiner.")
    add_count: int = stat("ops", "Accumulations performed by a reducer.")
    dropped_count: int = stat("coords", "Outer coordinates dropped for an empty inner fiber.")


ACTIONS = {f.name for f in fields(UnitStats)} - {
    "busy_cycles", "first_cycle", "last_cycle", "tokens_in_count", "tokens_out_count"}


@dataclass
class ChannelStats:
    """Counters of one stream routed over the interconnect."""

    token_count: int = stat("tokens", "Tokens carried by the stream.")
    hop_count: int = stat("word-hops", "Tokens times links crossed (interconnect traffic).")


@dataclass
class MemoryStats:
    """Counters of DRAM, the global buffer and the GLB<->array links."""

    dram_read_bytes: int = stat("bytes", "Bytes read from DRAM into the GLB.")
    dram_write_bytes: int = stat("bytes", "Bytes written from the GLB to DRAM.")
    glb_read_bytes: int = stat("bytes", "Bytes read from the GLB towards the array.")
    glb_write_bytes: int = stat("bytes", "Bytes written into the GLB.")
    link_bytes: int = stat("bytes", "Bytes moved over the GLB<->array links, both directions.")
    dram_busy_cycles: int = stat("cycles", "Cycles DRAM spent transferring.")
    link_busy_cycles: int = stat("cycles", "Cycles the GLB<->array links spent transferring.")


@dataclass
class ControllerStats:
    """Counters of the controller (the firmware running the schedule)."""

    config_bits: int = stat("bits", "Configuration bits loaded into the array.")
    config_cycles: int = stat("cycles", "Cycles spent loading the configuration.")
    launch_count: int = stat("launches", "Kernel launches.")
    kernel_cycles: int = stat("cycles", "Cycles from kernel launch to its last writer's Done.")
    dma_in_cycles: int = stat("cycles", "Cycles spent moving inputs DRAM->GLB->array.")
    dma_out_cycles: int = stat("cycles", "Cycles spent moving outputs array->GLB->DRAM.")
    firmware_cycles: int = stat("cycles", "Cycles the firmware processor (M3) was busy: DMA "
                                "descriptors, kernel calls, partial-output merges.")
    tile_count: int = stat("tiles", "Tile calls of a tiled kernel (0: the kernel ran untiled).")
    skipped_tile_count: int = stat("tiles", "Tiles not called because an operand was empty.")
    merge_add_count: int = stat("ops", "Adds of partial output tiles merged in the GLB by the "
                                "firmware (a contracted index split into tiles).")


def counters(obj: Any) -> dict[str, dict[str, Any]]:
    """The counters (fields declared with ``stat``) of ``obj`` as ``name -> {value, unit,
    desc}``; other fields are skipped."""
    return {f.name: {"value": getattr(obj, f.name), "unit": f.metadata["unit"],
                     "desc": f.metadata["desc"]}
            for f in fields(obj) if "unit" in f.metadata}


def flatten(prefix: str, obj: Any, out: dict[str, dict[str, Any]]) -> None:
    """Add ``obj``'s counters to ``out`` as ``prefix.field -> {value, unit, desc}``."""
    for name, entry in counters(obj).items():
        out[f"{prefix}.{name}"] = entry
