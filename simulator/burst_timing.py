"""The burst engine's timing solver: the cycle engine's rules as max-plus recurrences.

Step f of a unit happens at t[f] = max(t[f-1] + 1, c[f]) where c[f] is the latest of the
arrival of every head it peeked (put + latency) and the room in every output it writes (pop
of the token ``depth`` places earlier, + 1). For fixed c this is t = f + cummax(c - f). The
arrivals come from producers earlier in topological order; the room terms from consumers
later in it, so the pass is repeated (Gauss-Seidel) until no time changes: the least fixed
point, which is exactly the schedule the cycle engine's as-soon-as-possible processes produce.
The firing tables it reads are ``simulator.burst_fire``'s.

The steps are solved in windows, in order (``solve_times``): each window is a downset of the
step dependency graph whose sources outside it are final, so its sweeps settle in a few rounds
however many back-pressure stalls the whole run has, the work stays linear in the steps and
the memory per window is bounded. Terms another term implies are dropped before solving
(``_prune``), nearly dense constraints are read as contiguous runs (``_fill``), and a sweep
recomputes a unit only from the first step a changed term exceeds (``_solve_window``). A
window whose sweeps do not settle keeps the steps whose equations already hold (a downset of
them is exact: ``_holding``, ``_downset``); if that is less than half of it (a tight loop,
one sweep per turn), the rest is solved in one pass (``burst_loop.dijkstra_window``: its longest
paths by scipy's Dijkstra over a DFS potential; the Python walk where it holds a cycle). A run in
which no window can take a step is a deadlock, checked then (and only then) and reported
with the units caught in it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.program import Kernel, Node
from simulator.burst_fire import I64, Firing
from simulator.burst_loop import dijkstra_window
from simulator.engine_cycle import channel_shape

if TYPE_CHECKING:
    from simulator.burst_batch import Batch

SWEEP_BUDGET = 8    # sweeps a window may take before the part that holds is kept (or walked);
# 32 until issue 11's sixth pass: a tight loop's first window spent them settling nothing
# (unbalanced SpM*SpM about 10% faster at 8, balanced 1-30% within the runs' spread)
PROBE_BUDGET = 4     # the same, for the window after one that needed it
PROBE_EVERY = 4      # after walked windows in a row, only every this many is probed
SEQUENTIAL_MIN_WINDOW = 1 << 16   # windows solved step by step shrink no further (each
# costs about a millisecond besides its steps: the downset cut, the probe sweeps, the set-up)
# and one more than twice as large is cut to this size before its walk (memory)
GROW_SWEEPS = 8       # a window that settled within this many sweeps: the next one doubles
MAX_WINDOW = 1 << 20  # ... up to this many steps (the memory a window's sweeps hold)
SHRINK_SWEEPS = 8     # one that needed more: the next one halves


@dataclass
class _Constraint:
    """t[dst][targets] >= t[src][index] + weight, precomputed once per edge."""

    src: str
    index: np.ndarray
    targets: np.ndarray | None      # None: every step of the destination, in order
    weight: int
    increasing: bool = False        # index strictly increasing already (no ``_prune``)


def _constraints(kernel: Kernel, firings: dict[str, Firing], chip: ChipConfig
                 ) -> dict[str, list[_Constraint]]:
    """Arrival (emit -> peek, + latency) and room (pop -> emit depth later, + 1) terms per
    unit. A scanner's crd and ref streams share their steps, so identical terms are merged.
    A unit peeking one head over several steps (in order) keeps the first peek only: the
    others are implied (``_prune``), and are dropped before their emit steps are looked up."""
    out: dict[str, list[_Constraint]] = {n.id: [] for n in kernel.nodes}
    seen: set[tuple] = set()

    def add(dst: str, src: str, index: np.ndarray, targets: np.ndarray, weight: int,
            increasing: bool = False) -> None:
        n = firings[dst].n
        full = len(targets) == n and targets[0] == 0 and targets[-1] == n - 1
        out[dst].append(_Constraint(src, index, None if full else targets, weight, increasing))

    for e in kernel.edges:
        depth, latency = channel_shape(e, chip)
        es = firings[e.src].emits[e.src_port]
        fd = firings[e.dst]
        if e.dst_port in fd.dense:
            # every step peeks the head: token k is first peeked the step after token k-1
            # is popped (the first one at step 0), which implies the other peeks
            pops = fd.pops[e.dst_port]
            key = ("arrive", e.src, id(es), e.dst, id(pops), latency)
            if key not in seen and len(pops):
                seen.add(key)
                first = np.empty(len(pops), I64)
                first[0] = 0
                np.add(pops[:-1], 1, out=first[1:])
                add(e.dst, e.src, es[:len(pops)], first, latency, True)
            ps = pops[:0]       # the arrival terms are done
        else:
            ps, pt = fd.peeks[e.dst_port]
            key = ("arrive", e.src, id(es), e.dst, id(ps), id(pt), latency)
        if key not in seen and len(ps):
            seen.add(key)
            # the peeks are in step order and a head never moves back (a firing table's
            # invariants, checked against every opcode's behaviour in tests/test_burst.py):
            # the first peek of each token is where the token index grows
            ps, pt = first_peeks(ps, pt)
            add(e.dst, e.src, es[pt], ps, latency, True)
        key = ("room", e.dst, id(firings[e.dst].pops[e.dst_port]), e.src, id(es), depth)
        if len(es) > depth and key not in seen:
            seen.add(key)
            pops = firings[e.dst].pops[e.dst_port]
            add(e.src, e.dst, pops[: len(es) - depth], es[depth:], 1)
    return out


def first_peeks(steps: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (step, token) peeks that read a token for the first time: with the peeks in step
    order and a head that never moves back, where the token index grows."""
    if len(tokens) > 1:
        later = tokens[1:] > tokens[:-1]
        if not later.all():
            keep = np.empty(len(tokens), dtype=bool)
            keep[0] = True
            keep[1:] = later
            return steps[keep], tokens[keep]
    return steps, tokens


