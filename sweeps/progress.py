"""The sweep's progress display: points done, failures and ETA.

On a terminal a tqdm bar (imported only then); otherwise one plain line per finished point,
so logs and CI output stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from sweeps.target import Point


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def describe(point: Point, swept: tuple[str, ...]) -> str:
    """The point in one short phrase: chip, workload and its swept values."""
    vals = {**point["overrides"], **point["params"]}
    extra = " ".join(f"{k}={vals[k]}" for k in swept if k in vals)
    return f"{point['chip_label']} {point['workload_label']} {extra}".strip()


class Progress:
    """Counts of one sweep run: ``total`` points, ``done`` of them recorded before it."""

    def __init__(self, total: int, done: int, todo: int, swept: tuple[str, ...],
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.done, self.todo = total, done, todo
        self.swept = swept
        self.failed = 0
        self.ran = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.bar: Any = None
        if enabled and todo and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, file=self.stream, unit="pt",
                            dynamic_ncols=True, desc="sweep")

    def eta(self) -> float | None:
        if not self.ran:
            return None
        return (time.perf_counter() - self.t0) / self.ran * (self.todo - self.ran)

    def update(self, point: Point, outcome: dict[str, Any]) -> None:
        self.ran += 1
        self.done += 1
        ok = outcome["status"] == "ok"
        self.failed += not ok
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed)
            self.bar.update(1)
            return
        eta = self.eta()
        what = "ok" if ok else "FAILED: " + str(outcome.get("error", "")).splitlines()[0]
        print(f"[{self.done:>{len(str(self.total))}}/{self.total}] {self.failed} failed, "
              f"ETA {_clock(eta) if eta is not None else '?'}  "
              f"{describe(point, self.swept)}: {what} ({outcome.get('wall_seconds', 0):.1f} s)",
              file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
