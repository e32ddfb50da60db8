"""Model layers: weights, tiling, the analytic tile model against burst, every catalog layer
end to end, routing imbalance, capacity, real weights and YAML specs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from compiler.layers import estimate_macs
from sieve.api import run, run_layer
from sieve.cli import main
from simulator.config import load_chip
from simulator.layers import LayerEngine, analytic_tiles
from workloads import CATALOG, WorkloadError, get_workload
from workloads.layers import CHUNK_ROWS, Weight
from workloads.pruning import row_nnz_cv

ONYX = "configs/chips/onyx.yaml"
LAYER_NAMES = [n for n, w in CATALOG.items() if "." in n and n != "linear.custom"]


# ------------------------------------------------------------------ weights
def test_weight_blocks_do_not_depend_on_how_they_are_asked_for():
    w = Weight("w", (700, 96), "unstructured", 0.5, seed=3, scale=0.1)
    full = w.rows(0, 700)
    assert np.array_equal(w.rows(250, 600), full[250:600])
    assert np.array_equal(w.dense(), full)
    t = Weight("t", (96, 700), "2:4", 0.5, seed=3, transposed=True)
    assert np.array_equal(t.cols(100, 300), t.dense()[:, 100:300].T)


def test_synthetic_patterns_hold_exactly_or_statistically():
    nm = Weight("nm", (512, 256), "2:4", 0.5, seed=1).dense()
    groups = (nm != 0).reshape(512, 64, 4).sum(axis=2)
    assert (groups == 2).all()
    nmt = Weight("nmt", (64, 512), "1:4", 0.75, seed=1, transposed=True).dense()
    assert ((nmt != 0).reshape(64, 128, 4).sum(axis=2) == 1).all()   # along the input dim
    un = Weight("u", (2048, 1024), "unstructured", 0.7, seed=2, row_cv=0.3).dense()
    assert abs((un != 0).mean() - 0.3) < 0.01
    assert 0.25 < row_nnz_cv(un) < 0.36
    blk = Weight("b", (512, 512), "block16x16", 0.5, seed=4).dense() != 0
    tiles = blk.reshape(32, 16, 32, 16).transpose(0, 2, 1, 3).reshape(32, 32, 256)
    assert np.isin(tiles.sum(axis=2), (0, 256)).all()
    dense = Weight("d", (CHUNK_ROWS + 5, 64), seed=0).dense()
    assert (dense != 0).all()


def test_weight_rejects_bad_sparsity():
    with pytest.raises(WorkloadError, match="weight_sparsity"):
        Weight("w", (4, 4), "unstructured", 1.0)


# ------------------------------------------------------------------ tiles
@pytest.mark.parametrize("T,K,N,da,db", [(16, 256, 64, 1.0, 0.5), (8, 200, 96, 0.1, 0.5),
                                         (32, 64, 300, 1.0, 0.05), (5, 512, 40, 0.3, 0.9)])
def test_analytic_tiles_track_burst_within_five_percent(onyx, plan, T, K, N, da, db):
    rng = np.random.default_rng(T + K)
    a = (rng.random((T, K)) < da) * rng.standard_normal((T, K))
    b = (rng.random((K, N)) < db) * rng.standard_normal((K, N))
    exact = LayerEngine(plan, onyx, "burst")
    approx = LayerEngine(plan, onyx, "analytic")
    ye = exact.product(a, b, lane=0, expert=-1, label="p")
    ya = approx.product(a, b, lane=0, expert=-1, label="p")
    assert np.allclose(ye, a @ b, rtol=1e-5, atol=1e-4)
    assert np.allclose(ya, a @ b, rtol=1e-5, atol=1e-4)
    want = int(((a != 0).astype(np.int64) @ (b != 0).astype(np.int64)).sum())
    assert approx.work.products == exact.work.products == want
    assert approx.work.tiles == exact.work.tiles
    assert abs(approx.work.kernel_cycles / exact.work.kernel_cycles - 1) < 0.05


def test_every_tile_level_fits_a_mem_tile(plan):
    rng = np.random.default_rng(0)
    a = rng.random((64, 4096)) < 0.9
    b = rng.random((4096, 512)) < 0.5
    cyc, c, (tb, kc, nb) = analytic_tiles(a, b, plan.level_words, fill=0)
    live = c["live"]
    assert (c["a_nnz"][live] <= plan.level_words).all()
    assert (c["b_nnz"][live] <= plan.level_words).all()
    assert tb * nb <= plan.level_words and kc < plan.level_words
    assert (cyc[live] > 0).all() and (cyc[~live] == 0).all()


def test_empty_operand_tiles_are_skipped(onyx, plan):
    a = np.zeros((4, 64))
    a[:, :8] = 1.0
    b = np.ones((64, 16))
    eng = LayerEngine(plan, onyx, "analytic")
    eng.product(a, b, lane=0, expert=-1, label="p")
    assert eng.work.products == 4 * 8 * 16


# ------------------------------------------------------------------ layers
def test_moe_layer_analytic_close_to_burst(onyx, plan):
    layer = get_workload("moe.mixtral8x7b").make(
        {"scale": "64", "tokens": "12", "weight_sparsity": "0.5"})
    a = run_layer(layer, plan, onyx, fidelity="analytic")
    b = run_layer(layer, plan, onyx, fidelity="burst")
    assert abs(a.cycles / b.cycles - 1) < 0.05
    assert a.work.products == b.work.products
    assert [e.tokens for e in a.experts] == [e.tokens for e in b.experts]
    assert np.allclose(a.output, b.output, rtol=1e-4, atol=1e-6)
    assert np.allclose(b.output, layer.reference(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_every_catalog_layer_runs_verified(name):
    scale = "32" if "bert" not in name and "switch" not in name else "8"
    params = {"scale": scale, "tokens": "4"}
    rep = run(ONYX, name, params=params, fidelity="analytic")
    s = rep.summary
    assert s["verified"] is True, s["checks"]
    assert s["checks"]["tile_sample"] is True and s["checks"]["lowering"] is True
    ref = rep.layer.reference()                  # the independent full forward pass
    got = rep.result.outputs["Y"].to_dense()
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert s["cycles"] > 0 and s["energy_j"] > 0
    assert s["effectual_ops"] <= s["dense_equivalent_ops"]


def test_moe_expert_stats_show_the_straggler(onyx, plan):
    layer = get_workload("moe.dbrx").make({"scale": "64", "tokens": "64",
                                           "routing": "hot"})
    run_ = run_layer(layer, plan, onyx, fidelity="analytic")
    tokens = np.array([e.tokens for e in run_.experts])
    assert tokens.sum() == run_.layer_stats.routed_pair_count == 64 * 4
    hot = int(tokens.argmax())
    assert tokens[hot] >= 3 * tokens.mean()
    finish = [e.finish_cycle for e in run_.experts]
    lane_of_hot = run_.experts[hot].lane
    lane_end = run_.stats[f"chip.layer.lane{lane_of_hot}.finish_cycle"]["value"]
    assert max(finish) == lane_end == run_.layer_stats.experts_cycles
    uniform = run_layer(get_workload("moe.dbrx").make(
        {"scale": "64", "tokens": "64", "routing": "uniform"}), plan, onyx,
        fidelity="analytic")
    assert run_.cycles > uniform.cycles
    assert all("unit" in v and "desc" in v for v in run_.stats.values())


def test_switch_capacity_drops_tokens_and_reference_agrees():
    rep = run(ONYX, "moe.switch-base-128", params={"scale": "8", "tokens": "64",
                                                    "capacity_factor": "0.5"},
              fidelity="analytic")
    ex = rep.summary["experts"]
    assert ex["dropped_pairs"] > 0
    assert sum(ex["tokens"]) == 64 - ex["dropped_pairs"]
    assert max(ex["tokens"]) <= 1          # capacity ceil(64/128 * 0.5) = 1
    assert rep.summary["verified"] is True


def test_activation_sparsity_cuts_down_projection_work(onyx, plan):
    def macs(act):
        layer = get_workload("ffn.llama2-7b").make({"scale": "32", "tokens": "8",
                                                    "activation": act})
        return run_layer(layer, plan, onyx, fidelity="analytic").work.products
    dense, relu = macs("none"), macs("relu")
    d, f, T = 128, 344, 8
    assert dense == 3 * T * d * f
    down = relu - 2 * T * d * f          # gate and up stay dense
    assert 0.01 * T * d * f < down < 0.12 * T * d * f      # ~5% of neurons fire


def test_pruning_cuts_effectual_work(onyx, plan):
    def work(p):
        layer = get_workload("linear.bert-base.output").make({"scale": "8", "tokens": "4",
                                                              **p})
        return run_layer(layer, plan, onyx, fidelity="analytic")
    dense = work({"weight_sparsity": "0"})
    nm = work({"pattern": "1:4"})
    assert nm.work.products == dense.work.products // 4
    assert nm.layer_stats.sparse_mode_cycles < dense.layer_stats.sparse_mode_cycles


def test_layer_run_folder_and_baseline(tmp_path):
    out = tmp_path / "run"
    rep = run(ONYX, "moe.olmoe", params={"scale": "16", "tokens": "8"}, out=out,
              baseline="xeon-12c")
    doc = json.loads((out / "stats.json").read_text())
    s = doc["summary"]
    assert s["verified"] is True
    assert s["baseline"]["seconds"] > 0 and s["baseline"]["energy_ratio"] > 0
    assert len(s["experts"]["tokens"]) == 64
    assert doc["energy"]["total_pj"] == pytest.approx(rep.energy.total_pj)
    assert json.loads((out / "workload.json").read_text())["kind"] == "moe"


def test_fidelity_choice_and_errors():
    rep = run(ONYX, "moe.mixtral8x7b", params={"scale": "8", "tokens": "8"})
    assert rep.summary["fidelity"] == "analytic"
    assert "BURST_MAX_MACS" in rep.summary["notes"]["fidelity"]
    small = run(ONYX, "linear.bert-base.output", params={"scale": "16", "tokens": "2"})
    assert small.summary["fidelity"] == "burst"
    with pytest.raises(Exception, match="analytic applies to model layers"):
        run(ONYX, "spmv", fidelity="analytic")
    with pytest.raises(WorkloadError, match="scale"):
        get_workload("moe.mixtral8x7b").make({"scale": "3"})
    with pytest.raises(WorkloadError, match="routing"):
        get_workload("moe.olmoe").make({"routing": "zipfy"})
    with pytest.raises(WorkloadError, match="top_k"):
        get_workload("moe.olmoe").make({"top_k": "65"})


# ------------------------------------------------------------------ real data and specs
def test_linear_layer_from_real_weights_npz(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((768, 3072)).astype(np.float32)
    np.savez(tmp_path / "w.npz", wo=w)
    rep = run(ONYX, "linear.bert-base.output",
              params={"weights": str(tmp_path / "w.npz"), "key": "wo", "tokens": "2",
                      "weight_sparsity": "0.9"}, fidelity="analytic")
    assert rep.summary["verified"] is True
    kept = rep.layer.weight.data != 0
    assert kept.sum() == round(0.1 * w.size)
    assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max()   # magnitude pruning


def test_linear_custom_from_matrix_market(tmp_path):
    m = sp.random(120, 90, density=0.05, random_state=2, format="csr")
    scipy.io.mmwrite(tmp_path / "m.mtx", m)
    rep = run(ONYX, "linear.custom", params={"weights": str(tmp_path / "m.mtx"),
                                             "tokens": "3"})
    assert rep.summary["verified"] is True
    assert rep.summary["effectual_ops"] == 2 * 3 * m.nnz
    assert estimate_macs(rep.layer) == pytest.approx(3 * m.nnz, rel=0.02)


def test_moe_from_a_checkpoint_folder(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    d, f, E = 64, 96, 4
    t = {"model.layers.0.block_sparse_moe.gate.weight":
         rng.standard_normal((E, d)).astype(np.float32)}
    for e in range(E):
        pre = f"model.layers.0.block_sparse_moe.experts.{e}."
        t[pre + "w1.weight"] = rng.standard_normal((f, d)).astype(np.float32) / 8
        t[pre + "w3.weight"] = rng.standard_normal((f, d)).astype(np.float32) / 8
        t[pre + "w2.weight"] = rng.standard_normal((d, f)).astype(np.float32) / 8
    save_file(t, str(tmp_path / "model.safetensors"))
    rep = run(ONYX, "moe.mixtral8x7b", params={
        "weights": str(tmp_path), "d": str(d), "f": str(f), "experts": str(E),
        "tokens": "6", "weight_sparsity": "0.5"}, fidelity="burst")
    assert rep.summary["verified"] is True
    w1 = rep.layer.experts[2].gate.data
    assert np.count_nonzero(w1) == f * d // 2
    assert np.array_equal(rep.layer.router.data,
                          t["model.layers.0.block_sparse_moe.gate.weight"])


def test_yaml_spec_from_cli(tmp_path, capsys):
    spec = tmp_path / "moe.yaml"
    spec.write_text("workload: moe.olmoe\ntokens: 8\nrouting: uniform\n"
                    "sparsity: {weight: 0.5, pattern: '4:8'}\nparams: {scale: 16}\n")
    assert main(["run", ONYX, str(spec), "-q", "-p", "seed=2"]) == 0
    out = capsys.readouterr().out
    assert "moe.olmoe" in out and "True" in out
    spec.write_text("workload: moe.olmoe\nsparsity: {wieght: 0.5}\n")
    assert main(["run", ONYX, str(spec), "-q"]) == 2
    assert "sparsity.wieght: unknown key" in capsys.readouterr().err


def test_cli_lists_layers_with_parameters(capsys):
    assert main(["list", "workloads"]) == 0
    out = capsys.readouterr().out
    for name in ("moe.mixtral8x7b", "moe.deepseek-v3", "linear.llama2-7b.down",
                 "ffn.opt-6.7b", "-p routing=gini0.10", "-p weight_sparsity="):
        assert name in out


# ------------------------------------------------------------------ CPU baseline of layers
def test_cpu_layer_estimate_sums_library_calls():
    from baselines import (
        estimate_gemm,
        estimate_work,
        layer_estimate,
        load_cpu_preset,
        spmm_shape_work,
    )

    cpu = load_cpu_preset("xeon-12c")
    dense = {"m": 16, "k": 4096, "n": 14336, "w_nnz": 4096 * 14336}
    sparse = {"m": 16, "k": 4096, "n": 14336, "w_nnz": 4096 * 14336 // 2}
    one = layer_estimate([dense], cpu, layer="x")
    assert one.seconds == pytest.approx(estimate_gemm(16, 14336, 4096, cpu).seconds)
    two = layer_estimate([dense, sparse], cpu, layer="x")
    sp_est = estimate_work(spmm_shape_work(14336, 4096, sparse["w_nnz"], 16, cpu), cpu)
    assert two.seconds == pytest.approx(one.seconds + sp_est.seconds)
    assert two.energy_j == pytest.approx(one.energy_j + sp_est.energy_j)
    moe = layer_estimate([dense], cpu, layer="x", moe_pairs=128, d_model=4096)
    assert moe.seconds > one.seconds and moe.bytes > one.bytes
    assert layer_estimate([{"m": 0, "k": 8, "n": 8, "w_nnz": 0}], cpu, layer="x").seconds == 0


def test_dense_mode_schedule_is_the_systolic_or_dram_bound(onyx, plan):
    from compiler.dense import dense_mapping
    from simulator.chip import dram_transfer
    from simulator.systolic import SystolicArray, gemm_cycles

    a = np.ones((16, 1024))
    b = np.ones((1024, 896))
    eng = LayerEngine(plan, onyx, "analytic")
    eng.product(a, b, lane=0, expert=-1, label="p")
    block = dense_mapping(onyx)
    compute = gemm_cycles(16, 896, 1024, SystolicArray(block.rows, block.cols, "os")) + 1
    dma = dram_transfer(onyx, 1024 * 896 * 2).cycles
    from simulator.controller import run_lanes

    end = run_lanes(eng.dense_jobs, 1, onyx)[0]
    assert end == dma + compute                 # one job: its weights, then the GEMM
    assert eng.costs[0].dense_counts["mac"] == 16 * 1024 * 896
    # the MAC block's actions, the same function as a gemm on that block
    from simulator.energy import systolic_actions

    assert eng.costs[0].dense_counts == systolic_actions(16, 896, 1024, block.rows, block.cols,
                                                         onyx)


def test_layer_mode_auto_takes_the_faster_mode():
    def summary(s, mode="auto"):
        return run(ONYX, "linear.mixtral8x7b.w1", params={
            "scale": "8", "tokens": "16", "weight_sparsity": str(s)},
            overrides=[f"compiler.layer_mode={mode}"], fidelity="analytic").summary
    s50, s99 = summary(0.5), summary(0.99)
    assert s50["dense_mode_cycles"] == s99["dense_mode_cycles"]   # dense mode sees no zeros
    assert s50["mode"] == "dense" and s50["sparse_mode_cycles"] > s50["dense_mode_cycles"]
    assert s99["mode"] == "sparse" and s99["sparse_mode_cycles"] < s99["dense_mode_cycles"]
    forced = summary(0.5, "sparse")
    assert forced["mode"] == "sparse"
    assert forced["cycles"] > s50["cycles"] and forced["energy_j"] != s50["energy_j"]
    assert forced["verified"] and s50["verified"]


def test_layer_mode_by_objective_never_worse_than_either_mode():
    """Issue 15: sparse-mode energy falls with weight sparsity; the chosen modes' layer is
    never worse than all-sparse or all-dense by compiler.objective; the summary's energy is
    the chosen alternative's, priced by the same energy function."""
    def summary(s, objective="edp"):
        return run(ONYX, "linear.llama2-7b.down", params={
            "scale": "8", "tokens": "16", "weight_sparsity": str(s)},
            overrides=[f"compiler.objective={objective}"], fidelity="analytic").summary
    runs = [summary(s) for s in (0, 0.5, 0.9, 0.99)]
    sparse_energy = [r["modes"]["sparse"]["energy_j"] for r in runs]
    assert all(a > b for a, b in zip(sparse_energy, sparse_energy[1:])), sparse_energy
    for r in runs:
        chosen = next(c for c in r["modes"].values() if c.get("chosen"))
        assert all(chosen["edp_js"] <= c["edp_js"] for c in r["modes"].values())
        assert chosen["cycles"] == r["cycles"]
        assert chosen["energy_j"] == pytest.approx(r["energy_j"], rel=1e-9)
        assert r["verified"] and r["products"]
        for p in r["products"]:
            assert p["sparse_energy_j"] > 0 and p["dense_energy_j"] > 0
    assert runs[0]["mode"] == "dense" and runs[-1]["mode"] == "sparse"
    for objective, key in (("cycles", "cycles"), ("energy", "energy_j")):
        r = summary(0.9, objective)
        assert r["objective"] == objective
        assert all(r[key] <= c[key] * (1 + 1e-12) for c in r["modes"].values())


