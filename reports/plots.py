"""The run's pictures besides the roofline: energy breakdown, chip vs CPU, tile utilization, and
the chip-vs-CPU comparison across runs. Each function draws one PNG with matplotlib's Agg
canvas (no pyplot, no window) and returns its path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from isa.ops import TileKind
from reports.fmt import energy_scale, ratio, share, si
from reports.roofline import CHIP_COLOR, CPU_COLOR
from reports.rundata import RunData

_DPI = 110
# short opcode names for the heatmap cells (5 characters at most)
_SHORT_OP = {"scan": "scan", "repsig": "rsig", "repeat": "rep", "intersect": "isect",
             "union": "union", "array": "arr", "alu": "alu", "reduce": "red", "vreduce": "vred",
             "crddrop": "drop", "crdhold": "hold", "write_crd": "wcrd", "write_val": "wval",
             "locate": "loc"}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _title(run: RunData) -> str:
    s = run.summary
    return f"{s.get('workload', '?')} ({s.get('kernel', '?')}) on {s.get('chip', '?')}"


# --- energy -----------------------------------------------------------------------------------

def _energy_bars(ax: Any, items: list[tuple[str, float]], total_pj: float, title: str) -> None:
    """Horizontal bars, largest at the top, each labelled with its energy and share."""
    scale, unit = energy_scale(max(v for _, v in items))
    names = [k for k, _ in items]
    values = np.array([v for _, v in items]) / scale
    y = np.arange(len(items))
    ax.barh(y, values, color=CHIP_COLOR, height=0.65)
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, values.max() * 1.45)
    for yi, (v, (_, pj)) in enumerate(zip(values, items)):
        ax.text(v + values.max() * 0.015, yi, f"{si(pj * 1e-12, 'J')} ({share(pj, total_pj)})",
                va="center", fontsize=8.5)
    ax.set_xlabel(f"energy ({unit})")
    ax.set_title(title, fontsize=10.5)
    ax.grid(True, axis="x", color="0.9")
    ax.set_axisbelow(True)


def plot_energy(run: RunData, path: Path, *, top_actions: int = 10) -> Path:
    """Energy by component (all, largest first) and the top actions, with shares of the
    total, into ``path``."""
    energy = run.energy
    total = float(energy.get("total_pj", 0.0))
    comps = sorted(((k, float(v)) for k, v in (energy.get("by_component") or {}).items()
                    if v > 0), key=lambda kv: -kv[1])
    actions = sorted(((k, float(v)) for k, v in (energy.get("by_action") or {}).items()
                      if v > 0), key=lambda kv: -kv[1])
    if total <= 0 or not comps:
        fig = _figure(8, 3)
        fig.text(0.5, 0.5, f"{_title(run)}\nno energy data in this run", ha="center",
                 va="center", fontsize=12)
        fig.savefig(path)
        return path
    if len(actions) > top_actions:
        rest = actions[top_actions - 1:]
        actions = actions[:top_actions - 1] + [(f"other ({len(rest)} actions)",
                                                sum(v for _, v in rest))]
    n = max(len(comps), len(actions))
    fig = _figure(13, 1.6 + 0.36 * n)
    left, right = fig.subplots(1, 2, gridspec_kw={"wspace": 0.55})
    _energy_bars(left, comps, total, "by component")
    _energy_bars(right, actions, total, f"top {min(top_actions, len(actions))} actions")
    scale, unit = energy_scale(total)
    table = run.summary.get("energy_table", "?")
    fig.suptitle(f"Energy: {_title(run)}: {total / scale:.3g} {unit} in total "
                 f"(energy table {table})", fontsize=12)
    fig.subplots_adjust(left=0.13, right=0.97, top=1 - 0.75 / (1.6 + 0.36 * n),
                        bottom=0.55 / (1.6 + 0.36 * n))
    fig.savefig(path)
    return path


# --- chip vs CPU ------------------------------------------------------------------------------

def _verdict(what: str, value: float) -> str:
    """``value`` = CPU / chip; lower is better for time, energy and EDP."""
    if not math.isfinite(value) or value <= 0:
        return f"CPU / chip {what}: n/a"
    better = "chip better" if value >= 1 else "CPU better"
    return f"CPU / chip = {ratio(value)} ({better})"


def plot_chip_vs_cpu(run: RunData, path: Path) -> Path:
    """Time, energy and energy-delay product of the chip and (with a baseline) the CPU, as
    bars on log axes with the CPU / chip ratios; without a baseline the chip's alone."""
    s = run.summary
    base = run.baseline
    chip_t = float(s.get("seconds", 0.0))
    chip_e = float(s.get("energy_j", 0.0))
    panels = [("time", "s", chip_t, "speedup"), ("energy", "J", chip_e, "energy_ratio"),
              ("energy-delay product", "J·s", chip_t * chip_e, "edp_ratio")]
    cpu_vals = {}
    if base:
        cpu_t, cpu_e = float(base.get("seconds", 0.0)), float(base.get("energy_j", 0.0))
        cpu_vals = {"time": cpu_t, "energy": cpu_e, "energy-delay product": cpu_t * cpu_e}
    fig = _figure(12, 4.8)
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.35})
    for ax, (what, unit, chip_v, key) in zip(axes, panels):
        names, values, colors = [f"chip\n({s.get('chip', '?')})"], [chip_v], [CHIP_COLOR]
        if base:
            names.append(f"CPU\n({base.get('cpu', '?')})")
            values.append(cpu_vals[what])
            colors.append(CPU_COLOR)
        shown = [v for v in values if v > 0]
        ax.set_yscale("log")
        ax.set_ylabel(f"{what} ({unit})")
        ax.grid(True, axis="y", which="major", color="0.9")
        ax.set_axisbelow(True)
        x = np.arange(len(names))
        ax.bar(x, [v if v > 0 else np.nan for v in values], color=colors, width=0.55)
        ax.set_xticks(x, names)
        ax.set_xlim(-0.7, 1.7)
        if shown:
            lo, hi = min(shown), max(shown)
            ax.set_ylim(10 ** math.floor(math.log10(lo) - 0.6),
                        10 ** math.ceil(math.log10(hi) + 0.6))
        for xi, v in zip(x, values):
            if v > 0:
                ax.annotate(si(v, unit), (xi, v), xytext=(0, 3), textcoords="offset points",
                            ha="center", va="bottom", fontsize=9)
            else:
                ax.text(xi, 0.5, "no data", transform=ax.get_xaxis_transform(), ha="center",
                        color="0.4")
        if base:
            sub = _verdict(what, float(base.get(key, float("nan"))))
        else:
            sub = "chip only"
            ax.text(1, 0.5, "no CPU\nbaseline", transform=ax.get_xaxis_transform(),
                    ha="center", va="center", color="0.45", fontsize=11)
        ax.set_title(f"{what}\n{sub}", fontsize=10)
    head = f"Chip vs CPU: {_title(run)}"
    if not base:
        head += " (no CPU baseline: run with --baseline CPU to compare)"
    fig.suptitle(head, fontsize=12)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.8, bottom=0.13)
    fig.savefig(path)
    return path


