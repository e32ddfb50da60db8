"""Kernel operands from files (-p B=path.mtx / .npz / .npy) and the three-operand elemadd3:
shape checks naming the operand and file, results against numpy, cycle == burst."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from baselines import estimate, load_cpu_preset
from compiler.notation import parse_expr
from compiler.pipeline import compile_layer
from sieve.api import run
from sieve.cli import main
from simulator.config import load_chip
from tests.conftest import ROOT
from tests.test_burst import assert_same
from workloads import WorkloadError, get_workload

SMALL = str(ROOT / "configs/chips/onyx-small.yaml")

# kernel -> (operand -> its shape in a consistent problem), the other parameters
PROBLEMS = {
    "spmv": ({"B": (9, 7), "c": (7,)}, {}),
    "spmspm": ({"B": (9, 7), "C": (7, 5)}, {}),
    "elemadd": ({"B": (9, 7), "C": (9, 7)}, {}),
    "elemadd3": ({"B": (9, 7), "C": (9, 7), "D": (9, 7)}, {}),
    "elemmul": ({"B": (9, 7), "C": (9, 7)}, {}),
    "sddmm": ({"B": (9, 7), "C": (9, 4), "D": (7, 4)}, {}),
    "ttv": ({"B": (5, 4, 6), "c": (6,)}, {}),
}


def _matrix(shape: tuple[int, ...], seed: int, density: float = 0.4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.uniform(0.5, 2.0, size=shape).round(2)
    out[rng.random(shape) >= density] = 0
    return out


def _write(tmp_path, name: str, arr: np.ndarray, kind: str) -> str:
    if kind == "mtx" and arr.ndim == 2:
        path = tmp_path / f"{name}.mtx"
        scipy.io.mmwrite(path, sp.coo_matrix(arr))
    elif kind == "npz" and arr.ndim == 2:
        path = tmp_path / f"{name}.npz"
        sp.save_npz(path, sp.csr_matrix(arr))
    else:
        path = tmp_path / f"{name}.npy"
        np.save(path, arr)
    return str(path)


@pytest.mark.parametrize("kind", ["mtx", "npz", "npy"])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_every_operand_from_a_file(tmp_path, name, kind):
    shapes, params = PROBLEMS[name]
    for k, (t, shape) in enumerate(shapes.items()):
        arr = _matrix(shape, seed=k + 1)
        layer = get_workload(name).make({**params, t: _write(tmp_path, t, arr, kind)})
        got = layer.tensors[t]
        dense = got.toarray() if sp.issparse(got) else np.asarray(got)
        assert np.array_equal(dense, arr), t
        # the other operands were drawn at the sizes the file implies
        accs = {a.tensor: a.indices for a in parse_expr(layer.expr).operands}
        size = dict(zip(accs[t], arr.shape))
        for u, idx in accs.items():
            for v, n in zip(idx, layer.tensors[u].shape):
                assert size.get(v, n) == n, (t, u, v)
        rep = run(SMALL, layer)
        assert rep.summary["verified"] is True, (t, rep.summary["checks"])


def test_all_operands_from_files_and_the_reference(tmp_path):
    b, c = _matrix((12, 10), 1, 0.3), _matrix((10, 8), 2, 0.3)
    layer = get_workload("spmspm").make({"B": _write(tmp_path, "B", b, "mtx"),
                                         "C": _write(tmp_path, "C", c, "npz")})
    assert layer.out_shape == (12, 8)
    np.testing.assert_allclose(layer.reference(), b @ c)
    rep = run(SMALL, layer)
    assert rep.summary["verified"] is True
    np.testing.assert_allclose(rep.result.outputs["X"].to_dense(), b @ c, rtol=1e-12)


def test_npz_key_picks_one_array(tmp_path):
    arr = _matrix((6, 5), 3)
    np.savez(tmp_path / "two.npz", first=arr, second=arr.T)
    layer = get_workload("elemadd").make({"C": f"{tmp_path / 'two.npz'}:second"})
    assert np.array_equal(layer.tensors["C"].toarray(), arr.T)
    assert layer.tensors["B"].shape == (5, 6)


def test_shape_errors_name_operand_and_file(tmp_path):
    b = _write(tmp_path, "B", _matrix((9, 7), 1), "mtx")
    c = _write(tmp_path, "C", _matrix((6, 5), 2), "mtx")
    with pytest.raises(WorkloadError, match=r"spmspm: operand C from .*C\.mtx has 6 along "
                                            r"index k, but operand B from .*B\.mtx has 7"):
        get_workload("spmspm").make({"B": b, "C": c})
    with pytest.raises(WorkloadError, match=r"elemadd: operand C from .*C\.mtx has 6 along "
                                            r"index i, but operand B"):
        get_workload("elemadd").make({"B": b, "C": c})
    with pytest.raises(WorkloadError, match=r"parameter shape gives 20 for index i but "
                                            r"operand B from .*B\.mtx has 9;"):
        get_workload("elemadd").make({"B": b, "shape": "20,7"})
    t3 = str(tmp_path / "t3.npy")
    np.save(t3, np.ones((2, 3, 4)))
    with pytest.raises(WorkloadError, match=r"spmv: operand B from .*t3\.npy: expected a 2-D "
                                            r"array, got shape 2x3x4"):
        get_workload("spmv").make({"B": t3})
    with pytest.raises(WorkloadError, match=r"ttv: operand c from .*B\.mtx: expected a 1-D "
                                            r"vector, got shape 9x7"):
        get_workload("ttv").make({"c": b})
    with pytest.raises(WorkloadError, match=r"elemmul: operand B: .*nope\.mtx"):
        get_workload("elemmul").make({"B": str(tmp_path / "nope.mtx")})


def test_cli_file_operand_and_bad_file(tmp_path, capsys):
    b = _write(tmp_path, "B", _matrix((9, 7), 1), "mtx")
    assert main(["run", SMALL, "spmv", "-p", f"B={b}", "-q"]) == 0
    assert main(["run", SMALL, "spmv", "-p", f"c={b}", "-q"]) == 2
    assert "operand c from" in capsys.readouterr().err


# ---- elemadd3 ---------------------------------------------------------------------------
@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.35, 0.7, 1.0])
def test_elemadd3_matches_numpy(density):
    for seed in range(2):
        params = {"shape": "13,11", "density": density, "seed": seed}
        layer = get_workload("elemadd3").make(params)
        dense = [layer.tensors[t].toarray() for t in "BCD"]
        assert np.array_equal(layer.reference(), dense[0] + dense[1] + dense[2])
        rep = run(SMALL, "elemadd3", params=params)
        assert rep.summary["verified"] is True
        assert np.array_equal(rep.result.outputs["X"].to_dense(), layer.reference())
    empty = run(SMALL, "elemadd3", params={"shape": "5,5", "density": 0.0})
    assert empty.result.outputs["X"].nnz == 0 and empty.summary["effectual_ops"] == 0


def test_elemadd3_uses_two_chained_unioners():
    from isa.ops import Opcode

    kernel = compile_layer(get_workload("elemadd3").make({}), load_chip(SMALL)).kernels[0]
    unions = [n for n in kernel.nodes if n.op is Opcode.UNION]
    alus = [n for n in kernel.nodes if n.op is Opcode.ALU]
    assert len(alus) == 2 and all(a.attr("op") == "add" for a in alus)
    assert len(unions) >= 4        # two joins per level (i, j) plus the realigning joiners


@pytest.mark.parametrize("seed", range(8))
def test_elemadd3_cycle_equals_burst(small_chip, seed):
    rng = np.random.default_rng(300 + seed)
    fmts = ["ss", "ds", "dd", "sd"]
    params = {"shape": ",".join(str(int(x)) for x in rng.integers(1, 20, size=2)),
              "density": float(rng.choice([0.0, 0.05, 0.2, 0.5, 1.0])), "seed": seed,
              "empty_rows": float(rng.choice([0.0, 0.4])),
              "formats": " ".join(f"{t}:{fmts[int(rng.integers(4))]}" for t in "BCD")}
    program = compile_layer(get_workload("elemadd3").make(params), small_chip)
    assert_same(program.kernels[0], program.images, small_chip)


def test_elemadd3_cpu_baseline():
    from baselines.kernels import CPU_KERNELS

    layer = get_workload("elemadd3").make({"shape": "64,64", "density": 0.1})
    pats = [(layer.tensors[t] != 0).astype(int) for t in "BCD"]
    out_nnz = (pats[0] + pats[1] + pats[2]).nnz
    adds = sum(p.nnz for p in pats) - out_nnz
    preset = load_cpu_preset("xeon-1c")
    mkl = CPU_KERNELS["elemadd3"](layer, preset, "mkl")       # two binary adds
    taco = CPU_KERNELS["elemadd3"](layer, preset, "taco")     # one three-way merge
    assert mkl.counts["calls"] == 2 and taco.counts["calls"] == 1
    assert mkl.counts["nnz_out"] == taco.counts["nnz_out"] == out_nnz
    assert mkl.useful_flops == taco.useful_flops == adds
    assert mkl.dram_bytes["temporary"] > 0 and "temporary" not in taco.dram_bytes
    assert estimate(layer, load_cpu_preset("xeon-12c")).library == "mkl"
    est = estimate(layer, load_cpu_preset("xeon-1c-taco"))
    assert est.library == "taco" and est.seconds > 0 and est.energy_j > 0
