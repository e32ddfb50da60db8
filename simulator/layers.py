"""The layer engine: a model layer (MoE, FFN, linear) as tiles on the array's lanes.

Stages of an MoE layer, in order (an FFN or linear layer has only the matrix products); the
compiler lowers them to jobs (compiler.layers), the controller runs them
(simulator.controller) and hands every product of a job's task to this engine:

    router   logits = x W_r^T on the dense MAC block (systolic timing, simulator.systolic)
    top-k    k max-passes over E logits per token on the lanes' PEs: ceil(T/lanes) * k * E
    experts  per expert e (its tokens = the nonzeros of G(:, e)), per chunk of ``f_chunk``
             FFN columns: gate and up products, the ALU pass h = act(gate) * up (one element
             per lane-cycle), then the down product of that chunk (a K chunk, partial sums
             in the GLB); shared experts the same over all tokens
    combine  y = sum_e G(t, e) y_e (+ shared): T*k*d multiply-adds, one per lane-cycle

Products. ``Y = A W^T`` runs as tiles of the Gustavson SpM*SpM kernel (compiler.layers): the
tile (token block, K chunk, N block) is sized from the data so every fibertree level fits one
MEM tile (``plan.level_words`` coordinates); tiles with no nonzero in A or W are skipped.
Every product is also costed in dense mode (one job on the fabric's MAC block, SCALE-Sim
OS timing, dense weights DMAed, the MAC block's actions of simulator.energy.systolic_actions),
so the controller can schedule both modes and keep the one ``compiler.layer_mode`` asks
for. A tile's cycles come from the engine named by ``fidelity``:

- ``burst`` / ``cycle``: the placed kernel runs on the tile's real fibertrees (exact);
- ``analytic``: per token row t of the tile, with P_t the products (sum over i in A_t of
  nnz(W^T row i)), R_t the rows of W^T matched, Y_t the output nonzeros, a_t = nnz(A_t) and
  b the nonempty rows of the W^T tile, the row costs max(P_t + 2R_t + Y_t, a_t + b - R_t + 1).
  The inner scanner of W^T takes P_t + 2R_t steps (a coordinate per product, a stop and a
  reference per fiber), the vector reducer P_t + R_t + Y_t (it flushes the row's Y_t sums
  after its inputs), the intersecter a_t + b - R_t + 1 (a two-finger merge); the FIFOs
  between scanner and reducer hold a few tokens, far fewer than a row, so the scanner's
  per-fiber steps and the reducer's flush do not overlap and add. The tile takes the sum
  over rows + 2 per row + the kernel's fill latency. Against ``burst`` on 14 random tiles
  (tests/test_layers.py and docs/fidelity.md) it is within 3% when A is dense or W holds
  more than a few nonzeros per row, and up to 13% high when both are very sparse (the
  intersecter and the scanners then overlap, which the max does not see).

Lanes and time. Experts are mapped to lanes statically, round-robin (e mod lanes), as a
compiler must before routing is known; with fewer experts than lanes an expert's chunks spread
over its share of lanes, and shared experts, FFN and linear layers spread their chunks over all
lanes. Each lane owns 1/lanes of the GLB, split into two buffers. Per lane, each product is a
job (or several equal jobs when its compressed weights exceed one buffer): its weights are
DMAed DRAM -> GLB (one shared DRAM channel, simulator.chip.dram_transfer) into one buffer while
the previous job computes (double buffering); a job computes for the sum over its tiles of
launch + max(kernel cycles, GLB<->MEM-tile transfer of the tile in and out over the lane's
share of the links). The controller's lane firmware (simulator.controller.run_lanes) carries
one SimPy event per job. The layer ends when the slowest lane does: that straggler is what
load imbalance costs, and ``chip.layer.expert<e>.*`` shows it. Here: the engine (tile timing,
a job's work records, :meth:`LayerEngine.merge` to fold jobs in order) and the accounting of
a finished layer (:func:`finish_layer`, :func:`layer_result`, :func:`layer_actions`).

Outputs are assembled from the tiles' results and compared with the layer's numpy forward
pass (float64): exact products in burst/cycle (the kernel's own outputs, float32 values),
numpy products of the tiles' compressed operands in analytic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.fibertree import FiberTree, Level
from isa.interp import assemble_output
from isa.program import Kernel
from simulator.analytic import analytic_tiles, tile_energy_counts, tile_sizes
from simulator.chip import RunResult
from simulator.progress import progress_of
from simulator.stats import ControllerStats, MemoryStats, flatten, stat

FIDELITIES = ("analytic", "burst", "cycle")
WORD_BYTES = 2


# ------------------------------------------------------------------------------ tiles
@dataclass
class TileWork:
    """Totals over the tiles of one matrix product (one job)."""

    tiles: int = 0
    skipped_tiles: int = 0
    compute_cycles: int = 0          # sum over tiles of launch + max(kernel, transfers)
    kernel_cycles: int = 0           # sum of the kernel cycles alone
    products: int = 0                # effectual multiplies (both operands nonzero)
    dense_products: int = 0          # T x K x N of the product
    in_words: int = 0                # GLB -> MEM tiles
    out_words: int = 0               # MEM tiles -> GLB
    weight_words: int = 0            # compressed weight words (DRAM -> GLB)
    counts: dict[str, float] = field(default_factory=dict)   # energy actions
    unit_stats: dict[str, float] = field(default_factory=dict)  # burst: summed unit counters

    def add(self, other: TileWork) -> None:
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict):
                for k, v in b.items():
                    a[k] = a.get(k, 0) + v
            else:
                setattr(self, f.name, a + b)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------ the runner
@dataclass
class LaneJob:
    """One lane's unit of scheduling: a chunk of tiles with the weights it brings in."""

    lane: int
    expert: int               # -1: not an expert (shared expert, FFN, linear)
    cycles: int
    dram_bytes: int
    label: str


