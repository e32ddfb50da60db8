"""The hierarchical roofline of one run: the chip's roofs and kernel points, the CPU beside it.

Definitions (after Williams, Waterman and Patterson, "Roofline: an insightful visual performance
model for multicore architectures", CACM 2009, and the hierarchical
roofline of Yang et al. 2020): attainable performance P = min(P_peak, I * B_level), with
operational intensity I = W / Q_level (ops per byte moved at that level). The ridge point of a
level is P_peak / B_level.

Points, all at the run's whole time ``summary.seconds`` (launch, configuration, DMA in, kernel,
DMA out). That is the right time for a roofline: DRAM bytes move during the DMA phases, outside
the kernel, so ops over kernel time alone could sit above the DRAM roof, which bounds no real
schedule. With the whole time, T >= max(W / P_peak, Q / B) holds and each point stays under its
roof.

- useful ops (``summary.ops``: ALU ops + reducer adds) against DRAM bytes: the main point;
- dense-equivalent ops against DRAM bytes: the same time and bytes credited with every op of
  the dense computation; it may exceed the roof (it counts ops never executed);
- useful ops against the bytes over the GLB <-> array links (``summary.glb_link_bytes``, both
  directions): the hierarchical view. The GLB roof is those links' bandwidth, so the point is
  measured in the same bytes; the GLB's own total traffic (``glb_bytes``) also counts the DRAM
  <-> GLB DMA, which does not cross the links;
- issued ops (useful + gated + ineffectual) when they differ from useful ops;
- the CPU's useful flops against its DRAM bytes, at the CPU model's time.

A point with zero ops, bytes or time cannot sit on log axes: it is left out and named in a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.fmt import si

CHIP_COLOR = "tab:blue"
GLB_COLOR = "tab:green"
CPU_COLOR = "tab:orange"
ISSUED_COLOR = "tab:purple"


@dataclass(frozen=True)
class Roof:
    """A machine's compute roof (ops/s) and a bandwidth roof (bytes/s) per memory level."""

    name: str
    compute_ops_per_s: float
    bandwidths: dict[str, float]          # level ("DRAM", "GLB") -> bytes/s

    def ridge(self, level: str) -> float:
        """Operational intensity (ops/byte) where the level's roof meets the compute roof."""
        return self.compute_ops_per_s / self.bandwidths[level]

    def attainable(self, intensity: float, level: str) -> float:
        """min(P_peak, I * B_level), ops/s."""
        return min(self.compute_ops_per_s, intensity * self.bandwidths[level])


@dataclass(frozen=True)
class Point:
    """One kernel point: ``ops`` over ``nbytes`` at ``level``, done in ``seconds``."""

    key: str                              # "useful", "dense", "glb", "issued", "cpu"
    label: str
    machine: str                          # "chip" or "cpu"
    level: str
    ops: float
    nbytes: float
    seconds: float

    @property
    def placeable(self) -> bool:
        """Whether the point has a finite, positive place on log-log axes."""
        return self.ops > 0 and self.nbytes > 0 and self.seconds > 0

    @property
    def intensity(self) -> float:
        return self.ops / self.nbytes

    @property
    def performance(self) -> float:
        return self.ops / self.seconds


@dataclass(frozen=True)
class Roofline:
    """Everything the roofline picture shows, computed from a run summary."""

    chip: Roof
    cpu: Roof | None
    points: list[Point]
    notes: list[str]

    def point(self, key: str) -> Point | None:
        return next((p for p in self.points if p.key == key), None)


def roofline(summary: dict[str, Any]) -> Roofline:
    """The chip's and (with a baseline) the CPU's roofs and points from ``summary``."""
    roofs = summary.get("roofs") or {}
    chip = Roof(summary.get("chip", "chip"), float(roofs.get("compute_ops_per_s", 0.0)),
                {"DRAM": float(roofs.get("dram_bytes_per_s", 0.0)),
                 "GLB": float(roofs.get("glb_bytes_per_s", 0.0))})
    seconds = float(summary.get("seconds", 0.0))
    ops = float(summary.get("ops", 0))
    dram = float(summary.get("dram_bytes", 0))
    points = [
        Point("useful", "chip: useful ops / DRAM bytes", "chip", "DRAM", ops, dram, seconds),
        Point("dense", "chip: dense-equivalent ops / DRAM bytes", "chip", "DRAM",
              float(summary.get("dense_equivalent_ops", 0)), dram, seconds),
    ]
    if "glb_link_bytes" in summary:
        points.append(Point("glb", "chip: useful ops / GLB<->array link bytes", "chip", "GLB",
                            ops, float(summary["glb_link_bytes"]), seconds))
    wasted = float(summary.get("gated_ops", 0)) + float(summary.get("ineffectual_ops", 0))
    if wasted > 0:
        points.append(Point("issued", "chip: issued ops (incl. gated, ineffectual) / DRAM bytes",
                            "chip", "DRAM", ops + wasted, dram, seconds))
    cpu = None
    base = summary.get("baseline") or None
    if base:
        broofs = base.get("roofs") or {}
        cpu = Roof(str(base.get("cpu", "CPU")), float(broofs.get("compute_ops_per_s", 0.0)),
                   {"DRAM": float(broofs.get("dram_bytes_per_s", 0.0))})
        points.append(Point("cpu", f"CPU ({cpu.name}): useful flops / DRAM bytes", "cpu", "DRAM",
                            float(base.get("flops", 0)), float(base.get("dram_bytes", 0)),
                            float(base.get("seconds", 0))))
    notes = [] if base else ["no CPU baseline in this run (sieve run --baseline CPU adds one)"]
    if "glb_link_bytes" not in summary:
        notes.append("no GLB point: this run folder predates the GLB<->array link counter "
                     "(summary.glb_link_bytes)")
    notes += [f"not plotted: {p.label} (ops {p.ops:g}, bytes {p.nbytes:g}, time "
             f"{si(p.seconds, 's')}: a zero cannot sit on log axes)"
             for p in points if not p.placeable]
    return Roofline(chip, cpu, points, notes)


def _valid_roof(roof: Roof | None) -> bool:
    return (roof is not None and roof.compute_ops_per_s > 0
            and any(b > 0 for b in roof.bandwidths.values()))


def _decade_floor(x: float) -> float:
    return 10 ** math.floor(math.log10(x))


def _decade_ceil(x: float) -> float:
    return 10 ** math.ceil(math.log10(x))


def _limits(model: Roofline) -> tuple[tuple[float, float], tuple[float, float]]:
    """Decade-aligned axis limits holding every roof and point, with two decades of slope
    left of the first ridge and a decade and a half left of the leftmost point (so the
    bandwidth roofs show, with their labels clear of the points), and a decade of compute roof
    right of the last ridge for its label."""
    xs: list[float] = []
    ys: list[float] = []
    peaks: list[float] = []
    ridges: list[float] = []
    for roof in (model.chip, model.cpu):
        if roof is not None and _valid_roof(roof):
            ridges += [roof.ridge(lv) for lv, b in roof.bandwidths.items() if b > 0]
            peaks.append(roof.compute_ops_per_s)
    for p in model.points:
        if p.placeable:
            xs.append(p.intensity)
            ys.append(p.performance)
    if not xs + ridges:
        return (1e-2, 1e3), (1e6, 1e12)
    x0 = _decade_floor(min([x / 10 for x in xs] + [r / 30 for r in ridges]) / 3)
    x1 = max([x * 5 for x in xs] + [r * 15 for r in ridges])
    # down to where the lowest bandwidth roof enters, so every slope and its label shows
    entries = [x0 * b for roof in (model.chip, model.cpu) if roof is not None
               and _valid_roof(roof) for b in roof.bandwidths.values() if b > 0]
    y0 = min([y / 5 for y in ys] + [p / 5000 for p in peaks] + [e / 2 for e in entries])
    y1 = max(ys + peaks) * 4
    return ((x0, _decade_ceil(x1)), (_decade_floor(y0), _decade_ceil(y1)))


_POINT_STYLE = {   # key -> (color, marker, filled, short tag on the plot)
    "useful": (CHIP_COLOR, "o", True, "chip useful"),
    "dense": (CHIP_COLOR, "o", False, "chip dense-equiv."),
    "glb": (GLB_COLOR, "s", True, "chip @GLB"),
    "issued": (ISSUED_COLOR, "^", True, "chip issued"),
    "cpu": (CPU_COLOR, "D", True, "CPU"),
}
# where a point's tag may go, in order of preference: (offset in points, ha, va); below and
# right of a point first, away from the bandwidth roofs that run above and left of it
_TAG_SLOTS = (((9, -7), "left", "top"), ((9, 0), "left", "center"), ((0, -10), "center", "top"),
              ((-9, -7), "right", "top"), ((9, 7), "left", "bottom"),
              ((-9, 0), "right", "center"), ((0, 10), "center", "bottom"),
              ((-9, 7), "right", "bottom"))


