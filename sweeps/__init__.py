"""Parameter sweeps: a YAML spec expanded into points, run on a local process pool or a Dask
cluster, each point's result stored in SQLite as it finishes, so an interrupted sweep resumes.

The package knows nothing of the simulator: what a point runs and how its inputs are checked
come in a :class:`sweeps.target.Target` (``sieve.sweep`` provides Sieve's). Heavy libraries
(dask, pandas, tqdm, matplotlib) are imported only by the functions that use them.

Modules: spec (format, checks, points), target (what the simulator provides), driver (the
one loop), pool and dask_executor (chosen in executors), worker, store, progress, table, plot,
cli (``sieve sweep``). Nothing is imported here, so ``sieve``'s start-up pays for none of it.
"""
