"""Dataflow-order and format choice: enumerate the loop orders and level formats of an
expression, estimate each, pick one.

As SAM's dataflow-order study (ASPLOS'23 section 6.3) and FuseFlow's enumeration do, every
permutation of the index variables is a candidate. Storage follows the loop order: each
operand is stored in the mode order the loop visits its indices in (``C:ss:1,0`` for C(k,j)
under ``ikj``), unless the user pinned a mode order with ``-p formats=``. Each legal order is
probed with the operands' given level formats (the workload's defaults), and besides, up to
``FORMAT_VARIANTS`` other level formats: per operand level, compressed (``s``, always
stored-size safe), dense (``d``) when the level's fibers are at least ``DENSE_MIN_OCCUPANCY``
full, bitmap (``b``) when at least ``BITMAP_MIN_OCCUPANCY`` full (:func:`level_options`); the
variants of all legal orders are ranked by a rough work bound that sees located dense levels
(:func:`work_bound`) and the least are probed. An operand the user named in ``-p formats=``
keeps its letters (and mode order, if given). A candidate is legal when the lowering accepts it
(``compiler.lower`` raises CompileError for the others: output indices out of order,
contracted indices a reducer cannot reduce, ...), so the enumeration follows whatever the
lowering supports.

Each legal candidate is estimated in two stages by burst probes (the caller passes the
estimator: the compiler may not import the simulator).

1. *Screen*: every candidate is compiled as one copy of its graph and simulated on the data, or
   on strided samples of it when the work bound below exceeds ``SCREEN_STEPS``: every s-th and
   every 2s-th slice of the first operand's first index (in every tensor that has it), with
   cycles, energy and time extrapolated along the straight line through the two samples to the
   whole extent (the work below that index grows with the slices; configuration, launch and
   latencies do not). A sample is cut into tiles of its own, and unrolled (or not) its own way,
   unlike the whole run, so the screen only ranks; a tiled one runs at most ``PROBE_CALLS``
   of its tile calls, scaled as below (SpM*SpM 2000^3 @0.5%: the screen's 20 probes ran
   24,802 tile calls before, 90% of the choice's time).
2. *Whole run*: the ``FINALISTS`` best screened candidates are compiled as the run compiles
   them (the whole data: tiling, ``compiler.unroll``) and that program is estimated: run whole
   when it is untiled (each of its levels fits one MEM tile, which bounds the run) or has few
   tile calls; else on m of its n tile calls (whole output blocks) spread over the schedule
   (each with its own loads, unrolled kernel, launch and merge, as in the whole schedule) and on
   the program without calls (configuration and the inputs' DMA, which do not grow with the
   calls), the calls' part scaled by n / m.

The finalist with the least ``compiler.objective`` (cycles, energy or edp) wins; ties go to the
earlier candidate in enumeration order, so the choice is deterministic. Its compiled program is
kept (:attr:`OrderChoice.program`) so the run does not compile it again.

Tile pipelining (``controller.tile_pipelining: auto``, the firmware's choice per kernel call):
each finalist that is tiled is compiled and estimated in both modes (one tile at a time in
full MEM tiles, pipelined in half ones: :func:`compiler.tiling.modes`) and keeps the better
by the objective; a kernel that fits untiled in full MEM tiles is one call and has no mode.
A forced order (``-p order=``) is not screened, but with ``auto`` its two modes are estimated
the same way. The screen too estimates a tiled candidate in both modes and ranks it by the
better (a candidate good only pipelined, or only one tile at a time, must reach the
finalists); a finalist's whole run in that mode may reuse the screen's.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from compiler.lower import lower_assignment, output_formats
from compiler.notation import Assignment, parse_expr, parse_order
from compiler.tiling import distinct, modes, with_pipelining
from isa.arch import ChipConfig
from isa.errors import CompileError, IsaError, SimulationError
from isa.fibertree import BITMAP_WORD_BITS, parse_formats
from isa.program import Program, TensorDecl

PROBE_STEPS = 150_000
"""Largest work bound (unit steps, :func:`work_bound`) probed on the whole data; above it the
probe runs on a strided sample of the first index. A compiler knob, not a chip constant: it
keeps one probe near a few tenths of a CPU second in the burst engine."""

SCREEN_STEPS = PROBE_STEPS
"""Largest work bound screened on the whole data; above it the screen runs on strided samples
of the first index. A compiler knob bounding compile time (the screen only ranks: the
finalists are estimated on the whole run, within ``PROBE_STEPS``)."""

FINALISTS = 3
"""Screened candidates estimated on the whole run (compiled in full, then run whole or on a
sample of its tile calls): a compiler knob bounding compile time (each is a full compile, with
tiling and unrolling, and a burst run of up to ``PROBE_STEPS`` work)."""

PROBE_CALLS = 16
"""Most tile calls run to estimate a finalist's tiled run (:func:`whole_run`): a compiler knob
bounding compile time (each tile call is a burst run of its own, with its own set-up,
whatever its work)."""

FORMAT_VARIANTS = 8
"""Most level-format variants (beyond each legal order with the given formats) probed per
choice: a compiler knob bounding compile time (each probe is a compile and a burst run)."""

DENSE_MIN_OCCUPANCY = 0.5
"""Least fraction of a level's positions holding a coordinate for the level to be a dense
candidate. A dense level stores every position of its fibers (and below it a child fiber or a
value per position, DMAed, buffered and read like the rest of the image); at half full the
storage below that level is at most twice the compressed level's, which drops its coordinate
array. ASSUMPTION: a bound on image growth (the probe then measures the real cost, DMA and
energy of the larger image included), not a figure from the papers."""

BITMAP_MIN_OCCUPANCY = 1.0 / BITMAP_WORD_BITS
"""Least fiber occupancy for a bitmap candidate: a bitmap fiber stores extent/16 mask words
(16-bit elements) where a compressed one stores a coordinate per nonzero, so at 1/16 full the
two are the same size; sparser, the bitmap is only larger (and its scan walks empty words)."""


@dataclass(frozen=True)
class Estimate:
    """A probe's figures for one candidate (already scaled to the whole data)."""

    cycles: float
    energy_pj: float
    seconds: float

    def value(self, objective: str) -> float:
        """The figure ``objective`` minimises: cycles, energy (pJ) or edp (J s)."""
        if objective == "cycles":
            return self.cycles
        if objective == "energy":
            return self.energy_pj
        return self.energy_pj * 1e-12 * self.seconds


