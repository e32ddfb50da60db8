"""Lowering model layers (MoE, FFN, linear) to tiled kernels on array regions.

Every matrix product of a layer, ``Y(t, n) = sum_i A(t, i) W(n, i)`` with A the token
activations (dense, or sparse after ReLU/TEAL) and W a (pruned) weight, is the Gustavson
SpM*SpM kernel ``X(i,j) = B(i,k) * C(k,j)`` (order ikj) with B = A and C = W^T stored
compressed: zeros of A (activation sparsity), zeros of W (pruning) and, in an MoE layer, the
zeros of the gating tensor G(t, e) (a token is simply absent from an expert's A) are never
visited. The layer's jobs are the outer loop b of its batched form, ``X(b,i,j) = B(b,i,k) *
C(b,k,j)`` (:data:`TEMPLATE_EXPR`), and the lanes are that kernel unrolled over b
(compiler.unroll.plan_lanes): ``lanes`` copies placed and routed on the array, which run jobs
in parallel (experts in parallel, or row blocks of one matrix in parallel), each job going to
the copy the stream filter's rule deals its position to (:func:`deal`).

Tiles. Each fibertree level of a tile lives in one memory tile, so a tile holds at most
``level_words`` coordinates (a MEM tile's SRAM in 16-bit words): the tiling of each product
(K chunks of A and W, N blocks of W) is chosen from the data by the simulator's layer engine
(:mod:`simulator.layers`) under that bound. Partial sums of K chunks accumulate in the GLB.

Dense mode: the same products can run on the fabric's dense MAC block (compiler.dense) as a
systolic kernel; the controller prices every product in both modes (cycles and energy) and
the layout's policy (:class:`LayerLayout`, ``compiler.layer_mode``) keeps one per product,
``auto`` the cheaper by ``compiler.objective`` (cycles, energy or EDP), then compares the
scheduled layer with all-sparse and all-dense and keeps the best.

The Program (:func:`compile_model_layer`): the tile kernel, the MAC block and the jobs in
stage order. An MoE layer is router (on the MAC block), top-k, then one job per expert with
tokens (its tokens: the nonzeros of G(:, e), from the layer's own routing, decided here) on
the expert's lanes (e mod lanes; with fewer experts than lanes, lanes // E each), shared
experts over all lanes, then the weighted combine; an FFN is one job per chunk of f and a
linear layer one per block of output rows, dealt round-robin over the lanes (:func:`deal`).
Each job's work is a lazy task (compiler.layer_tasks): the simulator's layer engine runs it,
product by product, and the task computes the next operands from the values the engine
returns (the activation of gate x up), so the values a run checks are the simulated ones.
Also here: the choice of fidelity for a layer (:data:`BURST_MAX_MACS`) and the full forward
pass it is checked against.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.dense import mac_block_kernel
from compiler.pipeline import emit_program, lower_layer, place_route_balance
from compiler.unroll import UnrollChoice, copy_kernel, plan_lanes
from isa.arch import ChipConfig, cdiv
from isa.copies import dealt_copy
from isa.errors import CompileError, SimulationError
from isa.program import Command, Job, Kernel, Program, SystolicKernel

TEMPLATE_EXPR = "X(b,i,j)=B(b,i,k)*C(b,k,j)"
"""The batched tile kernel: the layer's sequence of jobs is its outer loop ``b``; per job b,
B(b) = a tile of token activations A (T x K) and C(b) = a tile of W^T (K x N), order bikj
(Gustavson SpM*SpM under b). B's b level is dense (located: every job is a position, with
or without token rows), C's compressed; the lanes are copies of this graph unrolled over
b (compiler.unroll), whose filters deal the jobs."""

TEMPLATE_FORMATS = {"B": "dss", "C": "sss"}
TEMPLATE_ORDER = "bikj"


@dataclass(frozen=True)
class _TemplateLayer:
    name: str
    expr: str
    tensors: dict
    formats: dict
    order: str
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class LayerPlan:
    """What the compiler decides for a layer: the lanes, copies of the batched tile kernel
    unrolled over its job loop, placed and routed on the array."""

    program: Program           # the N-copy batched tile kernel, placed (with tiny images)
    region: ChipConfig         # the array the copies are placed on (the whole chip)
    lanes: int                 # copies of the batched tile kernel = lanes running jobs
    level_words: int           # coordinates one MEM tile holds (one fibertree level)
    f_chunk: int               # FFN columns produced and consumed per step (fusion)
    mac_block: SystolicKernel  # the dense MAC block (dense mode, the router GEMM)
    lane_kernel: Kernel        # copy 0 of the placed N-copy kernel: what one lane runs a
                               # tile on (its filter, units and streams as placed)
    buffers: int = 2           # GLB buffers per lane: the next job's weights DMA into one
                               # while the current job computes (double buffering)
    unroll: UnrollChoice | None = None    # how the lanes were chosen (compiler.unroll)

    @property
    def kernel(self) -> Kernel:
        """The N-copy kernel: its bitstream is what configuration loads."""
        return self.program.kernels[0]

    @property
    def mean_hops(self) -> float:
        """Mean links crossed per stream of a lane's copy (interconnect energy)."""
        edges = self.lane_kernel.edges
        return float(np.mean([max(e.hops, 1) for e in edges]))