def test_moe_report_shows_experts_not_an_empty_tile_grid(tmp_path):
    from reports import render_run

    out = tmp_path / "r"
    run(ONYX, "moe.olmoe", params={"scale": "16", "tokens": "8"}, out=out)
    written = {p.name for p in render_run(out)}
    assert "experts.png" in written and "pe_utilization.png" not in written
    html = (out / "report.html").read_text()
    assert "<figcaption>experts.png: Per-expert load" in html
    assert "pe_utilization.png" not in html


def test_layer_trace_has_a_track_per_lane_and_dram(tmp_path):
    from reports import render_run

    out = tmp_path / "t"
    run(ONYX, "moe.mixtral8x7b", params={"scale": "64", "tokens": "8"}, out=out,
        overrides=["compiler.layer_mode=sparse"])
    render_run(out, trace=True)
    events = json.loads((out / "trace.json").read_text())["traceEvents"]
    lanes = [e for e in events if e.get("pid") == 3 and e["ph"] == "X"]
    names = {e["args"]["name"] for e in events if e.get("pid") == 3 and e["ph"] == "M"
             and e["name"] == "thread_name"}
    assert "DRAM (weight DMA)" in names and "lane 0" in names
    jobs = [e for e in lanes if e["cat"] == "lane"]
    s = json.loads((out / "stats.json").read_text())["summary"]
    freq = load_chip(ONYX).clock.freq_mhz
    assert max(e["ts"] + e["dur"] for e in jobs) * freq == pytest.approx(
        s["cycles"] - json.loads((out / "stats.json").read_text())["stats"][
            "chip.layer.combine_cycles"]["value"])