Estimator = Callable[[Program, ChipConfig], tuple[float, float, float]]
"""Compile-time probe: a compiled candidate on ``chip`` -> (cycles, energy in pJ, seconds)
(simulator.probe.probe)."""


@dataclass(frozen=True)
class Candidate:
    """One loop order with the formats that follow it: its estimate, or why it is illegal.
    ``estimate`` is the whole run's for a finalist (``how`` says how it was made) and the
    screen's otherwise; ``screen`` is the screen's (None when it was not screened)."""

    order: str
    formats: dict[str, str]
    estimate: Estimate | None = None
    rejected: str | None = None
    screen: Estimate | None = None
    how: str = ""
    pipelined: bool | None = None
    """A tiled finalist's tile-pipelining mode (the estimate's); None: untiled or screened."""
    other: Estimate | None = None
    """With ``controller.tile_pipelining: auto``, a tiled finalist's estimate in the mode it
    did not take (None: one mode only)."""


@dataclass(frozen=True)
class OrderChoice:
    """The enumeration, the estimates and the chosen order."""

    objective: str
    candidates: tuple[Candidate, ...]
    order: str
    forced: bool
    sample: tuple[str, int, int] | None   # (index, stride, extent) when the screen sampled
    formats: dict[str, str] | None = None  # the chosen candidate's operand formats
    program: Program | None = dataclasses.field(default=None, compare=False)
    """The chosen candidate's program as the whole-run stage compiled it (None: compile it)."""
    modes: tuple[tuple[bool, Estimate], ...] = ()
    """A tiled program's tile-pipelining mode and its estimate, then (``auto``) the other
    mode's: the mode choice (() untiled, or not estimated)."""

    def apply(self, layer: Any) -> Any:
        """``layer`` with the chosen loop order and operand formats (a forced order: as is)."""
        if self.forced:
            return layer
        if self.formats is None:
            return with_order(layer, self.order)
        return with_formats(layer, self.order, self.formats)

    def lines(self) -> list[str]:
        """The choice as text: one line per candidate, then the verdict."""
        head = f"dataflow orders and formats of this kernel (objective: {self.objective}"
        if self.sample is not None:
            v, stride, n = self.sample
            head += (f"; screened as one copy on every {stride}-th and {2 * stride}-th {v} of "
                     f"{n}, extrapolated to the whole")
        else:
            head += "; screened as one copy on the whole data"
        finals = [c for c in self.candidates if c.screen is not None and c.how]
        if finals:
            head += (f"; the {len(finals)} best screened compiled as the run is (tiled, "
                     "unrolled) and estimated on that, 'whole run': the choice is among them")
        out = [head + ")", f"  {'order':<8} {'formats':<28} {'cycles':>14} {'energy (uJ)':>12} "
               f"{'EDP (J s)':>11}  estimated on"]
        for c in self.candidates:
            fmts = " ".join(f"{k}:{v}" for k, v in c.formats.items())
            mark = " <- chosen" if c.order == self.order and (
                self.formats is None or c.formats == self.formats) else ""
            if c.estimate is not None:
                e = c.estimate
                how = c.how or "screen"
                if c.pipelined is not None:
                    how += f", {mode_name(c.pipelined)}"
                if c.other is not None:
                    how += (f" ({mode_name(not c.pipelined)}: {c.other.cycles:,.0f} cycles, "
                            f"{self.objective} {c.other.value(self.objective):.4g})")
                if c.how and c.screen is not None:
                    how += (f" (screen: {c.screen.cycles:,.0f} cycles, "
                            f"{self.objective} {c.screen.value(self.objective):.4g})")
                out.append(f"  {c.order:<8} {fmts:<28} {e.cycles:>14,.0f} "
                           f"{e.energy_pj * 1e-6:>12.4g} {e.value('edp'):>11.3e}  {how}{mark}")
            elif c.rejected is not None:
                kind = "not run" if c.rejected.startswith("probe: ") else "illegal"
                out.append(f"  {c.order:<8} {fmts:<28} {kind}: {c.rejected}")
            else:
                out.append(f"  {c.order:<8} {fmts:<28} {'(not probed)':>14}{mark}")
        how = "forced by -p order" if self.forced else (
            "the only legal order" if sum(c.rejected is None for c in self.candidates) == 1
            else f"least {self.objective}")
        chosen = self.order
        if self.formats is not None:
            chosen += " " + " ".join(f"{k}:{v}" for k, v in self.formats.items())
        out.append(f"chosen: {chosen} ({how})")
        if self.modes:
            mode, est = self.modes[0]
            text = f"tile pipelining: {mode_name(mode)}"
            if len(self.modes) > 1:
                alt, other = self.modes[1]
                text += (f" (least {self.objective} of both modes, estimated as the run is: "
                         f"{est.cycles:,.0f} cycles, {self.objective} "
                         f"{est.value(self.objective):.4g}; {mode_name(alt)}: "
                         f"{other.cycles:,.0f} cycles, {self.objective} "
                         f"{other.value(self.objective):.4g})")
            else:
                text += " (forced by controller.tile_pipelining)"
            out.append(text)
        return out


