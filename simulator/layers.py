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
  b the nonempty rows of the W^T tile, the row costs max(P_t + 2R_t, a_t + b - R_t + 1, Y_t).
  The inner scanner of W^T takes P_t + 2R_t steps (a coordinate per product, a stop and a
  reference per fiber), the intersecter a_t + b - R_t + 1 (a two-finger merge), and the
  vector reducer takes P_t + R_t + 1 input tokens while it emits the previous row's Y_t sums
  (as SAM's sparse accumulator does), so a row costs its slowest stage. The tile takes the
  sum over its visited rows + 2 per such row + the kernel's fill latency (a row with no
  nonzero in the tile, like the padding of the last token block, is absent from the
  compressed tile and costs nothing, as on burst). Against ``burst`` on the random
  tiles of tests/test_layers.py it is within 1%.

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
load imbalance costs, and ``chip.layer.expert<e>.*`` shows it. Configuration: the lanes'
N-copy kernel is loaded before the sparse-mode jobs and the MAC block before the router and
the dense-mode jobs, once per switch (:func:`config_loads`); a phase's lanes start computing
when its load ends, its weight DMAs run meanwhile. Here: the engine (tile timing,
a job's work records, :meth:`LayerEngine.merge` to fold jobs in order) and the accounting of
a finished layer (:func:`layer_memory`, :func:`layer_counts`, :func:`finish_layer`,
:func:`layer_result`).

Outputs are assembled from the tiles' results and compared with the layer's numpy forward
pass of the same weight chunks (compiler.layer_tasks), computed in ``reference_dtype``: in
burst/cycle the tiles' values are the kernels' own (float32) and the reference is float64, an
independent check; in analytic the tiles' values are numpy's float32 products, so the
chunk-wise reference checks only the lowering (simulator.checks) and is float32 too: a float64
copy of every weight chunk and float64 products would cost a third of a full-size run and
check nothing more (float64 precision is checked by the full forward pass, where computed,
and the tile sample is the independent check).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from isa.arch import ELEMENT_BYTES, ChipConfig, cdiv
from isa.errors import SimulationError
from isa.fibertree import FiberTree, Level
from isa.interp import assemble_output
from isa.program import Kernel
from isa.weight_formats import bsr_bytes
from simulator.analytic import analytic_tiles, tile_energy_counts, tile_sizes
from simulator.chip import RunResult, config_stream_cycles
from simulator.progress import progress_of
from simulator.stats import ControllerStats, MemoryStats, flatten, stat

FIDELITIES = ("analytic", "burst", "cycle")


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


# ------------------------------------------------------------------------------ the runner
@dataclass
class LaneJob:
    """One lane's unit of scheduling: a chunk of tiles with the weights it brings in."""

    lane: int
    expert: int               # -1: not an expert (shared expert, FFN, linear)
    cycles: int
    dram_bytes: int
    label: str
    product: int = -1         # index into the engine's ``costs`` (the product it belongs to)


@dataclass
class ProductCost:
    """One product (or ALU pass) of a layer in both modes: its time alone, its energy
    actions and its traffic in sparse mode (SAM tiles on one lane) and in dense mode (the MAC
    block). The controller prices both and the compiler's policy picks one per product."""

    label: str
    expert: int
    sparse_cycles: int                    # compute cycles of its tiles on its lane
    dense_cycles: int                     # compute cycles on the MAC block
    sparse_counts: dict[str, float]       # energy actions (GLB/DRAM in ``*_memory``)
    dense_counts: dict[str, float]
    sparse_memory: dict[str, int]
    dense_memory: dict[str, int]
    macs: int = 0                         # effectual MACs (both operands nonzero)
    dense_macs: int = 0                   # MACs issued in dense mode (T x K' x N; K' = K
    #                                       unless N:M compresses it)
    tiles: int = 0                        # sparse mode: tiles run
    skipped_tiles: int = 0
    kernel_cycles: int = 0                # sparse mode: tile kernel cycles (summed)
    equivalent_macs: int = 0              # T x K x N (dense equivalent)
    priced: dict[str, tuple[float, float]] = field(default_factory=dict)  # mode -> (cycles
    #                                       alone, joules), set by the controller's choice


@dataclass(eq=False)
class TileSample:
    """One analytic tile kept for the tile sample: its product, place (token block, K
    chunk, N block), operands, the analytic model's cycles and values."""

    kind: str
    label: str
    tile: tuple[int, int, int]
    a: np.ndarray
    b: np.ndarray
    analytic_cycles: int
    analytic_values: np.ndarray


def product_kind(label: str) -> str:
    """A product's kind from its label: ``expert3[0:512].gate`` -> ``gate``,
    ``linear[0:512]`` -> ``linear``."""
    tail = label.rsplit("]", 1)[-1].lstrip(".")
    return tail or label.split("[", 1)[0]


def run_tile_sample(eng: LayerEngine) -> list[dict[str, Any]]:
    """At analytic fidelity, the sampled tiles (the slowest tile of the first product of
    each kind, and the layer's slowest tile) run on the burst engine: their values (checked
    by simulator.checks against the analytic path's) and cycles (the analytic/burst ratio).

    Raises: SimulationError when a sampled tile deadlocks (or hits the watchdog) on burst,
    as a burst or cycle run of the layer would.
    """

    chosen = list(eng.samples.values())
    if eng.worst is not None and all(eng.worst is not s for s in chosen):
        chosen.append(eng.worst)
    out = []
    for s in chosen:
        at, bt = sp.csr_matrix(s.a), sp.csr_matrix(s.b)
        try:
            run, values = run_lane_tiles(eng.plan, [(at, bt)], "burst")
        except SimulationError as exc:
            raise SimulationError(
                f"layer tile sample: tile {s.tile} (token block, K chunk, N block) of "
                f"{s.label} ({at.shape[0]}x{at.shape[1]} by {bt.shape[0]}x{bt.shape[1]}) on "
                f"burst: {exc}\n(the analytic tile model assumes every tile completes; this "
                "configuration does not)") from exc
        values = values[0]
        out.append({"kind": s.kind, "product": s.label, "tile": list(s.tile),
                    "worst": s is eng.worst, "shape": [at.shape[0], at.shape[1], bt.shape[1]],
                    "analytic_cycles": s.analytic_cycles, "burst_cycles": int(run.cycles),
                    "cycle_ratio": s.analytic_cycles / run.cycles if run.cycles else 0.0,
                    "values": values, "analytic_values": s.analytic_values})
    return out


@dataclass
class LayerStats:
    """Counters of the layer engine (chip.layer.*)."""

    router_cycles: int = stat("cycles", "Router GEMM on the dense MAC block (systolic).")
    topk_cycles: int = stat("cycles", "Top-k selection on the lanes' PEs.")
    combine_cycles: int = stat("cycles", "Weighted combine of expert outputs on the lanes.")
    experts_cycles: int = stat("cycles", "From the first expert job to the slowest lane's "
                               "end (double-buffered DMA and compute, and the configuration "
                               "of each mode's phase where its DMAs do not hide it).")
    lanes: int = stat("lanes", "Copies of the tile kernel on the array (regions).")
    tile_count: int = stat("tiles", "Tiles run (a tile with an empty operand is skipped).")
    skipped_tile_count: int = stat("tiles", "Tiles skipped: no nonzero in A or in W.")
    job_count: int = stat("jobs", "Lane jobs (chunks of tiles) scheduled.")
    kernel_cycles: int = stat("cycles", "Tile kernel cycles summed over the sparse-mode "
                              "tiles of all lanes (a sum: lanes overlap, so it may exceed the "
                              "layer's cycles).")
    effectual_mac_count: int = stat("MACs", "Multiplies with both operands nonzero.")
    dense_mac_count: int = stat("MACs", "Multiplies of the same products done densely.")
    elementwise_op_count: int = stat("ops", "ALU ops of activations, gating and combine.")
    sparse_mode_cycles: int = stat("cycles", "Experts/products stage in sparse mode: SAM "
                                   "tiles on the lanes (scheduled).")
    dense_mode_cycles: int = stat("cycles", "Experts/products stage in dense mode: the same "
                                  "products one after another on the MAC block (systolic OS "
                                  "timing) with their dense weights DMAed (scheduled).")
    dense_mode: int = stat("flag", "1 when every product ran in dense mode (compiler."
                           "layer_mode or the auto choice), else 0 (sparse or mixed).")
    sparse_product_count: int = stat("products", "Products and ALU passes run in sparse "
                                     "mode (SAM tiles on the lanes).")
    dense_product_count: int = stat("products", "Products and ALU passes run in dense mode "
                                    "(the MAC block).")
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
    timeline: list[dict[str, Any]] = field(default_factory=list)  # job, DMA, config spans
    jobs: list[LaneJob] = field(default_factory=list)                 # the chosen mode's jobs
    stage_actions: dict[str, float] = field(default_factory=dict)  # router on the MAC block
    router_macs: int = 0
    token_gini: float | None = None                               # MoE: routing imbalance
    counts: dict[str, float] = field(default_factory=dict)   # energy actions (chosen modes)
    costs: list[ProductCost] = field(default_factory=list)   # per product, both modes
    modes: list[str] = field(default_factory=list)           # per product: the mode run
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)  # whole-layer options
    sample: list[dict[str, Any]] = field(default_factory=list)  # analytic: tiles on burst
    config: tuple[ConfigLoad, ...] = ()      # the configurations the chosen layer loaded


