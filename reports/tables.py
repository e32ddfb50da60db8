"""The run's tables: headline figures, energy by component, and one row per run for
comparisons; rendered as Markdown and CSV (the HTML report formats the same rows)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from reports.fmt import count, energy_scale, ratio, share, si
from reports.labels import BASELINE_LABELS, FIGURE_LABELS
from reports.roofline import roofline
from reports.rundata import RunData


def verification_text(summary: dict[str, Any]) -> str:
    """"yes (interpreter ok, numpy ok)" or "NO (...)": the output checks of a run. A check
    that was not run is recorded as a string saying why, shown as it is, never as ok."""
    checks = summary.get("checks") or {}

    def state(v: Any) -> str:
        if v is True:
            return "ok"
        if v is False:
            return "FAILED"
        return str(v)

    detail = ", ".join(f"{k} {state(v)}" for k, v in sorted(checks.items()))
    verdict = "yes" if summary.get("verified") else "NO"
    return f"{verdict} ({detail})" if detail else verdict


def sample_text(summary: dict[str, Any]) -> str:
    """The analytic tile sample in a phrase: how many tiles, which kinds, the cycle ratio."""
    tiles = summary.get("tile_sample") or []
    if not tiles:
        return ""
    ratios = [t["cycle_ratio"] for t in tiles]
    kinds = ", ".join(sorted({t["kind"] for t in tiles}))
    return (f"{len(tiles)} tiles ({kinds}; the slowest included) re-run on burst: values "
            f"equal, analytic/burst cycles {min(ratios):.3f} to {max(ratios):.3f}")


def check_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(check, result, reason) per output check: passed, FAILED, or skipped with why."""
    rows = []
    for name, v in sorted((summary.get("checks") or {}).items()):
        if isinstance(v, bool):
            rows.append((name, "passed" if v else "FAILED", sample_text(summary)
                         if name == "tile_sample" else ""))
        else:
            text = str(v)
            rows.append((name, "skipped", text.removeprefix("skipped: ")))
    return rows


def mode_rows(summary: dict[str, Any], limit: int = 24) -> list[tuple[str, ...]]:
    """A model layer's alternatives and products: (what, mode run, sparse cycles, sparse
    energy, dense cycles, dense energy). Whole-layer rows first (cycles of the layer), then
    per product kind (cycles alone), at most ``limit`` of them."""
    modes = summary.get("modes") or {}
    rows: list[tuple[str, ...]] = []
    if modes:
        sp, de = modes.get("sparse", {}), modes.get("dense", {})
        chosen = next((n for n, c in modes.items() if c.get("chosen")), "?")
        rows.append(("whole layer", f"{summary.get('mode', '?')} ({chosen})",
                     count(sp.get("cycles", 0)), si(sp.get("energy_j", 0.0), "J"),
                     count(de.get("cycles", 0)), si(de.get("energy_j", 0.0), "J")))
    for p in (summary.get("products") or [])[:limit]:
        run_as = ("sparse" if not p["dense_chunks"] else "dense" if not p["sparse_chunks"]
                  else f"{p['sparse_chunks']} sparse / {p['dense_chunks']} dense")
        rows.append((p["product"], run_as, count(p["sparse_cycles"]),
                     si(p["sparse_energy_j"], "J"), count(p["dense_cycles"]),
                     si(p["dense_energy_j"], "J")))
    return rows


def summary_rows(run: RunData) -> list[tuple[str, str]]:
    """(label, value) rows of the headline figures, chip first, then the CPU baseline."""
    s = run.summary
    rows: list[tuple[str, str]] = []

    def add(key: str, fmt: Any) -> None:
        if s.get(key) is not None:
            rows.append((FIGURE_LABELS[key], fmt(s[key])))

    add("cycles", count)
    add("kernel_cycles", count)
    add("firmware_cycles", count)
    add("kernel_calls", count)
    if s.get("tiles"):                  # 0: an untiled kernel, one call
        add("tiles", count)
    add("tiling", str)
    add("tile_pipelining", str)
    add("firmware_energy_j", lambda v: si(v, "J"))
    add("compute_cycles", count)
    if s.get("loop_order"):
        by = s.get("loop_order_by")
        rows.append((FIGURE_LABELS["loop_order"], f"{s['loop_order']} (" + (
            "forced by -p order" if by == "forced" else f"least {by} of the legal orders")
            + ")"))
    add("formats_chosen", str)
    if s.get("unroll"):         # compiler.unroll: copies of the kernel's graph and why
        rows.append((FIGURE_LABELS["unroll"], f"{s['unroll']['copies']} ({s['unroll']['why']})"))
    rows.append(("chip clock", f"{run.freq_mhz:g} MHz"))
    add("seconds", lambda v: si(v, "s"))
    add("verified", lambda _v: verification_text(s))
    for key in ("ops", "effectual_ops", "dense_equivalent_ops", "skipped_ops", "gated_ops",
                "ineffectual_ops", "sram_read_words", "sram_write_words", "hop_count",
                "dram_bytes", "glb_bytes"):
        add(key, count)
    dram_bw = (s.get("roofs") or {}).get("dram_bytes_per_s")
    if dram_bw:
        rows.append((FIGURE_LABELS["dram_bytes_per_s"], si(dram_bw, "B/s")))
    model = roofline(s)
    useful = model.point("useful")
    if useful is not None and useful.placeable:
        rows.append(("performance (useful ops / chip time)", si(useful.performance, "ops/s")))
        rows.append(("operational intensity (useful ops / DRAM byte)",
                     f"{useful.intensity:.3g} ops/B"))
        if model.chip.compute_ops_per_s > 0 and model.chip.bandwidths["DRAM"] > 0:
            att = model.chip.attainable(useful.intensity, "DRAM")
            share = 100 * useful.performance / att
            rows.append(("share of the attainable roofline",
                         f"{share:.2g}% of {si(att, 'ops/s')}"))
    if s.get("energy_j") is not None:
        rows.append((FIGURE_LABELS["energy_j"], si(s["energy_j"], "J")))
        if s.get("ops"):
            rows.append(("chip energy per useful op", si(s["energy_j"] / s["ops"], "J")))
    base = run.baseline
    if base:
        lib = f"{base['library']}, " if base.get("library") else ""
        rows += [("CPU baseline", f"{base.get('cpu', '?')} ({lib}{base.get('bound', '?')}-bound)"),
                 (BASELINE_LABELS["seconds"], si(base.get("seconds", math.nan), "s")),
                 (BASELINE_LABELS["energy_j"], si(base.get("energy_j", math.nan), "J"))]
        rows += [(BASELINE_LABELS[key], ratio(base.get(key, math.nan)))
                 for key in ("speedup", "energy_ratio", "edp_ratio")]
    else:
        rows.append(("CPU baseline", "none (sieve run --baseline CPU adds one)"))
    return rows