def template_layer() -> _TemplateLayer:
    """The batched tile kernel's workload as the compiler lowers it: two tiny jobs (the
    data only fixes the graph; the layer engine runs every tile on its own images)."""
    a = np.zeros((2, 2, 3), dtype=np.int64)
    a[0] = [[1, 0, 2], [0, 3, 0]]
    a[1] = [[0, 1, 0], [4, 0, 0]]
    w = np.zeros((2, 3, 2), dtype=np.int64)
    w[0] = [[1, 0], [0, 2], [3, 4]]
    w[1] = [[1, 1], [0, 2], [3, 0]]
    return _TemplateLayer("layer_tile", TEMPLATE_EXPR, {"B": a, "C": w},
                          dict(TEMPLATE_FORMATS), TEMPLATE_ORDER, (2, 2, 2))


@functools.lru_cache(maxsize=8)
def plan_layer(chip: ChipConfig, *, f_chunk: int = 512) -> LayerPlan:
    """The lanes of ``chip``: the batched tile kernel (:data:`TEMPLATE_EXPR`) lowered once,
    unrolled over its job loop into as many copies as the unroll planner allows
    (compiler.unroll.plan_lanes: the tiles and GLB links of the real N-copy graph, which must
    place and route on the array; ``compiler.unroll`` forces a factor), each copy a lane.

    Placing and routing the N-copy graph takes most of a second (Onyx: 264 units), so plans
    are kept per chip (ChipConfig and LayerPlan are frozen).

    Raises: CompileError when not even one copy places and routes.
    """
    layer = template_layer()
    kernel, images = lower_layer(layer, chip)
    try:
        placed, choice = plan_lanes(kernel, chip, lambda k: place_route_balance(k, chip))
    except CompileError as exc:
        raise CompileError(f"layers: the batched tile kernel {TEMPLATE_EXPR} does not fit "
                           f"chip {chip.name} ({chip.array.rows}x{chip.array.cols}): "
                           f"{exc}") from None
    program = dataclasses.replace(emit_program(placed, images, chip), unroll=choice)
    words = chip.mem_tile.size_bytes * 8 // 16
    return LayerPlan(program, chip, choice.copies, words, f_chunk, mac_block_kernel(chip),
                     copy_kernel(placed, 0), unroll=choice)


def deal(positions: int, lanes: int) -> list[int]:
    """The lane of each of ``positions`` jobs dealt in order: the stream filter's rule
    (isa.copies.dealt_copy), since the jobs are the positions of the batched tile kernel's
    outer loop and the lanes its copies."""
    return [int(dealt_copy(p, lanes)) for p in range(positions)]


# ------------------------------------------------------------------------------ choices
BURST_MAX_MACS = 500_000
"""Above this many estimated effectual MACs a layer left at the default fidelity runs
``analytic`` (burst simulates every token of every tile: ~5 s per million MACs here)."""

FULL_FORWARD_MAX_WEIGHTS = 8_000_000
"""Largest layer (weights) also checked against the independent full forward pass."""