def test_layer_check_fails_on_a_wrong_output(onyx, plan):
    from compiler.layers import full_forward
    from simulator.checks import check_layer_output
    from simulator.summary import verified

    def check_layer(r, layer):
        return check_layer_output(r.output, r.reference, full_forward(layer), r.fidelity,
                                  r.sample)

    layer = get_workload("moe.olmoe").make({"scale": "32", "tokens": "4"})
    r = run_layer(layer, plan, onyx, fidelity="analytic")
    checks = check_layer(r, layer)
    assert checks["lowering"] is True and checks["tile_sample"] is True and verified(checks)
    r.output[1, 3] += 1e-2 * np.abs(r.reference).max()
    checks = check_layer(r, layer)
    assert checks["lowering"] is False and checks["lowering_full_forward"] is False
    assert not verified(checks)


def test_analytic_tile_sample_is_the_independent_check_and_sees_deadlocks():
    """Issue 15: at analytic fidelity the numpy checks compare numpy with numpy and cannot
    verify a run; a sample of tiles (one per product kind and the slowest) runs on burst,
    and perturbing the analytic values it is checked against fails verification. A
    configuration that deadlocks on burst deadlocks at analytic too."""
    from isa.errors import SimulationError
    from simulator.checks import check_layer_output
    from simulator.summary import verified

    rep = run(ONYX, "ffn.opt-6.7b", params={"scale": "64", "tokens": "4"},
              overrides=["compiler.layer_mode=sparse"], fidelity="analytic")
    s = rep.summary
    assert s["verified"] and s["checks"]["tile_sample"] is True
    assert s["checks"]["numpy"].startswith("skipped")
    assert {t["kind"] for t in s["tile_sample"]} == {"up", "down"}
    assert sum(t["worst"] for t in s["tile_sample"]) == 1
    for t in s["tile_sample"]:
        assert 0.8 < t["cycle_ratio"] < 1.25, t
    lrun = rep.result.kernel_runs["layer"]
    assert verified(check_layer_output(lrun.output, lrun.reference, "skipped: test",
                                       "analytic", lrun.sample))
    lrun.sample[0]["analytic_values"] = lrun.sample[0]["analytic_values"] * 1.01
    checks = check_layer_output(lrun.output, lrun.reference, "skipped: test", "analytic",
                                lrun.sample)
    assert checks["tile_sample"] is False and not verified(checks)
    only_numpy = {k: v for k, v in checks.items() if k != "tile_sample"}
    assert not verified(only_numpy)          # numpy against numpy verifies nothing
    with pytest.raises(SimulationError, match="deadlock"):
        run(ONYX, "linear.bert-base.output", params={"scale": "8", "tokens": "4"},
            overrides=["pe.fifo_depth=1", "compiler.balance_fifos=false",
                       "compiler.layer_mode=sparse"], fidelity="analytic")