@dataclass
class SolveStats:
    """How the timing solver converged: the windows it solved in order, the Gauss-Seidel
    sweeps over them (in total and at most in one window), unit recomputations, the
    windows solved in one pass (``burst_loop.dijkstra_window``) and the unsettled windows whose
    steps that hold were kept (``partial``)."""

    windows: int
    sweeps: int
    max_sweeps: int
    recomputed: dict[str, int]
    sequential: int = 0
    partial: int = 0


@dataclass
class _Dep:
    """One constraint in the solver's form: ``t[u][targets] >= t[src][index] + weight`` with
    ``src`` a unit's position in topological order, ``targets`` sorted (None: every step
    from ``first`` on, in order) and ``index`` increasing (``_prune``; ``_fill`` repeats
    some), so the steps whose sources are all final is one ``searchsorted``."""

    src: int
    index: np.ndarray
    targets: np.ndarray | None
    weight: int | np.ndarray    # an array (one per term, like index): batched copies only
    first: int = 0

    def limit(self, ready: int) -> int:
        """The first target step that needs a step of ``src`` at or past ``ready``."""
        k = int(self.index.searchsorted(ready))
        if k == len(self.index):
            return 1 << 62
        return self.first + k if self.targets is None else int(self.targets[k])

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """The positions of this constraint's targets in the step range [lo, hi)."""
        if self.targets is None:
            return max(lo - self.first, 0), max(hi - self.first, 0)
        return (int(np.searchsorted(self.targets, lo, side="left")),
                int(np.searchsorted(self.targets, hi, side="left")))

    def steps(self, k0: int, k1: int) -> np.ndarray:
        """The target steps of the positions [k0, k1)."""
        if self.targets is None:
            return np.arange(self.first + k0, self.first + k1, dtype=I64)
        return self.targets[k0:k1]


