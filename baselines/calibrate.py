"""Host calibration (``sieve calibrate-cpu``): measure this machine, fit a host CPU preset.

:func:`calibrate_host` times numpy GEMM, scipy's sparse kernels and streaming bandwidth, fits
the preset's issue costs by non-negative least squares, and writes a YAML preset with a source
tag above every number. :func:`blas_threads` pins the BLAS thread count; :func:`time_call` is
the timer.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import logging
import os
import platform
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.sparse as sp
import yaml

from baselines.kernels import spgemm_branch_misses
from baselines.operands import pattern
from baselines.presets import cpu_preset_from_dict
from workloads.base import random_sparse

__all__ = [
    "LLC_FALLBACK_BYTES_PER_CPU",
    "MAX_LLC_BYTES_PER_CPU",
    "MIN_CYCLES_PER_EVENT",
    "blas_threads",
    "calibrate_host",
    "cpu_vendor",
    "fit_bounded",
    "fit_error_summary",
    "implausible_llc",
    "time_call",
]

log = logging.getLogger(__name__)

MIN_CYCLES_PER_EVENT = 0.25
"""Floor of every fitted per-event cost, core cycles. ASSUMPTION: each event the model counts
(a nonzero, a row, a product, an output, a misprediction) costs at least one instruction,
and a core retires at most four per cycle (Skylake and Zen cores are 4-6 wide)."""

MAX_LLC_BYTES_PER_CPU = 32 << 20
"""An L3 share above this per CPU sharing it is not a real cache. The largest shipping L3
per core is ~12 MiB (AMD's V-Cache EPYCs, VENDOR, recalled); EPYC 9654 has 4 MiB per core
(384 MB / 96 cores, VENDOR: AMD's EPYC 9654 specification, not re-verified)."""

LLC_FALLBACK_BYTES_PER_CPU = {"Intel": 1441792, "AMD": 4 << 20, "unknown": 2 << 20}
"""The LLC assumed per CPU, by vendor, when /sys reports none or an implausible one: Intel,
the Xeon Silver 4214's 16.5 MB over 12 cores (VENDOR, configs/cpus/xeon-12c.yaml); AMD, the
EPYC 9654's 384 MB over 96 cores (VENDOR, as epyc-9654.yaml); otherwise 2 MiB (ASSUMPTION:
between the two)."""

_LLC_FALLBACK_NOTE = {
    "Intel": "the Xeon Silver 4214's 16.5 MB / 12 cores (VENDOR, as xeon-12c.yaml)",
    "AMD": "the EPYC 9654's 384 MB / 96 cores (VENDOR, as epyc-9654.yaml)",
    "unknown": "ASSUMPTION: between a Xeon SP's 1.4 and an EPYC's 4 MiB per core",
}


def calibrate_host(out_path: str | Path, *, repeats: int = 5,
                   quick: bool = False) -> dict[str, Any]:
    """Measure this machine, fit a host preset from the measurements, write it as YAML.

    Measurements (medians of ``repeats`` timed repetitions, ``time.perf_counter``), float32
    values, int32 indices, each operand built by ``workloads.base.random_sparse`` (seeded):

    * numpy GEMM at a few square sizes on one BLAS thread (:func:`blas_threads`; if the
      thread count cannot be set, on the default threads and ``cores`` = all CPUs) ->
      ``dense.gemm_efficiency`` (median over the sizes of measured FLOP/s over peak) and
      ``dense.call_overhead_us`` (the 8x8 case); peak = cores x OS clock x FLOP/cycle from the
      ISA flags. One thread because two-thread BLAS on a shared VM is dominated by contention
      (medians 5-10x below best), and scipy's sparse kernels are single-threaded anyway.
    * scipy CSR @ vector, CSR @ dense, CSR @ CSR, CSR + CSR and CSR .multiply CSR at several
      shapes and densities (in-cache, single-threaded as scipy runs) -> the ``sparse.*``
      cycles and call overheads, fitted jointly per kernel by bounded least squares on relative
      error (``scipy.optimize.lsq_linear``; cycles = seconds x the OS clock, so the model
      reproduces the seconds). Every per-event term is kept at or above
      :data:`MIN_CYCLES_PER_EVENT` (an event the model counts retires at least one
      instruction), the call overhead at or above 0; a term the fit leaves on its floor is
      logged, and each kernel's fit error (median and largest relative residual) is logged,
      written into the preset and returned. The TACO section gets the same scipy rates:
      scipy's sparse kernels are compiled scalar loops on one thread, like TACO's code.
    * numpy copy and triad on arrays of 256 MiB (64 MiB quick) or 4x the LLC if larger ->
      ``mem_bandwidth_gb_per_s`` (best single repetition, uncontended capability) and
      ``stream_efficiency`` (best kernel's median / that best).

    The last-level cache is read from /sys and ignored, with a warning, when implausible
    (:func:`implausible_llc`: a VM may report a host-wide or made-up L3). Power cannot be
    measured in a VM without RAPL: the energy fields are ASSUMPTIONs, taken from the
    reference part of the vendor /proc/cpuinfo names (:func:`cpu_vendor`). Returns the
    measurements, the fitted values, each fit's relative residuals, its error and the warnings.
    """
    plan = _QUICK if quick else _FULL
    repeats = max(1, repeats)
    machine = _machine()
    warnings: list[str] = []
    reason = implausible_llc(machine["llc_bytes"], machine["llc_shared_cpus"])
    if reason:
        warnings.append(f"ignored the last-level cache size /sys reports: {reason}")
        log.warning("%s", warnings[-1])
        machine["llc_reported_bytes"], machine["llc_bytes"] = machine["llc_bytes"], None
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    log.info("calibrating host CPU (%s, quick=%s)", machine["model_name"], quick)
    with blas_threads(1) as single_thread:
        gemm = _measure_gemm(plan, repeats)
    measured = {
        "gemm": gemm,
        "spmv": _measure_spmv(plan, repeats),
        "spmm": _measure_spmm(plan, repeats),
        "spgemm": _measure_spgemm(plan, repeats),
        "merge": _measure_merge(plan, repeats),
        "stream": _measure_stream(max(plan.stream_bytes, 4 * (machine["llc_bytes"] or 0)),
                                  repeats),
    }
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    # Clock and peak: the OS-reported clock; FLOP/cycle from the ISA flags.
    flags = set(machine["flags"])
    fpc = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    freq = (machine["cpu_mhz"] or 3000.0) / 1000.0
    cores = 1 if single_thread else int(machine["cores"])
    hz = freq * 1e9

    gemm_small = measured["gemm"][0]
    dense_overhead = gemm_small["median_s"]
    effs = [2.0 * g["m"] ** 3 / max(g["median_s"] - dense_overhead, 1e-12)
            / (cores * hz * fpc) for g in measured["gemm"][1:]]
    gemm_eff = float(np.median(effs))
    freq_raised = gemm_eff > 1.0
    if freq_raised:   # the BLAS beat the nominal peak: the clock must be higher than reported
        freq, hz, gemm_eff = freq * gemm_eff, hz * gemm_eff, 1.0

    residuals: dict[str, list[float]] = {}
    fit_error: dict[str, dict[str, float]] = {}

    def fit(kernel: str, rows: list[dict[str, Any]],
            features: Callable[[dict[str, Any]], list[float]], names: tuple[str, ...]
            ) -> np.ndarray:
        # column 0 is the call overhead in seconds, the others cycles per event / hz
        floors = [0.0] + [MIN_CYCLES_PER_EVENT] * (len(names) - 1)
        coef, res = fit_bounded([[1.0] + [x / hz for x in features(r)] for r in rows],
                                [r["median_s"] for r in rows], floors)
        residuals[kernel] = res
        fit_error[kernel] = fit_error_summary(res)
        log.info("fit %s: median |error| %.1f%%, largest %.1f%% over %d cases", kernel,
                 100 * fit_error[kernel]["median_abs"], 100 * fit_error[kernel]["max_abs"],
                 len(res))
        for name, value, floor in zip(names[1:], coef[1:], floors[1:], strict=True):
            if value <= floor * (1 + 1e-6):
                log.info("fit %s: %s stays on its floor (%g cycles): these cases do not "
                         "separate it from the other terms", kernel, name, MIN_CYCLES_PER_EVENT)
        return coef

    spmv_c = fit("spmv", measured["spmv"], lambda r: [r["nnz"], r["m"]], _TERMS["spmv"])
    spmm_c = fit("spmm", measured["spmm"],
                 lambda r: [r["nnz"] * r["n_cols"], r["m"] * r["n_cols"]], _TERMS["spmm"])
    spgemm_c = fit("spgemm", measured["spgemm"],
                   lambda r: [r["products"], r["nnz_left"], r["nnz_out"], r["m"],
                              spgemm_branch_misses(r["products"], r["nnz_out"])],
                   _TERMS["spgemm"])
    merge_c = fit("merge", measured["merge"], lambda r: [r["nnz_in"], r["nnz_out"], r["m"]],
                  _TERMS["merge"])

    stream = measured["stream"]
    bw_peak = max(s["gb_per_s_best"] for s in stream)
    bw_sustained = max(s["gb_per_s_median"] for s in stream)

    fitted = {
        "cores": cores, "freq_ghz": freq, "fp32_flops_per_cycle_per_core": fpc,
        "mem_bandwidth_gb_per_s": bw_peak, "stream_efficiency": bw_sustained / bw_peak,
        "llc_bytes": machine["llc_bytes"]
        or LLC_FALLBACK_BYTES_PER_CPU[machine["vendor"]] * int(machine["cores"]),
        "cache_line_bytes": machine["cache_line_bytes"] or 64,
        "dense.gemm_efficiency": gemm_eff, "dense.call_overhead_us": dense_overhead * 1e6,
        "sparse.spmv.cycles_per_nnz": spmv_c[1], "sparse.spmv.cycles_per_row": spmv_c[2],
        "sparse.spmv.call_overhead_us": spmv_c[0] * 1e6,
        "sparse.spmm.cycles_per_mac": spmm_c[1], "sparse.spmm.cycles_per_output": spmm_c[2],
        "sparse.spmm.call_overhead_us": spmm_c[0] * 1e6,
        "sparse.spgemm.cycles_per_product": spgemm_c[1],
        "sparse.spgemm.cycles_per_left_nnz": spgemm_c[2],
        "sparse.spgemm.cycles_per_output_nnz": spgemm_c[3],
        "sparse.spgemm.cycles_per_row": spgemm_c[4],
        "sparse.spgemm.cycles_per_branch_miss": spgemm_c[5],
        "sparse.spgemm.call_overhead_us": spgemm_c[0] * 1e6,
        "sparse.merge.cycles_per_input_nnz": merge_c[1],
        "sparse.merge.cycles_per_output_nnz": merge_c[2],
        "sparse.merge.cycles_per_row": merge_c[3],
        "sparse.merge.call_overhead_us": merge_c[0] * 1e6,
    }
    fitted = {k: (v if isinstance(v, int) else float(v)) for k, v in fitted.items()}
    text = _host_yaml(fitted, measured, machine, when=when, repeats=repeats, quick=quick,
                      freq_raised=freq_raised, effs=effs, single_thread=single_thread,
                      fit_error=fit_error)
    data = yaml.safe_load(text)
    cpu_preset_from_dict(data, where=str(out_path))    # never write a preset that fails to load
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    log.info("wrote host CPU preset %s", out)
    return {
        "when_utc": when, "quick": quick, "repeats": repeats,
        "gemm_single_thread": single_thread,
        "machine": {k: v for k, v in machine.items() if k != "flags"},
        "load_average_before": load_before, "load_average_after": load_after,
        **measured,
        "fitted": fitted,
        "fit_relative_residuals": residuals,
        "fit_error": fit_error,
        "warnings": warnings,
        "preset": data,
    }


def cpu_vendor(vendor_id: str) -> str:
    """``Intel``, ``AMD`` or ``unknown`` from /proc/cpuinfo's ``vendor_id``."""
    return {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vendor_id.strip(), "unknown")


def implausible_llc(llc_bytes: int | None, shared_cpus: int | None) -> str | None:
    """Why a reported last-level cache size cannot be real, or None if it is plausible.

    More than :data:`MAX_LLC_BYTES_PER_CPU` per CPU sharing it (a VM that reports a host-wide
    or made-up L3, e.g. 480 MiB for 2 vCPUs) is implausible.
    """
    if llc_bytes is None:
        return None
    sharing = max(1, shared_cpus or 1)
    if llc_bytes / sharing > MAX_LLC_BYTES_PER_CPU:
        return (f"{llc_bytes / (1 << 20):,.0f} MiB shared by {sharing} CPU(s) is more than "
                f"{MAX_LLC_BYTES_PER_CPU >> 20} MiB per CPU, larger than any real L3 share")
    return None


def fit_bounded(columns: list[list[float]], seconds: list[float], floors: list[float]
                ) -> tuple[np.ndarray, list[float]]:
    """Bounded least squares on relative error: seconds ~ columns @ coef, coef >= floors.

    Each case is weighted by 1 / its measured seconds (so small and large cases count alike)
    and each column scaled to unit norm; ``scipy.optimize.lsq_linear`` (imported here: it is
    slow to load) solves it. Returns the coefficients and each case's relative residual
    (model / measured - 1).
    """
    from scipy.optimize import lsq_linear

    a = np.asarray(columns, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    lower = np.asarray(floors, dtype=np.float64)
    if a.ndim != 2 or a.shape != (len(t), len(lower)) or np.any(t <= 0) or np.any(lower < 0):
        raise ValueError("fit_bounded: one row of columns per positive time, one non-negative "
                         "floor per column")
    weighted = a / t[:, None]
    scale = np.linalg.norm(weighted, axis=0)
    scale[scale == 0] = 1.0
    result = lsq_linear(weighted / scale, np.ones_like(t), bounds=(lower * scale, np.inf),
                        method="bvls")
    coef = np.maximum(result.x / scale, lower)
    return coef, [float(x) for x in (a @ coef) / t - 1.0]


def fit_error_summary(residuals: list[float]) -> dict[str, float]:
    """The median and the largest absolute relative residual of a fit."""
    errors = np.abs(np.asarray(residuals, dtype=np.float64))
    return {"median_abs": float(np.median(errors)) if errors.size else 0.0,
            "max_abs": float(errors.max()) if errors.size else 0.0}


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[bool]:
    """Run the BLAS libraries in this process on ``count`` threads inside the block.

    Finds every OpenBLAS or MKL library loaded (``/proc/self/maps``; numpy and scipy may each
    bundle one) and calls its set-num-threads entry point, restoring the previous counts
    afterwards. Yields whether any was found; where none is, nothing changes.
    """
    np.dot(np.ones((2, 2)), np.ones((2, 2)))       # make sure numpy's BLAS is loaded
    paths = sorted({line.split()[-1] for line in _read_text("/proc/self/maps").splitlines()
                    if ("blas" in line.lower() or "mkl" in line.lower()) and "/" in line})
    controls: list[tuple[Any, int]] = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in _BLAS_THREAD_SETTERS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                controls.append((getattr(lib, setter), int(getattr(lib, getter)())))
                break
    for set_fn, _ in controls:
        set_fn(count)
    try:
        yield bool(controls)
    finally:
        for set_fn, previous in controls:
            set_fn(previous)


def time_call(fn: Callable[[], Any], *, repeats: int = 5,
              min_seconds: float = 0.01) -> tuple[float, float]:
    """(median, best) seconds per call of ``fn`` over ``repeats`` timed repetitions.

    One warm-up call first; each repetition runs ``fn`` enough times in a row to last at least
    ``min_seconds`` (measured with ``time.perf_counter``) and divides.
    """
    def run(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start

    fn()
    number, limit = 1, 1 << 20
    elapsed = run(number)
    while elapsed < min_seconds and number < limit:
        number = min(limit, max(2 * number, int(1.2 * number * min_seconds / max(elapsed, 1e-9))))
        elapsed = run(number)
    samples = [elapsed / number] + [run(number) / number for _ in range(repeats - 1)]
    return float(np.median(samples)), float(min(samples))


@dataclass(frozen=True)
class _Plan:
    """Case lists for one calibration (full or quick)."""

    gemm: tuple[int, ...]
    spmv: tuple[tuple[int, int, float], ...]
    spmm: tuple[tuple[int, int, float, int], ...]
    spgemm: tuple[tuple[int, int, int, float], ...]
    merge: tuple[tuple[int, int, float], ...]
    stream_bytes: int
    min_seconds: float


_FULL = _Plan(
    gemm=(8, 256, 512, 1024),
    spmv=((8, 8, 0.5), (4096, 4096, 0.01), (2048, 2048, 0.05), (1024, 8192, 0.05),
          (16384, 512, 0.01)),
    spmm=((8, 8, 0.5, 4), (4096, 4096, 0.01, 32), (4096, 4096, 0.05, 32),
          (16384, 1024, 0.005, 16)),
    spgemm=((8, 8, 8, 0.5), (1024, 1024, 1024, 0.01), (1024, 1024, 1024, 0.04),
            (1024, 1024, 1024, 0.08), (2048, 2048, 2048, 0.005), (4096, 512, 256, 0.02),
            (400, 8000, 300, 0.008), (1024, 1024, 8192, 0.01)),
    merge=((8, 8, 0.5), (2048, 2048, 0.01), (2048, 2048, 0.05), (16384, 256, 0.02)),
    stream_bytes=256 << 20,
    min_seconds=0.03,
)
_QUICK = _Plan(
    gemm=(8, 128, 256),
    spmv=((8, 8, 0.5), (1024, 1024, 0.02), (4096, 256, 0.01)),
    spmm=((8, 8, 0.5, 4), (1024, 1024, 0.02, 16), (2048, 256, 0.01, 8)),
    spgemm=((8, 8, 8, 0.5), (256, 256, 256, 0.02), (512, 512, 512, 0.04), (256, 256, 256, 0.1),
            (1024, 128, 64, 0.05), (128, 2048, 128, 0.01)),
    merge=((8, 8, 0.5), (512, 512, 0.02), (4096, 64, 0.02)),
    stream_bytes=64 << 20,
    min_seconds=0.002,
)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _machine() -> dict[str, Any]:
    """What the calibration ran on (for the YAML header and the returned measurements)."""
    cpuinfo = _read_text("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return {
        "model_name": fields.get("model name", platform.processor() or "unknown"),
        "cpu_mhz": float(fields["cpu MHz"]) if "cpu MHz" in fields else None,
        "flags": fields.get("flags", "").split(),
        "cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "vendor": cpu_vendor(fields.get("vendor_id", "")),
        "llc_bytes": _cache_size_bytes(3),
        "llc_shared_cpus": _cache_shared_cpus(3),
        "cache_line_bytes": _cache_line_bytes(),
    }


def _cache_size_bytes(level: int) -> int | None:
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")) if base.is_dir() else []:
        if _read_text(str(index / "level")).strip() == str(level):
            text = _read_text(str(index / "size")).strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            digits = text.rstrip("KMG")
            return int(digits) * scale if digits.isdigit() else None
    return None


def _cache_shared_cpus(level: int) -> int | None:
    """How many CPUs share the cache of ``level`` (its /sys shared_cpu_list), or None."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")) if base.is_dir() else []:
        if _read_text(str(index / "level")).strip() == str(level):
            count = 0
            for part in _read_text(str(index / "shared_cpu_list")).strip().split(","):
                lo, _, hi = part.partition("-")
                if lo.isdigit():
                    count += int(hi) - int(lo) + 1 if hi.isdigit() else 1
            return count or None
    return None


def _cache_line_bytes() -> int | None:
    text = _read_text("/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size").strip()
    return int(text) if text.isdigit() else None


_BLAS_THREAD_SETTERS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)


_TERMS = {
    "spmv": ("call_overhead_us", "cycles_per_nnz", "cycles_per_row"),
    "spmm": ("call_overhead_us", "cycles_per_mac", "cycles_per_output"),
    "spgemm": ("call_overhead_us", "cycles_per_product", "cycles_per_left_nnz",
               "cycles_per_output_nnz", "cycles_per_row", "cycles_per_branch_miss"),
    "merge": ("call_overhead_us", "cycles_per_input_nnz", "cycles_per_output_nnz",
              "cycles_per_row"),
}
"""The fitted terms of each kernel, in the fit's column order (the overhead first)."""


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rand32(rng: np.random.Generator, shape: tuple[int, int], density: float) -> sp.csr_matrix:
    return random_sparse(rng, shape, density, "float").astype(np.float32)


def _measure_gemm(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(1)
    out = []
    for n in plan.gemm:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        med, best = time_call(lambda a=a, b=b: a @ b, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": n, "n": n, "k": n, "median_s": med, "best_s": best,
                    "gflops_median": 2.0 * n**3 / med / 1e9})
    return out


def _measure_spmv(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(2)
    out = []
    for m, n, d in plan.spmv:
        b = _rand32(rng, (m, n), d)
        x = rng.random(n, dtype=np.float32)
        med, best = time_call(lambda b=b, x=x: b @ x, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": m, "n": n, "density": d, "nnz": b.nnz, "median_s": med, "best_s": best})
    return out


def _measure_spmm(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(3)
    out = []
    for m, k, d, cols in plan.spmm:
        b = _rand32(rng, (m, k), d)
        x = rng.random((k, cols), dtype=np.float32)
        med, best = time_call(lambda b=b, x=x: b @ x, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": m, "k": k, "n_cols": cols, "density": d, "nnz": b.nnz,
                    "median_s": med, "best_s": best})
    return out


def _measure_spgemm(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(4)
    out = []
    for m, k, n, d in plan.spgemm:
        b, c = _rand32(rng, (m, k), d), _rand32(rng, (k, n), d)
        products = float(np.bincount(b.indices, minlength=k) @ np.diff(c.indptr))
        med, best = time_call(lambda b=b, c=c: b @ c, repeats=repeats,
                              min_seconds=plan.min_seconds)
        out.append({"m": m, "k": k, "n": n, "density": d, "products": products,
                    "nnz_left": b.nnz,
                    "nnz_out": (pattern(b) @ pattern(c)).nnz, "median_s": med,
                    "best_s": best})
    return out


def _measure_merge(plan: _Plan, repeats: int) -> list[dict[str, Any]]:
    rng = _rng(5)
    out = []
    for m, n, d in plan.merge:
        b, c = _rand32(rng, (m, n), d), _rand32(rng, (m, n), d)
        for op, fn in (("add", lambda b=b, c=c: b + c), ("mul", lambda b=b, c=c: b.multiply(c))):
            med, best = time_call(fn, repeats=repeats, min_seconds=plan.min_seconds)
            nnz_out = (b + c).nnz if op == "add" else b.multiply(c).nnz
            out.append({"op": op, "m": m, "n": n, "density": d, "nnz_in": b.nnz + c.nnz,
                        "nnz_out": nnz_out, "median_s": med, "best_s": best})
    return out


def _measure_stream(array_bytes: int, repeats: int) -> list[dict[str, Any]]:
    """Copy (2 streams) and numpy's two-pass triad (5 streams) on arrays far beyond the LLC."""
    n = array_bytes // 4
    a = np.ones(n, dtype=np.float32)
    b = np.full(n, 2.0, dtype=np.float32)
    c = np.full(n, 0.5, dtype=np.float32)

    def triad() -> None:
        np.multiply(c, np.float32(3.0), out=a)
        np.add(a, b, out=a)

    out = []
    for name, fn, streams in (("copy", lambda: np.copyto(b, a), 2), ("triad", triad, 5)):
        med, best = time_call(fn, repeats=max(repeats, 3), min_seconds=0.0)
        moved = streams * 4 * n
        out.append({"kernel": name, "array_bytes": 4 * n, "bytes_moved": moved,
                    "median_s": med, "best_s": best, "gb_per_s_median": moved / med / 1e9,
                    "gb_per_s_best": moved / best / 1e9})
    return out


def _fmt(value: float | int) -> str:
    """A YAML number with 4 significant digits that safe_load reads back as a number."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return np.format_float_positional(float(value), precision=4, unique=False,
                                      fractional=False, trim="-")


def _host_yaml(fitted: dict[str, Any], measured: dict[str, Any], machine: dict[str, Any], *,
               when: str, repeats: int, quick: bool, freq_raised: bool,
               effs: list[float], single_thread: bool,
               fit_error: dict[str, dict[str, float]]) -> str:
    """The host preset as YAML text, with a source comment above every number."""
    lines: list[str] = []

    def comment(text: str, indent: int = 0) -> None:
        for part in textwrap.wrap(text, width=98 - indent, break_on_hyphens=False):
            lines.append(" " * indent + "# " + part)

    def put(key: str, note: str | None = None, tag: str = "") -> None:
        indent = 2 * key.count(".")
        if note:
            comment(note, indent)
        line = f"{' ' * indent}{key.rsplit('.', 1)[-1]}: {_fmt(fitted[key])}"
        lines.append(f"{line:<39} # {tag}" if tag else line)

    def sizes(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
        return ", ".join((f"{r['op']} " if "op" in r else "")
                         + "x".join(str(r[k]) for k in keys) + f"@{r['density']}"
                         for r in rows)

    gemm, spmv, spmm = measured["gemm"], measured["spmv"], measured["spmm"]
    spgemm, merge, stream = measured["spgemm"], measured["merge"], measured["stream"]
    med = f"median of {repeats} runs"
    fit_note = ("FITTED {when}: bounded least squares on relative error over the {what} "
                "cases (cycles = seconds x freq_ghz; every per-event term >= "
                f"{MIN_CYCLES_PER_EVENT} cycles, ASSUMPTION: an event retires at least one "
                "instruction, 4 per cycle at most); {med} each; fit error: median {err_med:.1f}%, "
                "largest {err_max:.1f}%")
    comment(f"This host, measured by baselines.calibrate_host on {when}"
            + (" (quick mode: small cases, not a reference calibration)" if quick else "") + ".")
    comment(f"CPU: {machine['model_name']}, {machine['cores']} usable cores; numpy "
            f"{machine['numpy']}, scipy {machine['scipy']}, python {machine['python']}, "
            f"OPENBLAS_CORETYPE={machine['openblas_coretype']}, "
            f"OPENBLAS_NUM_THREADS={machine['openblas_num_threads']}.")
    comment("Timings are medians of repeated runs (time.perf_counter) on a possibly shared "
            "machine. Tags: MEASURED / FITTED (this calibration), OS-REPORTED (read from "
            "/proc or /sys), ASSUMPTION (not measurable here, with the reason).")
    n_cpus = int(machine["cores"])
    lines.append("name: host")
    scope = "one core" if single_thread else f"{n_cpus} cores"
    description = f"This machine ({machine['model_name']}, {n_cpus} CPUs): {scope}, {when}"
    lines.append(f"description: {json.dumps(description)}")
    if single_thread:
        put("cores", f"MEASURED: the calibration ran numpy's BLAS on one thread of the {n_cpus} "
            "(multi-thread BLAS on a shared VM is dominated by contention: an unpublished "
            "earlier run on a 2-vCPU VM gave 7.5 GFLOP/s for a 2-thread 512^3 SGEMM against "
            "110-210 on one thread) and scipy's sparse kernels are single-threaded, so this "
            "preset is one core")
    else:
        put("cores", "OS-REPORTED: CPUs this process may run on (the BLAS thread count could "
            "not be set, so the GEMM ran on the library's default threads)")
    clock = ("OS-REPORTED: /proc/cpuinfo 'cpu MHz' (a VM reports the nominal/TSC clock; the "
             "cycle counts below are seconds x this clock, so they are consistent with it)")
    if freq_raised:
        clock = (f"FITTED {when}: raised above the OS-reported {machine['cpu_mhz']} MHz to the "
                 "lowest clock at which the measured GEMM does not beat peak")
    put("freq_ghz", clock)
    wide = ("Xeon Gold/Platinum have two 512-bit FMA units (a Silver one)"
            if machine.get("vendor") == "Intel" else
            "Zen 5: an unpublished earlier run on a Zen 5 VM measured 242 GFLOP/s at 3.8 GHz, "
            "64 per cycle")
    put("fp32_flops_per_cycle_per_core",
        f"ASSUMPTION: from the ISA flags: avx512f -> 2 x 512-bit FMA pipes (64; {wide}), "
        "avx2+fma -> 32")
    copy, triad = stream[0], stream[1]
    put("mem_bandwidth_gb_per_s",
        f"MEASURED {when}: best single repetition of numpy copy ({copy['gb_per_s_best']:.1f} "
        f"GB/s, 2 streams) and two-pass triad ({triad['gb_per_s_best']:.1f} GB/s, 5 streams) "
        f"on {copy['array_bytes'] >> 20} MiB float32 arrays")
    put("stream_efficiency",
        f"MEASURED {when}: best median ({copy['gb_per_s_median']:.1f} copy, "
        f"{triad['gb_per_s_median']:.1f} triad GB/s, {max(repeats, 3)} runs) over the best "
        "repetition above: the sustained share on this shared machine")
    if machine["llc_bytes"]:
        llc_note = "OS-REPORTED: /sys/devices/system/cpu/cpu0/cache L3 size"
    else:
        why = ("/sys reported no L3" if machine.get("llc_reported_bytes") is None else
               f"/sys reported {machine['llc_reported_bytes'] / (1 << 20):,.0f} MiB, more than "
               f"{MAX_LLC_BYTES_PER_CPU >> 20} MiB per CPU sharing it: not a real cache")
        vendor = machine.get("vendor", "unknown")
        per_cpu = LLC_FALLBACK_BYTES_PER_CPU[vendor] / (1 << 20)
        llc_note = (f"ASSUMPTION: {per_cpu:.3g} MiB per CPU, {_LLC_FALLBACK_NOTE[vendor]}; "
                    f"{why}")
    put("llc_bytes", llc_note)
    put("cache_line_bytes", "OS-REPORTED: /sys coherency_line_size"
        if machine["cache_line_bytes"] else "ASSUMPTION: 64-byte lines, /sys reported none")
    lines.append("value_bytes: 4           # MEASURED with float32 values (the calibration's "
                 "dtype)")
    lines.append("index_bytes: 4           # MEASURED with int32 indices (scipy's index type "
                 "at these sizes)")
    vendor = machine.get("vendor", "unknown")
    if vendor == "Intel":
        core_w, uncore_per_cpu_w = (85.0 - 30.0) / 12.0, 30.0 / 12.0
        part = ("an Intel Xeon SP core, as configs/cpus/xeon-12c.yaml (Xeon Silver 4214: VENDOR "
                "85 W TDP, ASSUMPTION 30 W uncore, 12 cores)")
        core_how, uncore_how = "(85 - 30) / 12", "30 / 12"
    else:
        core_w, uncore_per_cpu_w = (360.0 - 100.0) / 96.0, 100.0 / 96.0
        part = ("a Zen-class server core, as configs/cpus/epyc-9654.yaml (EPYC 9654: 360 W TDP, "
                "~100 W uncore/idle, 96 cores)")
        if vendor != "AMD":
            part += f"; /proc/cpuinfo names no known vendor ({machine['model_name']})"
        core_how, uncore_how = "(360 - 100) / 96", "100 / 96"
    comment(f"ASSUMPTION: power is not measured (no RAPL in this VM). "
            f"Vendor {vendor} (/proc/cpuinfo vendor_id): {part}. A core running a "
            f"kernel draws its share of the TDP above the uncore, {core_how}.")
    lines.append(f"core_power_w: {_fmt(core_w)}")
    comment(f"ASSUMPTION: the {n_cpus}-CPU share of the same part's uncore, {uncore_how} x "
            f"{n_cpus}, drawn while a kernel runs.")
    lines.append(f"uncore_power_w: {_fmt(uncore_per_cpu_w * n_cpus)}")
    comment("ASSUMPTION: a DDR5 server (the VM's DIMM type is not visible) at 10-15 pJ/bit "
            "incl. I/O, a planning value: no authoritative public DDR5 figure was found; DDR4-3200 "
            "is 10-13 by Micron TN-40-07's method and DDR5's VDD is 1.1 V vs 1.2 V.")
    lines.append("dram_pj_per_bit: 12")
    lines.append("dense:")
    gemm_list = ", ".join(f"{g['m']}^3 {g['gflops_median']:.0f} GFLOP/s" for g in gemm[1:])
    put("dense.gemm_efficiency",
        f"FITTED {when}: median over numpy float32 GEMM sizes ({gemm_list}; {med}; "
        f"{'one BLAS thread' if single_thread else 'default BLAS threads'}) of "
        f"(FLOP/s after the call overhead) / peak; per size: "
        + ", ".join(f"{e:.3f}" for e in effs))
    put("dense.call_overhead_us", f"MEASURED {when}: 8x8 numpy GEMM, {med}")
    lines.append("sparse:")
    lines.append("  cores_used: 1            # MEASURED: scipy's sparse kernels are "
                 "single-threaded")
    lines.append("  parallel_efficiency: 1.0 # MEASURED: one thread, no parallel loss")
    sections = (
        ("spmv", spmv, ("m", "n"), "scipy CSR @ float32 vector",
         ("cycles_per_nnz", "cycles_per_row", "call_overhead_us")),
        ("spmm", spmm, ("m", "k", "n_cols"), "scipy CSR @ dense float32 matrix",
         ("cycles_per_mac", "cycles_per_output", "call_overhead_us")),
        ("spgemm", spgemm, ("m", "k", "n"), "scipy CSR @ CSR (SMMP, Gustavson)",
         ("cycles_per_product", "cycles_per_left_nnz", "cycles_per_output_nnz", "cycles_per_row",
          "cycles_per_branch_miss", "call_overhead_us")),
        ("merge", merge, ("m", "n"), "scipy CSR + CSR and CSR .multiply CSR",
         ("cycles_per_input_nnz", "cycles_per_output_nnz", "cycles_per_row",
          "call_overhead_us")),
    )
    for name, rows, keys, what, params in sections:
        lines.append(f"  {name}:")
        comment(fit_note.format(when=when, what=f"{what} ({sizes(rows, keys)})", med=med,
                                err_med=100 * fit_error[name]["median_abs"],
                                err_max=100 * fit_error[name]["max_abs"]), 4)
        for param in params:
            put(f"sparse.{name}.{param}", tag="FITTED (see the note above)")
    comment("TACO-generated code is not on this machine; scipy's sparse kernels are compiled "
            "scalar loops on one thread as TACO's are, so the TACO section repeats the FITTED "
            "scipy rates above.")
    lines.append("taco:")
    lines.append("  cores_used: 1            # MEASURED: scipy's sparse kernels are "
                 "single-threaded")
    lines.append("  parallel_efficiency: 1.0 # MEASURED: one thread, no parallel loss")
    for name, _rows, _keys, _what, params in sections:
        lines.append(f"  {name}:")
        for param in params:
            value = _fmt(fitted[f"sparse.{name}.{param}"])
            lines.append(f"{f'    {param}: {value}':<39} # FITTED: as sparse.{name}.{param}")
    return "\n".join(lines) + "\n"