def test_a_process_pool_mapper_gives_byte_identical_stats(tmp_path):
    """The controller's mapper hook: a layer's jobs run in worker processes fold to the same
    stats.json as the builtin map (jobs are pure functions of picklable inputs)."""
    from concurrent.futures import ProcessPoolExecutor

    params = {"scale": "64", "tokens": "8"}
    run(ONYX, "moe.olmoe", params=params, fidelity="analytic", out=tmp_path / "a")
    with ProcessPoolExecutor(2) as pool:
        run(ONYX, "moe.olmoe", params=params, fidelity="analytic", out=tmp_path / "b",
            mapper=pool.map)
    a, b = ((tmp_path / d / "stats.json").read_bytes() for d in ("a", "b"))
    assert a == b and b"chip.layer.expert0.tokens" in a


def test_a_layer_program_lists_its_stages_in_order(onyx, plan):
    """compiler.layers emits the stage order, the expert -> lanes map and the routing:
    router, top-k, one job per expert with tokens (on its lanes), then the combine."""
    from compiler.layers import compile_model_layer

    layer = get_workload("moe.olmoe").make({"scale": "32", "tokens": "4"})
    program = compile_model_layer(layer, onyx, plan)
    stages = [j.stage for j in program.jobs]
    assert stages[:2] == ["router", "topk"] and stages[-1] == "combine"
    experts = [j for j in program.jobs if j.stage == "experts"]
    tokens = [t for t, _lane in program.layout.experts]
    assert len(experts) == sum(1 for t in tokens if t) and sum(tokens) == 4 * layer.k
    assert all(j.deps == ("topk",) and j.lanes == (j.expert % plan.lanes,) for j in experts)
    assert program.jobs[-1].deps == tuple(j.name for j in experts)
    assert program.jobs[0].dims == (4, layer.num_experts, layer.x.shape[1])
    # the mode policy (auto, edp): the product of lower cycles x energy; sparse on a tie
    pick = program.layout.pick_product
    assert pick((10, 1.0), (5, 1.0)) == "dense" and pick((5, 1.0), (10, 1.0)) == "sparse"
    assert pick((4, 1.0), (2, 2.0)) == "sparse"