def _prune(index: np.ndarray, targets: np.ndarray | None, n: int
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Drop the terms another term of the same constraint implies. With targets sorted, a
    term (target f, source step g) is implied by an earlier term (f' <= f, g' >= g): every
    solution has t[f] >= t[f'] + (f - f') and t_src[g'] >= t_src[g] + (g' - g), and both
    terms carry the same weight. So only the terms whose index exceeds every earlier one are
    kept: a joiner peeking the same head over many steps, or a repeater reading one
    reference for a whole fiber, keeps one term per head. What remains has a strictly
    increasing index."""
    if len(index) < 2:
        return index, targets
    keep = np.empty(len(index), dtype=bool)
    keep[0] = True
    np.greater(index[1:], index[:-1], out=keep[1:])
    if keep[1:].all():
        return index, targets
    if bool((index[1:] < index[:-1]).any()):
        # not in order (a unit reading its tokens in order never gets here): running max
        np.greater(index[1:], np.maximum.accumulate(index)[:-1], out=keep[1:])
    if targets is None:
        targets = np.arange(n, dtype=I64)
    return index[keep], targets[keep]


def _fill(index: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """A constraint's terms at the sorted positions ``pos`` (of ``n`` steps) as one term per
    position from ``pos[0]`` on, each step without a term of its own taking the previous
    one's source step: implied (t[f] >= t[f'] + (f - f') for f' < f), so the solution is
    the same."""
    if int(pos[-1]) - int(pos[0]) + 1 == len(pos) == n - int(pos[0]):
        return index        # a term at every step already
    counts = np.empty(len(pos), dtype=I64)
    np.subtract(pos[1:], pos[:-1], out=counts[:-1])
    counts[-1] = n - pos[-1]
    return np.repeat(index, counts)


SEGMENT = 1 << 34   # added per copy to a batched unit's chain, so no running maximum
# crosses from one copy into the next (times stay below 2^31: the watchdog)


def _fill_w(index: np.ndarray, weight: int | np.ndarray, pos: np.ndarray, n: int,
            bounds: np.ndarray, dtype: type) -> tuple[np.ndarray, int | np.ndarray]:
    """``_fill`` for a batched unit (``simulator.burst_batch``): its weights filled alike,
    and the steps of a copy before that copy's first term (``bounds``: the copies' first
    steps, in the frame of ``pos``), which would take a term of the previous copy, given a
    weight so low (the dtype's minimum + 1) that the term never binds."""
    p0 = int(pos[0])
    if int(pos[-1]) - p0 + 1 == len(pos) == n - p0:
        return index, weight
    counts = np.empty(len(pos), dtype=I64)
    np.subtract(pos[1:], pos[:-1], out=counts[:-1])
    counts[-1] = n - pos[-1]
    out = np.repeat(index, counts)
    # the copies starting inside the run without a term at their first step
    inner = bounds[(bounds > p0) & (bounds < n)]
    at = pos.searchsorted(inner)
    gap = at == len(pos)
    gap[~gap] = pos[at[~gap]] != inner[~gap]
    w = np.repeat(weight, counts) if isinstance(weight, np.ndarray) else weight
    if gap.any():
        if not isinstance(w, np.ndarray):
            w = np.full(len(out), weight, dtype)
        low = np.iinfo(dtype).min + 1
        for s, j in zip(inner[gap].tolist(), at[gap].tolist(), strict=True):
            w[s - p0:(int(pos[j]) if j < len(pos) else n) - p0] = low
    return out, w


def _deps(kernel: Kernel, firings: dict[str, Firing], order: list[Node], chip: ChipConfig
          ) -> list[list[_Dep]]:
    """Every unit's constraints (``_constraints``) with sorted targets, pruned (``_prune``)."""
    pos = {n.id: k for k, n in enumerate(order)}
    out: list[list[_Dep]] = []
    cons = _constraints(kernel, firings, chip)
    for node in order:
        deps = []
        for con in cons[node.id]:
            # targets are steps that peek or emit, in step order (firing table invariants)
            index = np.asarray(con.index, dtype=I64)
            targets = None if con.targets is None else np.asarray(con.targets, dtype=I64)
            deps.append(_as_dep(pos[con.src], index, targets, con.weight, con.increasing,
                                firings[node.id].n))
        out.append(deps)
    return out


def _as_dep(src: int, index: np.ndarray, targets: np.ndarray | None,
            weight: int | np.ndarray, increasing: bool, n: int,
            bounds: np.ndarray | None = None, dtype: type = np.int32) -> _Dep:
    """A constraint of a unit of ``n`` steps in the solver's form: its targets None when
    they are every step, pruned (``_prune``) unless its index increases already, and one
    filled run (``_fill``) from its first target when nearly every step from there has a
    term. ``bounds`` (a batched unit, ``simulator.burst_batch``): its copies' first steps;
    the run is then filled per copy (``_fill_w``, weights of ``dtype``)."""
    if targets is not None and len(targets) == n and targets[0] == 0 and targets[-1] == n - 1:
        targets = None
    if not increasing:
        index, targets = _prune(index, targets, n)
    if targets is None or 10 * len(targets) < 9 * (n - int(targets[0])):
        return _Dep(src, index, targets, weight)
    first = int(targets[0])
    if bounds is None:
        return _Dep(src, _fill(index, targets - first, n - first), None, weight, first)
    fi, fw = _fill_w(index, weight, targets - first, n - first, bounds - first, dtype)
    return _Dep(src, fi, None, fw, first)


def solve_times(kernel: Kernel, firings: dict[str, Firing], order: list[Node],
                chip: ChipConfig, *, window: int = 1 << 19, batch: Batch | None = None
                ) -> tuple[dict[str, np.ndarray], SolveStats]:
    """Least fixed point of the max-plus timing recurrences, solved window by window.

    Every unit's steps are final up to ``done[u]``. A window is the largest set of the next
    steps (at most about ``window`` in all, shared among the units in proportion to their
    steps) whose constraints reach only final steps or steps in the window: a downset of the
    step dependency graph, found by shrinking a proposed cut with one ``searchsorted`` per
    constraint until it holds. Its times are solved by Gauss-Seidel sweeps in topological
    order, recomputing only the units whose sources changed, until no time changes: a DAG
    with fixed inputs has exactly one fixed point, so the result is exact. A back-pressure
    loop that stalls the whole pipeline once per fiber costs one sweep per stall, so a window
    holds only a few of them: the window grows while its sweeps settle quickly and shrinks
    when they do not, keeping the work linear in the steps. A window that has not settled
    in ``SWEEP_BUDGET`` sweeps keeps its steps whose equations t[f] = max(t[f-1] + 1, terms)
    already hold, cut to a downset (``_downset``): with every step it reads final or in it,
    a DAG has one solution there, so those times are exact. A slow stretch at the end of a
    window (back-pressure from the output arbiters, a few turns) thus costs only its own
    steps again. A tight loop, whose binding constraint alternates between two units every
    few tokens (an unbalanced reconvergent path), needs a sweep per turn however small the
    window: where less than half of the window holds, its rest is solved in one pass, its
    longest paths (``burst_loop.dijkstra_window``, about 0.4 us a step), and the next
    window gets only ``PROBE_BUDGET`` sweeps; after walked windows in a row, only every
    ``PROBE_EVERY``-th is probed (the others are walked at once: a loop that stays tight).

    A window that cannot take a single step means the next step of every unfinished unit
    waits for a step that is not final, which (finitely many units) closes a cycle: a
    deadlock, reported with the units caught in it, as the cycle engine would.
    ``batch`` (``simulator.burst_batch``, which calls this): solve its batched units (an
    unrolled kernel's copies of a unit as one) instead; the result is then per batched unit,
    and an error names no real unit (the caller solves again without it to report one).
    Returns (step times per unit, solver statistics).
    Raises: SimulationError for a deadlock or the watchdog (``sim.max_cycles``).
    """
    if batch is None:
        deps = _deps(kernel, firings, order, chip)
        ids = [n.id for n in order]
        sizes = [firings[u].n for u in ids]
        segs: list[np.ndarray | None] | None = None
        labels = [f"{n.op.value} {n.id}" for n in order]
        walker = dijkstra_window
    else:
        deps, ids, sizes, segs = batch.deps, batch.ids, batch.sizes, batch.segs
        labels = [f"batched {u}" for u in ids]
        walker = batch.walk
    total = max(sum(sizes), 1)
    readers: list[list[int]] = [[] for _ in ids]
    for u, lst in enumerate(deps):
        for d in lst:
            if u not in readers[d.src]:
                readers[d.src].append(u)
    # int32 cycles halve the memory traffic; the watchdog (sim.max_cycles) bounds every time
    limit = chip.sim.max_cycles
    tdtype = np.int32 if limit < 2**31 - 2**24 else I64
    times = [np.zeros(n, tdtype) for n in sizes]
    done = [0] * len(ids)
    recomputed = [0] * len(ids)
    windows = sweeps = most = 0
    want = max(int(window), 1)
    budget = SWEEP_BUDGET
    sequential = partial = walked = 0
    checked = []

    def check() -> None:
        """A window whose sweeps do not settle may hold a cycle of steps (a deadlock): look
        for one once, over the whole step graph."""
        if not checked and batch is None:
            checked.append(True)
            _check_deadlock(kernel, firings, order,
                            {e.name: channel_shape(e, chip) for e in kernel.edges})

    while True:
        open_units = [u for u in range(len(ids)) if done[u] < sizes[u]]
        if not open_units:
            break
        # propose a cut in proportion to each unit's steps, then shrink it to a downset
        hi = list(done)
        for u in open_units:
            hi[u] = min(sizes[u], done[u] + 1 + (sizes[u] * want) // total)
        _downset(deps, readers, hi, done, open_units)
        active = [u for u in open_units if hi[u] > done[u]]
        if not active:
            check()
            stuck = "\n".join(f"  {labels[u]}: blocked from its step "
                               f"{done[u]} of {sizes[u]}" for u in open_units)
            raise SimulationError(f"deadlock in {kernel.name}: no unit can make progress:\n"
                                  + stuck)
        if budget:
            n_sweeps, settled, holds = _solve_window(deps, readers, times, done, hi, active,
                                                     recomputed, budget, segs)
        else:       # a tight loop goes on: no sweeps, the window is walked
            n_sweeps, settled, holds = 0, False, list(done)
        sweeps += n_sweeps
        most = max(most, n_sweeps)
        size = sum(hi[u] - done[u] for u in active)
        if not settled:
            # the downset of steps whose equations hold (and all they read) is exact: a DAG
            # with exact inputs has one solution; it is kept, whatever happens to the rest
            held = list(done)
            for u in active:
                held[u] = holds[u]
            _downset(deps, readers, held, done, active)
            kept = sum(held[u] - done[u] for u in active)
            partial += int(kept > 0)
            if 2 * kept >= size:
                # most of the window settled (a few slow turns at its end): keep that part
                # (counted as more than SHRINK_SWEEPS: the next window halves)
                hi, settled, n_sweeps = held, True, max(budget, SHRINK_SWEEPS + 1)
            elif size > 2 * SEQUENTIAL_MIN_WINDOW and want > SEQUENTIAL_MIN_WINDOW:
                # the one-pass solve holds about 220 bytes a step: it takes a smaller
                # window from where the held steps end (the sweeps' times there are lower
                # bounds, overwritten). Once at the floor it walks what it is given (a
                # window has a step per open unit: more units than twice the floor would
                # propose too large a window again and again)
                _accept(kernel, labels, times, done, held, active, limit, segs)
                want, budget = SEQUENTIAL_MIN_WINDOW, 0
                continue
            else:
                # a tight back-pressure loop (binding constraints alternate between units
                # every few tokens): one sweep per turn of the loop, so the rest of the
                # window is solved in order
                walk = [u for u in active if hi[u] > held[u]]
                if not walker(deps, times, held, hi, walk):
                    check()
                    raise SimulationError(f"deadlock in {kernel.name}: no unit can make "
                                          "progress")
                sequential += 1
        walked = 0 if settled else walked + 1
        budget = SWEEP_BUDGET if settled else PROBE_BUDGET if walked % PROBE_EVERY == 0 else 0
        windows += 1
        _accept(kernel, labels, times, done, hi, active, limit, segs)
        if settled and n_sweeps <= GROW_SWEEPS:
            want = min(2 * want, max(MAX_WINDOW, want))
        elif (n_sweeps > SHRINK_SWEEPS) if settled else (want > SEQUENTIAL_MIN_WINDOW):
            want = max(want // 2, 256)
    return ({u: t for u, t in zip(ids, times)},
            SolveStats(windows, sweeps, most, dict(zip(ids, recomputed)), sequential,
                       partial))


def _downset(deps: list[list[_Dep]], readers: list[list[int]], hi: list[int],
             done: list[int], units: list[int]) -> None:
    """Shrink ``hi`` (per unit, at least ``done``) to the largest downset of the step graph
    below it: every step below ``hi[u]`` reads only steps below its sources' ``hi``. A
    worklist: a unit is looked at again only when a unit it reads was cut (the result is
    the same whatever the order)."""
    queue = deque(units)
    queued = [False] * len(hi)
    for u in units:
        queued[u] = True
    while queue:
        u = queue.popleft()
        queued[u] = False
        cut = hi[u]
        for d in deps[u]:
            cut = min(cut, d.limit(hi[d.src]))
        if cut < hi[u]:
            hi[u] = max(cut, done[u])
            for r in readers[u]:
                if not queued[r] and hi[r] > done[r]:
                    queued[r] = True
                    queue.append(r)


def _accept(kernel: Kernel, labels: list[str], times: list[np.ndarray], done: list[int],
            hi: list[int], units: list[int], limit: int,
            segs: list[np.ndarray | None] | None = None) -> None:
    """Make the steps below ``hi`` final (``done``), checking the watchdog (on every copy of
    a batched unit: its latest time in the window)."""
    for u in units:
        if hi[u] > done[u]:
            late = (int(times[u][hi[u] - 1]) if segs is None or segs[u] is None
                    else int(times[u][done[u]:hi[u]].max()))
            if late >= limit:
                raise SimulationError(
                    f"watchdog: {labels[u]} in {kernel.name} would run "
                    f"past sim.max_cycles={limit} (burst engine)")
            done[u] = hi[u]


def _solve_window(deps: list[list[_Dep]], readers: list[list[int]], times: list[np.ndarray],
                  lo: list[int], hi: list[int], active: list[int], recomputed: list[int],
                  budget: int, segs: list[np.ndarray | None] | None = None
                  ) -> tuple[int, bool, list[int]]:
    """Gauss-Seidel sweeps over the steps [lo[u], hi[u]) of the active units (a downset
    whose outside sources are final), alternately in and against topological order (room
    terms travel up the pipeline in one backward sweep), until no time changes or
    ``budget`` sweeps have run; returns (sweeps, settled, per unit the first step whose
    equation may not hold: ``hi`` if settled, else ``_holding``).

    A constraint whose targets are at least a quarter of the steps from its first one on
    is read as a contiguous run (``_fill``): gathering the few implied terms costs less
    than scattering the sparse ones.

    ``segs`` (batched copies, ``simulator.burst_batch``): per unit None or its copies'
    first steps (and its size last); a batched unit's chain restarts at each copy: its
    running maximum runs over c - f + SEGMENT * (copy), whose later copies lie above every
    earlier one, and its first window step is chained to the previous step only within a
    copy. The running maximum is taken in place in the times' dtype, with a per-copy
    offset chosen to fit it, while the terms are small enough (a run's times below about
    2^31 / copies); otherwise in an int64 temporary with ``SEGMENT``. Weights may be
    arrays (one per term)."""
    plan = []
    dtype = times[active[0]].dtype
    # batched units: (the window's ramp f - size * copy, its first step starts a copy, the
    # size, each step's copy)
    ramps: dict[int, tuple[np.ndarray, bool, int, np.ndarray]] = {}
    for u in active:
        a, b = lo[u], hi[u]
        bounds = None
        if segs is not None and segs[u] is not None:
            st = segs[u]
            k = int(st.searchsorted(a, side="right"))
            bounds = st[k:int(st.searchsorted(b))] - a
            cid = np.searchsorted(bounds, np.arange(b - a), side="right").astype(dtype)
            size = int(np.iinfo(dtype).max) // (len(bounds) + 2)
            sr = np.arange(b - a, dtype=dtype)
            sr -= cid * size
            ramps[u] = (sr, int(st[k - 1]) == a, size, cid)
        terms = []
        for d in deps[u]:
            k0, k1 = d.span(a, b)
            if k1 <= k0:
                continue
            idx = d.index[k0:k1]
            w = d.weight if not isinstance(d.weight, np.ndarray) else d.weight[k0:k1]
            if d.targets is None:
                terms.append((d.src, idx, None, d.first + k0 - a, w))
                continue
            pos = d.targets[k0:k1] - a
            if 4 * len(pos) >= b - a - int(pos[0]):
                if bounds is None:
                    terms.append((d.src, _fill(idx, pos, b - a), None, int(pos[0]), w))
                else:
                    fi, fw = _fill_w(idx, w, pos, b - a, bounds, dtype)
                    terms.append((d.src, fi, None, int(pos[0]), fw))
            else:
                terms.append((d.src, idx, pos, 0, w))
        plan.append((u, a, b, terms))
    ramp = np.arange(max(hi[u] - lo[u] for u in active), dtype=dtype)
    inside = set(active)
    # dirty: unit -> {source unit: its first step that changed since this unit was
    # computed} (None: not computed in this window yet, its times are placeholders);
    # maxima: unit -> the maximum of its terms, kept between its recomputations, which then
    # gather only the terms that read a changed step
    dirty: dict[int, dict[int, int] | None] = {u: None for u in active}
    maxima: dict[int, np.ndarray] = {}
    for sweep in range(1, budget + 1):
        for u, a, b, terms in (plan if sweep % 2 else reversed(plan)):
            if u not in dirty:
                continue
            changed = dirty.pop(u)
            recomputed[u] += 1
            c = maxima.get(u)
            fresh = c is None
            touched = b - a         # the first window position a gathered term reached
            for src, idx, pos, off, w in terms:
                k = 0
                end = len(idx)
                if changed is not None:
                    g = changed.get(src)
                    if g is None:
                        continue
                    k = int(idx.searchsorted(g))
                    if k == end:
                        continue
                elif src in dirty and dirty[src] is None:
                    # its window steps are placeholders: only the terms reading its final
                    # steps now, the rest once it is computed (its readers are then
                    # told that its steps changed from its window's first)
                    end = int(idx.searchsorted(lo[src]))
                    if not end:
                        continue
                v = times[src].take(idx[k:end])
                if isinstance(w, np.ndarray):
                    v += w[k:end]
                else:
                    v += w
                if pos is None:
                    if c is None:
                        # (array weights may hold a fill's never-binding ones: no start)
                        if off or k or len(v) != b - a or isinstance(w, np.ndarray):
                            c = np.zeros(b - a, dtype)
                        else:       # a term at every step: its values start the maximum
                            c = v
                            touched = 0
                            continue
                    part = c[off + k:off + end]
                    np.maximum(part, v, out=part)
                    touched = min(touched, off + k)
                else:
                    if c is None:
                        c = np.zeros(b - a, dtype)
                    p = pos[k:end]
                    c[p] = np.maximum(c[p], v)
                    touched = min(touched, int(p[0]))
            rs = ramps.get(u)
            if fresh:
                if c is None:
                    c = np.zeros(b - a, dtype)
                if a and (rs is None or not rs[1]):
                    c[0] = max(int(c[0]), int(times[u][a - 1]) + 1)
                maxima[u] = c
            elif touched == b - a:
                continue            # no term read a changed step: its times stand
            seg = times[u][a:b]
            if rs is not None:
                # a batched unit: the same, with its chain restarted at each copy
                sr, _at, size, cid = rs
                if fresh:
                    i = 0
                else:
                    above = c[touched:] > seg[touched:]
                    i = touched + int(above.argmax())
                    if not above[i - touched]:
                        continue
                if int(c[i:].max()) + b - a < size:
                    # c - f + size * copy: each copy's values above every earlier copy's
                    out = seg[i:]
                    np.subtract(c[i:], sr[i:], out=out)
                    if i:       # the previous step, in its own copy's frame
                        out[0] = max(int(out[0]), int(seg[i - 1]) - int(sr[i - 1]))
                    np.maximum.accumulate(out, out=out)
                    out += sr[i:]
                else:
                    r64 = np.arange(i, b - a, dtype=I64) - cid[i:].astype(I64) * SEGMENT
                    tail = c[i:] - r64
                    if i:
                        tail[0] = max(int(tail[0]), int(seg[i - 1]) - (
                            i - 1 - int(cid[i - 1]) * SEGMENT))
                    np.maximum.accumulate(tail, out=tail)
                    tail += r64
                    seg[i:] = tail
                first = a + i
            elif not fresh:
                # times only grow towards the fixed point and seg is the chain of the
                # previous terms: where no new term exceeds it, it stays; the first step
                # where one does is where the change starts, and there the new chain
                # exceeds the old one (it is at least the term): it is rewritten in place
                above = c[touched:] > seg[touched:]
                i = touched + int(above.argmax())
                if not above[i - touched]:
                    continue
                old = seg[i:]
                np.subtract(c[i:], ramp[:b - a - i], out=old)
                if i:
                    old[0] = max(int(old[0]), int(seg[i - 1]) + 1)
                np.maximum.accumulate(old, out=old)
                old += ramp[:b - a - i]
                first = a + i
            else:
                r = ramp[:b - a]
                tail = c - r
                np.maximum.accumulate(tail, out=tail)
                tail += r
                seg[:] = tail
                # its readers read it from its first step: those computed before it skipped
                # its placeholder times
                first = a
            for rd in readers[u]:
                if rd in inside:
                    got = dirty.get(rd, {})
                    if got is not None:
                        got[u] = min(got.get(u, first), first)
                        dirty[rd] = got
        if not dirty:
            return sweep, True, hi
    return budget, False, _holding(plan, dirty)


def _holding(plan: list, dirty: dict[int, dict[int, int] | None]) -> list[int]:
    """Per unit (indexed like ``times``; units outside the plan are left at 0), the first
    step of the window whose equation t[f] = max(t[f-1] + 1, terms) may not hold after the
    sweeps: a unit's times are the chain of its terms as last computed, so it holds up to
    the first step with a term reading a source step that changed since (``dirty``)."""
    first = [0] * (max(u for u, *_ in plan) + 1)
    for u, a, b, terms in plan:
        m = b
        changed = dirty.get(u, {})
        if changed is None:
            m = a
        elif changed:
            for src, idx, pos, off, _w in terms:
                g = changed.get(src)
                if g is None:
                    continue
                k = int(idx.searchsorted(g))
                if k < len(idx):
                    m = min(m, a + (int(pos[k]) if pos is not None else off + k))
        first[u] = m
    return first


def _check_deadlock(kernel: Kernel, firings: dict[str, Firing], order: list[Node],
                    shape: dict[str, tuple[int, int]]) -> None:
    """Raise a deadlock error if the step dependency graph has a cycle."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    base: dict[str, int] = {}
    total = 0
    for node in order:
        base[node.id] = total
        total += firings[node.id].n
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    for node in order:
        f = firings[node.id]
        b = base[node.id]
        src.append(b + np.arange(f.n - 1, dtype=I64))
        dst.append(b + np.arange(1, f.n, dtype=I64))
    for e in kernel.edges:
        fp, fc = firings[e.src], firings[e.dst]
        es = fp.emits[e.src_port]
        ps, pt = fc.peeks[e.dst_port]
        src.append(base[e.src] + es[pt])                       # emit -> peek
        dst.append(base[e.dst] + ps)
        depth = shape[e.name][0]
        if len(es) > depth:
            pops = fc.pops[e.dst_port]
            src.append(base[e.dst] + pops[: len(es) - depth])  # pop -> emit into the slot
            dst.append(base[e.src] + es[depth:])
    s, d = np.concatenate(src), np.concatenate(dst)
    g = sp.coo_matrix((np.ones(len(s), np.int8), (s, d)), shape=(total, total)).tocsr()
    ncomp, labels = connected_components(g, directed=True, connection="strong")
    if ncomp == total:
        return
    sizes = np.bincount(labels)
    in_cycle = sizes[labels] > 1
    stuck = []
    for node in order:
        b, n = base[node.id], firings[node.id].n
        hit = np.flatnonzero(in_cycle[b:b + n])
        if len(hit):
            stuck.append(f"  {node.op.value} {node.id}: blocked from its step {hit[0]} of {n}")
    raise SimulationError(f"deadlock in {kernel.name}: the units' dependencies form a cycle "
                          "(no unit can make progress):\n" + "\n".join(stuck))


__all__ = ["SolveStats", "solve_times"]
