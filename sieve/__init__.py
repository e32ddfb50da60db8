"""Sieve: a cycle-level simulator of a sparsity-aware dataflow chip.

    >>> import sieve
    >>> report = sieve.run("configs/chips/onyx-small.yaml", "spmspm",
    ...                    params={"shape": "16,16,16", "density": "0.2"})
"""

from __future__ import annotations

from sieve.api import Report, run
from sieve.sweeper import sweep

__all__ = ["Report", "run", "sweep"]