def _slope_label(ax: Any, bandwidth: float, x: float, text: str, color: str,
                 above: bool) -> None:
    """Write ``text`` along a bandwidth roof at intensity ``x``, rotated to the line's slope
    (the axes' position and limits must be final)."""
    p1 = ax.transData.transform((x, x * bandwidth))
    p2 = ax.transData.transform((2 * x, 2 * x * bandwidth))
    angle = math.degrees(math.atan2(p2[1] - p1[1], p2[0] - p1[0]))
    ax.annotate(text, (x, x * bandwidth), xytext=(0, 3 if above else -3),
                textcoords="offset points", rotation=angle, rotation_mode="anchor",
                color=color, fontsize=8, ha="left", va="bottom" if above else "top")


def _draw_roof(ax: Any, roof: Roof, x_lim: tuple[float, float], colors: dict[str, str],
               labels: dict[str, tuple[float, bool]], compute_above: bool, ls: str) -> None:
    """Draw a machine's roofs: the compute roof from the first ridge on, a slope per memory
    level up to its ridge (marked), each labelled on the plot and in the legend. ``colors``
    maps "compute" and each level to a colour, ``labels`` a level to (intensity, above)."""
    peak = roof.compute_ops_per_s
    levels = [lv for lv, b in roof.bandwidths.items() if b > 0]
    first_ridge = min(roof.ridge(lv) for lv in levels)
    ax.plot([first_ridge, x_lim[1]], [peak, peak], color=colors["compute"], lw=2.6, ls=ls,
            label=f"{roof.name} compute roof: {si(peak, 'ops/s')}")
    ax.annotate(f"{roof.name} compute {si(peak, 'ops/s')}", (x_lim[1], peak),
                xytext=(-4, 4 if compute_above else -4), textcoords="offset points",
                ha="right", va="bottom" if compute_above else "top", color=colors["compute"],
                fontsize=8, fontweight="bold")
    for level in levels:
        ridge, bw, color = roof.ridge(level), roof.bandwidths[level], colors[level]
        ax.plot([x_lim[0], ridge], [x_lim[0] * bw, peak], color=color, lw=1.6, ls=ls,
                label=f"{roof.name} {level} roof: {si(bw, 'B/s')}, ridge at {ridge:.3g} ops/B")
        ax.plot([ridge], [peak], marker="|", ms=10, color=color, mew=1.5)
        x_text, above = labels[level]
        _slope_label(ax, bw, min(x_text, ridge / 6), f"{roof.name} {level} {si(bw, 'B/s')}",
                     color, above)


def _draw_points(ax: Any, model: Roofline) -> None:
    """Plot the placeable points (legend labels carry the figures) and tag each on the plot
    where its tag overlaps no marker, no other tag and no roof label."""
    from matplotlib.transforms import Bbox  # matplotlib loads only to draw

    placed = {p.key: p for p in model.points if p.placeable}
    if "useful" in placed and "dense" in placed:
        a, b = placed["useful"], placed["dense"]
        ax.plot([a.intensity, b.intensity], [a.performance, b.performance], color=CHIP_COLOR,
                lw=1, ls=":", zorder=3)
    for key, p in placed.items():
        color, marker, filled, _tag = _POINT_STYLE[key]
        roof = model.chip if p.machine == "chip" else model.cpu
        share = ""
        if roof is not None and _valid_roof(roof) and roof.bandwidths.get(p.level, 0) > 0:
            share = f" ({100 * p.performance / roof.attainable(p.intensity, p.level):.2g}% of roof)"
        label = f"{p.label}: {si(p.performance, 'ops/s')} at {p.intensity:.3g} ops/B{share}"
        ax.plot([p.intensity], [p.performance], ls="none", marker=marker, ms=9, color=color,
                mfc=color if filled else "white", mew=1.8, zorder=4, label=label)
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [t.get_window_extent(renderer) for t in ax.texts]
    for p in placed.values():
        x, y = ax.transData.transform((p.intensity, p.performance))
        taken.append(Bbox.from_extents(x - 7, y - 7, x + 7, y + 7))
    for key, p in placed.items():
        color, _marker, _filled, tag = _POINT_STYLE[key]
        for offset, ha, va in _TAG_SLOTS:
            text = ax.annotate(tag, (p.intensity, p.performance), xytext=offset,
                               textcoords="offset points", ha=ha, va=va, fontsize=8,
                               color=color, zorder=5)
            box = text.get_window_extent(renderer)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                      and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                break
            if (offset, ha, va) != _TAG_SLOTS[-1]:
                text.remove()
        taken.append(box)