def _letters_and_order(fmt: str) -> tuple[str, str | None]:
    letters, _, mode = fmt.partition(":")
    return letters, mode or None


def _pinned(layer: Any) -> set[str]:
    """Tensors whose mode order the user gave in ``-p formats=`` (kept in every candidate)."""
    spec = str((getattr(layer, "params", None) or {}).get("formats") or "")
    out = set()
    for item in spec.split():
        name, _, fmt = item.partition(":")
        if ":" in fmt:
            out.add(name)
    return out


def _named(layer: Any) -> set[str]:
    """Tensors the user gave any format for in ``-p formats=`` (their letters are kept)."""
    spec = str((getattr(layer, "params", None) or {}).get("formats") or "")
    return {item.partition(":")[0] for item in spec.split() if ":" in item}


def formats_for(layer: Any, assign: Assignment, order: tuple[str, ...]) -> dict[str, str]:
    """Each operand's format with the mode order ``order`` visits its indices in."""
    pinned = _pinned(layer)
    out = {}
    for acc in assign.operands:
        given = layer.formats.get(acc.tensor, "")
        letters, _ = _letters_and_order(given)
        if acc.tensor in pinned:
            out[acc.tensor] = given
            continue
        mode = [acc.indices.index(v) for v in order if v in acc.indices]
        out[acc.tensor] = letters + ("" if mode == sorted(mode) else
                                     ":" + ",".join(map(str, mode)))
    return out


def with_order(layer: Any, order: str | tuple[str, ...]) -> Any:
    """``layer`` with loop ``order`` and the operand formats that follow it."""
    assign = parse_expr(layer.expr)
    seq = parse_order(order if isinstance(order, str) else ",".join(order), assign)
    formats = {**layer.formats, **formats_for(layer, assign, seq)}
    return dataclasses.replace(layer, order=_text(seq), formats=formats)


def with_formats(layer: Any, order: str | tuple[str, ...], formats: dict[str, str]) -> Any:
    """``layer`` with loop ``order`` and the given operand ``formats`` (a candidate's)."""
    seq = parse_order(order if isinstance(order, str) else ",".join(order),
                      parse_expr(layer.expr))
    return dataclasses.replace(layer, order=_text(seq), formats={**layer.formats, **formats})


def _text(seq: tuple[str, ...]) -> str:
    """A loop order as text: ``ikj``, or ``i1,k,j`` when a variable is longer than a letter."""
    return "".join(seq) if all(len(v) == 1 for v in seq) else ",".join(seq)


def _shape(data: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in data.shape)


def _legal(layer: Any, assign: Assignment, order: tuple[str, ...],
           formats: dict[str, str] | None = None) -> Candidate:
    """Lower ``order`` on declarations alone (no memory images): legal or the error.
    ``formats``: the operands' formats (default: the given letters, following the order)."""
    formats = formats or formats_for(layer, assign, order)
    text = _text(order)
    decls: dict[str, TensorDecl] = {}
    sizes: dict[str, int] = {}
    try:
        for acc in assign.operands:
            fmts, mode = parse_formats(formats[acc.tensor])
            shape = _shape(layer.tensors[acc.tensor])
            decls[acc.tensor] = TensorDecl(acc.tensor, shape, fmts,
                                           mode or tuple(range(len(shape))))
            sizes.update(zip(acc.indices, shape))
        out = assign.out
        decls[out.tensor] = TensorDecl(out.tensor, tuple(sizes[v] for v in out.indices),
                                       output_formats(layer, out.tensor, len(out.indices)),
                                       tuple(range(len(out.indices))), True)
        lower_assignment(assign, order, decls)
    except (CompileError, IsaError) as exc:
        return Candidate(text, formats, rejected=str(exc).removeprefix("lower: "))
    return Candidate(text, formats)


def enumerate_orders(layer: Any) -> list[Candidate]:
    """Every permutation of the index variables (the compiler default first, then in
    itertools order over first appearance), each legal or with the lowering's reason."""
    assign = parse_expr(layer.expr)
    default = parse_order(None, assign)
    perms = [default] + [p for p in itertools.permutations(assign.index_vars) if p != default]
    return [_legal(layer, assign, p) for p in perms]


def default_order(layer: Any) -> str:
    """The first legal candidate of :func:`enumerate_orders` (no estimates); CompileError
    when none lowers."""
    cands = enumerate_orders(layer)
    for c in cands:
        if c.rejected is None:
            return c.order
    raise CompileError(f"lower: {layer.expr}: no loop order lowers ({cands[0].order}: "
                       f"{cands[0].rejected})")


