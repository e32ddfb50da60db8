"""Lowering model layers (MoE, FFN, linear) to tiled kernels on array regions.

Every matrix product of a layer, ``Y(t, n) = sum_i A(t, i) W(n, i)`` with A the token
activations (dense, or sparse after ReLU/TEAL) and W a (pruned) weight, is the Gustavson
SpM*SpM kernel ``X(i,j) = B(i,k) * C(k,j)`` (order ikj) with B = A and C = W^T stored
compressed: zeros of A (activation sparsity), zeros of W (pruning) and, in an MoE layer, the
zeros of the gating tensor G(t, e) (a token is simply absent from an expert's A) are never
visited. The compiler builds that kernel once, placed and routed on one *region* of the array
(a band of columns); the array holds ``lanes`` copies, one per region, which run tiles in
parallel (experts in parallel, or row blocks of one matrix in parallel).

Tiles. Each fibertree level of a tile lives in one memory tile, so a tile holds at most
``level_words`` coordinates (a MEM tile's SRAM in 16-bit words): the tiling of each product
(K chunks of A and W, N blocks of W) is chosen from the data by the simulator's layer engine
(:mod:`simulator.layers`) under that bound. Partial sums of K chunks accumulate in the GLB.

Dense mode: the same products can run on the fabric's dense MAC block (compiler.dense) as a
systolic kernel; both modes are scheduled and :func:`choose_mode` keeps the faster
(``compiler.layer_mode: auto``) or the one configured.

The walk (:func:`walk_layer`): the stage order of a layer and its mapping onto lanes. An MoE
layer is router (dense MAC block), top-k, then per expert (its tokens: the nonzeros of G(:, e),
from the layer's own routing) its FFN chunk by chunk along f on the expert's lanes (e mod
lanes; with fewer experts than lanes, lanes // E each), shared experts over all lanes, and the
weighted combine; an FFN spreads its chunks over all lanes, a linear layer its row blocks.
Each chunk's gate and up products, the activation pass and the down product run back to back
on one lane. The walk hands every product and ALU pass to an *engine* (the simulator's
layer engine, passed in: the compiler never imports the simulator), which times it, counts
it and returns its values; the next stage's operands are computed from them (the
activation of gate x up, TEAL, the combine), so the values a run checks are the simulated
ones. The jobs the engine recorded become the layer's Program (:func:`layer_program`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from compiler.dense import mac_block_kernel
from compiler.pipeline import compile_layer
from isa.arch import ChipConfig
from isa.errors import CompileError, SimulationError
from isa.program import Command, Kernel, Program, SystolicKernel

TEMPLATE_EXPR = "X(i,j)=B(i,k)*C(k,j)"
"""The tile kernel: B = token activations A (T x K), C = W^T (K x N), order ikj."""


@dataclass(frozen=True)
class _TemplateLayer:
    name: str
    expr: str
    tensors: dict
    formats: dict
    order: str
    out_shape: tuple[int, int]


@dataclass(frozen=True)
class LayerPlan:
    """What the compiler decides for a layer: the tile kernel and the array's regions."""

    program: Program           # the template kernel placed on one region (with tiny images)
    region: ChipConfig         # the region as a chip (array columns narrowed)
    lanes: int                 # regions on the array = kernel copies running in parallel
    level_words: int           # coordinates one MEM tile holds (one fibertree level)
    f_chunk: int               # FFN columns produced and consumed per step (fusion)
    mac_block: SystolicKernel  # the dense MAC block (dense mode, the router GEMM)

    @property
    def kernel(self) -> Kernel:
        return self.program.kernels[0]

    @property
    def mean_hops(self) -> float:
        """Mean links crossed per stream of the placed kernel (interconnect energy)."""
        edges = self.kernel.edges
        return float(np.mean([max(e.hops, 1) for e in edges]))


def _tiny_layer() -> _TemplateLayer:
    a = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.int64))
    w = sp.csr_matrix(np.array([[1, 0], [0, 2], [3, 4]], dtype=np.int64))
    return _TemplateLayer("layer_tile", TEMPLATE_EXPR, {"B": a, "C": w},
                          {"B": "ss", "C": "ss"}, "ikj", (2, 2))