@dataclass
class LayerStats:
    """Counters of the layer engine (chip.layer.*)."""

    router_cycles: int = stat("cycles", "Router GEMM on the dense MAC block (systolic).")
    topk_cycles: int = stat("cycles", "Top-k selection on the lanes' PEs.")
    combine_cycles: int = stat("cycles", "Weighted combine of expert outputs on the lanes.")
    experts_cycles: int = stat("cycles", "From the first expert job to the slowest lane's "
                               "end (double-buffered DMA and compute).")
    lanes: int = stat("lanes", "Copies of the tile kernel on the array (regions).")
    tile_count: int = stat("tiles", "Tiles run (a tile with an empty operand is skipped).")
    skipped_tile_count: int = stat("tiles", "Tiles skipped: no nonzero in A or in W.")
    job_count: int = stat("jobs", "Lane jobs (chunks of tiles) scheduled.")
    kernel_cycles: int = stat("cycles", "Kernel cycles summed over tiles (all lanes).")
    effectual_mac_count: int = stat("MACs", "Multiplies with both operands nonzero.")
    dense_mac_count: int = stat("MACs", "Multiplies of the same products done densely.")
    elementwise_op_count: int = stat("ops", "ALU ops of activations, gating and combine.")
    sparse_mode_cycles: int = stat("cycles", "Experts/products stage in sparse mode: SAM "
                                   "tiles on the lanes (scheduled).")
    dense_mode_cycles: int = stat("cycles", "Experts/products stage in dense mode: the same "
                                  "products one after another on the MAC block (systolic OS "
                                  "timing) with their dense weights DMAed (scheduled).")
    dense_mode: int = stat("flag", "1 when the layer ran in dense mode (compiler.layer_mode "
                           "or the auto choice), 0 for sparse mode.")
    dropped_token_count: int = stat("tokens", "Token-expert pairs dropped by capacity.")
    routed_pair_count: int = stat("pairs", "Token-expert pairs kept (nonzeros of G).")


@dataclass
class ExpertStats:
    """Counters of one expert (chip.layer.expert<e>.*)."""

    tokens: int = stat("tokens", "Tokens routed to the expert (nonzeros of G(:, e)).")
    lane: int = stat("lane", "Lane the expert is mapped to (first lane of its group).")
    compute_cycles: int = stat("cycles", "Cycles of the expert's jobs (tiles and ALU passes).")
    finish_cycle: int = stat("cycle", "Layer cycle at which its last job ended.")
    effectual_mac_count: int = stat("MACs", "Effectual multiplies of the expert.")
    dram_bytes: int = stat("bytes", "Weight bytes the expert's jobs brought from DRAM.")