def energy_rows(run: RunData) -> tuple[str, list[tuple[str, str, str]]]:
    """The energy unit and (component, energy, share) rows, largest first, with a total."""
    e = run.energy
    total = float(e.get("total_pj", 0.0))
    comps = sorted((e.get("by_component") or {}).items(), key=lambda kv: -kv[1])
    scale, unit = energy_scale(max((pj for _, pj in comps), default=total))
    rows = [(name, f"{pj / scale:,.4g}", share(pj, total)) for name, pj in comps]
    if comps:
        rows.append(("total", f"{total / scale:,.4g}", share(total, total)))
    return unit, rows


def _md_table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def summary_markdown(run: RunData, images: Sequence[str] = ()) -> str:
    """summary.md: the headline figures with the CPU ratios, the energy breakdown, the
    pictures."""
    s = run.summary
    lines = [f"# {s.get('workload', '?')} ({s.get('kernel', '?')}) on {s.get('chip', '?')}", "",
             f"fidelity `{s.get('fidelity', '?')}`, energy table "
             f"`{s.get('energy_table', '?')}`, output verified: {verification_text(s)}", ""]
    lines += _md_table(["figure", "value"], [list(r) for r in summary_rows(run)], "lr")
    unit, erows = energy_rows(run)
    if erows:
        lines += ["", "## Energy by component", ""]
        lines += _md_table(["component", f"energy ({unit})", "share"],
                           [list(r) for r in erows], "lrr")
    if images:
        lines += ["", "## Pictures", ""] + [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


COMPARISON_COLUMNS = ("run", "chip", "workload", "kernel", "cycles", "seconds", "energy_j",
                      "cpu", "cpu_seconds", "speedup", "energy_ratio", "edp_ratio", "verified")


def comparison_row(run: RunData) -> dict[str, Any]:
    """One run's row of the comparison table (None where there is no CPU baseline)."""
    s, base = run.summary, run.baseline or {}
    spec = (run.workload.get("params") or {}).get("spec")      # a spec file names the row
    return {"run": run.name, "chip": s.get("chip"), "workload": spec or s.get("workload"),
            "kernel": s.get("kernel"), "cycles": s.get("cycles"), "seconds": s.get("seconds"),
            "energy_j": s.get("energy_j"), "cpu": base.get("cpu"),
            "cpu_seconds": base.get("seconds"), "speedup": base.get("speedup"),
            "energy_ratio": base.get("energy_ratio"), "edp_ratio": base.get("edp_ratio"),
            "verified": s.get("verified")}


def comparison_csv(runs: list[RunData]) -> str:
    """CSV with a header and one row per run, full precision, empty cells where missing."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COMPARISON_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        writer.writerow({k: "" if v is None else v for k, v in comparison_row(run).items()})
    return buf.getvalue()


COMPARISON_HEADER = ("run", "chip", "workload", "kernel", "cycles", "chip time", "chip energy",
                     "CPU", "CPU time", "speedup", "energy ratio", "EDP ratio", "verified")
"""Column titles of the comparison table (one per COMPARISON_COLUMNS entry)."""

COMPARISON_NOTE = ("Ratios are CPU / chip: above 1x the chip is faster, uses less energy, or "
                   "has the lower energy-delay product.")


def comparison_cells(runs: list[RunData]) -> list[list[str]]:
    """The comparison table's rows as formatted cells (COMPARISON_HEADER's columns), for the
    Markdown table and compare.html alike."""
    def cell(key: str, v: Any) -> str:
        if v is None:
            return "-"
        if key == "cycles":
            return count(v)
        if key in ("seconds", "cpu_seconds"):
            return si(v, "s")
        if key == "energy_j":
            return si(v, "J")
        if key in ("speedup", "energy_ratio", "edp_ratio"):
            return ratio(v)
        if key == "verified":
            return "yes" if v else "NO"
        return str(v)

    rows = [comparison_row(r) for r in runs]
    return [[cell(k, row[k]) for k in COMPARISON_COLUMNS] for row in rows]


def comparison_markdown(runs: list[RunData]) -> str:
    """A Markdown table with one row per run."""
    lines = [f"# Chip vs CPU across {len(runs)} runs", "", COMPARISON_NOTE, ""]
    lines += _md_table(list(COMPARISON_HEADER), comparison_cells(runs), "llllrrrlrrrrl")
    return "\n".join(lines) + "\n"
