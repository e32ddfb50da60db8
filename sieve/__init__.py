"""Sieve: a cycle-level simulator of a sparsity-aware dataflow chip.

    >>> import sieve
    >>> report = sieve.run("configs/chips/onyx-small.yaml", "spmspm",
    ...                    params={"shape": "16,16,16", "density": "0.2"})
"""

from __future__ import annotations

from typing import Any

__all__ = ["Report", "run", "sweep"]


def __getattr__(name: str) -> Any:
    """``sieve.run``, ``sieve.Report`` and ``sieve.sweep`` load the simulator on first use, so
    the command line (``sieve list``, ``sieve --version``) starts without it."""
    if name == "sweep":
        from sieve.sweeper import sweep

        return sweep
    if name in __all__:
        from sieve import api

        return getattr(api, name)
    raise AttributeError(f"module 'sieve' has no attribute {name!r}")
