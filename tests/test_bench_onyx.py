"""benchmarks/bench_onyx.py's table builder on tiny shapes: its ratios are the CPU's figures
over the chip's from the same run's summaries, its geomeans are geomeans of those ratios over
the kernels that ran, a failed kernel is listed (not dropped), and the dense-vs-sparse
crossover lies between the two rows where the advantage crosses 1."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from baselines import estimate, load_cpu_preset

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_onyx", BENCH / "bench_onyx.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_onyx"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def runs(bench):
    return [bench.run_kernel("SpM*SpV", "spmv", {"shape": "16,16", "density": 0.3}),
            bench.run_kernel("ElemMult", "elemmul", {"shape": "12,20", "density": 0.3}),
            bench.run_kernel("Broken", "ttv", {"shape": "4,4", "density": 0.3})]


def test_ratios_are_cpu_over_chip_from_the_summaries(bench, runs):
    rows = bench.kernel_rows(runs)
    assert [r["kernel"] for r in rows] == ["SpM*SpV", "ElemMult", "Broken"]
    for run, row in zip(runs[:2], rows[:2]):
        s = run.summary
        assert row["error"] is None and row["cycles"] == s["cycles"] > 0
        assert row["kernel_cycles"] == s["kernel_cycles"] <= s["cycles"]
        copies = s.get("unroll", {}).get("copies", 1)
        assert row["mode"].startswith(f"{copies} cop")
        assert row["mode"].endswith("untiled" if "tile_pipelining" not in s
                                    else s["tile_pipelining"].split(" (")[0])
        # the first preset is sieve.run's own baseline: its ratios must agree with the summary's
        base = s["baseline"]
        assert base["cpu"] == bench.BASELINES[0]
        for key, ours in (("speedup", "speedup"), ("energy_ratio", "energy"),
                          ("edp_ratio", "edp")):
            assert row[bench.BASELINES[0]][ours] == pytest.approx(base[key], rel=1e-12)
        # the others: the CPU model on the same layer, over the same chip time and energy
        for preset in bench.BASELINES[1:]:
            est = estimate(_layer(run), load_cpu_preset(preset))
            got = row[preset]
            assert got["cpu_s"] == est.seconds and got["cpu_j"] == est.energy_j
            assert got["speedup"] == pytest.approx(est.seconds / s["seconds"], rel=1e-12)
            assert got["energy"] == pytest.approx(est.energy_j / s["energy_j"], rel=1e-12)
            assert got["edp"] == pytest.approx(got["speedup"] * got["energy"], rel=1e-12)


def _layer(run):
    from sieve.api import build_layer

    return build_layer(run.workload, run.params)


def test_failed_kernel_is_listed_and_left_out_of_the_geomean(bench, runs):
    rows = bench.kernel_rows(runs)
    broken = rows[2]
    assert broken["error"] and "cycles" not in broken
    g = bench.geomeans(rows)
    for preset in bench.BASELINES:
        for key in ("speedup", "energy", "edp"):
            a, b = rows[0][preset][key], rows[1][preset][key]
            assert g[preset][key] == pytest.approx(math.sqrt(a * b), rel=1e-12)
    table = bench.kernel_markdown(rows)
    assert "FAILED: " in table and "geomean (2 of 3 ran)" in table
    assert len({line.count("|") for line in table.splitlines()}) == 1   # every row as wide


def test_run_mode_names_copies_deal_and_pipelining(bench):
    assert bench.run_mode({}) == "1 copy; untiled"
    assert bench.run_mode({"unroll": {"copies": 8, "deal": "tiles"},
                           "tile_pipelining": "pipelined (compiler's choice: least edp of "
                                              "both modes)"}) == "8 copies, tiles dealt; pipelined"
    assert bench.run_mode({"unroll": {"copies": 1, "requested": "auto"},
                           "tile_pipelining": "one tile at a time (forced: x)"}
                          ) == "1 copy; one tile at a time"


def test_geomean(bench):
    assert bench.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert bench.geomean([0.1, 10.0, 5.0]) == pytest.approx(5.0 ** (1 / 3))
    assert bench.geomean([]) is None


def test_crossover_lies_between_the_rows_that_cross_one(bench):
    dense = {"seconds": 10.0, "energy_j": 4.0, "cycles": 100}
    # sparse time falls with sparsity; energy already lower than dense at the first run
    sparse = [(0.5, None),
              (0.9, {"seconds": 20.0, "energy_j": 2.0, "cycles": 2}),
              (0.95, {"seconds": 12.5, "energy_j": 1.0, "cycles": 3}),
              (0.99, {"seconds": 5.0, "energy_j": 0.5, "cycles": 4})]
    rows = bench.crossover_rows(dense, sparse)
    assert rows[0]["time"] is None
    assert [r["time"] for r in rows[1:]] == pytest.approx([0.5, 0.8, 2.0])
    assert [r["edp"] for r in rows[1:]] == pytest.approx([1.0, 3.2, 16.0])
    x = bench.crossovers(rows)
    # time crosses 1 between 95% (0.8) and 99% (2.0): log-linear, 0.95 + 0.04 * ln 1.25 / ln 2.5
    t = 0.95 + 0.04 * math.log(1 / 0.8) / math.log(2.0 / 0.8)
    assert x["time"] == f"wins above {t:.1%} sparsity"
    assert 0.95 < t < 0.99
    assert x["energy"].startswith("already wins at 90.0%")
    assert x["edp"].startswith("already wins at 90.0%")   # 1.0 at 90%: sparse ties, >= 1
    md = bench.crossover_markdown(64, dense, rows)
    assert "| 50.0% | not run |" in md and "| 99.0% | 4 | None | 2 | 8 | 16 |" in md
