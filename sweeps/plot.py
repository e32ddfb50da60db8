"""``sieve sweep --plot X Y``: a figure Y against a parameter X, one line per chip and
workload (and per value of any other swept parameter), crossovers marked.

Marked: where two chips' lines for the same workload cross (linear interpolation between
neighbouring X values), and for a
ratio figure (``*_ratio``, ``speedup``), where a line crosses parity (1.0), drawn dashed. The
Y axis is logarithmic (and crossings interpolated in log Y) when the positive values span
more than 100x. matplotlib is imported
here only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from isa.errors import ConfigError


def _series(records: list[dict[str, Any]], x: str, y: str, swept: tuple[str, ...]
            ) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """(chip, workload, other swept values) -> sorted (x, y) points. An other swept key is
    named only where it varies within one chip and workload."""
    others = [k for k in swept if k != x]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok" and r.get(x) is not None and r.get(y) is not None:
            groups.setdefault((r["chip"], r["workload"]), []).append(r)
    lines: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for (chip, work), rs in groups.items():
        vary = [k for k in others if len({repr(r.get(k)) for r in rs}) > 1]
        for r in rs:
            rest = " ".join(f"{k}={r.get(k)}" for k in vary)
            lines.setdefault((chip, work, rest), []).append((float(r[x]), float(r[y])))
    return {k: sorted(v) for k, v in lines.items()}


def crossings(a: list[tuple[float, float]], b: list[tuple[float, float]] | float,
              log: bool = False) -> list[tuple[float, float]]:
    """Points where line ``a`` crosses line ``b`` (or the level ``b``), interpolated
    linearly (in log10 of Y with ``log``) on the X values the two share; a touch counts."""
    fb = dict(b) if isinstance(b, list) else None
    pts = [(xv, yv, fb[xv] if fb is not None else float(b)) for xv, yv in a
           if fb is None or xv in fb]
    if log:
        pts = [(xv, math.log10(yv), math.log10(zv)) for xv, yv, zv in pts if yv > 0 and zv > 0]
    out = [(xv, yv) for xv, yv, zv in pts if yv == zv]
    for (x0, y0, z0), (x1, y1, z1) in zip(pts, pts[1:]):
        d0, d1 = y0 - z0, y1 - z1
        if d0 * d1 < 0:
            t = d0 / (d0 - d1)
            out.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
    return sorted((xv, 10 ** yv if log else yv) for xv, yv in out)


def plot_sweep(records: list[dict[str, Any]], x: str, y: str, swept: tuple[str, ...],
               out: str | Path, title: str = "") -> tuple[Path, list[tuple[str, float, float]]]:
    """Draw the PNG; returns its path and the marked crossovers (what, x, y)."""
    columns = set(records[0]) if records else set()
    for name, what in ((x, "X"), (y, "Y")):
        if name not in columns:
            raise ConfigError(f"--plot: {what} {name!r} is not a column of this sweep (columns: "
                              f"{', '.join(sorted(columns))})")
    lines = _series(records, x, y, swept)
    if not lines:
        raise ConfigError(f"--plot: no finished point has both {x} and {y}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    marks: list[tuple[str, float, float]] = []
    ratio = y.endswith("_ratio") or y.endswith("speedup")
    ys = [p[1] for pts in lines.values() for p in pts if p[1] > 0]
    log = bool(ys) and max(ys) / min(ys) > 100
    def name(key: tuple[str, str, str]) -> str:
        return " ".join(part for part in key if part)
    for key, pts in lines.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name(key))
        if ratio:
            marks += [(f"{name(key)} = 1", cx, cy) for cx, cy in crossings(pts, 1.0, log)]
    keys = list(lines)
    for i, a in enumerate(keys):     # chips against each other on the same workload
        for b in keys[i + 1:]:
            if a[1:] == b[1:]:
                marks += [(f"{a[0]} = {b[0]} ({name(a[1:])})", cx, cy)
                          for cx, cy in crossings(lines[a], lines[b], log)]
    if ratio:
        ax.axhline(1.0, color="grey", ls="--", lw=1, label="parity (1.0)")
    for _what, cx, cy in marks:
        ax.plot([cx], [cy], marker="x", color="black", ms=9, mew=2, zorder=5)
        ax.annotate(f"{cx:.3g}", (cx, cy), textcoords="offset points", xytext=(4, 6),
                    fontsize=8)
    if marks:
        ax.plot([], [], marker="x", color="black", ls="", label="crossover")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} vs {x}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path, marks