def region_chip(chip: ChipConfig, cols: int) -> ChipConfig:
    """``chip`` narrowed to its first ``cols`` array columns (one region)."""
    return dataclasses.replace(chip, array=dataclasses.replace(chip.array, cols=cols))


def plan_layer(chip: ChipConfig, *, f_chunk: int = 512) -> LayerPlan:
    """The tile kernel compiled on the narrowest column band that places and routes it
    (bands are whole MEM-column groups), and the number of such bands on ``chip``.

    Raises: CompileError when the kernel fits no band of the array.
    """
    period = chip.array.mem_column_period
    layer = _tiny_layer()
    last: Exception | None = None
    cols = period
    while cols <= chip.array.cols:
        region = region_chip(chip, cols)
        try:
            program = compile_layer(layer, region)
        except CompileError as exc:
            last = exc
            cols += period
            continue
        lanes = chip.array.cols // cols
        words = chip.mem_tile.size_bytes * 8 // 16
        return LayerPlan(program, region, lanes, words, f_chunk, mac_block_kernel(chip))
    raise CompileError(f"layers: the tile kernel {TEMPLATE_EXPR} fits no column band of "
                       f"chip {chip.name} ({chip.array.rows}x{chip.array.cols}): {last}")



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


def estimate_macs(layer: Any) -> float:
    """Effectual MACs expected from the shapes and the weight sparsity (before running)."""
    keep = 1.0 - float(layer.params.get("weight_sparsity", 0.0))
    if layer.kind == "moe":
        per_token = (sum(_ffn_weights(w) for w in layer.experts) / layer.num_experts * layer.k
                     + sum(_ffn_weights(w) for w in layer.shared))
        return layer.tokens * per_token * keep
    return layer.tokens * weight_count(layer) * keep


def choose_fidelity(layer: Any, chip: ChipConfig, fidelity: str | None) -> tuple[str, str]:
    """(fidelity, why)."""
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


def choose_mode(layer_mode: str, sparse_cycles: int, dense_cycles: int) -> str:
    """``compiler.layer_mode``: sparse, dense, or (auto) the faster of the two schedules."""
    if layer_mode == "auto":
        return "dense" if dense_cycles < sparse_cycles else "sparse"
    return layer_mode


def full_forward(layer: Any) -> np.ndarray | str:
    """The layer's independent full forward pass, or why it was not computed."""
    n = weight_count(layer)
    if n <= FULL_FORWARD_MAX_WEIGHTS:
        return np.asarray(layer.reference())
    return (f"skipped: {n:,} weights > compiler.layers.FULL_FORWARD_MAX_WEIGHTS="
            f"{FULL_FORWARD_MAX_WEIGHTS:,}")


# ------------------------------------------------------------------------------ the walk
@dataclass
class LayerWalk:
    """What the walk produced: the engine's output and reference, per-expert facts."""

    output: np.ndarray
    reference: np.ndarray
    experts: list[dict[str, int]]       # tokens, lane, effectual_mac_count per expert
    routing: dict[str, Any]             # dropped_pairs, routed_pairs, token_gini


