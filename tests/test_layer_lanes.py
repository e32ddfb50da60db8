"""A model layer's lanes are copies of the batched tile kernel unrolled over its job loop:
X(b,i,j) = B(b,i,k) * C(b,k,j), b the layer's jobs (compiler.layers), dealt to the copies
by the stream filter's rule (isa.copies.dealt_copy), which the layer's job -> lane map uses
too."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from compiler.layers import (
    TEMPLATE_EXPR,
    compile_model_layer,
    deal,
    plan_layer,
    template_layer,
)
from compiler.pipeline import lower_layer
from compiler.unroll import copies_of, copy_kernel, kernel_shape, max_copies
from isa.bitstream import config_bits
from isa.copies import dealt_copy
from isa.errors import CompileError
from isa.interp import assemble_output
from isa.verify import verify_kernel
from simulator.controller import simulate
from simulator.layers import LayerEngine, run_lane_tiles
from workloads import get_workload


def _forced(chip, n):
    return dataclasses.replace(chip, compiler=dataclasses.replace(chip.compiler, unroll=n))


@pytest.fixture(scope="module")
def plan3(onyx):
    return plan_layer(_forced(onyx, 3))


def test_lanes_are_the_copies_of_the_unrolled_batched_kernel(onyx, plan):
    # the Program's tile kernel is the N-copy graph, placed and routed on the whole array
    assert plan.kernel.expr == TEMPLATE_EXPR
    assert copies_of(plan.kernel) == plan.lanes == plan.unroll.copies
    verify_kernel(plan.kernel, onyx.array)            # every unit on its own tile, routed
    assert all(n.tile is not None for n in plan.kernel.nodes)
    # one planner: the unroller's limits on the one-copy batched kernel. A copy holds 11
    # MEM-tile units (the scanners of C's b level, B's i and k levels and C's k and j
    # levels, the arrays of B and C, the writers of X's three levels and its values), so
    # Onyx's 128 MEM tiles bind: 128 // 11 = 11 lanes (the GLB links allow 16)
    layer = template_layer()
    one, _ = lower_layer(layer, onyx)
    limits = max_copies(one, kernel_shape(one), onyx, 0)
    assert limits["mem_tiles"] == 128 // 11 == 11
    assert plan.lanes == min(v for k, v in limits.items() if k != "outer_positions") == 11
    assert plan.unroll.binds == "mem_tiles"
    # a lane is copy 0 of the placed graph: its units and streams as placed, its filters
    lane = plan.lane_kernel
    assert {n.id for n in lane.nodes} == {n.id for n in plan.kernel.nodes
                                          if n.id.endswith("_u0")}
    assert len(lane.nodes) * plan.lanes == len(plan.kernel.nodes)
    assert [n.tile for n in lane.nodes] == [n.tile for n in plan.kernel.nodes
                                            if n.id.endswith("_u0")]
    assert copy_kernel(plan.kernel, plan.lanes - 1).nodes[0].id.endswith(f"_u{plan.lanes - 1}")


def test_forced_lanes_follow_compiler_unroll(onyx, plan3):
    assert plan3.lanes == copies_of(plan3.kernel) == 3
    assert plan3.unroll.binds == "compiler.unroll"
    with pytest.raises(CompileError, match="mem_tiles allow 11"):
        plan_layer(_forced(onyx, 12))


def test_configuration_is_the_real_n_copy_bitstream(onyx, plan):
    # no `x lanes` arithmetic: the configuration bits of a sparse-mode run are the N-copy
    # kernel's own (a dense-mode run loads the MAC block instead: tests/test_layer_config.py)
    sparse = dataclasses.replace(onyx, compiler=dataclasses.replace(onyx.compiler,
                                                                  layer_mode="sparse"))
    layer = get_workload("linear.bert-base.output").make({"scale": "16", "tokens": "2"})
    res = simulate(compile_model_layer(layer, sparse, plan), sparse, fidelity="analytic")
    bits = res.stats["chip.controller.config_bits"]["value"]
    assert bits == config_bits(plan.kernel)
    assert bits != config_bits(plan.lane_kernel) * plan.lanes or plan.lanes == 1


def test_the_deal_is_the_filters_rule():
    assert deal(7, 3) == [0, 1, 2, 0, 1, 2, 0]
    assert [int(dealt_copy(p, 4)) for p in range(6)] == deal(6, 4)
    assert list(dealt_copy(np.arange(6), 4)) == deal(6, 4)


def test_controller_deals_jobs_as_the_filter_on_the_batched_graph(onyx, plan):
    # an MoE layer of 64 experts on 11 lanes: expert e is position e of the job loop. The
    # lane the compiler gives each expert job, and the lane the controller schedules its
    # tiles on, are the copy whose filters pass position e on the batched N-copy graph
    sparse = dataclasses.replace(onyx, compiler=dataclasses.replace(onyx.compiler,
                                                                  layer_mode="sparse"))
    layer = get_workload("moe.olmoe").make({"scale": "16", "tokens": "8"})
    program = compile_model_layer(layer, sparse, plan)
    experts = [j for j in program.jobs if j.stage == "experts" and j.expert >= 0]
    assert len(experts) > plan.lanes                  # the deal wraps around the lanes
    res = simulate(program, sparse, fidelity="analytic")
    scheduled = {(j.expert, j.lane) for j in res.kernel_runs["layer"].jobs if j.expert >= 0}
    assert scheduled == {(j.expert, j.lanes[0]) for j in experts}
    # the batched graph on 64 one-nonzero jobs: copy c's part holds the positions it got
    E = layer.num_experts
    tiles = [(sp.csr_matrix(np.eye(1, 2)), sp.csr_matrix(np.full((2, 1), e + 1.0)))
             for e in range(E)]
    run, out = run_lane_tiles(plan, tiles, "burst", kernel=plan.kernel)
    assert np.array_equal(out[:, 0, 0], np.arange(1, E + 1))
    decl = next(d for d in plan.kernel.tensors if d.is_output)
    decl = dataclasses.replace(decl, shape=(E, 1, 1))
    got = {int(b): c for c in range(plan.lanes)
           for b in assemble_output(decl, run.memory, c).levels[0].crd}
    assert all(got[j.expert] == j.lanes[0] for j in experts)
    assert [got[e] for e in range(E)] == deal(E, plan.lanes)


def _jobs(seed: int, n: int) -> list[tuple[sp.csr_matrix, sp.csr_matrix]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = (rng.random((6, 9)) < 0.35) * rng.integers(1, 5, (6, 9))
        w = (rng.random((9, 5)) < 0.35) * rng.integers(1, 5, (9, 5))
        a[0, 0], w[0, 0] = 1, 2                  # every job has an effectual product
        out.append((sp.csr_matrix(a.astype(np.float32)), sp.csr_matrix(w.astype(np.float32))))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_graph_runs_the_jobs_the_lanes_schedule(onyx, plan3, seed):
    # five small jobs through the 3-copy batched graph, on both engines
    jobs = _jobs(seed, 5)
    runs = {f: run_lane_tiles(plan3, jobs, f, kernel=plan3.kernel) for f in ("cycle", "burst")}
    (cyc, out_c), (bur, out_b) = runs["cycle"], runs["burst"]
    assert cyc.cycles == bur.cycles
    for uid, st in cyc.units.items():
        assert dataclasses.asdict(st) == dataclasses.asdict(bur.units[uid]), uid
    want = np.stack([(a @ w).toarray() for a, w in jobs])
    assert np.array_equal(out_c, want) and np.array_equal(out_b, want)
    decl = next(d for d in plan3.kernel.tensors if d.is_output)
    decl = dataclasses.replace(decl, shape=want.shape)
    parts = [assemble_output(decl, bur.memory, c) for c in range(3)]
    # each copy's part is the jobs dealt to it; the parts' union is the output
    assert [list(p.levels[0].crd) for p in parts] == [[0, 3], [1, 4], [2]]
    assert sum(p.to_dense() for p in parts).tolist() == want.tolist()
    # the work: each copy's effectual MACs are those the layer engine counts for the same
    # jobs run as products on that lane (one tile each), and its output rows the jobs'
    eng = LayerEngine(plan3, onyx, "burst")
    for p, (a, w) in enumerate(jobs):
        eng.product(a.toarray(), w.toarray(), lane=int(dealt_copy(p, 3)), expert=-1,
                    label=f"linear[{p}]")
    assert [j.lane for j in eng.jobs] == deal(5, 3)
    assert all(c.tiles == 1 for c in eng.costs)
    for c in range(3):
        macs = bur.units[f"alu_mul_u{c}"].effectual_op_count
        assert macs == sum(cost.macs for p, cost in enumerate(eng.costs)
                           if dealt_copy(p, 3) == c)
        rows = sum(np.count_nonzero(want[p].any(axis=1)) for p in range(5)
                   if dealt_copy(p, 3) == c)
        assert len(parts[c].levels[1].crd) == rows


def test_lanes_drop_when_the_copies_do_not_place(onyx):
    # as for kernels: auto tries the largest factor the limits allow, then smaller ones, and
    # keeps the first that places and routes (here a placer refusing more than 5 copies)
    from compiler.pipeline import place_route_balance
    from compiler.unroll import plan_lanes

    layer = template_layer()
    one, _ = lower_layer(layer, onyx)
    tried = []

    def compile_fn(kernel):
        tried.append(copies_of(kernel))
        if copies_of(kernel) > 5:
            raise CompileError(f"route: {copies_of(kernel)} copies do not route")
        return place_route_balance(kernel, onyx)

    placed, choice = plan_lanes(one, onyx, compile_fn)
    assert tried == [11, 10, 9, 8, 7, 6, 5]
    assert copies_of(placed) == choice.copies == 5 and choice.binds == "place_route"
    assert "11: route: 11 copies do not route" in choice.why