def is_model_layer(layer: Any) -> bool:
    return getattr(layer, "kind", None) in ("moe", "ffn", "linear")


def _ffn_weights(w: Any) -> int:
    return sum(m.shape[0] * m.shape[1] for m in w.matrices())


def weight_count(layer: Any) -> int:
    if layer.kind == "moe":
        return (sum(_ffn_weights(w) for w in layer.experts + layer.shared)
                + layer.router.shape[0] * layer.router.shape[1])
    if layer.kind == "ffn":
        return _ffn_weights(layer.ffn)
    return layer.weight.shape[0] * layer.weight.shape[1]


def _nonzero_weights(w: Any) -> float:
    """Nonzero weights of a Weight (workloads.layers): counted in real data, the pattern's
    kept fraction of a synthetic one."""
    if getattr(w, "data", None) is not None:
        return float(np.count_nonzero(w.data))
    return w.shape[0] * w.shape[1] * (1.0 - float(w.sparsity))


def _ffn_nonzeros(w: Any) -> float:
    return sum(_nonzero_weights(m) for m in w.matrices())


def estimate_macs(layer: Any) -> float:
    """Effectual MACs expected before running: tokens x the weights' real nonzeros (counted
    in real data, the kept fraction of synthetic weights) x the input's nonzero fraction."""
    x = np.asarray(layer.x)
    dens = float(np.count_nonzero(x)) / x.size if x.size else 0.0
    if layer.kind == "moe":
        per_token = (sum(_ffn_nonzeros(w) for w in layer.experts) / layer.num_experts * layer.k
                     + sum(_ffn_nonzeros(w) for w in layer.shared))
        return layer.tokens * per_token * dens
    if layer.kind == "ffn":
        return layer.tokens * _ffn_nonzeros(layer.ffn) * dens
    return layer.tokens * _nonzero_weights(layer.weight) * dens


def choose_fidelity(layer: Any, chip: ChipConfig, fidelity: str | None
                    ) -> tuple[str | None, str]:
    """(fidelity, why). A kernel workload keeps what was asked (None: the chip's, decided by
    the controller); a model layer too large for burst at the chip's default runs analytic."""
    check_fidelity(fidelity)
    if not is_model_layer(layer):
        return fidelity, "as requested" if fidelity is not None else "the chip's sim.fidelity"
    if fidelity is not None:
        return fidelity, "as requested"
    macs = estimate_macs(layer)
    if chip.sim.fidelity == "burst" and macs > BURST_MAX_MACS:
        return "analytic", (f"chip default burst, but ~{macs:,.0f} effectual MACs exceed "
                            f"compiler.layers.BURST_MAX_MACS={BURST_MAX_MACS:,}; pass "
                            "--fidelity burst to force it")
    return chip.sim.fidelity, "the chip's sim.fidelity"


def check_fidelity(fidelity: str | None) -> None:
    if fidelity not in (None, "analytic", "burst", "cycle"):
        raise SimulationError(f"unknown fidelity {fidelity!r} (use analytic, burst or cycle)")


def full_forward(layer: Any) -> np.ndarray | str:
    """The layer's independent full forward pass, or why it was not computed (a kernel
    workload: its numpy result)."""
    if not is_model_layer(layer):
        return layer.reference()
    n = weight_count(layer)
    if n <= FULL_FORWARD_MAX_WEIGHTS:
        return np.asarray(layer.reference())
    return (f"skipped: {n:,} weights > compiler.layers.FULL_FORWARD_MAX_WEIGHTS="
            f"{FULL_FORWARD_MAX_WEIGHTS:,}")