def format_variants(layer: Any, legal: list[Candidate], locate: bool = True) -> list[Candidate]:
    """Up to ``FORMAT_VARIANTS`` legal candidates with other operand level formats than the
    given ones, over the ``legal`` orders: per operand the :func:`level_options` of its
    storage mode order (an operand named in ``-p formats=`` keeps its format), every
    combination ranked by :func:`work_bound` (ties: the order's rank in ``legal``, then
    product order), the least that lower kept."""
    assign = parse_expr(layer.expr)
    named = _named(layer)
    options: dict[tuple[str, str], list[str]] = {}
    pool: list[tuple[float, int, int, str, dict[str, str]]] = []
    for rank, c in enumerate(legal):
        per_tensor = []
        for acc in assign.operands:
            given = c.formats[acc.tensor]
            if acc.tensor in named:
                per_tensor.append([given])
                continue
            letters, mode = _letters_and_order(given)
            key = (acc.tensor, mode or "")
            if key not in options:
                fmts, m = parse_formats(given)
                options[key] = level_options(layer.tensors[acc.tensor],
                                             m or tuple(range(len(fmts))), letters)
            per_tensor.append([o + (f":{mode}" if mode else "") for o in options[key]])
        for combo in itertools.product(*per_tensor):
            fm = {a.tensor: f for a, f in zip(assign.operands, combo)}
            if fm != c.formats:
                pool.append((work_bound(layer, c.order, fm, locate), rank, len(pool),
                             c.order, fm))
    pool.sort(key=lambda x: x[:3])
    out: list[Candidate] = []
    for *_, order, fm in pool:
        if len(out) >= FORMAT_VARIANTS:
            break
        cand = _legal(layer, assign, parse_order(order, assign), fm)
        if cand.rejected is None:
            out.append(cand)
    return out


# ------------------------------------------------------------------ the probe's sample
def _coords(data: Any, mode: tuple[int, ...]) -> np.ndarray:
    """Nonzero coordinates of ``data`` as rows, columns permuted to storage ``mode`` order."""
    if sp.issparse(data):
        coo = sp.coo_matrix(data)
        pts = np.stack([coo.row, coo.col], axis=1)[coo.data != 0]
    else:
        pts = np.argwhere(np.asarray(data) != 0)
    return pts[:, list(mode)] if pts.size else pts.reshape(0, len(mode))


_PREFIXES: dict[tuple[int, tuple[int, ...]], tuple[Any, list[float]]] = {}
"""Recent :func:`_prefix_counts` by (id of the data, mode), with the data itself (so the id
stays its own while cached): the choice's work bounds ask for the same tensors' counts
hundreds of times (every format variant of every order). Workload tensors are never changed
in place once built."""

PREFIX_CACHE = 64
"""Entries :data:`_PREFIXES` keeps (the oldest go first)."""


def _prefix_counts(data: Any, mode: tuple[int, ...]) -> list[float]:
    """Distinct nonzero coordinate prefixes of ``data`` stored in ``mode`` order, of length
    1, 2, ... (the coordinates a compressed level at that depth stores), outermost first."""
    key = (id(data), tuple(mode))
    hit = _PREFIXES.get(key)
    if hit is not None and hit[0] is data:
        return list(hit[1])
    counts = _count_prefixes(data, mode)
    _PREFIXES[key] = (data, counts)
    while len(_PREFIXES) > PREFIX_CACHE:
        del _PREFIXES[next(iter(_PREFIXES))]
    return list(counts)


def _count_prefixes(data: Any, mode: tuple[int, ...]) -> list[float]:
    """:func:`_prefix_counts` computed."""
    pts = _coords(data, mode)
    shape = _shape(data)
    counts = []
    key = np.zeros(len(pts), dtype=np.int64)
    for lvl in range(len(mode)):
        key = key * shape[mode[lvl]] + pts[:, lvl]      # the prefix as one integer
        counts.append(float(len(pts)) if lvl == len(mode) - 1 else float(len(distinct(key))))
    return counts


def _level_counts(data: Any, fmts: tuple[str, ...], mode: tuple[int, ...],
                  prefixes: list[float] | None = None) -> list[float]:
    """Positions stored at each level (dense: parent positions x extent; compressed and
    bitmap: the distinct nonzero prefixes), outermost first."""
    prefixes = _prefix_counts(data, mode) if prefixes is None else prefixes
    shape = _shape(data)
    counts, prev = [], 1.0
    for lvl, f in enumerate(fmts):
        prev = prev * shape[mode[lvl]] if f == "dense" else prefixes[lvl]
        counts.append(prev)
    return counts


def level_options(data: Any, mode: tuple[int, ...], letters: str) -> list[str]:
    """The level-format letter strings an operand stored in ``mode`` order may take: each
    level compressed, dense where at least ``DENSE_MIN_OCCUPANCY`` of its positions (parent
    positions x extent, with the dense levels above it) hold a coordinate, bitmap where at
    least ``BITMAP_MIN_OCCUPANCY`` do; the given ``letters`` first, then in product order."""
    shape = _shape(data)
    prefixes = _prefix_counts(data, mode)
    out = [letters]
    for combo in itertools.product("sdb", repeat=len(mode)):
        cand = "".join(combo)
        if cand == letters.replace("c", "s"):
            continue
        ok, prev = True, 1.0
        for lvl, ch in enumerate(cand):
            full = prev * shape[mode[lvl]]
            occ = prefixes[lvl] / full if full else 0.0
            if (ch == "d" and occ < DENSE_MIN_OCCUPANCY) or \
                    (ch == "b" and occ < BITMAP_MIN_OCCUPANCY):
                ok = False
                break
            prev = full if ch == "d" else prefixes[lvl]
        if ok:
            out.append(cand)
    return out


