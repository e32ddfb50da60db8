"""Dense systolic mode against SCALE-Sim v3: compute cycles and wall time, side by side.

GEMMs M = N = K = 512, 1024 and 2048 on a 128x128 array in output- and weight-stationary
dataflow, plus 512^3 weight-stationary with 2:4 weights. For each: our compute cycles and the
wall time of ``simulate_gemm`` (median of --repeat runs after one small untimed warm-up call;
it includes the product itself, computed fold by fold, and the exact zero-operand counts), and
SCALE-Sim's compute cycles and wall time (its Python API, no traces, CALC bandwidth, 1 MiB
SRAMs; median of --scalesim-repeat runs, interpreter start-up excluded) with the peak RSS of
its process. SCALE-Sim's 2048^3 runs take ~8 min and ~5 GB each, so they are skipped unless
--full. Ours are all measured before SCALE-Sim starts, so its processes cannot disturb them.

SCALE-Sim runs in its own venv (it needs numpy < 2.4): --scalesim-python PATH, else the
SCALESIM_PYTHON environment variable, else benchmarks/.scalesim-venv. --setup-scalesim creates
that venv (python3 -m venv; pip install scalesim 'numpy<2.4').

    .venv/bin/python benchmarks/bench_systolic.py [--repeat 3] [--setup-scalesim] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.systolic import SystolicArray, simulate_gemm  # noqa: E402

SCALESIM_VENV = ROOT / "benchmarks" / ".scalesim-venv"
ARRAY = 128
# (M = N = K, dataflow, N:M or None)
CASES = [(512, "os", None), (512, "ws", None), (512, "ws", (2, 4)),
         (1024, "os", None), (1024, "ws", None), (2048, "os", None), (2048, "ws", None)]

# Run by SCALE-Sim's interpreter: argv[1] is a JSON job; prints one JSON line on stdout.
# Input formats of scalesim 3.0.0 (PyPI; scalesim-project/SCALE-Sim): every topology row ends
# with a comma (the parser drops the last field, SCALE-Sim issues #38 and #106), a layout csv
# must exist (it is always opened), and the v3 cfg needs all five sections or configparser
# raises NoSectionError.
DRIVER = r'''
import contextlib, io, json, resource, shutil, statistics, sys, tempfile, time
from scalesim.scale_sim import scalesim

job = json.loads(sys.argv[1])
sparse = job["nm"] is not None
cfg = f"""[general]
run_name = bench
[architecture_presets]
ArrayHeight: {job["rows"]}
ArrayWidth: {job["cols"]}
IfmapSramSzkB: 1024
FilterSramSzkB: 1024
OfmapSramSzkB: 1024
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {job["dataflow"]}
MemoryBanks: 1
ReadRequestBuffer: 32
WriteRequestBuffer: 32
[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2
[sparsity]
SparsitySupport: {"true" if sparse else "false"}
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 4
RandomNumberGeneratorSeed: 40
[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""
nm = "%d:%d" % tuple(job["nm"]) if sparse else "1:1"
walls, cycles = [], None
for _ in range(job["repeat"]):
    tmp = tempfile.mkdtemp(prefix="sieve-scalesim-")
    try:
        with open(f"{tmp}/arch.cfg", "w") as f:
            f.write(cfg)
        with open(f"{tmp}/gemm.csv", "w") as f:
            f.write("Layer, M, N, K, Sparsity,\n")
            f.write(f"gemm, {job['m']}, {job['n']}, {job['k']}, {nm},\n")
        with open(f"{tmp}/layout.csv", "w") as f:
            f.write("Layer, a, b, c, d, e, f, g, h,\ngemm, 1, 1, 1, 1, 1, 1, 1, 1,\n")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            sim = scalesim(save_disk_space=True, verbose=False, config=f"{tmp}/arch.cfg",
                           topology=f"{tmp}/gemm.csv", layout=f"{tmp}/layout.csv",
                           input_type_gemm=True)
            sim.run_scale(top_path=tmp)
        walls.append(time.perf_counter() - t0)
        with open(f"{tmp}/bench/COMPUTE_REPORT.csv") as f:
            row = f.readlines()[1].split(",")
        cycles = int(row[2])  # LayerID, Total Cycles (incl. prefetch), Total Cycles, ...
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
try:  # VmHWM belongs to this program; ru_maxrss would carry the parent's peak across exec
    with open("/proc/self/status") as f:
        rss_mb = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"cycles": cycles, "wall_s": statistics.median(walls), "rss_mb": rss_mb}))