def test_the_controller_refuses_jobs_out_of_dependency_order(onyx, plan):
    import dataclasses

    from compiler.layers import compile_model_layer
    from isa.errors import SimulationError
    from simulator.controller import simulate

    layer = get_workload("moe.olmoe").make({"scale": "64", "tokens": "2"})
    program = compile_model_layer(layer, onyx, plan)
    shuffled = dataclasses.replace(program, jobs=program.jobs[::-1])
    with pytest.raises(SimulationError, match="job combine depends on"):
        simulate(shuffled, onyx, fidelity="analytic")


def test_nm_weights_run_and_move_compressed_in_dense_mode():
    """Issue 15: an N:M-pruned layer in dense mode runs the MAC block on the kept K (as gemm
    does) and moves the kept values plus their position bits, not dense weights."""
    def summary(**p):
        return run(ONYX, "linear.llama2-7b.down", params={"scale": "16", "tokens": "16", **p},
                   overrides=["compiler.layer_mode=dense"], fidelity="analytic").summary
    nm, unstructured = summary(pattern="2:4"), summary(weight_sparsity="0.5")
    lrun_weights = 11008 // 16 * 4096 // 16                      # K x N of the weight
    weight_bytes = lrun_weights * 2
    nm_bytes = lrun_weights // 2 * 2 + lrun_weights // 2 * 2 // 8
    assert unstructured["dram_bytes"] - nm["dram_bytes"] == weight_bytes - nm_bytes
    assert nm["cycles"] < unstructured["cycles"] and nm["energy_j"] < unstructured["energy_j"]
    assert nm["skipped_ops"] == nm["dense_equivalent_ops"] // 2 and nm["verified"]


