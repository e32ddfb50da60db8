"""A comparison folder (``sieve compare``): its plan, its layout and its one-page report.

Layout: one run folder per (chip, workload, parameter point), named safely from their short
names (``onyx-small__olmoe__tokens=16``; never a path with ``/``), ``compare.json`` listing
the runs in order with the chip, workload (a catalog name or a spec path) and parameters each
was run with, ``comparison.md``/``.csv``/``.png`` and ``compare.html``, one page with the table
and every run's pictures. ``sieve report DIR`` re-renders it.

The parameter grid: ``-p KEY=VALUE`` applies to every workload, ``-p WORKLOAD:KEY=VALUE`` to
one (named as on the command line, or by its short name); a key given several times is a grid
axis, and the runs are the product of the axes.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path

from reports.rundata import ReportError, load_run

__all__ = ["MANIFEST", "ComparePoint", "compare_plan", "is_compare_folder",
           "render_compare_folder", "short_name", "write_manifest"]

MANIFEST = "compare.json"
"""The file that makes a folder a comparison folder."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass(frozen=True)
class ComparePoint:
    """One run of a comparison: where it goes and what it runs."""

    folder: str                     # run folder name inside the comparison folder
    chip: str                       # as given: a chip name or a YAML path
    workload: str                   # as given: a catalog name or a spec path
    params: dict[str, str]


def short_name(name_or_path: str) -> str:
    """A chip or workload as a file-name-safe short name: a YAML path gives its stem
    (``specs/olmoe.yaml`` -> ``olmoe``), a catalog name stays (``moe.olmoe``)."""
    text = Path(name_or_path).stem if name_or_path.endswith((".yaml", ".yml")) \
        else name_or_path
    return _UNSAFE.sub("-", text).strip("-") or "run"


def _grid(pairs: Sequence[str], workload: str) -> list[dict[str, str]]:
    """The parameter points of ``workload``: its axes from the ``-p`` pairs (see module)."""
    common: dict[str, list[str]] = {}
    own: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ReportError(f"parameter {pair!r}: expected KEY=VALUE or WORKLOAD:KEY=VALUE")
        target, colon, name = key.rpartition(":")
        if not colon:
            common.setdefault(key.strip(), []).append(value.strip())
        elif target in (workload, short_name(workload)):
            own.setdefault(name.strip(), []).append(value.strip())
    axes = {**common, **own}
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def compare_plan(chips: Sequence[str], workloads: Sequence[str], pairs: Sequence[str]
                 ) -> list[ComparePoint]:
    """Every run of ``sieve compare``: chips x workloads x each workload's parameter grid,
    with unique safe folder names."""
    points: list[ComparePoint] = []
    used: set[str] = set()
    for chip in chips:
        for workload in workloads:
            grid = _grid(pairs, workload)
            for params in grid:
                varied = [k for k in params if len({p[k] for p in grid}) > 1]
                name = "__".join([short_name(chip), short_name(workload)]
                                 + [_UNSAFE.sub("-", f"{k}={params[k]}") for k in varied])
                folder, i = name, 2
                while folder in used:                  # same short names, different paths
                    folder, i = f"{name}__{i}", i + 1
                used.add(folder)
                points.append(ComparePoint(folder, chip, workload, params))
    return points


def write_manifest(out_dir: Path, points: Sequence[ComparePoint]) -> Path:
    """``compare.json``: the runs of the comparison folder in order."""
    path = out_dir / MANIFEST
    path.write_text(json.dumps({"runs": [asdict(p) for p in points]}, indent=1) + "\n")
    return path


def is_compare_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _points(folder: Path) -> list[ComparePoint]:
    try:
        doc = json.loads((folder / MANIFEST).read_text())
        return [ComparePoint(**entry) for entry in doc["runs"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ReportError(f"{folder / MANIFEST}: not a comparison manifest ({exc})") from None


def render_compare_folder(folder: str | Path, *, trace: bool = False) -> list[Path]:
    """Render every run folder of a comparison folder (pictures, summary.md, report.html),
    the comparison table and picture, and ``compare.html``; returns the written paths."""
    from reports.html import _STYLE, _img
    from reports.render import render_comparison, render_run
    from reports.tables import COMPARISON_HEADER, COMPARISON_NOTE, comparison_cells

    out = Path(folder)
    points = _points(out)
    written: list[Path] = []
    images: dict[str, list[Path]] = {}
    for p in points:
        paths = render_run(out / p.folder, trace=trace)
        images[p.folder] = [x for x in paths if x.suffix == ".png"]
        written += paths
    written += render_comparison([out / p.folder for p in points], out)
    runs = [load_run(out / p.folder) for p in points]
    parts = ["<!DOCTYPE html>", '<html lang="en">', '<head><meta charset="utf-8">',
             f"<title>Sieve comparison: {escape(out.name)}</title>",
             f"<style>{_STYLE}</style></head>", "<body>",
             f"<h1>Comparison: {len(points)} runs</h1>",
             f"<p>{escape(COMPARISON_NOTE)}</p>",
             _html_table(COMPARISON_HEADER, comparison_cells(runs))]
    if (out / "comparison.png").is_file():
        parts.append(f"<figure>{_img(out / 'comparison.png')}</figure>")
    for p, run in zip(points, runs):
        params = ", ".join(f"{k}={v}" for k, v in p.params.items()) or "defaults"
        s = run.summary
        parts += [f'<h2 id="{escape(p.folder)}">{escape(p.folder)}</h2>',
                  f"<p>chip <code>{escape(p.chip)}</code>, workload "
                  f"<code>{escape(p.workload)}</code> ({escape(params)}): "
                  f"{s.get('cycles', 0):,} cycles, verified {'yes' if s.get('verified') else 'NO'}"
                  f' &middot; <a href="{escape(p.folder)}/report.html">full report</a></p>']
        parts += [f"<figure>{_img(img)}<figcaption>{escape(img.name)}</figcaption></figure>"
                  for img in images[p.folder] if img.name in ("roofline.png", "energy.png",
                                                                "experts.png")]
    parts += ["</body>", "</html>"]
    page = out / "compare.html"
    page.write_text("\n".join(parts) + "\n")
    return [*written, page]


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of the formatted cells (built from the rows, not re-parsed Markdown: a
    cell may hold any text)."""
    html = ["<table>", "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in header) + "</tr>"]
    html += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join([*html, "</table>"])

