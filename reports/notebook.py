"""A run held in memory (not yet a folder) as the reports see it: the notebook views of a
``sieve.Report`` (Markdown and HTML, the same tables as summary.md and report.html) and its
summary flattened to one row for a table of runs."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from reports.rundata import RunData, read_config_scalars
from reports.tables import energy_rows, summary_markdown, summary_rows, verification_text

__all__ = ["flat_summary", "run_data", "summary_html", "summary_markdown"]


def run_data(doc: dict[str, Any], config_yaml: str, workload: dict[str, Any],
             path: Path | None = None) -> RunData:
    """A RunData from a stats.json document, the config.yaml text and workload.json's
    object, as :func:`reports.rundata.load_run` would read them from a folder."""
    return RunData(path or Path("."), doc["summary"], doc["stats"], doc.get("energy") or {},
                   read_config_scalars(config_yaml), workload, {})


def summary_html(run: RunData) -> str:
    """An HTML fragment for a notebook: title, verification, the summary and energy tables
    of report.html (no pictures: they are drawn when the run is written to a folder)."""
    s = run.summary
    title = f"{s.get('workload', '?')} ({s.get('kernel', '?')}) on {s.get('chip', '?')}"
    ok = bool(s.get("verified"))
    num = 'style="text-align:right; font-variant-numeric: tabular-nums"'
    parts = [f"<h3>{escape(title)}</h3>",
             f"<p>fidelity <code>{escape(str(s.get('fidelity', '?')))}</code>, energy table "
             f"<code>{escape(str(s.get('energy_table', '?')))}</code>; output verified: "
             f'<b style="color:{"#1a7f37" if ok else "#cf222e"}">'
             f"{escape(verification_text(s))}</b></p>",
             "<table><tr><th>figure</th><th>value</th></tr>"]
    parts += [f"<tr><td>{escape(k)}</td><td {num}>{escape(v)}</td></tr>"
              for k, v in summary_rows(run)]
    parts.append("</table>")
    unit, erows = energy_rows(run)
    if erows:
        parts.append(f"<table><tr><th>component</th><th>energy ({escape(unit)})</th>"
                     "<th>share</th></tr>")
        parts += [f"<tr><td>{escape(n)}</td><td {num}>{escape(v)}</td><td {num}>{escape(p)}"
                  "</td></tr>" for n, v, p in erows]
        parts.append("</table>")
    return "\n".join(parts)


def flat_summary(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The summary with nested objects flattened to dotted keys (``baseline.speedup``) and
    lists kept as they are: one row of a table of runs."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update(flat_summary(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