def work_bound(layer: Any, order: str, formats: dict[str, str] | None = None,
               locate: bool = True) -> float:
    """A rough count of unit steps of ``order`` (used to size the probe and rank format
    variants): per loop level, the iteration points reaching it times the fiber lengths its
    scanners walk (average lengths, independence assumed), plus a step per repeated
    reference. In an intersection with ``locate`` a dense level met by a compressed one is
    located (a step per coordinate of the shortest walked fiber, compiler.lower), and a
    bitmap level is located when it meets exactly one walked level; a walked bitmap level
    steps per 16-bit mask word."""
    assign = parse_expr(layer.expr)
    seq = parse_order(order, assign)
    formats = formats or formats_for(layer, assign, seq)
    length: dict[tuple[str, str], tuple[float, str, float]] = {}
    for acc in assign.operands:
        fmts, mode = parse_formats(formats[acc.tensor])
        mode = mode or tuple(range(len(fmts)))
        data = layer.tensors[acc.tensor]
        counts = _level_counts(data, fmts, mode)
        prev = 1.0
        for lvl, c in enumerate(counts):
            extent = _shape(data)[mode[lvl]]
            length[(acc.tensor, acc.indices[mode[lvl]])] = (c / prev if prev else 0.0,
                                                            fmts[lvl], extent)
            prev = c
    points, work = 1.0, 0.0
    for v in seq:
        levels = [length[(a.tensor, v)] for a in assign.operands if v in a.indices]
        lacks = sum(v not in a.indices for a in assign.operands)
        walks = [n for n, _, _ in levels]
        if assign.op == "*":
            walked = [n for n, f, _ in levels if f == "compressed"]
            bitmaps = [(n, e) for n, f, e in levels if f == "bitmap"]
            dense = [n for n, f, _ in levels if f == "dense"]
            if locate and walked:
                if len(bitmaps) == 1 and len(walked) == 1:
                    located = len(dense) + 1
                else:
                    walked += [e / BITMAP_WORD_BITS for _, e in bitmaps]
                    located = len(dense)
                work += points * (sum(walked) + min(walked) * located)
            else:
                work += points * sum(e / BITMAP_WORD_BITS if f == "bitmap" else n
                                     for n, f, e in levels)
            points *= min(walks)
        else:
            work += points * sum(walks)
            points *= max(walks)
        work += points * lacks
    return work


def _stride_of(layer: Any, assign: Assignment, legal: list[Candidate]
               ) -> tuple[str, int, int] | None:
    v = assign.operands[0].indices[0]
    n = _shape(layer.tensors[assign.operands[0].tensor])[0]
    worst = max(work_bound(layer, c.order, c.formats) for c in legal)
    if worst <= SCREEN_STEPS or n <= 1:
        return None
    return v, min(n, math.ceil(worst / SCREEN_STEPS)), n


def sample_layer(layer: Any, index: str, stride: int) -> Any:
    """``layer`` keeping every ``stride``-th coordinate of ``index`` in every tensor that has
    it (re-indexed from 0), for the probe."""
    assign = parse_expr(layer.expr)
    tensors = dict(layer.tensors)
    for acc in assign.operands:
        if index not in acc.indices:
            continue
        mode = acc.indices.index(index)
        data = tensors[acc.tensor]
        keep = np.arange(0, _shape(data)[mode], stride)
        if sp.issparse(data):
            csr = sp.csr_matrix(data)
            tensors[acc.tensor] = csr[keep] if mode == 0 else csr[:, keep]
        else:
            tensors[acc.tensor] = np.take(np.asarray(data), keep, axis=mode)
    sizes: dict[str, int] = {}
    for acc in assign.operands:
        sizes.update(zip(acc.indices, _shape(tensors[acc.tensor])))
    return dataclasses.replace(layer, tensors=tensors,
                               out_shape=tuple(sizes[v] for v in assign.out.indices))


def _extrapolate(figures: Callable[[int], np.ndarray], stride: int, n: int) -> np.ndarray:
    """Figures of the whole data from probes on every ``stride``-th and ``2 stride``-th slice:
    a straight line through the two (fixed costs such as configuration and launch do not
    shrink with the sample; the work below the sampled index does), evaluated at the whole
    extent; with one sample size possible, the figures scaled by the sampled fraction."""
    f1 = len(range(0, n, stride)) / n
    a = figures(stride)
    f2 = len(range(0, n, 2 * stride)) / n
    if 2 * stride > n or f2 >= f1:
        return a / f1
    b = figures(2 * stride)
    return np.maximum(a + (a - b) * (1.0 - f1) / (f1 - f2), a)


def spread_calls(n: int, m: int) -> list[int]:
    """``m`` of ``n`` tile calls (positions in schedule order) spread by the golden-ratio
    sequence (k * 0.618... mod 1, scaled to ``n``): evenly over the schedule, and, unlike every
    s-th call, never in step with the tile grid's period (every s-th call of a grid whose
    inner count s divides would see one column of tiles only)."""
    if m >= n:
        return list(range(n))
    return sorted(_golden(n)[:m])