def walk_layer(layer: Any, eng: Any) -> LayerWalk:
    """Run ``layer``'s stages, in order, through the engine ``eng`` (module docstring)."""
    x = layer.x.astype(np.float64)
    if layer.kind == "moe":
        from workloads.routing import gini

        y, ref, experts, routing = _run_moe(layer, eng)
        routing["token_gini"] = float(gini(np.array([e["tokens"] for e in experts])))
        return LayerWalk(y, ref, experts, routing)
    if layer.kind == "ffn":
        y, ref = _run_ffn_all_lanes(layer.ffn, x, layer.sparsity, eng, expert=-1)
    else:
        y, ref = _run_linear(layer, eng)
    return LayerWalk(y, ref, [], {})


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _ffn_chunks(w, x: np.ndarray, sparsity, eng: Any, lanes: list[int], expert: int,
                label: str) -> tuple[np.ndarray, np.ndarray]:
    """One FFN on ``x`` chunk by chunk along f; chunks go round-robin over ``lanes``.
    Returns (simulated output, numpy reference), both float64."""
    from workloads.layers import ffn_chunk, ffn_chunks, intermediate, neuron_thresholds, teal

    xs = teal(x, sparsity)
    y = np.zeros((x.shape[0], w.d))
    ref = np.zeros_like(y)
    if x.shape[0] == 0:
        return y, ref
    chunk = max(64, min(eng.plan.f_chunk, cdiv(w.f, len(lanes))))
    for c, (f0, f1) in enumerate(ffn_chunks(w.f, chunk)):
        lane = lanes[c % len(lanes)]
        g_rows = None if w.gate is None else w.gate.rows(f0, f1)
        u_rows = w.up.rows(f0, f1)
        d_cols = w.down.cols(f0, f1)               # [fc x d] = W_down[:, f0:f1]^T
        theta = neuron_thresholds(w, sparsity, f0, f1, g_rows if g_rows is not None
                                  else u_rows)
        tag = f"{label}[{f0}:{f1}]"
        gate = None if g_rows is None else eng.product(xs, g_rows.T, lane=lane, expert=expert,
                                                       label=f"{tag}.gate")
        up = eng.product(xs, u_rows.T, lane=lane, expert=expert, label=f"{tag}.up")
        h = teal(intermediate(w.act, sparsity, gate, up, theta), sparsity)
        eng.elementwise_job(h.size * (2 if gate is not None else 1), lane=lane,
                            expert=expert, label=f"{tag}.act")
        y += eng.product(h, d_cols, lane=lane, expert=expert, label=f"{tag}.down")
        # the reference: the layer's float64 forward on the same weight chunk
        hr = teal(ffn_chunk(w, xs, f0, f1, sparsity, g_rows, u_rows, theta=theta), sparsity)
        ref += hr @ d_cols.astype(np.float64)
        if eng.progress is not None:
            eng.progress(tag)
    return y, ref