# --- tile utilization -------------------------------------------------------------------------

def utilization_grid(run: RunData) -> tuple[np.ndarray, dict[tuple[int, int], str]]:
    """busy_cycles / kernel_cycles per tile (NaN where no unit is configured; the busiest
    unit when a tile holds several) and each used tile's opcodes."""
    array = run.array
    kernel = max(int(run.summary.get("kernel_cycles", 0)), 1)
    grid = np.full((array.rows, array.cols), np.nan)
    ops: dict[tuple[int, int], str] = {}
    for u in run.tile_units():
        if not (0 <= u.row < array.rows and 0 <= u.col < array.cols):
            continue
        cell = (u.row, u.col)
        util = u.busy_cycles / kernel
        grid[cell] = util if np.isnan(grid[cell]) else max(grid[cell], util)
        ops[cell] = "+".join(filter(None, (ops.get(cell), _SHORT_OP.get(u.opcode, u.opcode))))
    return grid, ops


def plot_utilization(run: RunData, path: Path) -> Path:
    """A heatmap of the tile grid: each used tile's busy share of the kernel, unused PE and
    MEM tiles in two greys, MEM columns outlined."""
    array = run.array
    grid, ops = utilization_grid(run)
    rows, cols = array.rows, array.cols
    cell = min(0.42, 13.0 / cols, 9.0 / rows)          # inches per tile
    left, right, top, bottom = 0.6, 1.5, 0.95, 1.05     # margins in inches
    width, height = max(7.5, cols * cell + left + right), rows * cell + top + bottom
    left = (width - cols * cell - right + left) / 2                  # centre a small grid
    fig = _figure(width, height)
    ax = fig.add_axes((left / width, bottom / height, cols * cell / width, rows * cell / height))
    cax = fig.add_axes(((left + cols * cell + 0.2) / width, bottom / height, 0.18 / width,
                        rows * cell / height))
    kinds = np.array([[1.0 if array.kind(r, c) is TileKind.MEM else 0.0 for c in range(cols)]
                      for r in range(rows)])
    unused_pe, unused_mem = "#f2f2f2", "#c8c8c8"
    ax.imshow(kinds, cmap=ListedColormap([unused_pe, unused_mem]), vmin=0, vmax=1,
              interpolation="nearest", aspect="equal")
    heat = ax.imshow(np.ma.masked_invalid(grid * 100), cmap="viridis", vmin=0, vmax=100,
                     interpolation="nearest", aspect="equal")
    ax.set_xticks(np.arange(cols - 1) + 0.5, minor=True)
    ax.set_yticks(np.arange(rows - 1) + 0.5, minor=True)
    ax.grid(True, which="minor", color="white", lw=0.8)
    ax.tick_params(which="minor", length=0)
    for c in range(cols):
        if array.kind(0, c) is TileKind.MEM:
            ax.add_patch(Rectangle((c - 0.5, -0.5), 1, rows, fill=False, ec="0.2", lw=1.3,
                                   zorder=3))
    ax.set_xticks(range(cols), [str(c) for c in range(cols)], fontsize=7)
    ax.set_yticks(range(rows), [str(r) for r in range(rows)], fontsize=7)
    ax.set_xlabel("column", fontsize=9)
    ax.set_ylabel("row", fontsize=9)
    fs = max(4.0, min(7.0, cell * 16))
    for (r, c), name in ops.items():
        util = grid[r, c]
        ax.text(c, r, f"{name}\n{100 * util:.0f}%", ha="center", va="center", fontsize=fs,
                color="black" if util > 0.6 else "white", linespacing=1.0, zorder=4)
    bar = fig.colorbar(heat, cax=cax)
    bar.set_label("busy cycles / kernel cycles (%)", fontsize=9)
    s = run.summary
    fig.suptitle(f"Tile utilization: {_title(run)}\n{len(ops)} of {rows * cols} tiles used; "
                 f"colour: busy share of the {int(s.get('kernel_cycles', 0)):,} kernel cycles",
                 fontsize=10.5, y=1 - 0.12 / height, va="top")
    fig.legend(handles=[Patch(fc=unused_pe, ec="0.6", label="unused PE tile"),
                        Patch(fc=unused_mem, ec="0.6", label="unused MEM tile"),
                        Patch(fill=False, ec="0.2", lw=1.3, label="MEM column")],
               loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False,
               fontsize=8.5)
    fig.savefig(path)
    return path


