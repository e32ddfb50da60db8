"""The names of a run's summary figures, one per figure, for every place that shows them: the
terminal table (reports.summary), summary.md and report.html (reports.tables). A renderer
adds only its own unit suffix where it prints a bare number."""

from __future__ import annotations

FIGURE_LABELS: dict[str, str] = {
    "cycles": "total cycles (launch, config, DMA, kernel)",
    "kernel_cycles": "kernel cycles",
    "firmware_cycles": "firmware (M3) busy cycles",
    "kernel_calls": "kernel calls",
    "tiling": "tiling (MEM-tile levels)",
    "tile_pipelining": "tile pipelining",
    "firmware_energy_j": "firmware (M3) energy",
    "tile_kernel_cycles_sum": "tile kernel cycles (sum over lanes)",
    "compute_cycles": "compute cycles (dense GEMM, SCALE-Sim v3)",
    "seconds": "chip time (whole run)",
    "verified": "output verified",
    "ops": "useful ops (ALU ops + reducer adds)",
    "effectual_ops": "effectual ALU ops",
    "dense_equivalent_ops": "dense-equivalent ops",
    "skipped_ops": "skipped ops",
    "gated_ops": "gated ops",
    "ineffectual_ops": "ineffectual ops",
    "sram_read_words": "MEM-tile SRAM reads (words)",
    "sram_write_words": "MEM-tile SRAM writes (words)",
    "hop_count": "interconnect word-hops",
    "dram_bytes": "DRAM traffic (bytes)",
    "glb_bytes": "GLB traffic (bytes)",
    "energy_j": "chip energy",
    "loop_order": "loop order",
    "loop_order_by": "loop order chosen by",
    "formats_chosen": "operand formats (chosen with the order)",
    "unroll": "unroll (graph copies)",
    "mode": "layer mode",
    "objective": "compiler.objective",
    "lanes": "lanes (copies of the unrolled tile kernel)",
    "tiles": "tiles run",
    "dram_bytes_per_s": "DRAM bandwidth",
}
"""Summary key -> label."""

BASELINE_LABELS: dict[str, str] = {
    "seconds": "CPU time",
    "energy_j": "CPU energy",
    "speedup": "speedup (CPU time / chip time)",
    "energy_ratio": "energy ratio (CPU / chip)",
    "edp_ratio": "EDP ratio (CPU / chip)",
}
"""Key of the summary's ``baseline`` -> label."""
