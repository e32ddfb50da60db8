"""The result store: one SQLite file per sweep, one row per point.

Only the driver writes, one transaction per finished point, so a row is either all there or
absent: a driver killed mid-sweep loses only the points in flight, which a rerun runs again.
A point's row is keyed by its hash (sweeps.spec.point_key), so it can never be recorded twice;
a finished (``ok``) row is never overwritten, and a ``failed`` row is replaced only by a retry
(``--retry-failed``), which counts its attempts.

Table ``points``: key, seq, chip (label), chip_path, workload (label), workload_name,
fidelity, baseline, overrides and params (JSON objects), status (ok | failed), error,
figures (JSON: every figure the run produced), wall_seconds and cpu_seconds of the point in
its worker, attempts, finished_utc, host, pid. Table ``meta``: the spec's name and text.
Read it with any SQLite client, e.g. ``SELECT json_extract(figures, '$.cycles') FROM points``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from isa.errors import ConfigError
from sweeps.target import Point

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    chip TEXT NOT NULL,
    chip_path TEXT NOT NULL,
    workload TEXT NOT NULL,
    workload_name TEXT NOT NULL,
    fidelity TEXT NOT NULL,
    baseline TEXT,
    overrides TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    figures TEXT NOT NULL,
    wall_seconds REAL,
    cpu_seconds REAL,
    attempts INTEGER NOT NULL DEFAULT 1,
    finished_utc TEXT NOT NULL,
    host TEXT,
    pid INTEGER
);
"""

_UPSERT = """
INSERT INTO points (key, seq, chip, chip_path, workload, workload_name, fidelity, baseline,
                    overrides, params, status, error, figures, wall_seconds, cpu_seconds,
                    attempts, finished_utc, host, pid)
VALUES (:key, :seq, :chip, :chip_path, :workload, :workload_name, :fidelity, :baseline,
        :overrides, :params, :status, :error, :figures, :wall_seconds, :cpu_seconds, 1,
        :finished_utc, :host, :pid)
ON CONFLICT (key) DO UPDATE SET
    status = excluded.status, error = excluded.error, figures = excluded.figures,
    wall_seconds = excluded.wall_seconds, cpu_seconds = excluded.cpu_seconds,
    attempts = points.attempts + 1, finished_utc = excluded.finished_utc,
    host = excluded.host, pid = excluded.pid
WHERE points.status = 'failed'
"""


class Store:
    """A sweep's SQLite file (created with its folder on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0)
            with self.conn:
                self.conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"sweep store {self.path}: cannot open: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def set_meta(self, key: str, value: str) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                              (key, value))

    def statuses(self) -> dict[str, str]:
        """Point key -> status of every recorded point."""
        return dict(self.conn.execute("SELECT key, status FROM points"))

    def record(self, point: Point, outcome: dict[str, Any]) -> None:
        """Write one finished point in its own transaction (an ``ok`` row is kept as is)."""
        row = {
            "key": point["key"], "seq": point["seq"], "chip": point["chip_label"],
            "chip_path": point["chip"], "workload": point["workload_label"],
            "workload_name": point["workload"], "fidelity": point["fidelity"],
            "baseline": point["baseline"],
            "overrides": json.dumps(point["overrides"], sort_keys=True),
            "params": json.dumps(point["params"], sort_keys=True),
            "status": outcome["status"], "error": outcome.get("error"),
            "figures": json.dumps(outcome.get("figures") or {}, sort_keys=True),
            "wall_seconds": outcome.get("wall_seconds"),
            "cpu_seconds": outcome.get("cpu_seconds"),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": outcome.get("host"), "pid": outcome.get("pid"),
        }
        with self.conn:
            self.conn.execute(_UPSERT, row)

    def rows(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Recorded points in spec order, JSON columns decoded; only ``keys`` if given."""
        cur = self.conn.execute("SELECT * FROM points ORDER BY seq")
        names = [d[0] for d in cur.description]
        out = []
        wanted = None if keys is None else set(keys)
        for values in cur:
            row = dict(zip(names, values))
            if wanted is not None and row["key"] not in wanted:
                continue
            for col in ("overrides", "params", "figures"):
                row[col] = json.loads(row[col])
            out.append(row)
        return out