def block_calls(tiling: Any, m: int) -> list[int]:
    """About ``m`` tile calls (positions in schedule order) made of whole output blocks: the
    blocks (tiles sharing an output block, partial sums of one another) picked in
    :func:`spread_calls` order until the next would exceed ``m`` calls (at least one block).
    A partial tile's merge reads its block's earlier sum: sampled without the tiles before
    it in its block it would merge nothing (spmv 3000^2 with j outer: 3 of every 4 tiles
    merge, a spread sample of single tiles almost none)."""
    blocks: dict[tuple[int, ...], list[int]] = {}
    for i, tile in enumerate(tiling.tiles):
        blocks.setdefault(tiling.origin(tile), []).append(i)
    groups = list(blocks.values())
    picked: list[int] = []
    for g in _golden(len(groups)):
        if len(picked) + len(groups[g]) > m:
            break
        picked += groups[g]
    if not picked:      # one block holds more than m calls (a scalar output: all of them)
        return spread_calls(len(tiling.tiles), m)
    return sorted(picked)


def _golden(n: int) -> list[int]:
    """0..n-1 in golden-ratio sequence order (first appearance), :func:`spread_calls`'s."""
    step = (math.sqrt(5.0) - 1.0) / 2.0
    seen: dict[int, None] = {}
    k = 0
    while len(seen) < n:
        seen.setdefault(int((k * step) % 1.0 * n), None)
        k += 1
    return list(seen)


def tile_sample(program: Program, chip: ChipConfig, calls: list[int]) -> Program:
    """Tiled ``program`` with the tile ``calls`` only (positions in its schedule), each with
    the loads, images and partial output it has in the whole schedule; configuration and the
    DMAs of the whole inputs as in the whole program (no calls: those alone)."""
    from compiler.pipeline import emit_program

    tiles = tuple(program.tiling.tiles[i] for i in calls)
    tiling = dataclasses.replace(program.tiling, tiles=tiles)
    return dataclasses.replace(emit_program(program.kernels[0], program.images, chip, tiling),
                               unroll=program.unroll)


def whole_run(program: Program, chip: ChipConfig, estimate: Estimator, work: float
              ) -> tuple[np.ndarray, str]:
    """(cycles, energy, seconds) of ``program`` compiled as the run is (tiled, unrolled), and
    how they were estimated: the whole program run when it is untiled or has at most m tile
    calls; else about m of its n tile calls, whole output blocks (:func:`block_calls`; m =
    the share ``PROBE_STEPS`` / work of the calls (``work``: its work bound), at most
    ``PROBE_CALLS``, or a run of ``pipelined_tiles_per_call`` when pipelined: each tile call
    is a burst run with its own set-up, whatever its work)
    and the program without calls (configuration and the inputs' DMA), the calls' part
    scaled by n / (calls sampled): each call is charged as in the whole schedule (its loads,
    launch, unrolled kernel, and merge into its block's sum of the calls before it)."""
    tiling = program.tiling
    copies = program.unroll.copies if program.unroll is not None else 1
    unit = f"{copies} cop{'y' if copies == 1 else 'ies'}"
    n = len(tiling.tiles) if tiling is not None else 0
    # pipelined: a run's worth of calls at least (a sample pays one run's kernel call and
    # pipeline fill: fewer calls would charge them more often than the whole run does)
    most = max(PROBE_CALLS, chip.controller.pipelined_tiles_per_call) \
        if tiling is not None and tiling.pipelined else PROBE_CALLS
    m = min(most, math.ceil(n * PROBE_STEPS / work)) if work > 0 else most
    if n < 2 or m >= n:
        where = f"{n} tile calls" if tiling is not None else "untiled"
        return np.array(estimate(program, chip), float), f"whole run ({where}, {unit})"
    calls = block_calls(tiling, m)
    if len(calls) >= n:
        return np.array(estimate(program, chip), float), f"whole run ({n} tile calls, {unit})"
    fixed = np.array(estimate(tile_sample(program, chip, []), chip), float)
    part = np.array(estimate(tile_sample(program, chip, calls), chip), float)
    return (fixed + np.maximum(part - fixed, 0.0) * n / len(calls),
            f"{len(calls)} of {n} tile calls ({unit}), scaled to all")


def mode_name(pipelined: bool | None) -> str:
    """A tile-pipelining mode as text."""
    return "untiled" if pipelined is None else "pipelined" if pipelined else "one at a time"


@dataclass(frozen=True)
class ModeRun:
    """A candidate compiled as the run is in one tile-pipelining mode, and its estimate."""

    program: Program
    estimate: Estimate
    how: str

    @property
    def pipelined(self) -> bool | None:
        """The mode (None: untiled, one kernel call)."""
        return self.program.tiling.pipelined if self.program.tiling is not None else None


def in_modes(layer: Any, chip: ChipConfig, estimate: Estimator,
             compile_fn: Callable[[Any, ChipConfig], Program], work: float,
             screen: tuple[Estimate, bool | None, str] | None = None) -> list[ModeRun]:
    """``layer`` (its order and formats set) compiled for ``chip`` as the run is, in each
    tile-pipelining mode ``controller.tile_pipelining`` allows (:func:`compiler.tiling.modes`;
    a kernel untiled in full MEM tiles is one call: one program), each estimated on its whole
    run (:func:`whole_run`; ``work``: the one-copy work bound). ``screen``: the screen's
    estimate of the whole data as one copy, the mode it compiled (the tiler's static pick) and
    how it ran, reused for the program that is the same (one copy, that mode)."""
    out: list[ModeRun] = []
    for mode in modes(chip):
        at = with_pipelining(chip, mode)
        program = compile_fn(layer, at)
        copies = program.unroll.copies if program.unroll is not None else 1
        pipelined = program.tiling.pipelined if program.tiling is not None else None
        if screen is not None and copies == 1 and pipelined == screen[1]:
            out.append(ModeRun(program, screen[0], f"{screen[2]}: the screen's run"))
        else:
            got, how = whole_run(program, at, estimate, work)
            out.append(ModeRun(program, Estimate(*map(float, got)), how))
        if pipelined is None:
            break               # fits untiled: no mode to choose
    return out


