"""Summaries for people: the terminal table and summary.md of a run, and the CPU baseline's
ratios (CPU / chip), derived from the run's summary and the CPU estimate."""

from __future__ import annotations

from typing import Any

from reports.labels import BASELINE_LABELS, FIGURE_LABELS


def baseline_summary(chip_seconds: float, chip_joules: float, cpu: Any
                     ) -> dict[str, Any]:
    """The CPU's time and energy and the chip's advantage as ratios (CPU / chip)."""
    return {
        "cpu": cpu.preset,
        "library": cpu.library,
        "seconds": cpu.seconds,
        "energy_j": cpu.energy_j,
        "bound": cpu.bound,
        "flops": cpu.flops,
        "dense_equivalent_flops": cpu.dense_equivalent_flops,
        "dram_bytes": cpu.bytes,
        "speedup": cpu.seconds / chip_seconds,
        "energy_ratio": cpu.energy_j / chip_joules,
        "edp_ratio": (cpu.seconds * cpu.energy_j) / (chip_seconds * chip_joules),
    }


def chip_roofs(chip: Any, peak_gops: float) -> dict[str, float]:
    """The chip's roofline: the compute roof (``peak_gops``: the dense MAC block's, or the
    array a GEMM ran on) and a bandwidth roof per memory level (bytes/s)."""
    hz = chip.clock.freq_mhz * 1e6
    return {"compute_ops_per_s": peak_gops * 1e9,
            "dram_bytes_per_s": chip.dram.bandwidth_gb_per_s * 1e9,
            "glb_bytes_per_s": chip.glb.array_bytes_per_cycle * hz}


def cpu_roofs(preset: Any) -> dict[str, float]:
    """The CPU preset's compute and DRAM roofs for the roofline."""
    return {"compute_ops_per_s": preset.peak_gflops * 1e9,
            "dram_bytes_per_s": preset.sustained_bandwidth_gb_per_s * 1e9}


SUMMARY_ROWS = (   # (summary key, format, unit suffix): labels from reports.labels
    ("cycles", "{:,}", ""),
    ("kernel_cycles", "{:,}", ""),
    ("firmware_cycles", "{:,}", ""),
    ("tile_kernel_cycles_sum", "{:,}", ""),
    ("compute_cycles", "{:,}", ""),
    ("seconds", "{:.3e}", " (s)"),
    ("verified", "{}", ""),
    ("effectual_ops", "{:,}", ""),
    ("skipped_ops", "{:,}", ""),
    ("gated_ops", "{:,}", ""),
    ("ineffectual_ops", "{:,}", ""),
    ("sram_read_words", "{:,}", ""),
    ("sram_write_words", "{:,}", ""),
    ("hop_count", "{:,}", ""),
    ("dram_bytes", "{:,}", ""),
    ("energy_j", "{:.3e}", " (J)"),
    ("loop_order", "{}", ""),
    ("loop_order_by", "{}", ""),
    ("formats_chosen", "{}", ""),
    ("unroll", "{0[copies]}", ""),
    ("mode", "{}", ""),
    ("objective", "{}", ""),
    ("lanes", "{:,}", ""),
    ("tiles", "{:,}", ""),
    ("tile_pipelining", "{}", ""),
)

BASELINE_ROWS = (
    ("seconds", "{:.3e}", " (s)"),
    ("energy_j", "{:.3e}", " (J)"),
    ("speedup", "{:.2f}x", ""),
    ("energy_ratio", "{:.1f}x", ""),
    ("edp_ratio", "{:.1f}x", ""),
)


def mode_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """A model layer's three priced alternatives (each product as chosen, all sparse, all
    dense): cycles, energy and EDP of the whole layer, the chosen one marked."""
    rows = []
    tiles = summary.get("tile_sample") or []
    if tiles:
        ratios = [t["cycle_ratio"] for t in tiles]
        rows.append(("tile sample on burst: analytic/burst cycles",
                     f"{min(ratios):.3f} to {max(ratios):.3f} ({len(tiles)} tiles)"))
    for name, c in (summary.get("modes") or {}).items():
        label = "products as chosen" if name == "per product" else f"all {name}"
        mark = " *" if c.get("chosen") else ""
        rows.append((f"{label}: cycles / J / EDP (J s){mark}",
                     f"{c['cycles']:,} / {c['energy_j']:.3e} / {c['edp_js']:.3e}"))
    return rows


def _unroll(unroll: dict[str, Any]) -> str:
    """The unroll line: the copies and what they take (``deal``: positions or tiles)."""
    deal = unroll.get("deal")
    return f"{unroll['copies']}" + (f" ({deal} dealt)" if deal else "")


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the terminal table, chip first, then the CPU baseline."""
    rows = [(FIGURE_LABELS[key] + unit, _unroll(summary[key]) if key == "unroll"
             else fmt.format(summary[key]))
            for key, fmt, unit in SUMMARY_ROWS
            if key in summary and not (key == "tiles" and not summary[key])]  # 0: untiled
    rows += mode_rows(summary)
    if "dram_bytes_per_s" in summary.get("roofs", {}):      # the chip's DRAM, in its own GB/s
        rows.append((FIGURE_LABELS["dram_bytes_per_s"] + " (GB/s)",
                     f"{summary['roofs']['dram_bytes_per_s'] / 1e9:,.1f}"))
    base = summary.get("baseline")
    if base:
        for key, fmt, unit in BASELINE_ROWS:
            label = BASELINE_LABELS[key] + unit
            if key == "seconds":
                label += f" [{base['cpu']}, {base.get('library') or '?'}]"
            rows.append((label, fmt.format(base[key])))
    return rows