class LayerEngine:
    """Runs one layer under a LayerPlan (compiler.layers) on ``chip``."""

    def __init__(self, plan: Any, chip: ChipConfig, fidelity: str, progress: Any = None
                 ) -> None:
        if fidelity not in FIDELITIES:
            raise SimulationError(f"layer engine: unknown fidelity {fidelity!r} (use "
                                  f"{', '.join(FIDELITIES)})")
        self.plan, self.chip, self.fidelity = plan, chip, fidelity
        # the precision of the tasks' chunk-wise reference (module docstring)
        self.reference_dtype = np.float32 if fidelity == "analytic" else np.float64
        self.progress = progress_of(progress)   # simulator.progress: stage, advance
        self.lanes = plan.lanes
        self.words = plan.level_words
        kernel: Kernel = plan.lane_kernel          # one lane: a copy of the batched kernel
        self.fill = fill_latency(kernel)
        self.hops = plan.mean_hops
        self.link_words = chip.glb.array_bytes_per_cycle / ELEMENT_BYTES / self.lanes
        self.buffers = plan.buffers
        self.buffer_bytes = max(1, chip.glb.size_bytes // self.lanes // self.buffers)
        self.jobs: list[LaneJob] = []
        self.work = TileWork()
        self.products: list[dict[str, Any]] = []
        self.elementwise = 0
        self.extra_dram_bytes = 0
        self.dense_jobs: list[LaneJob] = []
        self.costs: list[ProductCost] = []      # per product (and ALU pass): both modes
        self.router_cycles = self.topk_cycles = self.combine_cycles = self.router_macs = 0
        self.stage_actions: dict[str, float] = {}      # router (MAC block) actions
        self.samples: dict[str, TileSample] = {}       # analytic: first product of each kind
        self.worst: TileSample | None = None           # analytic: the slowest tile
        self._last_tiles: tuple[np.ndarray, tuple[int, int, int]] | None = None
        from simulator.systolic import SystolicArray

        block = plan.mac_block
        self.dense_array = SystolicArray(block.rows, block.cols, block.dataflow)

    # -------------------------------------------------------------- one product
    def product(self, a: np.ndarray, b: np.ndarray, *, lane: int, expert: int,
                label: str, nm: tuple[int, int] | None = None,
                block: tuple[int, int] | None = None) -> np.ndarray:
        """A (T x K) @ B (K x N) as tiles on ``lane``: appends a job, returns A @ B. ``nm``:
        B's N:M pattern along K, which dense mode runs and moves compressed; ``block``: B's
        block shape (along K, along N) when it is block-pruned, which dense mode moves as BSR
        (:func:`bsr_bytes`) but still multiplies in full."""
        a32 = np.asarray(a, dtype=np.float32)
        b32 = np.asarray(b, dtype=np.float32)
        masks = (a32 != 0, b32 != 0)       # computed once: tiling, counts and the products
        if self.fidelity == "analytic":
            out, work = self._analytic(a32, b32, masks)
            self._keep_sample(label, a32, b32)
        else:
            out, work = self._exact(a32, b32, masks)
        self.work.add(work)
        idx = len(self.costs)
        if min(a.shape[0], a.shape[1], b.shape[1]) > 0:
            d_cycles, d_counts, d_memory = self._dense_product(
                a.shape[0], a.shape[1], b.shape[1], work.products, expert, label, idx, nm,
                None if block is None else bsr_bytes(b32, block, ELEMENT_BYTES))
        else:
            d_cycles, d_counts, d_memory = 0, {}, {}
        issued = int(d_counts.get("mac", 0) + d_counts.get("mac_ineffectual", 0))
        weight_bytes = work.weight_words * ELEMENT_BYTES
        s_memory = {"dram_read_bytes": weight_bytes,
                    "glb_write_bytes": weight_bytes + work.out_words * ELEMENT_BYTES,
                    "glb_read_bytes": work.in_words * ELEMENT_BYTES,
                    "link_bytes": (work.in_words + work.out_words) * ELEMENT_BYTES}
        # a product whose weights exceed one GLB buffer runs as several jobs (equal shares of
        # its tiles' cycles and bytes), so each fits the lane's half of its GLB share
        n = max(1, cdiv(weight_bytes, self.buffer_bytes))
        for i in range(n):
            self.jobs.append(LaneJob(lane, expert, work.compute_cycles * (i + 1) // n
                                 - work.compute_cycles * i // n,
                                 weight_bytes * (i + 1) // n - weight_bytes * i // n,
                                 label if n == 1 else f"{label}#{i}", idx))
        self.costs.append(ProductCost(label, expert, work.compute_cycles, d_cycles,
                                      self._sparse_counts(work), d_counts, s_memory, d_memory,
                                      work.products, issued, work.tiles,
                                      work.skipped_tiles, work.kernel_cycles,
                                      equivalent_macs=work.dense_products))
        self.products.append({"label": label, "m": a.shape[0], "k": a.shape[1],
                              "n": b.shape[1], "a_nnz": int(np.count_nonzero(masks[0])),
                              "w_nnz": int(np.count_nonzero(masks[1])),
                              "products": work.products})
        return out

    def _keep_sample(self, label: str, a: np.ndarray, b: np.ndarray) -> None:
        """Keep this product's slowest analytic tile (operands, cycles, values) if it is the
        first product of its kind (gate, up, down, linear) or the slowest tile so far: the
        tile sample run on burst (:func:`run_tile_sample`)."""
        if self._last_tiles is None:
            return
        cyc, (tb, kc, nb) = self._last_tiles
        self._last_tiles = None
        if not cyc.size or cyc.max() <= 0:
            return
        kind = product_kind(label)
        worst = self.worst is None or int(cyc.max()) > self.worst.analytic_cycles
        if kind in self.samples and not worst:
            return
        q, t, n = (int(i) for i in np.unravel_index(int(np.argmax(cyc)), cyc.shape))
        at = a[t * tb:(t + 1) * tb, q * kc:(q + 1) * kc].copy()
        bt = b[q * kc:(q + 1) * kc, n * nb:(n + 1) * nb].copy()
        sample = TileSample(kind, label, (t, q, n), at, bt, int(cyc[q, t, n]),
                            (at @ bt).astype(np.float64))    # the analytic path's values
        self.samples.setdefault(kind, sample)
        if worst:
            self.worst = sample

    def _dense_product(self, m: int, k: int, n: int, effectual: int, expert: int,
                       label: str, idx: int, nm: tuple[int, int] | None = None,
                       stored_bytes: int | None = None
                       ) -> tuple[int, dict[str, float], dict[str, int]]:
        """The same product in dense mode: one job on the MAC block (systolic OS timing,
        simulator.systolic) that streams the weights (dense, N:M compressed, or
        ``stored_bytes`` of a block-sparse weight's BSR image); every MAC but those N:M
        removes is issued, those with a zero operand at full energy (the array neither skips
        nor gates, so a block-sparse weight's zero blocks are multiplied)."""
        from simulator.systolic import fold_schedule

        sched = fold_schedule(m, n, k, self.dense_array, nm)
        compute = sched.compute_cycles + 1
        kc = sched.k_compressed            # N:M: the kept values and their position bits
        weight_bytes = kc * n * ELEMENT_BYTES + (0 if nm is None else
                                              cdiv(kc * n * max(1, (nm[1] - 1).bit_length()), 8))
        if stored_bytes is not None:
            weight_bytes = stored_bytes
        n_jobs = max(1, cdiv(weight_bytes, self.chip.glb.size_bytes // self.buffers))
        for i in range(n_jobs):
            self.dense_jobs.append(LaneJob(0, expert, compute * (i + 1) // n_jobs
                                       - compute * i // n_jobs,
                                       weight_bytes * (i + 1) // n_jobs
                                       - weight_bytes * i // n_jobs, label, idx))
        from simulator.energy import systolic_actions

        counts = systolic_actions(m, n, k, self.dense_array.rows, self.dense_array.cols,
                                  self.chip, effectual=min(effectual, m * n * kc), k_array=kc)
        act_bytes = (m * k + m * n) * ELEMENT_BYTES
        memory = {"dram_read_bytes": weight_bytes,
                  "glb_write_bytes": weight_bytes + m * n * ELEMENT_BYTES,
                  "glb_read_bytes": weight_bytes + act_bytes,
                  "link_bytes": weight_bytes + act_bytes + m * n * ELEMENT_BYTES}
        return compute, counts, memory

    def _sparse_counts(self, work: TileWork) -> dict[str, float]:
        """A product's sparse-mode energy actions: the analytic row model's first-order
        counts, or the burst/cycle units' counters mapped as
        :func:`simulator.energy.actions_from_stats` maps them (GLB and DRAM excluded)."""
        if self.fidelity == "analytic":
            return dict(work.counts)
        from simulator.energy import actions_from_stats

        stats = {f"chip.tiles.{key}": {"value": v} for key, v in work.unit_stats.items()
                 if not key.startswith("noc.")}
        stats.update({f"chip.noc.tiles.{key[4:]}": {"value": v}
                      for key, v in work.unit_stats.items() if key.startswith("noc.")})
        return {k: v for k, v in actions_from_stats(stats, self.plan.program)[0].items() if v}

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

    def _analytic(self, a: np.ndarray, b: np.ndarray, masks: tuple[np.ndarray, np.ndarray]
                  ) -> tuple[np.ndarray, TileWork]:
        T, K = a.shape
        N = b.shape[1]
        work = TileWork(dense_products=T * K * N)
        if T == 0 or K == 0 or N == 0:
            return np.zeros((T, N)), work
        cyc, c, (tb, kc, nb) = analytic_tiles(*masks, self.words, self.fill)
        self._last_tiles = (cyc, (tb, kc, nb))        # for the tile sample (_keep_sample)
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

    def _exact(self, a: np.ndarray, b: np.ndarray, masks: tuple[np.ndarray, np.ndarray]
               ) -> tuple[np.ndarray, TileWork]:
        T, K = a.shape
        N = b.shape[1]
        work = TileWork(dense_products=T * K * N)
        out = np.zeros((T, N))
        if T == 0 or K == 0 or N == 0:
            return out, work
        tb, kc, nb = tile_sizes(*masks, self.words)
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
                    run, res = run_lane_tiles(self.plan, [(at, bt)], self.fidelity)
                    res = res[0]
                    k = self.plan.lane_kernel
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
        bm = masks[1]
        work.weight_words = int(2 * bm.sum() + sum(
            np.count_nonzero(bm[k0:k0 + kc].any(axis=1)) + 1
            for k0 in range(0, K, kc)) * cdiv(N, nb))
        work.unit_stats = summed
        return out, work

    # -------------------------------------------------------------- other stages
    def elementwise_job(self, n_ops: int, *, lane: int, expert: int, label: str) -> None:
        """An ALU pass over ``n_ops`` elements on one lane (one element per cycle)."""
        self.elementwise += n_ops
        idx = len(self.costs)
        dense = cdiv(int(n_ops), self.dense_array.rows * self.dense_array.cols)
        self.jobs.append(LaneJob(lane, expert, int(n_ops), 0, label, idx))
        self.dense_jobs.append(LaneJob(0, expert, dense, 0, label, idx))
        # its ALU ops (``alu_op``) are the same in both modes and counted with the layer's
        self.costs.append(ProductCost(label, expert, int(n_ops), dense, {}, {}, {}, {}))

    def router(self, T: int, E: int, d: int) -> None:
        """The router GEMM (T x d by d x E) on the dense MAC block: systolic OS timing, its
        weights DMAed, its actions the MAC block's (the same as any dense-mode product)."""
        from simulator.energy import systolic_actions
        from simulator.systolic import gemm_cycles

        self.router_cycles = gemm_cycles(T, E, d, self.dense_array) + 1
        self.extra_dram_bytes += E * d * ELEMENT_BYTES
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
        offset = len(self.costs)
        self.jobs += [dataclasses.replace(j, product=j.product + offset) for j in other.jobs]
        self.dense_jobs += [dataclasses.replace(j, product=j.product + offset)
                            for j in other.dense_jobs]
        self.costs += other.costs
        for kind, sample in other.samples.items():
            self.samples.setdefault(kind, sample)
        if other.worst is not None and (self.worst is None or other.worst.analytic_cycles
                                        > self.worst.analytic_cycles):
            self.worst = other.worst
        self.work.add(other.work)
        self.products += other.products
        self.elementwise += other.elementwise
        self.extra_dram_bytes += other.extra_dram_bytes


Schedule = tuple[int, dict[int, int], list[int], list[dict[str, Any]]]
"""A lane schedule: end cycle, expert -> finish cycle, lane end cycles, job and DMA spans."""


@dataclass(frozen=True)
class ConfigLoad:
    """One configuration of the array during a layer run: ``kernel`` (the lanes' N-copy
    batched tile kernel, or the MAC block) streamed over the configuration network before
    ``user`` (``router``, ``sparse``: the lanes' phase, ``dense``: the MAC block's phase)
    runs, as :meth:`simulator.controller.Firmware.configure` loads a kernel: one DMA
    descriptor on the firmware processor, then ``cycles`` = ceil(``bits`` /
    ``controller.config_bits_per_cycle``)."""

    kernel: str
    user: str
    bits: int
    cycles: int
    setup_cycles: int

    @property
    def wait(self) -> int:
        """Cycles from the start of the load until its user may launch: the descriptor,
        then the stream."""
        return self.setup_cycles + self.cycles

    def span(self, start: int) -> dict[str, Any]:
        """The load as a timeline span from ``start`` (the "configuration network" track)."""
        return {"track": "config", "name": f"configure {self.kernel}", "start": start,
                "end": start + self.wait, "bits": self.bits}


def config_loads(plan: Any, chip: ChipConfig, modes: list[str], router: bool
                 ) -> tuple[ConfigLoad, ...]:
    """The configurations a layer run loads, in order, with each product in its mode
    (``modes``): the MAC block before the router (an MoE layer, ``router``), the lanes'
    kernel before the sparse-mode phase, the MAC block before the dense-mode phase
    (simulator.controller.schedule_modes runs the phases in that order), each only when the
    array does not hold it already. The MAC block is a mapping of the same PEs the lanes
    use (compiler.dense), as on Onyx dense and sparse kernels run "on the same fabric with
    different configurations" (VLSI24), so a switch of mode reloads the array.
    ASSUMPTION: the tiles hold one configuration at a time (no second context to switch
    to; none is described for Onyx). The ALU passes (top-k, activation, combine) are not
    compiled graphs (docs/architecture.md, "not modelled yet"): they run under whichever
    configuration is loaded, with no load of their own."""
    from isa.bitstream import config_bits

    bits = {"sparse": (plan.kernel.name, config_bits(plan.kernel)),
            "dense": (plan.mac_block.name, config_bits(plan.mac_block))}
    users = (["router"] if router else []) + [m for m in ("sparse", "dense") if m in modes]
    loads, held = [], ""
    for user in users:
        need = "dense" if user == "router" else user
        if need != held:
            name, n = bits[need]
            loads.append(ConfigLoad(name, user, n, config_stream_cycles(chip, n),
                                    chip.controller.dma_setup_cycles))
            held = need
    return tuple(loads)


@dataclass(frozen=True)
class PricedLayer:
    """One whole-layer alternative as the controller priced it (simulator.controller.
    choose_modes): its schedule, its traffic (:func:`layer_memory`) and its energy actions
    (:func:`layer_counts`; GLB, DRAM and configuration come from the traffic and counters),
    the configurations it loads (:func:`config_loads`) and the cycles the layer waits for
    the router's before it starts (``setup``; the products' loads are in ``schedule``)."""

    schedule: Schedule
    memory: dict[str, int]
    counts: dict[str, float]
    config: tuple[ConfigLoad, ...] = ()
    setup: int = 0


def mode_of(modes: list[str]) -> str:
    """The layer's mode from its products': sparse, dense, or mixed."""
    kinds = set(modes)
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "sparse")


def layer_memory(eng: LayerEngine, modes: list[str], io: tuple[int, int, int]
                 ) -> dict[str, int]:
    """The layer's traffic with each product in its mode: the products' weights and tile
    transfers, the router's weights, the activations in and the output out (``io`` =
    tokens, d_in, d_out)."""
    memory = {"dram_read_bytes": 0, "dram_write_bytes": 0, "glb_read_bytes": 0,
              "glb_write_bytes": 0, "link_bytes": 0}
    for cost, mode in zip(eng.costs, modes):
        for key, value in (cost.dense_memory if mode == "dense" else cost.sparse_memory
                           ).items():
            memory[key] += value
    T, d_in, d_out = io
    memory["dram_read_bytes"] += eng.extra_dram_bytes + T * d_in * ELEMENT_BYTES
    memory["dram_write_bytes"] += T * d_out * ELEMENT_BYTES
    memory["glb_write_bytes"] += T * d_in * ELEMENT_BYTES
    return memory


def layer_counts(eng: LayerEngine, modes: list[str]) -> dict[str, float]:
    """The layer's energy actions with each product in its mode (GLB, DRAM and
    configuration come from its memory and controller counters): the tiles' or the MAC
    block's per product, the router on the MAC block and the ALU passes."""
    counts: dict[str, float] = {}
    for cost, mode in zip(eng.costs, modes):
        for name, v in (cost.dense_counts if mode == "dense" else cost.sparse_counts).items():
            counts[name] = counts.get(name, 0.0) + v
    for name, v in eng.stage_actions.items():
        counts[name] = counts.get(name, 0.0) + v
    counts["alu_op"] = counts.get("alu_op", 0.0) + eng.elementwise
    return counts


def finish_layer(eng: LayerEngine, output: np.ndarray, reference: np.ndarray,
                 experts_in: list[dict[str, int]], routing: dict[str, Any], modes: list[str],
                 chosen: PricedLayer, candidates: dict[str, dict[str, Any]]) -> LayerRun:
    """The layer's time, counters and traffic once its walk ran on ``eng``, each product's
    mode was chosen (``modes``, one per ``eng.costs``) and the chosen layer was scheduled
    and priced (``chosen``): stages add up (router + top-k + the experts/products stage +
    combine), the chosen modes' jobs, traffic and actions count. ``candidates``: each
    whole-layer alternative priced (cycles, stage cycles, energy), for the summary."""
    ls = LayerStats(lanes=eng.lanes)
    ls.router_cycles, ls.topk_cycles = eng.router_cycles, eng.topk_cycles
    ls.combine_cycles = eng.combine_cycles
    ls.dropped_token_count = routing.get("dropped_pairs", 0)
    ls.routed_pair_count = routing.get("routed_pairs", 0)
    end, finish, lane_end, spans = chosen.schedule
    mode = mode_of(modes)
    jobs = ([j for j in eng.jobs if modes[j.product] == "sparse"]
            + [j for j in eng.dense_jobs if modes[j.product] == "dense"])
    ls.sparse_mode_cycles = candidates.get("sparse", {}).get("stage_cycles", 0)
    ls.dense_mode_cycles = candidates.get("dense", {}).get("stage_cycles", 0)
    ls.dense_mode = int(mode == "dense")
    ls.dense_product_count = sum(m == "dense" for m in modes)
    ls.sparse_product_count = len(modes) - ls.dense_product_count
    ls.experts_cycles = end
    experts = [ExpertStats(tokens=e["tokens"], lane=e["lane"],
                           effectual_mac_count=e["effectual_mac_count"]) for e in experts_in]
    for e, st in enumerate(experts):
        st.finish_cycle = finish.get(e, 0)
        mine = [j for j in jobs if j.expert == e]
        st.compute_cycles = sum(j.cycles for j in mine)
        st.dram_bytes = sum(j.dram_bytes for j in mine)
        if mine and all(modes[j.product] == "dense" for j in mine):
            st.lane = 0
    # the router's configuration (chosen.setup) first; the products' loads are in ``end``
    total = chosen.setup + ls.router_cycles + ls.topk_cycles + end + ls.combine_cycles
    sparse_costs = [c for c, m in zip(eng.costs, modes) if m == "sparse"]
    ls.tile_count = sum(c.tiles for c in sparse_costs)
    ls.skipped_tile_count = sum(c.skipped_tiles for c in sparse_costs)
    ls.job_count = len(jobs)
    ls.kernel_cycles = sum(c.kernel_cycles for c in sparse_costs)
    ls.effectual_mac_count = eng.work.products
    ls.dense_mac_count = eng.work.dense_products
    ls.elementwise_op_count = eng.elementwise
    stats: dict[str, dict[str, Any]] = {}
    flatten("chip.layer", ls, stats)
    for e, st in enumerate(experts):
        flatten(f"chip.layer.expert{e}", st, stats)
    for lane, c in enumerate(lane_end):
        stats[f"chip.layer.lane{lane}.finish_cycle"] = {
            "value": c, "unit": "cycle", "desc": "Layer cycle at which the lane's last job "
            "ended (experts stage)."}
    run = LayerRun(total, eng.fidelity, output, reference, dict(sorted(stats.items())),
                   eng.work, ls, experts, dict(chosen.memory), mode, eng.products,
                   timeline=_timeline(spans, chosen.setup + ls.router_cycles
                                      + ls.topk_cycles)
                   + [ld.span(0) for ld in chosen.config if ld.user == "router"],
                   jobs=jobs, stage_actions=dict(eng.stage_actions),
                   router_macs=eng.router_macs, counts=dict(chosen.counts),
                   config=chosen.config)
    run.costs, run.modes, run.candidates = eng.costs, list(modes), candidates
    return run


def _timeline(spans: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """The chosen mode's job and DMA spans in layer cycles (the experts stage starts after
    the router and top-k)."""
    return [{**sp, "start": sp["start"] + offset, "end": sp["end"] + offset} for sp in spans]


def fill_latency(kernel: Kernel) -> int:
    """The analytic tile model's fill: the kernel's critical path, a cycle per unit and per
    link hop (a stream's latency is its hops, at least 1) along its longest chain of streams.
    (On the one-copy 2-D tile kernel this equals the earlier units + half the hops, 40 on
    Onyx; on a lane of the batched kernel it counts the job loop's locator, filter and outer
    writer only where they lengthen the chain.)"""
    latency: dict[str, int] = {}
    for node in kernel.topo_order():
        ins = [latency[e.src] + max(e.hops, 1) for e in kernel.in_edges(node.id)]
        latency[node.id] = 1 + max(ins, default=0)
    return max(latency.values(), default=0)


def _with_shapes(kernel: Kernel, jobs: int, b_shape: tuple[int, int],
                 c_shape: tuple[int, int]) -> Kernel:
    """The batched tile kernel declared for ``jobs`` positions of tiles B (T x K), C (K x N)."""
    decls = []
    for d in kernel.tensors:
        shape = {"B": b_shape, "C": c_shape}.get(d.name, (b_shape[0], c_shape[1]))
        decls.append(dataclasses.replace(d, shape=(jobs, *shape)))
    return dataclasses.replace(kernel, tensors=tuple(decls))


def batch_images(kernel: Kernel, tiles: list[tuple[sp.csr_matrix, sp.csr_matrix]]
                 ) -> dict[str, FiberTree]:
    """The memory images of a batch of jobs' tiles for the batched tile kernel
    (compiler.layers.TEMPLATE_EXPR): position b of the outer loop holds B(b) = ``tiles[b][0]``
    and C(b) = ``tiles[b][1]`` (all of one shape), in the kernel's declared formats. A
    compressed outer level holds the positions whose tile has a nonzero; a dense one every
    position. The levels below are each tile's compressed levels, fiber after fiber."""
    out: dict[str, FiberTree] = {}
    for which, name in enumerate(("B", "C")):
        decl = next(d for d in kernel.tensors if d.name == name)
        mats = [sp.csr_matrix(t[which]) for t in tiles]
        outer = decl.formats[0]
        keep = [b for b, m in enumerate(mats) if outer == "dense" or m.nnz]
        trees = [FiberTree.from_scipy(name, mats[b], tuple(decl.formats[1:]), (0, 1))
                 for b in keep]
        levels = [Level("dense", len(mats)) if outer == "dense" else
                  Level(outer, len(mats), np.array([0, len(keep)], np.int64),
                        np.array(keep, np.int64))]
        for lvl in range(len(decl.formats) - 1):
            parts = [t.levels[lvl] for t in trees]
            offsets = np.cumsum([0] + [len(lv.crd) for lv in parts])
            seg = np.concatenate([lv.seg[:-1] + o for lv, o in zip(parts, offsets)]
                                 + [offsets[-1:]]).astype(np.int64)
            levels.append(Level(decl.formats[lvl + 1], parts[0].size if parts else
                                mats[0].shape[lvl], seg,
                                np.concatenate([lv.crd for lv in parts]).astype(np.int64)
                                if parts else np.zeros(0, np.int64)))
        vals = (np.concatenate([t.vals for t in trees]) if trees
                else np.zeros(0, np.float32))
        shape = (len(mats), *mats[0].shape)
        tree = FiberTree(name, shape, (0, 1, 2), tuple(levels), vals)
        tree.check()
        out[name] = tree
    return out


def run_lane_tiles(plan: Any, tiles: list[tuple[sp.csr_matrix, sp.csr_matrix]],
                   fidelity: str, kernel: Kernel | None = None) -> tuple[Any, np.ndarray]:
    """``tiles`` (one per job position) run as one call of ``kernel`` (default: one lane's
    copy of the batched tile kernel, ``plan.lane_kernel``) on ``plan.region`` at ``fidelity``
    (burst or cycle): the engine's run and the output, position by position (jobs x T x N;
    an unrolled kernel's output is the union of its copies' parts, a lane copy's its own)."""
    from simulator.engine_burst import run_burst

    kernel = plan.lane_kernel if kernel is None else kernel
    at, bt = tiles[0]
    k = _with_shapes(kernel, len(tiles), at.shape, bt.shape)
    images = batch_images(k, tiles)
    run = (run_burst if fidelity == "burst" else _run_cycle)(k, images, plan.region)
    x_decl = next(d for d in k.tensors if d.is_output)
    copies = {int(n.a["copy"]) for n in k.nodes if "copy" in n.a and "tensor" in n.a
              and n.a["tensor"] == x_decl.name}
    if len(copies) == 1 and x_decl.name in run.memory.copies \
            and run.memory.copies[x_decl.name] > 1:
        tree = assemble_output(x_decl, run.memory, copies.pop())
    else:
        tree = assemble_output(x_decl, run.memory)
    return run, tree.to_dense()


def _run_cycle(kernel: Kernel, images: dict[str, FiberTree], chip: ChipConfig):
    from simulator.engine_cycle import run_kernel_cycle

    return run_kernel_cycle(kernel, images, chip)


TILE_DESCRIPTORS = 3
"""DMA descriptors the firmware programs per layer tile: A's and W's tiles in, the output out."""


def firmware_cycles_of(tiles: int, dram_jobs: int, chip: ChipConfig, configs: int = 0
                       ) -> int:
    """Cycles the firmware processor is busy for a layer's ``tiles`` sparse tiles,
    ``dram_jobs`` jobs that DMA weights from DRAM and ``configs`` configuration loads,
    charged as for a kernel's tile calls (simulator.controller.Firmware): per tile a kernel
    call and :data:`TILE_DESCRIPTORS` descriptors, per such job and per configuration load
    one descriptor. The launch is in each tile's time (``_finish_work``); the tiles'
    descriptors overlap the tile before (the lanes' transfers already overlap compute), so
    they add energy, not time; a job's descriptor is in its weight DMA's time
    (simulator.chip.dram_transfer's setup) and a configuration's in its load's
    (:attr:`ConfigLoad.wait`)."""
    c = chip.controller
    return (tiles * (c.launch_cycles + TILE_DESCRIPTORS * c.dma_setup_cycles)
            + (dram_jobs + configs) * c.dma_setup_cycles)


def layer_firmware_cycles(run: LayerRun, chip: ChipConfig) -> int:
    """:func:`firmware_cycles_of` the layer's chosen tiles, jobs and configuration loads."""
    return firmware_cycles_of(run.layer_stats.tile_count,
                              sum(1 for j in run.jobs if j.dram_bytes), chip, len(run.config))


def layer_result(run: LayerRun, plan: Any, chip: ChipConfig) -> RunResult:
    """The layer's RunResult: the one result type, with its counters, output and actions."""
    mem, ctl = MemoryStats(), ControllerStats()
    for key, value in run.memory.items():
        setattr(mem, key, int(value))
    # the lanes' N-copy batched tile kernel and the MAC block, as the modes loaded them
    ctl.config_bits = sum(ld.bits for ld in run.config)
    ctl.config_cycles = sum(ld.cycles for ld in run.config)
    ctl.launch_count = run.layer_stats.tile_count
    ctl.kernel_cycles = run.layer_stats.kernel_cycles
    ctl.firmware_cycles = layer_firmware_cycles(run, chip)
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
                     dict(run.counts), ops)
