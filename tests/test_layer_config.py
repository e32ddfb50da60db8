"""A model layer's configuration is in its cycles: the lanes' N-copy batched tile kernel
before the sparse-mode jobs, the MAC block before the router and the dense-mode jobs, once
per switch (simulator.layers.config_loads), each streamed as a kernel's configuration is
(simulator.controller.Firmware.configure: a DMA descriptor, then ceil(bits /
controller.config_bits_per_cycle) cycles), overlapping the phase's weight DMAs and on the
critical path otherwise. The schedule is the controller's at every fidelity, so analytic,
burst and cycle runs take the same configuration."""

from __future__ import annotations

import dataclasses

import pytest

from compiler.layers import compile_model_layer
from isa.bitstream import config_bits
from simulator.chip import dram_transfer
from simulator.controller import run_lanes, simulate
from simulator.layers import LaneJob, config_loads
from workloads import get_workload


def _with(chip, *, mode: str | None = None, bits_per_cycle: int | None = None):
    out = chip
    if mode is not None:
        out = dataclasses.replace(out, compiler=dataclasses.replace(out.compiler,
                                                                    layer_mode=mode))
    if bits_per_cycle is not None:
        out = dataclasses.replace(out, controller=dataclasses.replace(
            out.controller, config_bits_per_cycle=bits_per_cycle))
    return out


def _run(chip, plan, name, params, fidelity="analytic"):
    layer = get_workload(name).make({k: str(v) for k, v in params.items()})
    res = simulate(compile_model_layer(layer, chip, plan), chip, fidelity=fidelity)
    return res, res.kernel_runs["layer"]


def _stat(res, name):
    return res.stats[f"chip.controller.{name}"]["value"]


def test_config_cycles_are_the_bitstream_over_the_network(onyx, plan):
    # Onyx: the 11-copy batched tile kernel is 82,656 bits (2,583 words of 32 bits: tile and
    # switch words, isa.bitstream.config_bits); the configuration network takes 32 bits a
    # cycle (configs/chips/onyx.yaml controller.config_bits_per_cycle), so loading it takes
    # ceil(82,656 / 32) = 2,583 cycles, after a 200-cycle DMA descriptor (dma_setup_cycles).
    # The MAC block's bitstream is four 32-bit words: 128 bits, ceil(128 / 32) = 4 cycles.
    assert config_bits(plan.kernel) == 82_656
    assert onyx.controller.config_bits_per_cycle == 32
    sparse, = config_loads(plan, onyx, ["sparse", "sparse"], router=False)
    assert (sparse.user, sparse.bits, sparse.cycles) == ("sparse", 82_656, 2_583)
    assert sparse.wait == onyx.controller.dma_setup_cycles + 2_583 == 2_783
    dense, = config_loads(plan, onyx, ["dense"], router=False)
    assert (dense.kernel, dense.bits, dense.cycles) == (plan.mac_block.name, 128, 4)


def test_a_load_per_switch_of_mode(onyx, plan):
    def users(modes, router):
        return [ld.user for ld in config_loads(plan, onyx, modes, router)]

    # the MAC block before the router; still loaded when every product is dense
    assert users(["dense", "dense"], True) == ["router"]
    assert users(["sparse", "sparse"], True) == ["router", "sparse"]
    assert users(["sparse", "dense"], True) == ["router", "sparse", "dense"]
    assert users(["dense", "sparse"], False) == ["sparse", "dense"]   # sparse phase first
    assert users(["sparse"], False) == ["sparse"]
    assert users([], False) == []


def test_lanes_wait_for_the_configuration_but_their_dmas_do_not(onyx):
    # two lanes, jobs without weights (ALU passes): nothing to overlap, so each lane's work
    # starts when the configuration ends: end = 1,000 + 300 + 200 on lane 0
    jobs = [LaneJob(0, -1, 300, 0, "a"), LaneJob(1, -1, 50, 0, "b"),
            LaneJob(0, -1, 200, 0, "c")]
    assert run_lanes(jobs, 2, onyx, 2, 0)[0] == 500
    end, _, lane_end, _ = run_lanes(jobs, 2, onyx, 2, 1_000)
    assert (end, lane_end) == (1_500, [1_500, 1_050])
    # a job whose weights take longer to DMA than the configuration: the configuration is
    # hidden under its DMA (the DRAM channel is not the configuration network)
    big = 4 * 1024 * 1024
    dma = dram_transfer(onyx, big).cycles
    assert dma > 1_000
    one = [LaneJob(0, -1, 300, big, "w")]
    assert run_lanes(one, 1, onyx, 2, 1_000)[0] == run_lanes(one, 1, onyx, 2, 0)[0] \
        == dma + 300
    # shorter than the configuration: the lane waits for the configuration, not the DMA
    small = [LaneJob(0, -1, 300, 64, "w")]
    assert dram_transfer(onyx, 64).cycles < 1_000
    assert run_lanes(small, 1, onyx, 2, 1_000)[0] == 1_300


