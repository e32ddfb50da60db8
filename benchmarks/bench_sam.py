"""SAM's own Python simulator against the burst engine, on the same SpM*SpM operands.

Sieve's operands (workload spmspm, seeded) are written in the file layout of SAM's unit test
``sam/sim/test/unit-apps/test_unit_matmul_ikj.py`` (weiya711/sam: DCSR B(i,k) and C(k,j)); that
test's graph and cycle loop run unchanged (the test module is executed as it is, minus its
scipy and gold-check imports, and the function called with the operands' directory) in a
separate Python that has SAM's run-time dependencies (numpy and pytest: SAM's package imports
pytest). SAM's output is checked against B @ C, and its CPU seconds and cycles are printed next
to the burst engine's on the same operands: the one-copy graph (``compiler.unroll=1``, the
graph SAM simulates) and the default compile (Onyx's config unrolls it). CPU seconds
(``time.process_time``: this machine is shared), the minimum of --repeat runs for burst (the
kernel simulation only, as benchmarks/bench_engines.py times it), of --sam-repeat runs for SAM.

    git --git-dir=<mirror of weiya711/sam> archive HEAD sam | tar -x -C /tmp/sam
    python3 -m venv /tmp/samvenv && /tmp/samvenv/bin/pip install numpy pytest
    .venv/bin/python benchmarks/bench_sam.py --sam-dir /tmp/sam --sam-python /tmp/samvenv/bin/python
"""

from __future__ import annotations

import json
import os
import sys

SAM_TEST = "sam/sim/test/unit-apps/test_unit_matmul_ikj.py"


def sam_child(sam_dir: str, data_dir: str, repeat: int) -> None:
    """Run SAM's test function on the operands in ``data_dir`` (in SAM's Python: numpy only),
    ``repeat`` times; its minimum CPU time."""
    import time

    import numpy as np

    sys.path.insert(0, sam_dir)
    os.environ["SUITESPARSE_FORMATTED_PATH"] = data_dir
    with open(os.path.join(sam_dir, SAM_TEST), encoding="utf-8") as fh:
        src = fh.read()
    src = src.replace("import scipy.sparse\n", "").replace("from sam.sim.test.gold import *\n", "")
    src = src.replace("    samBench(bench, extra_info)",
                      "    samBench(bench, extra_info)\n"
                      "    return out_crds, out_segs, out_vals, time_cnt")
    ns: dict = {"__name__": "sam_matmul_ikj"}
    exec(compile(src, SAM_TEST, "exec"), ns)  # noqa: S102 - SAM's own test, run as it is
    cpu = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        crds, segs, vals, cycles = ns["test_matmul_ikj"](lambda _fn, _info: None, "sieve",
                                                         False, False)
        cpu = min(cpu, time.process_time() - t0)
    gold = np.load(os.path.join(data_dir, "gold.npy"))
    out = np.zeros_like(gold)
    for i, row in enumerate(crds[0]):
        for p in range(segs[1][i], segs[1][i + 1]):
            out[row, crds[1][p]] = vals[p]
    print(json.dumps({"cycles": cycles, "cpu": cpu, "correct": bool(np.allclose(out, gold))}))


if len(sys.argv) == 5 and sys.argv[1] == "--sam-child":
    sam_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    sys.exit(0)

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from compiler.pipeline import compile_layer  # noqa: E402
from simulator.config import load_chip  # noqa: E402
from simulator.engine_burst import run_burst  # noqa: E402
from workloads import get_workload  # noqa: E402

WHOLE = ["mem_tile.size_bytes=1073741824"]   # one kernel call, as bench_engines.py runs it


def write_operands(layer, out: Path) -> None:
    """B and C in the layout SAM's test reads (DCSR: level-0 seg/crd over the nonempty rows,
    level-1 seg/crd, values; one number per line) and B @ C as gold.npy."""
    for name, sub in (("B", "orig"), ("C", "shift-trans")):
        m = layer.tensors[name].tocsr()
        m.sort_indices()
        rows = np.flatnonzero(np.diff(m.indptr))
        d = out / "sieve" / sub / "ss01"
        d.mkdir(parents=True, exist_ok=True)
        seg1 = np.concatenate([[0], np.cumsum(np.diff(m.indptr)[rows])])
        files = {f"{name}_shape.txt": m.shape, f"{name}0_seg.txt": [0, len(rows)],
                 f"{name}0_crd.txt": rows, f"{name}1_seg.txt": seg1,
                 f"{name}1_crd.txt": m.indices}
        for fn, arr in files.items():
            (d / fn).write_text("".join(f"{int(x)}\n" for x in arr))
        (d / f"{name}_vals.txt").write_text("".join(f"{float(x)!r}\n" for x in m.data))
    np.save(out / "gold.npy", (layer.tensors["B"] @ layer.tensors["C"]).toarray())


def burst_cpu(layer, overrides: list[str], repeat: int) -> tuple[int, float, int]:
    """(cycles, minimum CPU seconds of the kernel simulation, units) of the whole kernel."""
    chip = load_chip(ROOT / "configs/chips/onyx.yaml", WHOLE + overrides)
    program = compile_layer(layer, chip)
    if program.tiling is not None:
        raise SystemExit("the kernel was tiled; enlarge mem_tile.size_bytes")
    kernel, images = program.kernels[0], program.images
    best, cycles = float("inf"), 0
    for _ in range(repeat):
        t0 = time.process_time()
        cycles = run_burst(kernel, images, chip).cycles
        best = min(best, time.process_time() - t0)
    return cycles, best, len(kernel.nodes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sam-dir", required=True, help="a source tree of weiya711/sam")
    ap.add_argument("--sam-python", required=True, help="a Python with numpy and pytest")
    ap.add_argument("--shape", type=int, default=200)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--sam-repeat", type=int, default=3,
                    help="runs of SAM's simulator (its minimum CPU time, as burst's)")
    args = ap.parse_args()
    n, dens = args.shape, args.density
    layer = get_workload("spmspm").make({"shape": f"{n},{n},{n}", "density": dens})
    with tempfile.TemporaryDirectory() as tmp:
        write_operands(layer, Path(tmp))
        res = subprocess.run([args.sam_python, __file__, "--sam-child", args.sam_dir, tmp,
                              str(args.sam_repeat)],
                             capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"SAM's simulator failed: {res.stderr.strip()[-400:]}")
    sam = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"SpM*SpM {n}^3 @{dens:.0%}: B {layer.tensors['B'].nnz:,} and C "
          f"{layer.tensors['C'].nnz:,} nonzeros; CPU seconds")
    print(f"  SAM's Python simulator ({SAM_TEST}): {sam['cycles']:,} cycles, "
          f"{sam['cpu']:.3f} s, output == B @ C: {'yes' if sam['correct'] else 'NO'}")
    for label, overrides in (("burst, one copy (compiler.unroll=1)", ["compiler.unroll=1"]),
                             ("burst, default compile", [])):
        cycles, cpu, units = burst_cpu(layer, overrides, args.repeat)
        print(f"  {label}: {units} units, {cycles:,} cycles, {cpu:.4f} s: "
              f"{sam['cpu'] / cpu:.0f}x SAM's time", flush=True)


if __name__ == "__main__":
    main()