def test_bsr_bytes_is_the_hand_count():
    """Issue 15: a block-pruned weight's BSR image is the kept blocks' in-range values, one
    block-column index per kept block and ceil(K/bk) + 1 block-row pointers, 2 bytes each."""
    from isa.weight_formats import bsr_bytes

    b = np.zeros((5, 6), dtype=np.float32)
    b[0, 0] = b[4, 5] = 1.0               # blocks (0, 0): 2 x 4 values; (2, 1): 1 x 2
    assert bsr_bytes(b, (2, 4)) == (8 + 2 + 2 + 3 + 1) * 2
    assert bsr_bytes(np.zeros((5, 6)), (2, 4)) == (3 + 1) * 2


def test_block_sparse_weights_move_as_bsr_in_dense_mode():
    """Issue 15: a block-pruned layer in dense mode DMAs its kept blocks plus the BSR index
    instead of dense weights, and still issues every MAC (the MAC block cannot skip a zero
    block: those MACs are ineffectual); sparse mode is unchanged by the pattern's format."""
    from isa.weight_formats import bsr_bytes

    params = {"scale": "16", "tokens": "16", "weight_sparsity": "0.5"}

    def dense_run(**p):
        return run(ONYX, "linear.llama2-7b.down", params={**params, **p},
                   overrides=["compiler.layer_mode=dense"], fidelity="analytic")
    rep = dense_run(pattern="block16x16")
    block, unstructured = rep.summary, dense_run().summary
    b = rep.layer.weight.dense().T                                # K x N as the product
    chunks = [(t.r0, t.r1) for t in (j.task for j in rep.program.jobs)
              if t is not None and hasattr(t, "r0")]              # the plan's row chunks
    assert len(chunks) > 1 and chunks[-1][1] == b.shape[1]
    assert unstructured["dram_bytes"] - block["dram_bytes"] == \
        b.size * 2 - sum(bsr_bytes(b[:, r0:r1], (16, 16)) for r0, r1 in chunks)
    assert block["skipped_ops"] == 0
    assert block["effectual_ops"] + block["ineffectual_ops"] == block["dense_equivalent_ops"]
    assert block["energy_j"] < unstructured["energy_j"] and block["verified"]