@pytest.mark.parametrize("fidelity", ["analytic", "burst"])
def test_a_sparse_layer_counts_and_waits_for_its_configuration(onyx, plan, fidelity):
    # linear.bert-base.output at scale 16 (W 48 x 192, one row block): one job on lane 0.
    # The lanes' kernel loads (2,583 cycles after its descriptor, 2,783 in all) while the
    # job's weights DMA; the job computes when both are done, so the layer's cycles are
    # max(2,783, the DMA) + the job's cycles, and the run counts 82,656 bits, 2,583 cycles
    # and one more firmware descriptor
    chip = _with(onyx, mode="sparse")
    res, run = _run(chip, plan, "linear.bert-base.output", {"scale": 16, "tokens": 2},
                    fidelity)
    job, = run.jobs
    wait = chip.controller.dma_setup_cycles + 2_583
    dma = dram_transfer(chip, job.dram_bytes).cycles
    assert res.cycles == max(wait, dma) + job.cycles
    assert wait > dma                                  # here it is on the critical path
    assert (_stat(res, "config_bits"), _stat(res, "config_cycles")) == (82_656, 2_583)
    assert [ld.user for ld in run.config] == ["sparse"]
    c = chip.controller
    assert _stat(res, "firmware_cycles") == (run.layer_stats.tile_count * (
        c.launch_cycles + 3 * c.dma_setup_cycles) + 2 * c.dma_setup_cycles)  # job + config
    assert run.candidates["sparse"]["config_cycles"] == 2_583
    assert run.candidates["dense"]["config_cycles"] == 4
    # a slower configuration network: the whole load is on the critical path
    slow = _with(chip, bits_per_cycle=1)
    res1, run1 = _run(slow, plan, "linear.bert-base.output", {"scale": 16, "tokens": 2},
                      fidelity)
    assert _stat(res1, "config_cycles") == 82_656
    assert res1.cycles == c.dma_setup_cycles + 82_656 + run1.jobs[0].cycles


def test_an_moe_layer_configures_before_its_router(onyx, plan):
    # all sparse: the MAC block (128 bits, 4 cycles) before the router, then the lanes'
    # kernel before the experts; the router's load has nothing to overlap, so the layer is
    # 204 + router + top-k + the experts stage (with its own load) + combine
    chip = _with(onyx, mode="sparse")
    res, run = _run(chip, plan, "moe.olmoe", {"scale": 16, "tokens": 8})
    assert [ld.user for ld in run.config] == ["router", "sparse"]
    assert (_stat(res, "config_bits"), _stat(res, "config_cycles")) == (128 + 82_656,
                                                                          4 + 2_583)
    ls = run.layer_stats
    assert res.cycles == (chip.controller.dma_setup_cycles + 4 + ls.router_cycles
                          + ls.topk_cycles + ls.experts_cycles + ls.combine_cycles)
    assert ls.experts_cycles >= chip.controller.dma_setup_cycles + 2_583
    # the timeline (timeline.json, the Perfetto trace) shows both loads in layer cycles
    begin = 204 + ls.router_cycles + ls.topk_cycles          # the experts stage starts
    assert sorted((sp["start"], sp["end"], sp["bits"]) for sp in run.timeline
                  if sp["track"] == "config") == [(0, 204, 128),
                                                  (begin, begin + 2_783, 82_656)]
    assert min(sp["start"] for sp in run.timeline if sp["track"] == "lane") >= begin + 2_783
    # all dense: the router's MAC block stays loaded for the experts
    dres, drun = _run(_with(onyx, mode="dense"), plan, "moe.olmoe", {"scale": 16, "tokens": 8})
    assert [ld.user for ld in drun.config] == ["router"]
    assert _stat(dres, "config_cycles") == 4


def test_the_whole_layer_choice_sees_the_configuration(onyx, plan):
    # a layer that sparse mode wins at 99% zeros (llama2-7b.down at scale 64: W 64 x 172)
    # loses to dense mode once the lanes' configuration costs 82,656 cycles (one bit a
    # cycle) and the MAC block's 128: the alternatives' cycles carry the loads, and the
    # choice follows them
    params = {"scale": 64, "tokens": 4, "weight_sparsity": 0.99}
    _, fast = _run(onyx, plan, "linear.llama2-7b.down", params)
    _, slow = _run(_with(onyx, bits_per_cycle=1), plan, "linear.llama2-7b.down", params)
    assert fast.mode == "sparse"
    assert slow.mode == "dense"
    for run, per_cycle in ((fast, 32), (slow, 1)):
        assert run.candidates["sparse"]["config_cycles"] == -(-82_656 // per_cycle)
        assert run.candidates["dense"]["config_cycles"] == -(-128 // per_cycle)
    assert slow.candidates["sparse"]["cycles"] - fast.candidates["sparse"]["cycles"] > 70_000


def test_a_layer_loads_as_a_kernel_configures(small_chip):
    # one rule for both: a kernel program's configure (simulator.controller.Firmware) and a
    # layer's loads stream ceil(bits / config_bits_per_cycle) cycles
    from compiler.pipeline import compile_kernel
    from simulator.chip import config_stream_cycles

    for name, params in (("spmspm", {"shape": "8,8,8"}), ("gemm", {"shape": "8,8,8"})):
        program = compile_kernel(get_workload(name).make(params), small_chip)
        res = simulate(program, small_chip, fidelity="burst")
        bits = config_bits(program.kernels[0])
        assert _stat(res, "config_bits") == bits
        assert _stat(res, "config_cycles") == config_stream_cycles(small_chip, bits) \
            == -(-bits // small_chip.controller.config_bits_per_cycle)


def test_the_trace_shows_the_configuration_network(tmp_path):
    # the run folder's timeline.json carries the loads; the Perfetto trace gives them a track
    from reports import load_run, trace_events
    from reports.trace import LANES_PID
    from sieve.api import run

    run("configs/chips/onyx.yaml", "moe.olmoe", params={"scale": "16", "tokens": "8"},
        overrides=["compiler.layer_mode=sparse"], fidelity="analytic", out=tmp_path / "r")
    events = trace_events(load_run(tmp_path / "r"))["traceEvents"]
    tid = next(e["tid"] for e in events if e["name"] == "thread_name"
               and e["args"]["name"] == "configuration network")
    loads = sorted((e["ts"], e["args"]["bits"]) for e in events
                   if e["ph"] == "X" and e["pid"] == LANES_PID and e["tid"] == tid)
    assert [bits for _, bits in loads] == [128, 82_656] and loads[0][0] == 0