def best_mode(runs: list[ModeRun], objective: str) -> tuple[ModeRun, Estimate | None]:
    """The run of least ``objective`` (ties: the earlier, one tile at a time) and the other
    mode's estimate (None: one mode)."""
    best = min(runs, key=lambda r: r.estimate.value(objective))
    others = [r.estimate for r in runs if r is not best]
    return best, (others[0] if others else None)


def choose_order(layer: Any, chip: ChipConfig, estimate: Estimator | None,
                 compile_fn: Callable[[Any, ChipConfig], Program] | None = None,
                 *, probe_forced: bool = False) -> OrderChoice:
    """Enumerate ``layer``'s loop orders and operand level formats (:func:`format_variants`),
    screen the legal candidates with ``estimate``, estimate the ``FINALISTS`` best on the
    whole run (:func:`whole_run`) and pick the least ``chip.compiler.objective`` of those (its
    order and formats: :meth:`OrderChoice.apply`; its program: ``OrderChoice.program``).

    A layer with a loop order (``-p order=``) keeps it and its given formats (``forced``);
    its candidates are probed only with ``probe_forced`` (``sieve compile --explain``).
    Without an estimator, or with one legal candidate, the first legal order is chosen
    unprobed with the given formats. A candidate whose
    probe does not place, route or run (CompileError, SimulationError: e.g. a deadlock) is
    listed as rejected by the probe (a finalist's whole run too: the next screened one is
    estimated in its place).
    Raises: CompileError when no order lowers (the first candidate's reason) or the inputs
    exceed the global buffer; the first probe's error when no candidate could be probed.
    """
    from compiler.pipeline import build_images, check_glb, compile_layer

    compile_fn = compile_fn or compile_layer
    objective = chip.compiler.objective
    real = chip
    # the screen probes one copy of each graph: an unrolled probe costs several times the CPU
    # time of a one-copy one (the finalists are compiled and estimated as the run is)
    chip = dataclasses.replace(chip, compiler=dataclasses.replace(chip.compiler, unroll=1))
    cands = enumerate_orders(layer)
    legal = [c for c in cands if c.rejected is None]
    forced = layer.order not in (None, "")
    if not legal:
        raise CompileError(f"lower: {layer.expr}: no loop order lowers ({cands[0].order}: "
                           f"{cands[0].rejected})")
    if forced:
        order = _text(parse_order(layer.order, parse_expr(layer.expr)))
    else:
        order = legal[0].order
    probe = estimate is not None and (probe_forced or not forced)
    variants = format_variants(layer, legal, chip.compiler.locate) if probe else []
    if not probe or len(legal) + len(variants) <= 1:
        choice = OrderChoice(objective, tuple(cands), order, forced, None)
        if estimate is None or len(modes(real)) < 2:
            return choice
        # controller.tile_pipelining auto: the one order's mode, estimated in both
        run, other = best_mode(in_modes(choice.apply(layer), real, estimate, compile_fn,
                                        work_bound(layer, order, None, real.compiler.locate)),
                               objective)
        return dataclasses.replace(choice, program=run.program,
                                   modes=_mode_figures(run, other))
    assert estimate is not None
    # the whole problem must fit before its samples are probed (the same error as compiling it)
    check_glb(build_images(with_order(layer, legal[0].order))[0], chip)
    assign = parse_expr(layer.expr)
    sample = _stride_of(layer, assign, legal + variants)
    done: list[Candidate] = []
    failed: list[Exception] = []
    screen_modes: dict[int, tuple[bool | None, str]] = {}
    by_order: dict[str, list[Candidate]] = {}
    for v in variants:
        by_order.setdefault(v.order, []).append(v)
    listed = [x for c in cands for x in [c, *by_order.get(c.order, [])]]
    for c in listed:
        if c.rejected is not None:
            done.append(c)
            continue

        try:
            got = _screen(layer, c, chip, estimate, compile_fn, sample, screen_modes, len(done))
        except (CompileError, SimulationError) as exc:   # does not place, route or run
            done.append(dataclasses.replace(c, rejected=f"probe: {exc}"))
            failed.append(exc)
            continue
        done.append(dataclasses.replace(c, estimate=Estimate(*map(float, got))))
    if not any(c.estimate is not None for c in done):
        raise failed[0]
    best, program = _finalists(layer, done, real, estimate, compile_fn,
                               screen_modes if sample is None else None, failed)
    if not any(c.estimate is not None for c in done):
        raise failed[0]         # no candidate compiles and runs as the run would: its error
    assert best is not None     # a finalist that ran kept its estimate (checked above)
    if forced:
        choice = OrderChoice(objective, tuple(done), order, forced, sample)
        if len(modes(real)) < 2:
            return choice
        run, other = best_mode(in_modes(layer, real, estimate, compile_fn,
                                        work_bound(layer, order, None, real.compiler.locate)),
                               objective)
        return dataclasses.replace(choice, program=run.program, modes=_mode_figures(run, other))
    c = done[best]
    return OrderChoice(objective, tuple(done), c.order, forced, sample, c.formats, program,
                       _mode_figures_of(c))


