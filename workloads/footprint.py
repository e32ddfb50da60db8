"""The up-front size estimate of a workload: host memory and stored nonzeros, from its shapes
and densities alone, before any tensor is built.

``estimate(name, params)`` reads only the resolved parameters (``Workload.resolve``), so a run
that cannot fit this machine (or, for a SAM kernel whose inputs must sit in the global buffer
whole, the chip: :mod:`compiler.footprint`) is refused in well under a second, with the
figures, instead of failing after minutes of generation with a MemoryError.

The host figure is an estimate: the sum of the large arrays that building the workload and its
numpy reference hold at once (each term is named in the code) and, for a SAM kernel, the
simulation and output check per effectual point and per output element (two measured
coefficients); ``tests/test_footprint.py`` checks it against tracemalloc's measured peaks.
The chip's data structures are :mod:`compiler.footprint`'s.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Footprint", "available_memory_bytes", "estimate"]

_F8 = 8          # bytes of a float64 / int64 element
_CHOICE_DENSE_CUTOFF = 50
"""numpy's Generator.choice without replacement permutes the whole population (8 bytes per
element) when the sample exceeds population // 50 or the population is <= 10,000; otherwise it
keeps a hash set of the sample (numpy/random/_generator.pyx, ``choice``)."""

# The kernels' operands: (index letters the shape parameter sizes, {tensor: (its indices,
# the parameter holding its density)}, the output's indices). Mirrors workloads.kernels.
_KERNELS: dict[str, tuple[str, dict[str, tuple[str, str]], str]] = {
    "spmv": ("ij", {"B": ("ij", "density"), "c": ("j", "density")}, "i"),
    "spmspm": ("ijk", {"B": ("ik", "density"), "C": ("kj", "density")}, "ij"),
    "elemadd": ("ij", {"B": ("ij", "density"), "C": ("ij", "density")}, "ij"),
    "elemmul": ("ij", {"B": ("ij", "density"), "C": ("ij", "density")}, "ij"),
    "elemadd3": ("ij", {"B": ("ij", "density"), "C": ("ij", "density"),
                        "D": ("ij", "density")}, "ij"),
    "gemm": ("ijk", {"A": ("ik", "density"), "B": ("kj", "")}, "ij"),
    "sddmm": ("ijk", {"B": ("ij", "density"), "C": ("ik", "factor_density"),
                      "D": ("jk", "factor_density")}, "ij"),
    "ttv": ("ijk", {"B": ("ijk", "density"), "c": ("k", "factor_density")}, "ij"),
    "ttm": ("ijkl", {"B": ("ijl", "density"), "C": ("kl", "factor_density")}, "ijk"),
    "innerprod": ("ijk", {"B": ("ijk", "density"), "C": ("ijk", "density")}, ""),
    "mttkrp": ("ijkl", {"B": ("ikl", "density"), "C": ("jk", "factor_density"),
                        "D": ("jl", "factor_density")}, "ij"),
}
_SPARSE_GENERATED = ("spmv", "spmspm", "elemadd", "elemmul", "elemadd3")   # scipy CSR operands

OUTPUT_ELEMENT_BYTES = 160
"""Host bytes per element of a SAM kernel's (dense) output space over a whole run. Measured
with tracemalloc on spmspm runs (200^3 and 400^3 at 5%, 800^3 at 2%): 138 bytes, i.e. about
17 float64 arrays of the output's size (reference, simulated output, check temporaries,
output assembly); rounded up."""

PRODUCT_BYTES = 600
"""Host bytes per effectual point of a SAM kernel's iteration space (the simulator's stream
tokens and firing tables). Measured on the same runs: 517 bytes; rounded up."""

STORED_BYTES = 200
"""Host bytes per stored input nonzero of a SAM kernel (every nonzero is scanned, matched or
not). Measured: spmv 3000^2 at 10% (900k nonzeros, 90k effectual points) took 140 bytes per
nonzero beyond the terms above; rounded up."""

SETUP_BYTES = 16 * 2**20
"""Host bytes of compiling and setting up any SAM run (graph, placement, routing, images).
Measured: small ttv and sddmm runs peak about 15 MB above the other terms."""

_LAYER_CHUNK = 1024
"""The FFN-dimension chunk of the layers' numpy reference (workloads.layers.ffn_reference)."""


@dataclass(frozen=True)
class Footprint:
    """The size of one workload run, estimated from its parameters.

    ``host_bytes``: the host memory the run's largest arrays take at once (module docstring).
    ``stored_elements``: for a SAM kernel, a lower bound of the elements of its input
    fibertrees (each input's nonzeros: every value is stored); None for workloads that are
    tiled (dense GEMM, model layers). ``terms``: what ``host_bytes`` adds up, for messages.
    """

    workload: str
    host_bytes: int
    stored_elements: int | None
    terms: dict[str, int] = field(default_factory=dict)


