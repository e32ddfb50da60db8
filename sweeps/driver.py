"""The one road every point takes: skip what the store has, submit the rest to the executor
(a bounded window at a time), record each outcome as it arrives.

A point whose worker died is submitted again, up to :data:`MAX_LOST` times in all, then
recorded as failed with the reason. Interrupting the driver (Ctrl-C, SIGTERM, SIGKILL) loses
only the points in flight; a rerun of the same spec resumes from the store.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from sweeps.progress import Progress
from sweeps.spec import SweepSpec
from sweeps.store import Store
from sweeps.target import Point, Target
from sweeps.worker import WorkerLost

MAX_LOST = 3
"""Times a point may lose its worker before it is recorded as failed."""


@dataclass
class SweepRun:
    """What one run of a sweep did."""

    total: int          # points in the spec
    before: int         # already recorded as ok (or failed, without --retry-failed)
    ran: int            # points run now (recorded)
    failed: int         # of those, failed
    resubmitted: int    # submissions again after a worker died


def pending(spec: SweepSpec, store: Store, retry_failed: bool) -> list[Point]:
    """The spec's points the store lacks (and its failed ones with ``retry_failed``)."""
    status = store.statuses()
    return [p for p in spec.points
            if p["key"] not in status or (retry_failed and status[p["key"]] == "failed")]


def run_sweep(spec: SweepSpec, target: Target, executor: Any, store: Store, *,
              retry_failed: bool = False, progress: Progress | None = None) -> SweepRun:
    """Run the points of ``spec`` the store lacks on ``executor``, recording each."""
    todo = deque(pending(spec, store, retry_failed))
    before = len(spec.points) - len(todo)
    store.set_meta("name", spec.name)
    if spec.path is not None:
        store.set_meta("spec", spec.path.read_text(encoding="utf-8"))
    store.set_meta("points", json.dumps([p["key"] for p in spec.points]))
    prog = progress or Progress(len(spec.points), before, len(todo), spec.swept, enabled=False)
    jobs: dict[int, Point] = {}
    lost: Counter[str] = Counter()
    window = 2 * executor.workers
    run = SweepRun(len(spec.points), before, 0, 0, 0)
    while todo or jobs:
        while todo and len(jobs) < window:
            point = todo.popleft()
            jobs[executor.submit(target.run_point, point)] = point
        for job, outcome in executor.wait():
            point = jobs.pop(job)
            if isinstance(outcome, WorkerLost):
                lost[point["key"]] += 1
                if lost[point["key"]] < MAX_LOST:
                    run.resubmitted += 1
                    prog.note(f"  {outcome.reason} while running point {point['seq']}; "
                              "running it again")
                    todo.appendleft(point)
                    continue
                outcome = {"status": "failed", "figures": {},
                           "error": f"WorkerLost: {outcome.reason} ({MAX_LOST} times)"}
            store.record(point, outcome)
            run.ran += 1
            run.failed += outcome["status"] != "ok"
            prog.update(point, outcome)
    return run


def execute(spec_path: Any, target: Target, *, scheduler: str | None = None,
            workers: int | None = None, retry_failed: bool = False, store: Any = None,
            show_progress: bool = True, stream: Any = None
            ) -> tuple[SweepSpec, SweepRun, list[dict[str, Any]]]:
    """Load and check the spec, run what the store lacks on the chosen executor, and return
    (spec, what this run did, the stored rows of the spec's points in order)."""
    from sweeps.executors import make_executor
    from sweeps.spec import load_sweep

    spec = load_sweep(spec_path, target, store=store)
    db = Store(spec.store)
    try:
        todo = pending(spec, db, retry_failed)
        total = len(spec.points)
        if todo:
            prog = Progress(total, total - len(todo), len(todo), spec.swept, stream,
                            enabled=show_progress)
            ex = make_executor(scheduler, workers, (target.run_point.__module__,))
            try:
                run = run_sweep(spec, target, ex, db, retry_failed=retry_failed, progress=prog)
            finally:
                prog.close()
                ex.close()
        else:
            run = SweepRun(total, total, 0, 0, 0)
        rows = db.rows([p["key"] for p in spec.points])
    finally:
        db.close()
    return spec, run, rows


def frame(spec: Any, target: Target, *, scheduler: str | None = None,
          workers: int | None = None, retry_failed: bool = False, store: Any = None,
          progress: bool = False) -> Any:
    """:func:`execute` for Python callers: the spec's rows as a pandas DataFrame (flat
    columns, sweeps.table)."""
    from sweeps.table import flat_rows, to_frame

    sp, _run, rows = execute(spec, target, scheduler=scheduler, workers=workers,
                             retry_failed=retry_failed, store=store, show_progress=progress)
    return to_frame(flat_rows(sp, rows))
