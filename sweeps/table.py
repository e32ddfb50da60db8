"""A sweep's rows as a flat table: for the terminal, a CSV file and a pandas DataFrame.

Columns: chip, workload, fidelity, each swept parameter or override, each metric of the spec,
status, wall_seconds, cpu_seconds, error. pandas is imported only by :func:`to_frame`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from sweeps.spec import SweepSpec


def flat_rows(spec: SweepSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat record per stored row of the spec's points."""
    out = []
    for r in rows:
        vals = {**r["overrides"], **r["params"]}
        rec: dict[str, Any] = {"chip": r["chip"], "workload": r["workload"],
                               "fidelity": r["fidelity"]}
        rec.update({k: vals.get(k) for k in spec.swept})
        rec.update({m: r["figures"].get(m) for m in spec.metrics})
        rec.update({"status": r["status"], "wall_seconds": r["wall_seconds"],
                    "cpu_seconds": r["cpu_seconds"], "error": r["error"]})
        out.append(rec)
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v).splitlines()[0][:60] if v != "" else "-"


def render_table(records: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """An aligned plain-text table (numbers right-aligned)."""
    if not records:
        return "(no rows)\n"
    cols = columns or [c for c in records[0] if c not in ("error", "cpu_seconds")]
    cells = [[_cell(r.get(c)) for c in cols] for r in records]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    num = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in records)
           for c in cols]

    def line(vals: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(vals, width, num)).rstrip()
    lines = [line(cols), line(["-" * w for w in width])] + [line(row) for row in cells]
    return "\n".join(lines) + "\n"


def write_csv(records: list[dict[str, Any]], path: str | Path) -> Path:
    """The flat records as CSV (header from the first record)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        if records:
            w = csv.DictWriter(f, fieldnames=list(records[0]))
            w.writeheader()
            w.writerows(records)
    return out


def to_frame(records: list[dict[str, Any]]) -> Any:
    """The flat records as a pandas DataFrame (pandas: the ``frame`` extra)."""
    try:
        import pandas as pd
    except ImportError:
        from isa.errors import ConfigError

        raise ConfigError("a sweep's DataFrame needs pandas (pip install "
                          "'sieve-sim[frame]')") from None
    return pd.DataFrame.from_records(records)