'''


def setup_scalesim() -> None:
    """Create benchmarks/.scalesim-venv and install scalesim with the numpy pin it needs."""
    python3 = shutil.which("python3") or sys.executable
    if not (SCALESIM_VENV / "bin" / "python").exists():
        subprocess.run([python3, "-m", "venv", str(SCALESIM_VENV)], check=True)
    subprocess.run([str(SCALESIM_VENV / "bin" / "pip"), "install", "scalesim", "numpy<2.4"],
                   check=True)


def find_scalesim(explicit: str | None) -> str | None:
    """The interpreter that can import scalesim, or None."""
    candidates = [explicit, os.environ.get("SCALESIM_PYTHON"),
                  str(SCALESIM_VENV / "bin" / "python")]
    for python in candidates:
        if not python or not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import scalesim.scale_sim"], capture_output=True)
        if probe.returncode == 0:
            return python
    return None


def run_scalesim(python: str, size: int, dataflow: str, nm: tuple[int, int] | None,
                 repeat: int) -> dict:
    job = {"m": size, "n": size, "k": size, "rows": ARRAY, "cols": ARRAY,
           "dataflow": dataflow, "nm": nm, "repeat": repeat}
    with tempfile.TemporaryDirectory(prefix="sieve-bench-") as tmp:
        driver = Path(tmp) / "scalesim_driver.py"
        driver.write_text(DRIVER)
        proc = subprocess.run([python, str(driver), json.dumps(job)], capture_output=True,
                              text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def operands(size: int, nm: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded int64 operands; under n:m, B keeps n random entries of every group of m."""
    rng = np.random.default_rng(size)
    a = rng.integers(-8, 9, size=(size, size))
    b = rng.integers(-8, 9, size=(size, size))
    if nm is not None:
        n, m = nm
        rank = np.argsort(rng.random((size // m, m, size)), axis=1).argsort(axis=1)
        b = b * (rank < n).reshape(size, size)
    return a, b


def ours(size: int, dataflow: str, nm: tuple[int, int] | None, repeat: int) -> tuple[int, float]:
    a, b = operands(size, nm)
    array = SystolicArray(ARRAY, ARRAY, dataflow)
    simulate_gemm(a[:64, :64], b[:64, :64], array, nm=nm)  # warm-up, not timed
    walls, cycles = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        run = simulate_gemm(a, b, array, nm=nm)
        walls.append(time.perf_counter() - t0)
        cycles = run.compute_cycles
    exact = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)  # |sums| < 2**53
    if not np.array_equal(run.output, exact):
        raise SystemExit(f"output differs from numpy for {size}^3 {dataflow} {nm}")
    return cycles, statistics.median(walls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours per case (median)")
    ap.add_argument("--scalesim-repeat", type=int, default=1,
                    help="runs of SCALE-Sim per case (median)")
    ap.add_argument("--scalesim-python", help="interpreter of a venv with scalesim installed")
    ap.add_argument("--setup-scalesim", action="store_true",
                    help="create benchmarks/.scalesim-venv and install scalesim into it")
    ap.add_argument("--full", action="store_true", help="also run SCALE-Sim on 2048^3")
    ap.add_argument("--no-scalesim", action="store_true", help="only run ours")
    args = ap.parse_args()

    if args.setup_scalesim:
        setup_scalesim()
    python = None if args.no_scalesim else find_scalesim(args.scalesim_python)
    print(f"GEMM on a {ARRAY}x{ARRAY} systolic array, compute cycles (no DRAM stalls); "
          f"ours: median of {args.repeat}")
    if python is None:
        print("SCALE-Sim not available (run with --setup-scalesim)")
    else:
        print(f"SCALE-Sim: {python}, median of {args.scalesim_repeat}, API without traces")
    print(f"{'M=N=K':>6} {'df':>3} {'N:M':>4} {'ours cycles':>12} {'ours s':>8} "
          f"{'SCALE-Sim cycles':>17} {'SCALE-Sim s':>12} {'RSS MB':>7} {'equal':>6} "
          f"{'speed-up':>9}")
    # all of ours first, so SCALE-Sim's processes cannot disturb our timings
    measured = [ours(size, dataflow, nm, args.repeat) for size, dataflow, nm in CASES]
    for (size, dataflow, nm), (cycles, wall) in zip(CASES, measured):
        pattern = f"{nm[0]}:{nm[1]}" if nm else "-"
        line = f"{size:>6} {dataflow:>3} {pattern:>4} {cycles:>12,} {wall:>8.3f}"
        if python is not None and (size < 2048 or args.full):
            ref = run_scalesim(python, size, dataflow, nm, args.scalesim_repeat)
            if "error" in ref:
                line += f"  SCALE-Sim failed: {ref['error']}"
            else:
                line += (f" {ref['cycles']:>17,} {ref['wall_s']:>12.2f} {ref['rss_mb']:>7.0f} "
                         f"{'yes' if ref['cycles'] == cycles else 'NO':>6} "
                         f"{ref['wall_s'] / wall:>8.0f}x")
        elif python is not None:
            line += f" {'(--full)':>17}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
