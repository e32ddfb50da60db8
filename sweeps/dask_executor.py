"""The Dask executor: the same points on a ``distributed`` cluster (a scheduler address, or a
LocalCluster started here with ``local-dask``). dask is imported only when one is asked for.

Dask reruns a task whose worker died (``distributed.scheduler.allowed-failures``, 3 by
default) and then raises KilledWorker; that ends the point as failed, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from isa.errors import ConfigError
from sweeps.target import Point
from sweeps.worker import call_point


class DaskExecutor:
    """Points as Dask futures on ``scheduler`` (``tcp://HOST:PORT`` or ``local-dask``)."""

    def __init__(self, scheduler: str, workers: int) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--scheduler needs dask[distributed] (pip install "
                              "'dask[distributed]')") from None
        self.cluster = None
        if scheduler == "local-dask":
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                        processes=True, dashboard_address=None,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
        n = len(self.client.scheduler_info().get("workers", {}))
        self.workers = max(1, n)
        self._futures: dict[Any, int] = {}
        self._next = 0

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    def submit(self, fn: Callable[[Point], dict[str, Any]], point: Point) -> int:
        self._next += 1
        fut = self.client.submit(call_point, fn, point, pure=False,
                                 key=f"sweep-point-{point['key']}-{self._next}")
        self._futures[fut] = self._next
        return self._next

    def wait(self) -> list[tuple[int, dict[str, Any]]]:
        """Block until at least one point ends; (job, outcome) of each ended."""
        from distributed import wait

        if not self._futures:
            return []
        done, _ = wait(list(self._futures), return_when="FIRST_COMPLETED")
        out = []
        for fut in done:
            job = self._futures.pop(fut)
            try:
                outcome = fut.result()
            except Exception as exc:   # noqa: BLE001 - KilledWorker, lost scheduler, ...
                outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                           "figures": {}}
            out.append((job, outcome))
        return out

    def close(self) -> None:
        for fut in self._futures:
            fut.cancel()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