# ------------------------------------------------------------------------------ the jobs
@dataclass(frozen=True)
class LayerLayout:
    """What the controller needs besides the jobs: the plan (lanes, region, tile bound),
    the token-layer sizes, the routing facts and the mode policy."""

    plan: LayerPlan
    tokens: int
    d_in: int
    d_out: int
    mode: str                                # compiler.layer_mode: auto | sparse | dense
    experts: tuple[tuple[int, int], ...] = ()   # MoE: (tokens, first lane) per expert
    routing: dict[str, Any] | None = None    # MoE: dropped_pairs, routed_pairs, token_gini

    objective: str = "edp"                   # compiler.objective: cycles | energy | edp

    def cost(self, cycles: float, energy: float) -> float:
        """What ``compiler.objective`` minimises: cycles, energy, or their product (EDP)."""
        return {"cycles": cycles, "energy": energy}.get(self.objective, cycles * energy)

    def pick_product(self, sparse: tuple[float, float], dense: tuple[float, float]) -> str:
        """One product's mode, applied by the controller once both are priced ((cycles,
        energy) each): ``compiler.layer_mode`` sparse or dense, or (auto) the one of lower
        cost by ``compiler.objective`` (sparse on a tie)."""
        if self.mode != "auto":
            return self.mode
        return "dense" if self.cost(*dense) < self.cost(*sparse) else "sparse"

    def pick_layer(self, options: dict[str, tuple[float, float]]) -> str:
        """The whole layer's choice among scheduled alternatives ((cycles, energy) each, in
        order of preference on a tie): the products' own choices, all sparse, all dense. A
        choice made product by product cannot see the layer's schedule (lanes in parallel,
        the MAC block after them), so the scheduled layers are compared too and the chosen
        one is never worse than either single mode."""
        return min(options, key=lambda name: self.cost(*options[name]))


def compile_model_layer(layer: Any, chip: ChipConfig, plan: LayerPlan | None = None
                        ) -> Program:
    """Lower a model layer to a Program (module docstring): the tile kernel and the MAC
    block, and the jobs in stage order with their lanes and lazy tasks. An MoE layer is
    routed here (the layer's own routing, workloads.routing), since which tokens reach which
    expert decides the jobs."""
    from compiler.layer_tasks import FFNTask, LinearTask, block_of

    plan = plan or plan_layer(chip)
    lanes = plan.lanes
    T, d = layer.x.shape
    jobs: list[Job] = []
    tile = plan.kernel.name
    experts: tuple[tuple[int, int], ...] = ()
    routing = None
    if layer.kind == "moe":
        E, k = layer.num_experts, layer.k
        jobs += [Job("router", "router", plan.mac_block.name, dims=(T, E, d)),
                 Job("topk", "topk", deps=("router",), dims=(T, k, E))]
        idx, wts, kept = layer.route(layer.logits())
        G = layer.scatter(idx, wts, kept)
        groups = _expert_lanes(E, lanes)
        every = tuple(range(lanes))
        for s_, w in enumerate(layer.shared):
            jobs.append(Job(f"shared{s_}", "experts", tile, every, -1, ("topk",),
                            task=FFNTask(layer, "shared", s_, every,
                                         _chunks(w, plan.f_chunk, lanes), f"shared{s_}")))
        tokens = []
        for e, w in enumerate(layer.experts):
            tok = np.flatnonzero(G[:, e])
            tokens.append((len(tok), groups[e][0]))
            if len(tok):
                task = FFNTask(layer, "expert", e, tuple(groups[e]),
                               _chunks(w, plan.f_chunk, len(groups[e])), f"expert{e}",
                               tok, G[tok, e])
                jobs.append(Job(f"expert{e}", "experts", tile, tuple(groups[e]), e,
                                ("topk",), task=task))
        from workloads.routing import gini

        experts = tuple(tokens)
        pairs = int(np.count_nonzero(G))
        routing = {"dropped_pairs": int((~kept).sum()), "routed_pairs": pairs,
                   "token_gini": float(gini(np.array([t for t, _ in tokens])))}
        products = tuple(j.name for j in jobs if j.stage == "experts")
        jobs.append(Job("combine", "combine", deps=products, dims=(pairs, d)))
        d_out = d
    elif layer.kind == "ffn":
        chunks = _chunks(layer.ffn, plan.f_chunk, lanes)
        for (f0, f1), ln in zip(chunks, deal(len(chunks), lanes)):
            lane = (ln,)
            jobs.append(Job(f"ffn[{f0}:{f1}]", "FFN", tile, lane,
                            task=FFNTask(layer, "ffn", -1, lane, ((f0, f1),), "ffn")))
        d_out = layer.ffn.d
    else:
        out_dim = layer.weight.shape[0]
        chunk = max(64, min(plan.f_chunk, cdiv(out_dim, lanes)))
        # a block-pruned weight's row blocks hold whole pruning blocks: a block cut by a row
        # block's edge would be stored (BSR, dense mode) in both row blocks
        block = block_of(layer.weight)
        chunk = cdiv(chunk, block[1]) * block[1] if block else chunk
        starts = range(0, out_dim, chunk)
        for r0, ln in zip(starts, deal(len(starts), lanes)):
            r1 = min(out_dim, r0 + chunk)
            jobs.append(Job(f"linear[{r0}:{r1}]", "linear", tile, (ln,),
                            task=LinearTask(layer, r0, r1, ln)))
        d_out = out_dim
    layout = LayerLayout(plan, T, d, d_out, chip.compiler.layer_mode, experts, routing,
                         chip.compiler.objective)
    sched = (Command("configure", tile), Command("configure", plan.mac_block.name))
    return Program(layer.name.replace(".", "_"), (plan.kernel, plan.mac_block), {}, sched,
                   tuple(jobs), layout, unroll=plan.unroll)


