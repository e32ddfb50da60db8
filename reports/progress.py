"""The progress display of a run on stderr: bars on a terminal, one line per stage on a pipe.

It implements the simulator's progress interface (simulator.progress.Progress: ``stage``,
``advance``, a call with a cycle or label) and shows nothing for runs that end within
``delay_s`` (2 s): a short run stays quiet.

- Terminal: a rich progress bar per stage (imported only when a display is shown), with the
  count, total, percent, elapsed time and ETA when the stage's total is known, and the current
  item's label; stages without a total show their elapsed time.
- Pipe (not a TTY), or rich missing: one line per stage, ``sieve [12.3 s] experts: 412 chunks``
  (the stage in progress at the 2 s mark, then each later one), and a closing line.

Use it as a context manager (``with ProgressDisplay() as p: run(..., progress=p)``) so the
display is closed however the run ends.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["ProgressDisplay"]


class ProgressDisplay:
    """Progress of one run on ``stream`` (default stderr); see the module docstring."""

    def __init__(self, stream: TextIO | None = None, *, delay_s: float = 2.0,
                 tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self.name = ""
        self.total: int | None = None
        self.unit = ""
        self.done = 0
        self.stages = 0
        self.live = False
        self.closed = False
        self._lock = threading.Lock()
        self._bar: Any = None            # rich.progress.Progress once shown
        self._task: Any = None
        self._timer = threading.Timer(delay_s, self._show)
        self._timer.daemon = True
        self._timer.start()

    # ------------------------------------------------------------------ the interface
    def stage(self, name: str, total: int | None = None, unit: str = "") -> None:
        with self._lock:
            self.name, self.total, self.unit, self.done = name, total, unit, 0
            self.stages += 1
            if self._bar is not None:
                self._new_task("")
            elif self.live:
                self._line()

    def advance(self, n: int = 1, label: str = "") -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(self._task, advance=n, **({"label": label} if label else {}))

    def __call__(self, where: int | str) -> None:
        label = f"cycle {where:,}" if isinstance(where, int) else str(where)
        with self._lock:
            if self._bar is not None:
                self._bar.update(self._task, label=label)

    # ------------------------------------------------------------------ showing
    def _show(self) -> None:
        """The delay has passed and the run goes on: start showing it."""
        with self._lock:
            if self.live or self.closed:      # the timer may fire while close() runs
                return
            self.live = True
            if self.tty:
                try:
                    self._start_bar()
                    return
                except ImportError:
                    pass
            if self.stages:
                self._line()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                             TextColumn("ETA"), TimeRemainingColumn(),
                             TextColumn("{task.fields[label]}"),
                             console=Console(file=self.stream), transient=False)
        self._bar.start()
        if self.stages:
            self._new_task("")

    def _new_task(self, label: str) -> None:
        if self._task is not None:
            self._bar.stop_task(self._task)
        desc = f"{self.name} ({self.unit})" if self.unit else self.name
        self._task = self._bar.add_task(desc, total=self.total, completed=self.done,
                                        label=label)

    def _line(self) -> None:
        size = f": {self.total:,} {self.unit}".rstrip() if self.total is not None else ""
        print(f"sieve [{time.monotonic() - self.t0:.1f} s] {self.name}{size}",
              file=self.stream, flush=True)

    def close(self) -> None:
        """Stop the display (a closing line on a pipe when anything was shown)."""
        self._timer.cancel()
        with self._lock:
            self.closed = True
            if self._bar is not None:
                self._bar.stop()
                self._bar = None
            elif self.live:
                print(f"sieve [{time.monotonic() - self.t0:.1f} s] done", file=self.stream,
                      flush=True)

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