@pytest.mark.parametrize("lengths", [(8, 16), (1048576, 2097152), (97713, 8), (12, 24)])
def test_random_bytes_is_rng_bytes(lengths):
    """The fast path of synthetic-weight generation (random_raw) gives rng.bytes' bytes and
    leaves the generator where rng.bytes would, also after a length that is not a multiple
    of 8 (a buffered half: the fallback)."""
    from workloads.layers import _random_bytes

    a, b = np.random.default_rng([3, 7, 1]), np.random.default_rng([3, 7, 1])
    for n in lengths:
        assert _random_bytes(a, n).tobytes() == b.bytes(n)
    assert np.array_equal(a.random(4), b.random(4))


@pytest.mark.parametrize("fidelity", ["analytic", "burst"])
def test_teal_on_h_is_one_threshold_per_tensor(fidelity):
    # bert-base's f = 3072 spans six 512-wide simulated chunks and three 1024-wide reference
    # chunks; a TEAL threshold taken per chunk made the full forward pass disagree (the run
    # failed its check, `-p activation=teal50` as models.py suggests it)
    from workloads.layers import ffn_reference

    params = {"activation": "teal50", "tokens": "4"}
    rep = run(ONYX, "ffn.bert-base", params=params, fidelity=fidelity)
    assert rep.summary["verified"] is True, rep.summary["checks"]
    layer = rep.layer
    by512 = ffn_reference(layer.ffn, layer.x, layer.sparsity, chunk=512)
    by1024 = ffn_reference(layer.ffn, layer.x, layer.sparsity, chunk=1024)
    assert np.allclose(by512, by1024, rtol=1e-12, atol=1e-12 * np.abs(by1024).max())
    got = rep.result.outputs["Y"].to_dense()
    ref = layer.reference()
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_block_pruned_row_blocks_hold_whole_blocks(onyx, plan):
    # linear.llama2-7b.down at scale 4 (W 1024 x 2752) on 11 lanes: ceil(1024 / 11) = 94
    # rows a row block, rounded up to whole 16-row pruning blocks: 96. A row block cut
    # mid-block would store (BSR) the cut blocks in both of its neighbours; aligned, every
    # kept block is stored once: the dense-mode weight bytes are the whole weight's BSR
    # values and indices, plus one set of block-row pointers per row block
    from compiler.layers import compile_model_layer
    from isa.weight_formats import bsr_bytes
    from simulator.controller import simulate

    layer = get_workload("linear.llama2-7b.down").make(
        {"scale": "4", "tokens": "4", "weight_sparsity": "0.5", "pattern": "block16x16"})
    program = compile_model_layer(layer, onyx, plan)
    starts = [j.task.r0 for j in program.jobs]
    assert starts[:3] == [0, 96, 192] and all(r % 16 == 0 for r in starts)
    run_ = simulate(program, onyx, fidelity="analytic").kernel_runs["layer"]
    w_t = layer.weight.rows(0, 1024).T                       # K x N = 2752 x 1024
    pointers = (-(-2752 // 16) + 1) * 2                        # ceil(K / 16) + 1 words
    weight = sum(c.dense_memory["dram_read_bytes"] for c in run_.costs)
    assert weight == bsr_bytes(w_t, (16, 16)) + (len(starts) - 1) * pointers


def test_block_pruned_ffn_chunks_hold_whole_blocks(onyx, plan):
    # ffn.bert-base at scale 4 (f = 768) on 11 lanes: ceil(768 / 11) = 70 columns a chunk,
    # rounded up to whole 32-wide pruning blocks along f (block32x32): 96, so no block of
    # up (along its N) or down (along its K) is cut by a chunk's edge
    from compiler.layers import compile_model_layer

    layer = get_workload("ffn.bert-base").make(
        {"scale": "4", "tokens": "4", "weight_sparsity": "0.5", "pattern": "block32x32"})
    assert layer.ffn.f == 768
    program = compile_model_layer(layer, onyx, plan)
    chunks = [c for j in program.jobs for c in j.task.chunks]
    assert chunks[:2] == [(0, 96), (96, 192)] and all(f0 % 32 == 0 for f0, _ in chunks)
    plain = get_workload("ffn.bert-base").make({"scale": "4", "tokens": "4"})
    assert [c for j in compile_model_layer(plain, onyx, plan).jobs
            for c in j.task.chunks][:2] == [(0, 70), (70, 140)]