def _chunks(w: Any, f_chunk: int, lanes: int) -> tuple[tuple[int, int], ...]:
    """FFN chunks along f of the FFN weights ``w``: ``f_chunk`` columns, fewer when that
    leaves lanes idle (>= 64); with block-pruned weights, whole pruning blocks along f (a
    block cut by a chunk's edge would be stored, BSR in dense mode, in both chunks)."""
    import math

    from compiler.layer_tasks import block_of
    from workloads.layers import ffn_chunks

    chunk = max(64, min(f_chunk, cdiv(w.f, lanes)))
    # f is gate's and up's output dimension (a block's extent along N), down's input (K)
    extents = [b[axis] for m, axis in ((w.gate, 1), (w.up, 1), (w.down, 0))
               if m is not None and (b := block_of(m)) is not None]
    align = math.lcm(*extents) if extents else 1
    return tuple(ffn_chunks(w.f, cdiv(chunk, align) * align))


def _expert_lanes(E: int, lanes: int) -> list[list[int]]:
    """Static expert -> lanes map, as the batched tile kernel's filters deal its job loop
    (:func:`deal`): the positions are the experts (E >= lanes: expert e is position e), or
    with fewer experts than lanes ``lanes // E`` slots per expert (expert e's slot s is
    position e * (lanes // E) + s; its chunks go to its slots as :func:`deal` deals them)."""
    per = max(1, lanes // E)
    dealt = deal(E * per, lanes)
    return [dealt[e * per:(e + 1) * per] for e in range(E)]


# ------------------------------------------------------------------------------ printing
def summarize_jobs(program: Program) -> str:
    """A layer's jobs for people, as assembly comments: by stage, with counts of jobs,
    experts and lanes (a job's products and DMA sizes are decided when it runs)."""
    from collections import Counter

    stages: Counter[str] = Counter(j.stage for j in program.jobs)
    lanes: dict[str, set[int]] = {}
    for j in program.jobs:
        lanes.setdefault(j.stage, set()).update(j.lanes)
    plan = program.layout.plan
    lines = [f"; jobs of {program.name}: {len(program.jobs)}, by stage (in order); "
             f"{plan.lanes} lanes: copies of the tile kernel {TEMPLATE_EXPR} unrolled over "
             f"the job loop b (its filters deal the jobs, position p to lane p mod "
             f"{plan.lanes}), {plan.buffers} GLB buffers each, tiles of <= "
             f"{plan.level_words} coordinates per fibertree level"]
    for stage in dict.fromkeys(j.stage for j in program.jobs):
        first = next(j for j in program.jobs if j.stage == stage)
        kernel = first.kernel or "ALU pass on the lanes"
        used = f" on {len(lanes[stage])} lanes" if lanes[stage] else ""
        chunks = sum(len(getattr(j.task, "chunks", (0,))) for j in program.jobs
                     if j.stage == stage and j.task is not None)
        parts = f", {chunks:,} FFN chunks / row blocks" if chunks else ""
        lines.append(f";   {stage:<9} {stages[stage]:>6,} job(s){used}{parts}, kernel {kernel}")
    return "\n".join(lines) + "\n"