def _run_ffn_all_lanes(w, x, sparsity, eng: Any, expert: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    return _ffn_chunks(w, x, sparsity, eng, list(range(eng.lanes)), expert, "ffn")


def _run_linear(layer: Any, eng: Any) -> tuple[np.ndarray, np.ndarray]:
    from workloads.layers import teal

    x = teal(layer.x.astype(np.float64), layer.sparsity)
    w = layer.weight
    out_dim = w.shape[0]
    y = np.zeros((x.shape[0], out_dim))
    ref = np.zeros_like(y)
    chunk = max(64, min(eng.plan.f_chunk, cdiv(out_dim, eng.lanes)))
    for c, r0 in enumerate(range(0, out_dim, chunk)):
        r1 = min(out_dim, r0 + chunk)
        rows = w.rows(r0, r1)
        y[:, r0:r1] = eng.product(x, rows.T, lane=c % eng.lanes, expert=-1,
                                  label=f"linear[{r0}:{r1}]")
        ref[:, r0:r1] = x @ rows.astype(np.float64).T
        if eng.progress is not None:
            eng.progress(f"rows {r0}:{r1}")
    return y, ref


def _run_moe(layer: Any, eng: Any) -> tuple[np.ndarray, np.ndarray, list[dict[str, int]],
                                             dict[str, int]]:
    x = layer.x.astype(np.float64)
    T, d = x.shape
    E, k = layer.num_experts, layer.k
    # router GEMM on the dense MAC block, then top-k on the lanes (timed by the engine)
    eng.router(T, E, d)
    eng.topk(T, k, E)
    # the routing is the layer's own (workloads.routing); the reference shares it, so the
    # checks cover the experts, the gating weights and the combine
    idx, wts, kept = layer.route(layer.logits())
    G = layer.scatter(idx, wts, kept)
    routing = {"dropped_pairs": int((~kept).sum()), "routed_pairs": int(np.count_nonzero(G))}
    y = np.zeros((T, d))
    ref = np.zeros((T, d))
    experts = [{"tokens": 0, "lane": 0, "effectual_mac_count": 0} for _ in range(E)]
    groups = _expert_lanes(E, eng.lanes)
    for s, w in enumerate(layer.shared):
        ys, rs = _ffn_chunks(w, x, layer.sparsity, eng, list(range(eng.lanes)), -1,
                             f"shared{s}")
        y += ys
        ref += rs
    for e, w in enumerate(layer.experts):
        tok = np.flatnonzero(G[:, e])
        st = experts[e]
        st["tokens"] = len(tok)
        st["lane"] = groups[e][0]
        macs = eng.work.products
        if len(tok):
            ye, re = _ffn_chunks(w, x[tok], layer.sparsity, eng, groups[e], e, f"expert{e}")
        else:
            ye = re = np.zeros((0, d))
        st["effectual_mac_count"] = eng.work.products - macs
        y[tok] += G[tok, e][:, None] * ye
        ref[tok] += G[tok, e][:, None] * re
    eng.combine(routing["routed_pairs"], d)
    return y, ref, experts, routing


def _expert_lanes(E: int, lanes: int) -> list[list[int]]:
    """Static expert -> lanes map: round-robin when E >= lanes, else lanes // E each."""
    if E >= lanes:
        return [[e % lanes] for e in range(E)]
    per = lanes // E
    return [list(range(e * per, (e + 1) * per)) for e in range(E)]


# ------------------------------------------------------------------------------ the program
def layer_program(layer: Any, plan: LayerPlan, chip: ChipConfig,
                  jobs: list[Any] | None = None, mode: str = "sparse") -> Program:
    """The layer's Program: the tile kernel (sparse mode) and the MAC block (dense mode),
    and, given the chosen mode's ``jobs`` (lane, label, weight bytes), the firmware per
    product job: DMA its weights DRAM -> GLB (into the lane's free buffer), launch the mode's
    kernel, wait. ALU passes (activations) run on the lanes' PEs without a kernel launch and
    are not commands. Memory images are each job's tiles, made when the engine runs it (the
    Program does not hold them: a large layer has millions)."""
    block = plan.mac_block
    kernel = plan.kernel.name if mode == "sparse" else block.name
    sched = [Command("configure", kernel)]
    for job in jobs or ():
        if job.label.endswith(".act"):
            continue
        if job.dram_bytes:
            sched.append(Command("dma_in", _job_name(job), job.dram_bytes))
        sched += [Command("launch", kernel), Command("wait", kernel)]
    return Program(layer.name.replace(".", "_"), (plan.kernel, block), {}, tuple(sched))


def _job_name(job: Any) -> str:
    return f"lane{job.lane}:{job.label}"


def summarize_program(program: Program, jobs: list[Any]) -> str:
    """A layer's schedule for people: by stage, with counts (jobs, weight bytes DMAed)
    instead of one line per command (a comment block for the assembly listing)."""
    from collections import Counter

    stages: Counter[str] = Counter()
    dma: Counter[str] = Counter()
    for job in jobs:
        stage = _stage(job.label)
        stages[stage] += 1
        dma[stage] += job.dram_bytes
    lines = [f"; schedule of {program.name}: {len(jobs)} jobs, by stage"]
    lines += [f";   {stage:<10} {n:>7,} jobs  {dma[stage]:>14,} weight bytes DMAed"
              for stage, n in sorted(stages.items())]
    return "\n".join(lines) + "\n"


def _stage(label: str) -> str:
    """The stage of a job from its label (``expert3[0:512].gate`` -> ``experts.gate``)."""
    head, _, tail = label.partition("]")
    name = head.split("[")[0].rstrip("0123456789")
    part = tail.lstrip(".").split("#")[0]
    return f"{name}s.{part}" if name in ("expert", "shared") and part else \
        (f"{name}.{part}" if part else name)