def plot_roofline(summary: dict[str, Any], path: Path) -> Path:
    """Draw the roofline of one run into ``path`` (PNG) and return it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    model = roofline(summary)
    s = summary
    fig = Figure(figsize=(11, 8.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.34, 0.9, 0.6))
    (x0, x1), (y0, y1) = _limits(model)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.grid(True, which="major", color="0.85", lw=0.6)
    ax.grid(True, which="minor", color="0.94", lw=0.4)
    ax.set_xlabel("operational intensity (ops/byte)")
    ax.set_ylabel("performance (ops/s)")
    ax.set_title(f"Roofline: {s.get('workload', '?')} ({s.get('kernel', '?')}) on "
                 f"{s.get('chip', '?')}, fidelity {s.get('fidelity', '?')}", fontsize=12)

    # where the slope labels start: fractions of the x range (log), left of the points
    span = math.log10(x1 / x0)
    near, far = (x0 * 10 ** (span * f) for f in (0.015, 0.17))
    notes = list(model.notes)
    cpu_ok, chip_ok = _valid_roof(model.cpu), _valid_roof(model.chip)
    peaks = [r.compute_ops_per_s for r in (model.chip, model.cpu) if r is not None]

    def label_above(peak: float) -> bool:
        """Label a compute roof above it unless another roof runs just above it."""
        return not any(peak < q < peak * 10 ** 0.35 for q in peaks)

    if chip_ok:
        _draw_roof(ax, model.chip, (x0, x1),
                   {"compute": CHIP_COLOR, "DRAM": CHIP_COLOR, "GLB": GLB_COLOR},
                   {lv: (near, bw >= max(model.chip.bandwidths.values()))
                    for lv, bw in model.chip.bandwidths.items()},
                   compute_above=label_above(model.chip.compute_ops_per_s), ls="-")
    else:
        notes.append("chip roofline not drawn: the summary has no roofs")
    if cpu_ok and model.cpu is not None:
        _draw_roof(ax, model.cpu, (x0, x1), {"compute": CPU_COLOR, "DRAM": CPU_COLOR},
                   {"DRAM": (far, True)}, compute_above=label_above(model.cpu.compute_ops_per_s),
                   ls="--")
    elif model.cpu is not None:
        notes.append("CPU roofline not drawn: the baseline has no roofs")
    n_roof_lines = len(ax.get_legend_handles_labels()[0])
    _draw_points(ax, model)

    handles, labels = ax.get_legend_handles_labels()
    if n_roof_lines:
        fig.legend(handles[:n_roof_lines], labels[:n_roof_lines], loc="upper left",
                   bbox_to_anchor=(0.02, 0.255), fontsize=8, frameon=False, title="roofs",
                   title_fontsize=9, alignment="left")
    if handles[n_roof_lines:]:
        fig.legend(handles[n_roof_lines:], labels[n_roof_lines:], loc="upper left",
                   bbox_to_anchor=(0.36, 0.255), fontsize=8, frameon=False,
                   title="kernel points (chip: whole-run time)", title_fontsize=9,
                   alignment="left")
    foot = [f"Chip points use the whole-run time: {s.get('cycles', 0):,} cycles = "
            f"{si(s.get('seconds', 0), 's')} (launch, configuration, DMA and the kernel's "
            f"{s.get('kernel_cycles', 0):,} cycles); the CPU point uses the CPU model's time.",
            "Dense-equivalent throughput credits every op of the dense computation (executed "
            "or not) and may sit above the roof."]
    fig.text(0.02, 0.012, "\n".join(foot + notes), fontsize=7.5, color="0.3", va="bottom",
             ha="left")
    fig.savefig(path)
    return path
