"""``sieve sweep SPEC.yaml``: the sub-command's options and its output (progress, table, CSV,
plot). The front door adds it with :func:`add_sweep_parser` and a Target factory."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sweeps.target import Target


def add_sweep_parser(sub: argparse._SubParsersAction, target: Callable[[], Target]) -> None:
    """Add ``sweep`` to the sub-commands; ``target`` gives the simulator's Target."""
    p = sub.add_parser("sweep", help="run a parameter sweep from a YAML spec (docs/sweeps.md); "
                       "resumes from its SQLite store")
    p.add_argument("spec", help="sweep spec (YAML)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster: tcp://HOST:PORT, or local-dask to start a "
                   "LocalCluster here (default: a local process pool)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: the cores)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run the points recorded as failed again")
    p.add_argument("--db", default=None, metavar="PATH",
                   help="SQLite store (default: the spec's store:, else "
                   "runs/sweeps/<name>.sqlite)")
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV")
    p.add_argument("--plot", nargs=2, default=None, metavar=("X", "Y"),
                   help="draw figure Y against parameter X (e.g. weight_sparsity "
                   "baseline.edp_ratio), one line per chip and workload")
    p.add_argument("--plot-out", default=None, metavar="PNG",
                   help="where the plot goes (default: next to the store)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(fn=lambda args: cmd_sweep(args, target()))


def cmd_sweep(args: argparse.Namespace, target: Target) -> int:
    """Run (or resume) the sweep, print its table; 1 when a point failed, else 0."""
    from sweeps.driver import execute
    from sweeps.table import flat_rows, render_table, write_csv

    t0 = time.perf_counter()
    spec, run, rows = execute(args.spec, target, scheduler=args.scheduler,
                              workers=args.workers, retry_failed=args.retry_failed,
                              store=args.db, show_progress=not args.quiet)
    records = flat_rows(spec, rows)
    failed = sum(r["status"] != "ok" for r in records)
    print(render_table(records), end="")
    print(f"sweep {spec.name}: {run.total} points, {run.before} recorded before, {run.ran} "
          f"run now ({run.failed} failed"
          + (f", {run.resubmitted} resubmitted after a worker died" if run.resubmitted else "")
          + f") in {time.perf_counter() - t0:.1f} s; {len(records)} rows, {failed} failed; "
          f"store {spec.store}")
    if args.csv:
        print(f"wrote {write_csv(records, args.csv)}")
    if args.plot:
        from sweeps.plot import plot_sweep

        x, y = args.plot
        out = args.plot_out or Path(spec.store).with_name(
            f"{spec.name}.{y.replace('.', '_')}-vs-{x.replace('.', '_')}.png")
        path, marks = plot_sweep(records, x, y, spec.swept, out, title=spec.name)
        for what, cx, cy in marks:
            print(f"  crossover: {what} at {x}={cx:.4g} ({y}={cy:.4g})")
        print(f"wrote {path}")
    if failed:
        print(f"{failed} point(s) failed (the error column of the store); rerun with "
              "--retry-failed to run them again", file=sys.stderr)
    return 1 if failed else 0
