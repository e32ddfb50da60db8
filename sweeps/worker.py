"""What runs in a worker process: one point, timed, with its failure caught as a record (or,
when the process itself dies, the executor's :class:`WorkerLost`)."""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from isa.errors import SieveError
from sweeps.target import Point

_PINNED = False


@dataclass(frozen=True)
class WorkerLost:
    """A point's worker died before returning (killed, out of memory, a crash in C code)."""

    reason: str


def pin_blas_threads() -> None:
    """One BLAS/OpenMP thread in this process (once): workers, not threads, use the cores."""
    global _PINNED
    if _PINNED:
        return
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    _PINNED = True


def call_point(fn: Callable[[Point], dict[str, Any]], point: Point) -> dict[str, Any]:
    """Run ``fn(point)``; the outcome: status (ok | failed), error, figures, wall and CPU
    seconds, host and pid. An exception is a failed outcome whose error is its type and
    message (a traceback only for errors that are not the simulator's own)."""
    pin_blas_threads()
    t0, c0 = time.perf_counter(), time.process_time()
    error: str | None = None
    figures: dict[str, Any] = {}
    try:
        figures = dict(fn(point))
        error = figures.pop("error", None)
    except Exception as exc:   # noqa: BLE001 - every failure of a point becomes its row
        error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (SieveError, ValueError)):
            error += "\n" + "".join(traceback.format_exception(exc)[-3:])
    return {"status": "failed" if error else "ok", "error": error, "figures": figures,
            "wall_seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "host": socket.gethostname(), "pid": os.getpid()}
