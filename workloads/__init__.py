"""Workloads: kernels with concrete tensors, model layers (MoE, FFN, linear) with seeded
generators, and the catalog ``sieve list workloads`` shows."""

from __future__ import annotations

import difflib

from workloads.base import KernelLayer, Param, Workload, WorkloadError
from workloads.kernels import KERNELS
from workloads.layers import FFNLayer, LinearLayer, MoELayer
from workloads.models import LAYERS

CATALOG: dict[str, Workload] = {w.name: w for w in KERNELS + LAYERS}


def get_workload(name: str) -> Workload:
    """Look up a catalog entry by name."""
    try:
        return CATALOG[name]
    except KeyError:
        hint = difflib.get_close_matches(name, CATALOG, n=1)
        raise WorkloadError(f"unknown workload {name!r}" +
                            (f" (did you mean {hint[0]}?)" if hint else "") +
                            f"; available: {', '.join(CATALOG)}") from None


__all__ = ["CATALOG", "FFNLayer", "KernelLayer", "LinearLayer", "MoELayer", "Param", "Workload",
           "WorkloadError", "get_workload"]