def estimate(name: str, p: dict[str, Any]) -> Footprint | None:
    """The footprint of catalog entry ``name`` with resolved parameters ``p``; None for a
    workload whose sizes come from a file (its reader checks sizes itself)."""
    if name in _KERNELS:
        return _kernel(name, p)
    if name.startswith(("moe.", "ffn.", "linear.")) and not p.get("weights"):
        return _layer(name, p)
    return None


def available_memory_bytes() -> int:
    """Memory this process may still take: the smaller of the machine's available memory
    (/proc/meminfo MemAvailable) and what its address-space limit (RLIMIT_AS) leaves."""
    avail = _meminfo("MemAvailable") or _meminfo("MemTotal") or (1 << 62)
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        avail = min(avail, soft - _vm_size())
    return max(0, avail)


def _meminfo(key: str) -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _vm_size() -> int:
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _kernel(name: str, p: dict[str, Any]) -> Footprint:
    letters, operands, out = _KERNELS[name]
    if p.get("shape_order") == "mkn":        # the old M,K,N reading of a matrix product
        letters = "ikj"
    shape = p["shape"]
    if len(shape) != len(letters) or any(not isinstance(s, int) or s < 1 for s in shape):
        # the builder reports a malformed shape with its own message
        return Footprint(name, 0, None)
    size = dict(zip(letters, shape))
    terms: dict[str, int] = {}
    stored = 0
    for tensor, (idx, dens_key) in operands.items():
        n = math.prod(size[v] for v in idx)
        dens = float(p.get(dens_key, 1.0)) if dens_key else 1.0
        nnz = round(min(max(dens, 0.0), 1.0) * n) if dens == dens else n
        terms[f"{tensor} generation"] = _generation_bytes(name, n, nnz)
        stored += nnz
    # the numpy reference and the simulated output, both dense, the output check's
    # temporaries and the output fibertree's assembly
    outputs = math.prod(size[v] for v in out)
    terms["dense output, reference and check"] = OUTPUT_ELEMENT_BYTES * outputs
    if name != "gemm":      # the SAM simulation: tokens of every stream, per effectual point
        dens = [float(p.get(k, 1.0)) if k else 1.0 for _, k in operands.values()]
        dens = [min(max(d, 0.0), 1.0) if d == d else 1.0 for d in dens]
        hit = min(1.0, sum(dens)) if name == "elemadd" else math.prod(dens)
        terms["simulation"] = round(PRODUCT_BYTES * math.prod(shape) * hit
                                    + STORED_BYTES * stored + SETUP_BYTES)
    return Footprint(name, sum(terms.values()),
                     None if name == "gemm" else stored, terms)


def _generation_bytes(name: str, n: int, nnz: int) -> int:
    """Peak bytes to generate one operand of ``n`` elements with ``nnz`` nonzeros."""
    dense_choice = n <= 10_000 or nnz > n // _CHOICE_DENSE_CUTOFF
    choice = _F8 * n if dense_choice else 2 * _F8 * nnz
    if name in _SPARSE_GENERATED:       # choice, then rows, cols, data and the CSR copy
        return choice + 6 * _F8 * nnz
    if name == "gemm":                  # values, the keep mask and the choice
        return 2 * _F8 * n + n + choice
    return _F8 * n + choice + 2 * _F8 * nnz   # random_tensor: dense array, choice, data


def _layer(name: str, p: dict[str, Any]) -> Footprint:
    """Model layers: activations and reference outputs per token, plus one FFN chunk."""
    from workloads.models import layer_dims

    dims = layer_dims(name, p)
    if dims is None:
        return Footprint(name, 0, None)
    d, f, k = dims
    tokens = int(p["tokens"])
    terms = {
        # x (float32), its float64 copy, the reference output and the simulated output
        "activations": tokens * d * (4 + 3 * _F8),
        # per routed expert of a token: one FFN chunk's up, gate, activation, h, its TEAL copy
        # and the down-projection partial with numpy temporaries (8 float64 arrays), and the
        # full-width h and its copies (4)
        "FFN intermediates": tokens * k * (8 * min(f, _LAYER_CHUNK) + 4 * f) * _F8,
        # one weight chunk of each matrix (float32) and its float64 copy
        "weight chunks": 3 * _LAYER_CHUNK * d * (4 + _F8),
    }
    return Footprint(name, sum(terms.values()), None, terms)

