"""The local executor: a pool of worker processes, one point at a time each.

Not concurrent.futures' pool: when a worker dies there, every pending future breaks and the
point that killed it cannot be told apart. Here the driver knows which point each worker
holds, so a dead worker costs exactly its own point (reported as :class:`WorkerLost`, which the
driver retries), and a fresh worker takes its place. Workers come from a ``forkserver`` (fork
from a clean process that has imported the point runner's module once), pin BLAS to one thread,
ignore Ctrl-C (the driver stops them), and exit when the driver's end of their pipe closes,
so a killed driver leaves no worker behind once their current point ends.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import signal
from collections import deque
from collections.abc import Callable
from typing import Any

from sweeps.target import Point
from sweeps.worker import WorkerLost, call_point, pin_blas_threads


def _serve(conn: mpc.Connection) -> None:
    """A worker's loop: receive (job, fn, point), send (job, outcome); stop on None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_blas_threads()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job, fn, point = msg
        outcome = call_point(fn, point)
        try:
            conn.send((job, outcome))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.job: int | None = None


class LocalPool:
    """``workers`` processes on this machine; ``preload``: modules the forkserver imports."""

    def __init__(self, workers: int, preload: tuple[str, ...] = ()) -> None:
        self.workers = workers
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["sweeps.worker", *preload])
        self._pool = [_Worker(self.ctx) for _ in range(workers)]
        self._queue: deque[tuple[int, Callable[[Point], Any], Point]] = deque()
        self._next = 0

    def submit(self, fn: Callable[[Point], dict[str, Any]], point: Point) -> int:
        self._next += 1
        self._queue.append((self._next, fn, point))
        self._dispatch()
        return self._next

    def _dispatch(self) -> None:
        for i, w in enumerate(self._pool):
            if w.job is None and self._queue and not w.proc.is_alive():
                w.proc.join()
                w.conn.close()
                w = self._pool[i] = _Worker(self.ctx)
            if w.job is None and self._queue:
                job, fn, point = self._queue.popleft()
                w.job = job
                w.conn.send((job, fn, point))

    def wait(self) -> list[tuple[int, dict[str, Any] | WorkerLost]]:
        """Block until at least one job ends; (job, outcome or WorkerLost) of each ended."""
        busy = [w for w in self._pool if w.job is not None]
        if not busy:
            return []
        ready = set(mpc.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
        out: list[tuple[int, dict[str, Any] | WorkerLost]] = []
        for i, w in enumerate(self._pool):
            if w.job is None or (w.conn not in ready and w.proc.sentinel not in ready):
                continue
            try:
                if w.conn.poll():
                    job, outcome = w.conn.recv()
                    out.append((job, outcome))
                    w.job = None
                    continue
            except (EOFError, OSError):
                pass
            w.proc.join(timeout=5)
            if w.proc.is_alive():      # the pipe broke but the process lives: stop it
                w.proc.kill()
                w.proc.join()
            out.append((w.job, WorkerLost(f"worker process {w.proc.pid} died "
                                          f"(exit code {w.proc.exitcode})")))
            w.conn.close()
            self._pool[i] = _Worker(self.ctx)
        self._dispatch()
        return out

    def close(self) -> None:
        """Stop every worker (a point in progress is abandoned, not recorded)."""
        for w in self._pool:
            try:
                if w.job is None:
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._pool:
            w.proc.join(timeout=2 if w.job is None else 0)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()
        self._queue.clear()
