"""The executor chosen at the edge: a local pool by default, or Dask with a scheduler. The
driver (sweeps.driver) talks to either through ``submit(fn, point) -> job``, ``wait() ->
[(job, outcome)]``, ``close()`` and ``workers``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from isa.errors import ConfigError


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:    # not Linux
        return os.cpu_count() or 1


def _check_options(scheduler: str | None, workers: int | None) -> None:
    """One error for a bad ``--workers`` or ``--scheduler``, before anything starts."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    if scheduler is not None and scheduler != "local-dask" and not scheduler.startswith(
            ("tcp://", "tls://", "ws://")):
        raise ConfigError(f"--scheduler {scheduler!r}: use tcp://HOST:PORT or local-dask")


def make_executor(scheduler: str | None, workers: int | None,
                  preload: tuple[str, ...] = ()) -> Any:
    """``None``: a LocalPool of ``workers`` (default: the cores); ``local-dask``: a Dask
    LocalCluster of that many single-threaded workers; ``tcp://HOST:PORT``: that cluster."""
    _check_options(scheduler, workers)
    n = workers or default_workers()
    if scheduler is None:
        from sweeps.pool import LocalPool

        return LocalPool(n, preload)
    from sweeps.dask_executor import DaskExecutor

    return DaskExecutor(scheduler, n)


@contextlib.contextmanager
def parallel_map(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A ``map(fn, items)`` (results in order) for one run's independent work: the builtin
    map with neither option; a local process pool of ``workers`` (forkserver, BLAS pinned to
    one thread per worker) with ``workers``; a Dask cluster with ``scheduler``."""
    _check_options(scheduler, workers)
    if scheduler is None and workers in (None, 1):
        yield map
        return
    if scheduler is None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from sweeps.worker import pin_blas_threads

        with ProcessPoolExecutor(workers, mp.get_context("forkserver"),
                                 initializer=pin_blas_threads) as pool:
            yield lambda fn, items: pool.map(fn, items, chunksize=4)
        return
    from sweeps.dask_executor import DaskExecutor

    ex = DaskExecutor(scheduler, workers or default_workers())
    try:
        yield lambda fn, items: ex.client.gather(ex.client.map(fn, list(items), pure=False))
    finally:
        ex.close()