@dataclass
class LayerRun:
    """A simulated layer: time, counters, outputs and the per-tile totals."""

    cycles: int
    fidelity: str
    output: np.ndarray
    reference: np.ndarray
    stats: dict[str, dict[str, Any]]
    work: TileWork
    layer_stats: LayerStats
    experts: list[ExpertStats]
    memory: dict[str, int]
    mode: str                        # sparse | dense
    products: list[dict[str, Any]]   # per product: shapes and nonzeros (CPU baseline)
    dense_counts: dict[str, float] = field(default_factory=dict)  # dense-mode energy actions
    timeline: list[dict[str, Any]] = field(default_factory=list)  # job and DMA spans (cycles)
    jobs: list[LaneJob] = field(default_factory=list)                 # the chosen mode's jobs
    stage_actions: dict[str, float] = field(default_factory=dict)  # router on the MAC block
    router_macs: int = 0
    token_gini: float | None = None                               # MoE: routing imbalance


class LayerEngine:
    """Runs one layer under a LayerPlan (compiler.layers) on ``chip``."""

    def __init__(self, plan: Any, chip: ChipConfig, fidelity: str, progress: Any = None
                 ) -> None:
        if fidelity not in FIDELITIES:
            raise SimulationError(f"layer engine: unknown fidelity {fidelity!r} (use "
                                  f"{', '.join(FIDELITIES)})")
        self.plan, self.chip, self.fidelity = plan, chip, fidelity
        self.progress = progress_of(progress)   # simulator.progress: stage, advance
        self.lanes = plan.lanes
        self.words = plan.level_words
        kernel: Kernel = plan.kernel
        self.fill = len(kernel.nodes) + sum(max(e.hops, 1) for e in kernel.edges) // 2
        self.hops = plan.mean_hops
        self.link_words = chip.glb.array_bytes_per_cycle / WORD_BYTES / self.lanes
        self.buffers = plan.buffers
        self.buffer_bytes = max(1, chip.glb.size_bytes // self.lanes // self.buffers)
        self.jobs: list[LaneJob] = []
        self.work = TileWork()
        self.products: list[dict[str, Any]] = []
        self.memory = {"dram_read_bytes": 0, "dram_write_bytes": 0, "glb_read_bytes": 0,
                       "glb_write_bytes": 0, "link_bytes": 0}
        self.elementwise = 0
        self.extra_dram_bytes = 0
        self.dense_jobs: list[LaneJob] = []
        self.dense_counts: dict[str, float] = {}
        self.dense_memory = {"dram_read_bytes": 0, "glb_read_bytes": 0, "glb_write_bytes": 0,
                             "link_bytes": 0}
        self.router_cycles = self.topk_cycles = self.combine_cycles = self.router_macs = 0
        self.stage_actions: dict[str, float] = {}      # router (MAC block) actions
        from simulator.systolic import SystolicArray

        block = plan.mac_block
        self.dense_array = SystolicArray(block.rows, block.cols, block.dataflow)

    # -------------------------------------------------------------- one product
    def product(self, a: np.ndarray, b: np.ndarray, *, lane: int, expert: int,
                label: str) -> np.ndarray:
        """A (T x K) @ B (K x N) as tiles on ``lane``: appends a job, returns A @ B."""
        a32 = np.asarray(a, dtype=np.float32)
        b32 = np.asarray(b, dtype=np.float32)
        if self.fidelity == "analytic":
            out, work = self._analytic(a32, b32)
        else:
            out, work = self._exact(a32, b32)
        self.work.add(work)
        if min(a.shape[0], a.shape[1], b.shape[1]) > 0:
            self._dense_product(a.shape[0], a.shape[1], b.shape[1], work.products,
                                expert, label)
        weight_bytes = work.weight_words * WORD_BYTES
        self.memory["dram_read_bytes"] += weight_bytes
        self.memory["glb_write_bytes"] += weight_bytes + work.out_words * WORD_BYTES
        self.memory["glb_read_bytes"] += work.in_words * WORD_BYTES
        self.memory["link_bytes"] += (work.in_words + work.out_words) * WORD_BYTES
        # a product whose weights exceed one GLB buffer runs as several jobs (equal shares of
        # its tiles' cycles and bytes), so each fits the lane's half of its GLB share
        n = max(1, cdiv(weight_bytes, self.buffer_bytes))
        for i in range(n):
            self.jobs.append(LaneJob(lane, expert, work.compute_cycles * (i + 1) // n
                                 - work.compute_cycles * i // n,
                                 weight_bytes * (i + 1) // n - weight_bytes * i // n,
                                 label if n == 1 else f"{label}#{i}"))
        self.products.append({"label": label, "m": a.shape[0], "k": a.shape[1],
                              "n": b.shape[1], "a_nnz": int(np.count_nonzero(a32 != 0)),
                              "w_nnz": int(np.count_nonzero(b32 != 0)), "products": work.products})
        return out

    def _dense_product(self, m: int, k: int, n: int, effectual: int, expert: int,
                       label: str) -> None:
        """The same product in dense mode: one job on the MAC block (systolic OS timing,
        simulator.systolic) that streams the dense weights; every MAC is issued, those with a
        zero operand at full energy (the array neither skips nor gates)."""
        from simulator.systolic import fold_schedule

        sched = fold_schedule(m, n, k, self.dense_array)
        compute = sched.compute_cycles + 1
        weight_bytes = k * n * WORD_BYTES
        n_jobs = max(1, cdiv(weight_bytes, self.chip.glb.size_bytes // self.buffers))
        for i in range(n_jobs):
            self.dense_jobs.append(LaneJob(0, expert, compute * (i + 1) // n_jobs
                                       - compute * i // n_jobs,
                                       weight_bytes * (i + 1) // n_jobs
                                       - weight_bytes * i // n_jobs, label))
        from simulator.energy import systolic_actions

        c = self.dense_counts
        for name, v in systolic_actions(m, n, k, self.dense_array.rows, self.dense_array.cols,
                                        self.chip, effectual=effectual).items():
            c[name] = c.get(name, 0.0) + v
        act_bytes = (m * k + m * n) * WORD_BYTES
        self.dense_memory["dram_read_bytes"] += weight_bytes
        self.dense_memory["glb_write_bytes"] += weight_bytes + m * n * WORD_BYTES
        self.dense_memory["glb_read_bytes"] += weight_bytes + act_bytes
        self.dense_memory["link_bytes"] += weight_bytes + act_bytes + m * n * WORD_BYTES

    def _finish_work(self, work: TileWork, cyc: np.ndarray, in_w: np.ndarray,
                     out_w: np.ndarray, live: np.ndarray) -> None:
        transfer = np.ceil((in_w + out_w) / self.link_words)
        per = np.where(live, self.chip.controller.launch_cycles + np.maximum(cyc, transfer), 0)
        work.compute_cycles = int(per.sum())
        work.kernel_cycles = int(np.where(live, cyc, 0).sum())
        work.tiles = int(live.sum())
        work.skipped_tiles = int(live.size - live.sum())
        work.in_words = int(np.where(live, in_w, 0).sum())
        work.out_words = int(np.where(live, out_w, 0).sum())

    def _analytic(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, TileWork]:
        T, K = a.shape
        N = b.shape[1]
        work = TileWork(dense_products=T * K * N)
        if T == 0 or K == 0 or N == 0:
            return np.zeros((T, N)), work
        cyc, c, (tb, kc, nb) = analytic_tiles(a, b, self.words, self.fill)
        live = c["live"]
        in_w = 2 * c["a_nnz"] + c["rows"] + 1 + 2 * c["b_nnz"] + c["b_rows"] + 1
        out_w = 2 * c["Y"] + c["rows"] + 1
        self._finish_work(work, cyc, in_w, out_w, live)
        work.products = int(np.where(live, c["P"], 0).sum())
        nb_count = cdiv(N, nb)
        b_rows_all = np.where(live.any(axis=1), c["b_rows"][:, 0, :], 0).sum()
        w_nnz = c["b_nnz"][:, 0, :].sum()
        work.weight_words = int(2 * w_nnz + b_rows_all + nb_count * cdiv(K, kc))
        work.counts = tile_energy_counts(c, self.hops)
        # values: the tiles' product in float32 (numpy); only burst/cycle run the primitives
        out = (a @ b).astype(np.float64)
        return out, work

    def _exact(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, TileWork]:
        from simulator.engine_burst import run_burst

        T, K = a.shape
        N = b.shape[1]
        work = TileWork(dense_products=T * K * N)
        out = np.zeros((T, N))
        if T == 0 or K == 0 or N == 0:
            return out, work
        tb, kc, nb = tile_sizes(a != 0, b != 0, self.words)
        kernel: Kernel = self.plan.kernel
        region = self.plan.region
        cyc, in_w, out_w, live, prods = [], [], [], [], 0
        summed: dict[str, float] = {}
        for t0 in range(0, T, tb):
            for k0 in range(0, K, kc):
                at = sp.csr_matrix(a[t0:t0 + tb, k0:k0 + kc])
                for n0 in range(0, N, nb):
                    bt = sp.csr_matrix(b[k0:k0 + kc, n0:n0 + nb])
                    if at.nnz == 0 or bt.nnz == 0:
                        cyc.append(0)
                        in_w.append(0)
                        out_w.append(0)
                        live.append(False)
                        continue
                    images = {"B": FiberTree.from_scipy("B", at, ("compressed",) * 2, (0, 1)),
                              "C": FiberTree.from_scipy("C", bt, ("compressed",) * 2, (0, 1))}
                    k = _with_shapes(kernel, at.shape, bt.shape)
                    if self.fidelity == "burst":
                        run = run_burst(k, images, region)
                    else:
                        run = _run_cycle(k, images, region)
                    x_decl = next(d for d in k.tensors if d.is_output)
                    res = assemble_output(x_decl, run.memory).to_dense()
                    out[t0:t0 + tb, n0:n0 + nb] += res
                    cyc.append(run.cycles)
                    rows_b = np.count_nonzero(np.diff(bt.indptr))
                    in_w.append(2 * at.nnz + at.shape[0] + 1 + 2 * bt.nnz + rows_b + 1)
                    out_w.append(2 * np.count_nonzero(res) + at.shape[0] + 1)
                    live.append(True)
                    for node in k.nodes:
                        u = run.units[node.id]
                        for f in dataclasses.fields(u):
                            key = f"{node.op.value}.{f.name}"
                            if f.name not in ("first_cycle", "last_cycle"):
                                summed[key] = summed.get(key, 0) + getattr(u, f.name)
                    prods += sum(run.units[n.id].effectual_op_count for n in k.nodes)
                    for e in k.edges:
                        ch = run.channels[e.name]
                        summed["noc.token_count"] = summed.get("noc.token_count", 0) + \
                            ch.token_count
                        summed["noc.hop_count"] = summed.get("noc.hop_count", 0) + ch.hop_count
        self._finish_work(work, np.array(cyc), np.array(in_w), np.array(out_w),
                          np.array(live, dtype=bool))
        work.products = int(prods)
        bm = b != 0
        work.weight_words = int(2 * bm.sum() + sum(
            np.count_nonzero(bm[k0:k0 + kc].any(axis=1)) + 1
            for k0 in range(0, K, kc)) * cdiv(N, nb))
        work.unit_stats = summed
        return out, work

    # -------------------------------------------------------------- other stages
    def elementwise_job(self, n_ops: int, *, lane: int, expert: int, label: str) -> None:
        """An ALU pass over ``n_ops`` elements on one lane (one element per cycle)."""
        self.elementwise += n_ops
        self.jobs.append(LaneJob(lane, expert, int(n_ops), 0, label))
        self.dense_jobs.append(LaneJob(0, expert, cdiv(int(n_ops), self.dense_array.rows
                                                   * self.dense_array.cols), 0, label))

    def router(self, T: int, E: int, d: int) -> None:
        """The router GEMM (T x d by d x E) on the dense MAC block: systolic OS timing, its
        weights DMAed, its actions the MAC block's (the same as any dense-mode product)."""
        from simulator.energy import systolic_actions
        from simulator.systolic import gemm_cycles

        self.router_cycles = gemm_cycles(T, E, d, self.dense_array) + 1
        router_bytes = E * d * WORD_BYTES
        self.memory["dram_read_bytes"] += router_bytes
        self.extra_dram_bytes += router_bytes
        self.router_macs = T * E * d
        for name, v in systolic_actions(T, E, d, self.dense_array.rows, self.dense_array.cols,
                                        self.chip).items():
            self.stage_actions[name] = self.stage_actions.get(name, 0.0) + v

    def topk(self, T: int, k: int, E: int) -> None:
        """Top-k selection on the lanes' PEs: k max-passes over E logits per token."""
        self.topk_cycles = cdiv(T, self.lanes) * k * E

    def combine(self, pairs: int, d: int) -> None:
        """The weighted combine: one multiply-add per routed element per lane-cycle."""
        self.combine_cycles = cdiv(pairs * d, self.lanes)
        self.elementwise += pairs * d

    def merge(self, other: LayerEngine) -> None:
        """Fold the work of ``other`` (an engine that ran one job's task) into this one, as
        if its products had run here after the earlier ones."""
        self.jobs += other.jobs
        self.dense_jobs += other.dense_jobs
        self.work.add(other.work)
        self.products += other.products
        self.elementwise += other.elementwise
        self.extra_dram_bytes += other.extra_dram_bytes
        for mine, theirs in ((self.memory, other.memory), (self.dense_memory, other.dense_memory),
                             (self.dense_counts, other.dense_counts)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value


Schedule = tuple[int, dict[int, int], list[int], list[dict[str, Any]]]
"""A lane schedule: end cycle, expert -> finish cycle, lane end cycles, job and DMA spans."""


def finish_layer(eng: LayerEngine, output: np.ndarray, reference: np.ndarray,
                 experts_in: list[dict[str, int]], routing: dict[str, Any], mode: str,
                 sparse: Schedule, dense: Schedule, io: tuple[int, int, int]) -> LayerRun:
    """The layer's time, counters and traffic once its walk ran on ``eng`` and both modes
    were scheduled: stages add up (router + top-k + the experts/products stage + combine),
    the chosen ``mode``'s jobs and traffic count, and ``io`` = (tokens, d_in, d_out) moves
    the activations in and the output out."""
    ls = LayerStats(lanes=eng.lanes)
    ls.router_cycles, ls.topk_cycles = eng.router_cycles, eng.topk_cycles
    ls.combine_cycles = eng.combine_cycles
    ls.dropped_token_count = routing.get("dropped_pairs", 0)
    ls.routed_pair_count = routing.get("routed_pairs", 0)
    end, finish, lane_end, spans = dense if mode == "dense" else sparse
    jobs = eng.dense_jobs if mode == "dense" else eng.jobs
    ls.sparse_mode_cycles, ls.dense_mode_cycles = sparse[0], dense[0]
    ls.dense_mode = int(mode == "dense")
    ls.experts_cycles = end
    experts = [ExpertStats(tokens=e["tokens"], lane=e["lane"],
                           effectual_mac_count=e["effectual_mac_count"]) for e in experts_in]
    for e, st in enumerate(experts):
        st.finish_cycle = finish.get(e, 0)
        mine = [j for j in jobs if j.expert == e]
        st.compute_cycles = sum(j.cycles for j in mine)
        st.dram_bytes = sum(j.dram_bytes for j in mine)
        if mode == "dense":
            st.lane = 0
    total = ls.router_cycles + ls.topk_cycles + end + ls.combine_cycles
    ls.tile_count, ls.skipped_tile_count = eng.work.tiles, eng.work.skipped_tiles
    ls.job_count = len(jobs)
    ls.kernel_cycles = eng.work.kernel_cycles
    ls.effectual_mac_count = eng.work.products
    ls.dense_mac_count = eng.work.dense_products
    ls.elementwise_op_count = eng.elementwise
    memory = dict(eng.memory)
    if mode == "dense":
        memory.update(eng.dense_memory)
        memory["dram_read_bytes"] += eng.extra_dram_bytes
    T, d_in, d_out = io
    memory["dram_read_bytes"] += T * d_in * WORD_BYTES
    memory["dram_write_bytes"] += T * d_out * WORD_BYTES
    memory["glb_write_bytes"] += T * d_in * WORD_BYTES
    stats: dict[str, dict[str, Any]] = {}
    flatten("chip.layer", ls, stats)
    for e, st in enumerate(experts):
        flatten(f"chip.layer.expert{e}", st, stats)
    for lane, c in enumerate(lane_end):
        stats[f"chip.layer.lane{lane}.finish_cycle"] = {
            "value": c, "unit": "cycle", "desc": "Layer cycle at which the lane's last job "
            "ended (experts stage)."}
    return LayerRun(total, eng.fidelity, output, reference, dict(sorted(stats.items())),
                    eng.work, ls, experts, memory, mode, eng.products, eng.dense_counts,
                    _timeline(spans, ls.router_cycles + ls.topk_cycles),
                    jobs, dict(eng.stage_actions), eng.router_macs)


def _timeline(spans: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """The chosen mode's job and DMA spans in layer cycles (the experts stage starts after
    the router and top-k)."""
    return [{**sp, "start": sp["start"] + offset, "end": sp["end"] + offset} for sp in spans]


def _with_shapes(kernel: Kernel, b_shape: tuple[int, int], c_shape: tuple[int, int]) -> Kernel:
    decls = []
    for d in kernel.tensors:
        shape = {"B": b_shape, "C": c_shape}.get(d.name, (b_shape[0], c_shape[1]))
        decls.append(dataclasses.replace(d, shape=tuple(shape)))
    return dataclasses.replace(kernel, tensors=tuple(decls))


def _run_cycle(kernel: Kernel, images: dict[str, FiberTree], chip: ChipConfig):
    from simulator.engine_cycle import run_kernel_cycle

    return run_kernel_cycle(kernel, images, chip)


def layer_actions(run: LayerRun, plan: Any) -> dict[str, float]:
    """The layer's action counts for the one energy function (GLB, DRAM and configuration
    come from its memory and controller counters): the tiles' (the analytic row model's
    first-order counts, or the burst/cycle units' counters mapped as
    :func:`simulator.energy.actions_from_stats` maps them) or, in dense mode, the MAC block's
    (:func:`simulator.energy.systolic_actions`), plus the router on the MAC block and the
    ALU passes."""
    from simulator.energy import actions_from_stats

    if run.mode == "dense":
        counts = dict(run.dense_counts)
    elif run.fidelity == "analytic":
        counts = dict(run.work.counts)
    else:
        stats = {f"chip.tiles.{key}": {"value": v} for key, v in run.work.unit_stats.items()
                 if not key.startswith("noc.")}
        stats.update({f"chip.noc.tiles.{key[4:]}": {"value": v}
                      for key, v in run.work.unit_stats.items() if key.startswith("noc.")})
        counts = {k: v for k, v in actions_from_stats(stats, plan.program)[0].items() if v}
    for name, v in run.stage_actions.items():
        counts[name] = counts.get(name, 0.0) + v
    counts["alu_op"] = counts.get("alu_op", 0.0) + run.layer_stats.elementwise_op_count
    return counts


def layer_result(run: LayerRun, plan: Any, chip: ChipConfig) -> RunResult:
    """The layer's RunResult: the one result type, with its counters, output and actions."""
    from isa.bitstream import config_bits

    mem, ctl = MemoryStats(), ControllerStats()
    for key, value in run.memory.items():
        setattr(mem, key, int(value))
    ctl.config_bits = config_bits(plan.kernel) * plan.lanes
    ctl.launch_count = run.work.tiles
    ctl.kernel_cycles = run.work.kernel_cycles
    stats = dict(run.stats)
    flatten("chip.memory", mem, stats)
    flatten("chip.controller", ctl, stats)
    T, n = run.output.shape
    tree = FiberTree("Y", (T, n), (0, 1), (Level("dense", T), Level("dense", n)),
                     run.output.reshape(-1))
    ops = 2 * (run.work.products + run.router_macs) + run.layer_stats.elementwise_op_count
    return RunResult(chip.name, plan.kernel.name, run.fidelity, run.cycles,
                     run.cycles / (chip.clock.freq_mhz * 1e6), run.layer_stats.experts_cycles,
                     {"Y": tree}, dict(sorted(stats.items())), {"layer": run},
                     layer_actions(run, plan), ops)