def _screen(layer: Any, c: Candidate, chip: ChipConfig, estimate: Estimator,
            compile_fn: Callable[[Any, ChipConfig], Program], sample: tuple[str, int, int] | None,
            screen_modes: dict[int, tuple[bool | None, str]], at: int) -> np.ndarray:
    """The screen's figures of candidate ``c`` (one copy, on the data or extrapolated from
    ``sample``), in each tile-pipelining mode ``chip`` allows, the better by the objective
    (a candidate good in one mode only must reach the finalists); a sample too is cut into
    tiles, of which at most ``PROBE_CALLS`` are run. Records in ``screen_modes[at]``, when the
    screen ran the whole data, the chosen mode's and how it was estimated."""
    objective = chip.compiler.objective
    best: tuple[float, np.ndarray, tuple[bool | None, str] | None] | None = None
    for mode in modes(chip):
        at_chip = with_pipelining(chip, mode)
        seen: dict[str, Any] = {"tiled": False, "whole": None}

        def figures(stride: int, at_chip: ChipConfig = at_chip,
                    seen: dict[str, Any] = seen) -> np.ndarray:
            part = layer if stride == 1 else sample_layer(layer, sample[0], stride)  # type: ignore
            program = compile_fn(with_formats(part, c.order, c.formats), at_chip)
            seen["tiled"] = seen["tiled"] or program.tiling is not None
            got, how = whole_run(program, at_chip, estimate, 0.0)
            if stride == 1:
                seen["whole"] = (program.tiling.pipelined if program.tiling is not None
                                 else None, how)
            return got

        got = figures(1) if sample is None else _extrapolate(figures, sample[1], sample[2])
        value = Estimate(*map(float, got)).value(objective)
        if best is None or value < best[0]:
            best = (value, got, seen["whole"])
        if not seen["tiled"]:
            break               # untiled in full MEM tiles: no mode to choose
    assert best is not None
    if best[2] is not None:
        screen_modes[at] = best[2]
    return best[1]


def _mode_figures(run: ModeRun, other: Estimate | None) -> tuple[tuple[bool, Estimate], ...]:
    """The chosen program's mode and estimate first, then the other mode's (auto; a tiled
    kernel); () for an untiled one."""
    if run.pipelined is None:
        return ()
    return ((run.pipelined, run.estimate),) + (
        ((not run.pipelined, other),) if other is not None else ())


def _mode_figures_of(c: Candidate) -> tuple[tuple[bool, Estimate], ...]:
    """:func:`_mode_figures` of a finalist."""
    if c.pipelined is None or c.estimate is None:
        return ()
    return ((c.pipelined, c.estimate),) + (
        ((not c.pipelined, c.other),) if c.other is not None else ())


def _finalists(layer: Any, done: list[Candidate], chip: ChipConfig, estimate: Estimator,
               compile_fn: Callable[[Any, ChipConfig], Program],
               screen_modes: dict[int, tuple[bool | None, str]] | None,
               failed: list[Exception]) -> tuple[int | None, Program | None]:
    """Estimate the ``FINALISTS`` best screened candidates of ``done`` (in place) on their
    whole run (:func:`whole_run`), compiled for ``chip`` as the run is, in each
    tile-pipelining mode the chip allows (:func:`in_modes`: both with ``auto``, the better
    kept); returns the best finalist (position in ``done``; ties: the earlier) and its
    program (only that one is kept: a program holds every tile's images). ``screen_modes``:
    when the screen ran the whole data, the mode of each candidate's screen program and how
    it was estimated (a finalist compiled the same, one copy in that mode, keeps the screen's
    figures). One whose compile or run fails is rejected (its error appended to ``failed``)
    and the next screened candidate takes its place."""
    objective = chip.compiler.objective
    ranked = sorted((i for i, c in enumerate(done) if c.estimate is not None),
                    key=lambda i: (done[i].estimate.value(objective), i))  # type: ignore
    best: tuple[float, int] | None = None
    kept: Program | None = None
    count = 0
    errors: list[Exception] = []
    for i in ranked:
        if count >= FINALISTS:
            break
        c = done[i]
        assert c.estimate is not None
        screen = ((c.estimate, *screen_modes[i]) if screen_modes is not None
                  and i in screen_modes else None)
        try:
            runs = in_modes(with_formats(layer, c.order, c.formats), chip, estimate,
                            compile_fn, work_bound(layer, c.order, c.formats,
                                                   chip.compiler.locate), screen)
        except (CompileError, SimulationError) as exc:   # does not place, route or run
            done[i] = dataclasses.replace(c, estimate=None, screen=c.estimate,
                                          rejected=f"probe: whole run: {exc}")
            errors.append(exc)
            continue
        run, other = best_mode(runs, objective)
        done[i] = dataclasses.replace(c, estimate=run.estimate, screen=c.estimate, how=run.how,
                                      pipelined=run.pipelined, other=other)
        count += 1
        if best is None or (run.estimate.value(objective), i) < best:
            best, kept = (run.estimate.value(objective), i), run.program
    failed[:0] = errors         # the run's own errors first
    return (best[1] if best is not None else None), kept