# --- across runs ------------------------------------------------------------------------------

def _run_label(run: RunData) -> str:
    """The run folder's name, one ``__``-separated part per line (``sieve compare`` names
    folders chip__workload__param=value), then what ran where if the name does not say it."""
    s = run.summary
    parts = run.name.split("__")
    what = f"{s.get('workload', '?')} on {s.get('chip', '?')}"
    if not (str(s.get("chip")) in parts and any(str(s.get("workload")).endswith(p)
                                                  or p.endswith(str(s.get("workload")))
                                                  for p in parts)):
        parts.append(what)
    return "\n".join(parts)


def _grouped(ax: Any, labels: list[str], series: list[tuple[str, str, list[float]]],
             ylabel: str, unit: str, no_baseline: list[bool]) -> None:
    """Grouped bars on a log axis (``unit`` "x" for ratios), each labelled with its value;
    where a run has no CPU baseline the missing bars' place says so."""
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    finite = [v for _, _, vs in series for v in vs if v > 0 and math.isfinite(v)]
    rotate = len(labels) > 6
    for i, (name, color, values) in enumerate(series):
        pos = x - 0.4 + width * (i + 0.5)
        shown = [v if v > 0 and math.isfinite(v) else np.nan for v in values]
        if unit == "x":    # ratios grow up or down from 1x
            ax.bar(pos, [v - 1 for v in shown], width, bottom=1.0, color=color, label=name)
        else:
            ax.bar(pos, shown, width, color=color, label=name)
        for p, v in zip(pos, values):
            if v > 0 and math.isfinite(v):
                down = unit == "x" and v < 1
                ax.annotate(ratio(v) if unit == "x" else si(v, unit), (p, v),
                            xytext=(0, -2 if down else 2), textcoords="offset points",
                            ha="center", va="top" if down else "bottom", fontsize=8,
                            rotation=90 if rotate else 0)
    cpu_only = all(name != "chip" for name, _, _ in series)
    for xi, missing in zip(x, no_baseline):
        if missing:   # where the CPU's bars would be: the whole group or its right half
            at = xi if cpu_only else xi + 0.2
            ax.text(at, 0.05, "no CPU\nbaseline", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color="0.4")
    ax.set_yscale("log")
    if finite:
        ax.set_ylim(10 ** math.floor(math.log10(min(finite)) - 0.5),
                    10 ** math.ceil(math.log10(max(finite)) + 0.8))
    ax.set_xticks(x, labels, fontsize=8.5)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def plot_comparison_runs(runs: list[RunData], path: Path) -> Path:
    """Across runs, one panel each: time and energy of the chip and the CPU (log), and the
    CPU / chip ratios (speedup, energy ratio, EDP ratio; above 1: the chip is better)."""
    labels = [_run_label(r) for r in runs]
    nan = float("nan")
    missing = [r.baseline is None for r in runs]

    def base(r: RunData, key: str) -> float:
        b = r.baseline
        return float(b.get(key, nan)) if b else nan

    def own(r: RunData, key: str) -> float:
        return float(r.summary.get(key, nan))

    width = min(max(9.0, 1.7 * len(runs) + 3.0), 30.0)
    lines = max(label.count("\n") + 1 for label in labels)
    fig = Figure(figsize=(width, 10.0 + 0.45 * lines), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    a, b, c = fig.subplots(3, 1)
    _grouped(a, labels, [("chip", CHIP_COLOR, [own(r, "seconds") for r in runs]),
                         ("CPU", CPU_COLOR, [base(r, "seconds") for r in runs])],
             "time (s)", "s", missing)
    _grouped(b, labels, [("chip", CHIP_COLOR, [own(r, "energy_j") for r in runs]),
                         ("CPU", CPU_COLOR, [base(r, "energy_j") for r in runs])],
             "energy (J)", "J", missing)
    _grouped(c, labels, [("speedup", "tab:blue", [base(r, "speedup") for r in runs]),
                         ("energy ratio", "tab:green", [base(r, "energy_ratio") for r in runs]),
                         ("EDP ratio", "tab:red", [base(r, "edp_ratio") for r in runs])],
             "CPU / chip", "x", missing)
    c.axhline(1.0, color="0.3", lw=1, ls="--")
    a.set_title("time (whole run; CPU model)", fontsize=10.5)
    b.set_title("energy", fontsize=10.5)
    c.set_title("CPU / chip ratios (above the dashed 1x line the chip is better)", fontsize=10.5)
    fig.suptitle(f"Chip vs CPU across {len(runs)} runs", fontsize=12)
    fig.savefig(path)
    return path


# --- experts of an MoE layer --------------------------------------------------------------------
def plot_experts(run: RunData, path: Path) -> Path:
    """Per-expert load of an MoE layer: tokens routed and compute cycles per expert, the mean
    as a line, the straggler (the expert whose last job ends last) in orange. The legend sits
    below the panels, outside them, so it never covers a bar; the title wraps to the
    figure's width."""
    import textwrap

    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ex = run.summary["experts"]
    tokens = np.asarray(ex["tokens"], dtype=float)
    cycles = np.asarray(ex["compute_cycles"], dtype=float)
    straggler = -1 if ex.get("straggler") is None else int(ex["straggler"])
    n = len(tokens)
    width = max(8.0, min(16.0, 0.12 * n + 6))
    fig = Figure(figsize=(width, 6.6), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    colors = [CPU_COLOR if e == straggler else CHIP_COLOR for e in range(n)]
    for ax, values, label in ((axes[0], tokens, "tokens routed"),
                              (axes[1], cycles, "compute cycles")):
        ax.bar(np.arange(n), values, color=colors, width=0.8)
        ax.axhline(values.mean(), color="0.3", lw=1, ls="--")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    means = [f"{tokens.mean():.3g} tokens", si(cycles.mean(), "cycles")]
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))       # whole tokens
    axes[1].yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: si(v, "")))
    axes[1].set_xlabel("expert")
    mode = run.summary.get("mode", "sparse")
    who = ("no expert's job ends the lanes' phase (dense mode: experts one after another on "
           "the MAC block)" if straggler < 0 else f"straggler expert {straggler} ends at "
           f"cycle {ex['straggler_finish_cycle']:,}")
    detail = (f"token Gini {ex['token_gini']:.2f}, max/mean tokens "
              f"{ex['tokens_max_over_mean']:.2f}, max/mean cycles "
              f"{ex['cycles_max_over_mean']:.2f}; {who}")
    # ~0.075 in per character at 10 pt: wrap so that no line is wider than the figure
    lines = [f"Expert load: {_title(run)}, {mode} mode"] + textwrap.wrap(detail,
                                                                          int(width * 12))
    fig.suptitle("\n".join(lines), fontsize=10)
    handles = [Patch(color=CHIP_COLOR, label="expert"),
               Patch(color=CPU_COLOR, label=f"straggler (expert {straggler})"),
               Line2D([], [], color="0.3", lw=1, ls="--",
                      label=f"mean ({means[0]}; {means[1]})")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8,
               frameon=False)
    fig.savefig(path)
    return path
