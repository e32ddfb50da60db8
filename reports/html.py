"""report.html: one self-contained HTML5 page per run (tables, and every picture embedded as a
base64 PNG), readable offline and attachable to an e-mail."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from reports.rundata import RunData
from reports.tables import check_rows, energy_rows, mode_rows, summary_rows, verification_text

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: bold; } .bad { color: #cf222e; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""

CAPTIONS = {
    "roofline.png": "Hierarchical roofline: the chip's compute roof and DRAM and GLB bandwidth "
                    "roofs, the kernel at useful and dense-equivalent ops (whole-run time), the "
                    "GLB-level point (useful ops over the bytes crossing the GLB<->array "
                    "links, the traffic the GLB roof bounds), and the CPU's roofline and point.",
    "energy.png": "Energy by component and the top actions, with shares of the total.",
    "comparison.png": "Chip vs CPU: time, energy and energy-delay product with CPU / chip "
                      "ratios.",
    "pe_utilization.png": "Busy cycles of each tile as a share of the kernel's cycles.",
    "experts.png": "Per-expert load of the MoE layer: tokens routed and compute cycles, the "
                   "mean, and the straggler that sets the layer's time.",
}


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(path.stem)}">'


def report_html(run: RunData, images: list[Path], trace: Path | None = None) -> str:
    """The HTML page of one run: headline, verification, summary and energy tables, the
    pictures (embedded), the trace's file name when one was written, and the chip config."""
    s = run.summary
    title = f"{s.get('workload', '?')} ({s.get('kernel', '?')}) on {s.get('chip', '?')}"
    verified = bool(s.get("verified"))
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Sieve report: {escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>",
        "<body>", f"<h1>{escape(title)}</h1>",
        "<p>",
        f"chip config <strong>{escape(str(s.get('chip', '?')))}</strong>"
        + (f" ({escape(str(run.config['description']))})" if run.config.get("description")
           else ""),
        f"<br>energy table <code>{escape(str(s.get('energy_table', '?')))}</code>,"
        f" fidelity <code>{escape(str(s.get('fidelity', '?')))}</code>,"
        f" run folder <code>{escape(str(run.path))}</code>",
        f'<br>verification: <span class="{"ok" if verified else "bad"}">'
        f"{escape(verification_text(s))}</span>",
        "</p>",
        "<h2>Summary</h2>", "<table>", "<tr><th>figure</th><th>value</th></tr>",
    ]
    parts += [f'<tr><td>{escape(k)}</td><td class="num">{escape(v)}</td></tr>'
              for k, v in summary_rows(run)]
    parts.append("</table>")
    parts += ["<h2>Output checks</h2>", "<table>",
              "<tr><th>check</th><th>result</th><th>reason</th></tr>"]
    parts += [f"<tr><td>{escape(n)}</td><td>{escape(r)}</td><td>{escape(why)}</td></tr>"
              for n, r, why in check_rows(s)]
    parts.append("</table>")
    mrows = mode_rows(s)
    if mrows:
        parts += ["<h2>Sparse and dense mode</h2>",
                  f"<p>compiler.objective <code>{escape(str(s.get('objective', '?')))}</code>;"
                  " the whole layer's cycles, then each product kind's cycles alone.</p>",
                  "<table>", "<tr><th>layer / product</th><th>ran as</th><th>sparse cycles</th>"
                  "<th>sparse energy</th><th>dense cycles</th><th>dense energy</th></tr>"]
        parts += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                  for row in mrows]
        parts.append("</table>")
    unit, erows = energy_rows(run)
    if erows:
        parts += ["<h2>Energy by component</h2>", "<table>",
                  f"<tr><th>component</th><th>energy ({escape(unit)})</th><th>share</th></tr>"]
        parts += [f'<tr><td>{escape(n)}</td><td class="num">{escape(v)}</td>'
                  f'<td class="num">{escape(p)}</td></tr>' for n, v, p in erows]
        parts.append("</table>")
    else:
        parts.append("<p>No energy data in this run.</p>")
    parts.append("<h2>Pictures</h2>")
    for path in images:
        caption = CAPTIONS.get(path.name, path.name)
        parts.append(f"<figure>{_img(path)}<figcaption>{escape(path.name)}: "
                     f"{escape(caption)}</figcaption></figure>")
    if trace is not None:
        parts.append(f"<p>Timeline: <code>{escape(trace.name)}</code> (one track per tile, "
                     "kernel-relative time; open it at https://ui.perfetto.dev or in "
                     "chrome://tracing).</p>")
    config = run.path / "config.yaml"
    if config.is_file():
        parts += ["<h2>Chip config</h2>", "<details><summary>config.yaml (resolved)</summary>",
                  f"<pre>{escape(config.read_text())}</pre>", "</details>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
