"""BLAS threads set explicitly for every run: unmanaged OpenBLAS threads made the analytic
layer engine 5-11x slower on a loaded machine (issue 11). ``SIEVE_BLAS_THREADS`` (default 1:
Sieve's products are small and sweeps run in parallel processes) sets the count."""

from __future__ import annotations

import functools
import os
from typing import Any


def with_blas_threads(fn: Any) -> Any:
    """Run ``fn`` with every loaded BLAS library limited to ``SIEVE_BLAS_THREADS`` threads."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        text = os.environ.get("SIEVE_BLAS_THREADS", "1")
        if not text.isdigit() or int(text) < 1:
            from isa.errors import ConfigError

            raise ConfigError(f"environment SIEVE_BLAS_THREADS: expected a positive integer, "
                              f"got {text!r}")
        with threadpool_limits(limits=int(text), user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper
