"""The burst timing solver on unrolled kernels: isomorphic copies solved as one problem.

An unrolled kernel (``compiler.unroll``, positions dealt) is several copies of one graph,
each placed and routed on its own (so the same edge has a different FIFO depth and latency
in each copy) and never connected to another. The timing solver (``simulator.burst_timing``)
pays numpy calls per unit, per constraint and per recomputation, so on a sparse kernel
(SpM*SpM 256^3 @1%: 280 units of about 550 steps) its cost is that overhead times the
copies. Here the copies are solved as one problem whose arrays are the copies' concatenated:

- *Copies*: the connected components of the kernel graph, grouped when they are identical
  under the bijection that pairs their units in topological order (the same opcodes,
  attributes but ``copy``, ports, stream kinds and edges; ``copy_groups``). A group's units
  of one role form a *batched unit* whose steps are its copies' steps, copy after copy;
  units in no group (a one-copy kernel, a shared unit) stay units of their own.
- *Constraints* are each copy's own (``_bundle``: the arrivals and the room of every
  stream, built from that copy's firing tables with that copy's depth and latency, exactly
  as ``burst_timing._constraints`` builds them), concatenated with each copy's steps and
  tokens offset by where its copy starts: a term of copy k reads copy k of its source.
  Latencies that differ between copies become per-term weights (an array aligned with the
  index; a weight common to every copy stays a scalar). The offsets keep every index
  increasing across copies, so pruning (``_prune``) and the windows' ``searchsorted`` cuts
  (``_downset``) act on each copy exactly as on its own; a filled run (``_fill``) gives the
  steps of a copy before that copy's first term a weight so low the term never binds
  (``burst_timing._fill_w``), since the term it would take belongs to the previous copy.
- *Chains*: a unit's times are t[f] = max(t[f-1] + 1, c[f]); a copy's first step must not
  be chained to the previous copy's last. Of the two ways (virtual time offsets stored in
  the times, or segmented recurrences), this takes the segmented one: the running maximum
  of a batched unit runs over c - f + offset * copy, so a later copy's values lie above
  every earlier copy's and the maximum restarts at each copy (in place in the times' int32,
  the offset the dtype's range shared among the window's copies, while the terms leave
  room; otherwise in an int64 temporary with ``SEGMENT``, 2^34: ``_solve_window``); the
  stored times stay the real ones (int32 where ``sim.max_cycles`` allows, as
  unbatched), so nothing else changes. Virtual offsets would need int64 times (14 copies
  times 2^31 cycles) and a floor term per copy.
- *Windows* are positions in the concatenation: the proportional cut, ``_downset`` (a
  downset of the batched step graph is one of every copy's), ``_holding`` and the window
  growth rules work unchanged; the watchdog looks at each batched unit's latest time in
  the window (any copy's, not only the last step's). A window solved in one pass
  (``burst_loop.dijkstra_window``) runs on the copies themselves: the batched window
  is cut into each copy's steps, the copies' own constraints (built once, when first
  needed) read their times through views of the batched arrays.
- *Errors*: a deadlock or the watchdog in the batched solve is reported by solving again
  without batching (``solve_batched``), which names the units exactly as it always has.
- ``SolveStats.recomputed`` gives each copy its batched unit's count (its copies were
  recomputed together); the other counts are the batched solve's windows and sweeps.

The times are exactly the unbatched solver's (the least fixed point of the same
constraints: tests/test_burst_batch.py compares them unit by unit on the random suites).
Batching needs int32 times (``sim.max_cycles`` below 2^31 - 2^24, the default); otherwise,
or with no group of two copies, ``solve_batched`` is ``solve_times``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np

from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.program import Edge, Kernel, Node
from simulator.burst_fire import I64, Firing
from simulator.burst_loop import dijkstra_window
from simulator.burst_timing import (
    SolveStats,
    _as_dep,
    _Dep,
    _deps,
    first_peeks,
    solve_times,
)
from simulator.engine_cycle import channel_shape

WEIGHT = np.int32               # batched weights: the times' int32
BATCH_STEPS = 1024  # a group is batched when its units average at most this many steps a
# copy (above it, numpy's work per step outweighs its calls per unit, and the batched
# constraints' copies cost more than the calls they save: SpM*SpM 256^3 @1-2%, 550-830
# steps a unit, gain; @5%, 2,000, and 200^3 @5%, 1,470, lose), or on unbalanced FIFOs
# (compiler.balance_fifos false: tight loops whose probe sweeps dominate gain at any size)
INT32_TIMES = 2**31 - 2**24     # solve_times keeps int32 times below this sim.max_cycles


class _NotBatchable(Exception):
    """The copies of a group differ where the solver looks (a port dense in one copy only)."""


def copy_groups(kernel: Kernel, order: list[Node]) -> list[list[list[int]]]:
    """The kernel's connected components that occur more than once: per group, its copies
    (components in topological order of their first unit), each as its units' positions
    in ``order``; the units of two copies at the same place correspond (the same opcode,
    attributes but ``copy``, and the same port-labelled edges between corresponding units).
    """
    pos = {n.id: k for k, n in enumerate(order)}
    parent = list(range(len(order)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for e in kernel.edges:
        a, b = find(pos[e.src]), find(pos[e.dst])
        if a != b:
            parent[max(a, b)] = min(a, b)
    comps: dict[int, list[int]] = {}
    for k in range(len(order)):
        comps.setdefault(find(k), []).append(k)
    if len(comps) < 2:
        return []
    local = [0] * len(order)
    for members in comps.values():
        for i, k in enumerate(members):
            local[k] = i
    shape: dict[int, list[tuple]] = {root: [] for root in comps}
    for e in kernel.edges:
        s, d = pos[e.src], pos[e.dst]
        shape[find(s)].append((local[s], e.src_port, local[d], e.dst_port, e.kind))
    groups: dict[Any, list[list[int]]] = {}
    for root, members in comps.items():
        units = tuple((order[k].op, tuple(a for a in order[k].attrs if a[0] != "copy"))
                      for k in members)
        try:
            groups.setdefault((units, tuple(sorted(shape[root]))), []).append(members)
        except TypeError:       # an unhashable attribute: the component is solved alone
            continue
    return [g for g in groups.values() if len(g) > 1]


SMALL = 4096    # a concatenation of fewer elements adds its offsets with one np.repeat


def _cat(parts: list[np.ndarray], offsets: np.ndarray, slots: list[int] | None = None
         ) -> np.ndarray:
    """The parts concatenated, each plus its offset (a new array unless one part, offset 0);
    one pass over the data (a small one: three). ``slots``: the room each part takes (at
    least its length; the rest of it left unset)."""
    lens = [len(p) for p in parts]
    if slots is None:
        if len(parts) == 1:
            p = np.asarray(parts[0], dtype=I64)
            return p + int(offsets[0]) if offsets[0] else p
        slots = lens
    total = sum(slots)
    if total <= SMALL and slots is lens:
        out = np.concatenate(parts).astype(I64, copy=False)
        out += np.repeat(offsets, lens)
        return out
    out = np.empty(total, I64)
    o = 0
    for p, off, n, k in zip(parts, offsets.tolist(), lens, slots, strict=True):
        np.add(p, off, out=out[o + k - n:o + k])
        o += k
    return out


def _weights(values: list[int], counts: list[int] | np.ndarray) -> int | np.ndarray:
    """One weight per term: a scalar when every copy has the same."""
    if min(values) == max(values):
        return int(values[0])
    return np.repeat(np.asarray(values, dtype=WEIGHT), counts)


def _room_run(pops: list[np.ndarray], es: list[np.ndarray], depth: list[int],
              m: list[int], s_src: np.ndarray, s_dst: np.ndarray, n_src: list[int]
              ) -> tuple[np.ndarray, int | np.ndarray, int] | None:
    """A room constraint (on the source: its emit ``depth`` tokens later waits for the pop
    of token k) as one filled run (``_fill_w``), built copy by copy into the run's arrays
    (no concatenated temporaries: a large stream's are page faults); None when its terms
    are too sparse for a run (under 90% of the steps from its first)."""
    have = [c for c, k in enumerate(m) if k > 0]
    c0 = have[0]
    first = int(s_src[c0]) + int(es[c0][depth[c0]])
    n = int(s_src[-1]) + n_src[-1]
    if 10 * sum(m[c] for c in have) < 9 * (n - first):
        return None
    index = np.empty(n - first, I64)
    weight = None
    last = int(s_dst[c0]) + int(pops[c0][0])
    for c in range(c0, len(m)):
        lo = int(s_src[c]) - first          # the copy's steps in the run: [lo, hi)
        hi = lo + n_src[c]
        if m[c] <= 0:
            t0 = hi
        else:
            t = es[c][depth[c]:depth[c] + m[c]]
            t0 = lo + int(t[0])
            counts = np.empty(m[c], I64)
            np.subtract(t[1:], t[:-1], out=counts[:-1])
            counts[-1] = hi - t0 - (int(t[-1]) - int(t[0]))
            np.add(np.repeat(pops[c][:m[c]], counts), int(s_dst[c]), out=index[t0:hi])
        if t0 > max(lo, 0):
            # the copy's steps before its first term: its previous copy's last index (an
            # increasing index), a weight that never binds
            index[max(lo, 0):t0] = last
            if weight is None:
                weight = np.ones(n - first, WEIGHT)
            weight[max(lo, 0):t0] = np.iinfo(WEIGHT).min + 1
        if t0 < hi:
            last = int(index[hi - 1])
    return index, (1 if weight is None else weight), first


def _bundle(edges: list[Edge], firings: dict[str, Firing], chip: ChipConfig,
            s_src: np.ndarray, s_dst: np.ndarray, seen: set, cache: dict,
            n_src: list[int], n_dst: list[int]
            ) -> list[tuple[bool, np.ndarray, np.ndarray | None, int | np.ndarray, bool, int]]:
    """The constraints of one stream of every copy (``edges[c]``: copy c's), as
    ``burst_timing._constraints`` builds them per copy, concatenated: copy c's steps of the
    stream's source start at ``s_src[c]`` of its batched unit, of its destination at
    ``s_dst[c]``, and its tokens after the earlier copies' (``n_src``, ``n_dst``: the
    copies' steps). Each: (on the destination (else the source), index, targets (None: a
    run, final), weight, index increasing, a run's first step). ``cache``: the emit steps
    concatenated, by their arrays (a scanner's crd and ref streams share them)."""
    out = []
    shapes = [channel_shape(e, chip) for e in edges]
    fd = [firings[e.dst] for e in edges]
    es = [firings[e.src].emits[e.src_port] for e in edges]
    n_es = [len(x) for x in es]
    port = edges[0].dst_port
    lat = [s[1] for s in shapes]
    depth = [s[0] for s in shapes]
    dense = [port in f.dense for f in fd]
    pops = [f.pops[port] for f in fd]
    n_p = [len(p) for p in pops]
    e0 = list(accumulate(n_es[:-1], initial=0))     # each copy's first token
    p0 = list(accumulate(n_p[:-1], initial=0))
    ides = tuple(map(id, es))
    emitted = cache.get(ides)
    if emitted is None:
        emitted = cache[ides] = _cat(es, s_src)
    if all(dense):
        key = ("arrive", *map(id, es), *map(id, pops), *lat)
        if key not in seen and any(n_p):
            seen.add(key)
            index = emitted if n_p == n_es else _cat(
                [x[:n] for x, n in zip(es, n_p, strict=True)], s_src)
            # token k is first peeked the step after token k-1 is popped (the first of
            # each copy at the copy's step 0): every step, when every step pops
            if n_p == n_dst and all(n < 2 or int(p[-2]) == n - 2
                                    for p, n in zip(pops, n_p, strict=True)):
                out.append((True, index, None, _weights(lat, n_p), True, 0))
            else:
                first = _cat([p[:-1] for p in pops], s_dst + 1, n_p)
                some = [c for c, n in enumerate(n_p) if n]
                first[[p0[c] for c in some]] = s_dst[some]
                out.append((True, index, first, _weights(lat, n_p), True, 0))
    elif not any(dense):
        peeks = [f.peeks[port] for f in fd]
        key = ("peek", *map(id, es), *(id(p[0]) for p in peeks),
               *(id(p[1]) for p in peeks), *lat)
        n_s = [len(p[0]) for p in peeks]
        if key not in seen and any(n_s):
            seen.add(key)
            ps = _cat([p[0] for p in peeks], s_dst)
            pt = _cat([p[1] for p in peeks], np.asarray(e0, dtype=I64))
            counts: list[int] | np.ndarray = n_s
            # the first peek of each token (a copy's first peek reads a token above every
            # earlier copy's: kept)
            n_all = len(pt)
            ps, pt = first_peeks(ps, pt)
            if len(pt) < n_all and min(lat) != max(lat):
                counts = np.diff(ps.searchsorted(np.append(s_dst, 1 << 62)))
            out.append((True, emitted[pt], ps, _weights(lat, counts), True, 0))
    else:
        raise _NotBatchable(port)
    key = ("room", *map(id, pops), *map(id, es), *depth)
    m = [min(n - d, k) for n, d, k in zip(n_es, depth, n_p, strict=True)]
    if max(m) > 0 and key not in seen:
        seen.add(key)
        run = (_room_run(pops, es, depth, m, s_src, s_dst, n_src)
               if sum(max(k, 0) for k in m) > SMALL else None)
        if run is not None:
            out.append((False, run[0], None, run[1], True, run[2]))
        else:
            index = _cat([p[:max(k, 0)] for p, k in zip(pops, m, strict=True)], s_dst)
            targets = _cat([x[d:d + max(k, 0)] for x, d, k in zip(es, depth, m, strict=True)],
                           s_src)
            out.append((False, index, targets, 1, False, 0))
    return out


@dataclass
class Batch:
    """An unrolled kernel's timing problem with its copies' units batched (the module
    docstring): per batched unit, its units (positions in ``order``, copy by copy), name,
    steps, copies' first steps (and its steps last; None: one unit) and constraints, in
    the form ``burst_timing.solve_times`` solves (its ``batch`` argument)."""

    kernel: Kernel
    firings: dict[str, Firing]
    order: list[Node]
    chip: ChipConfig
    members: list[list[int]]
    ids: list[str]
    sizes: list[int]
    segs: list[np.ndarray | None]
    deps: list[list[_Dep]]
    unbatched: list[list[_Dep]] | None = None

    def walk(self, deps: list[list[_Dep]], times: list[np.ndarray], lo: list[int],
             hi: list[int], active: list[int]) -> bool:
        """A window solved in one pass, on the copies: each batched unit's window cut into
        its copies' steps, solved with the copies' own constraints (``deps``, the batched
        ones, unused) on views of the batched times. Returns False on a cycle."""
        if self.unbatched is None:
            self.unbatched = _deps(self.kernel, self.firings, self.order, self.chip)
        n = len(self.order)
        views: list[Any] = [None] * n
        lo1, hi1 = [0] * n, [0] * n
        for u, mem in enumerate(self.members):
            t, st = times[u], self.segs[u]
            if st is None:
                views[mem[0]], lo1[mem[0]], hi1[mem[0]] = t, lo[u], hi[u]
                continue
            bounds = st.tolist()
            for c, x in enumerate(mem):
                s, e = bounds[c], bounds[c + 1]
                views[x] = t[s:e]
                lo1[x] = min(max(lo[u] - s, 0), e - s)
                hi1[x] = min(max(hi[u] - s, 0), e - s)
        act = sorted(x for u in active for x in self.members[u] if hi1[x] > lo1[x])
        return bool(dijkstra_window(self.unbatched, views, lo1, hi1, act))

    def split(self, times: dict[str, np.ndarray], stats: SolveStats
              ) -> tuple[dict[str, np.ndarray], SolveStats]:
        """The batched solve's result per unit of the kernel (copies: views)."""
        per: list[Any] = [None] * len(self.order)
        count = [0] * len(self.order)
        for u, mem in enumerate(self.members):
            t, st, r = times[self.ids[u]], self.segs[u], stats.recomputed[self.ids[u]]
            for c, x in enumerate(mem):
                per[x] = t if st is None else t[int(st[c]):int(st[c + 1])]
                count[x] = r
        ids = [n.id for n in self.order]
        return (dict(zip(ids, per, strict=True)),
                SolveStats(stats.windows, stats.sweeps, stats.max_sweeps,
                           dict(zip(ids, count, strict=True)), stats.sequential,
                           stats.partial))


def plan_batch(kernel: Kernel, firings: dict[str, Firing], order: list[Node],
               chip: ChipConfig) -> Batch | None:
    """The batched problem of an unrolled kernel, or None when there is nothing to batch
    (no component occurring twice, or copies that differ where the solver looks)."""
    ns = [firings[n.id].n for n in order]
    groups = [g for g in copy_groups(kernel, order)
              if not chip.compiler.balance_fifos
              or sum(ns[x] for copy in g for x in copy) <= BATCH_STEPS * sum(map(len, g))]
    if not groups:
        return None
    # batched units: each group's roles, and every other unit alone, by first position
    unit_of = [-1] * len(order)
    members: list[list[int]] = []
    for copies in groups:
        for role in zip(*copies, strict=True):
            members.append(list(role))
    grouped = {x for m in members for x in m}
    members += [[x] for x in range(len(order)) if x not in grouped]
    members.sort(key=lambda m: m[0])
    copy_of = [0] * len(order)
    for u, mem in enumerate(members):
        for c, x in enumerate(mem):
            unit_of[x], copy_of[x] = u, c
    starts: list[list[int]] = []
    segs: list[np.ndarray | None] = []
    for mem in members:
        s = [0]
        for x in mem:
            s.append(s[-1] + ns[x])
        starts.append(s)
        segs.append(np.asarray(s, dtype=I64) if len(mem) > 1 else None)
    sizes = [s[-1] for s in starts]
    offs = [np.asarray(s[:-1], dtype=I64) for s in starts]
    steps = [[ns[x] for x in mem] for mem in members]
    # the streams, bundled: the same stream of every copy (copy 0's edge first)
    pos = {n.id: k for k, n in enumerate(order)}
    bundles: dict[tuple[int, str, int, str], list[Edge | None]] = {}
    for e in kernel.edges:
        s, d = pos[e.src], pos[e.dst]
        us, ud = unit_of[s], unit_of[d]
        key = (us, e.src_port, ud, e.dst_port)
        got = bundles.get(key)
        if got is None:
            got = bundles[key] = [None] * len(members[us])
        got[copy_of[s]] = e
    seen: set = set()
    cache: dict = {}
    cons: list[list[tuple]] = [[] for _ in members]
    try:
        for (us, _sp, ud, _dp), edges in bundles.items():
            if any(e is None for e in edges):
                return None
            for on_dst, *con in _bundle(edges, firings, chip,  # type: ignore[arg-type]
                                        offs[us], offs[ud], seen, cache, steps[us], steps[ud]):
                if on_dst:
                    cons[ud].append((us, *con))
                else:
                    cons[us].append((ud, *con))
    except _NotBatchable:
        return None
    deps: list[list[_Dep]] = []
    for u, lst in enumerate(cons):
        n = sizes[u]
        out = []
        for src, index, targets, w, inc, first in lst:
            if targets is None:         # a run already
                out.append(_Dep(src, index, None, w, first))
            else:                       # (room terms, pruned: one weight for all)
                out.append(_as_dep(src, index, targets, w, inc, n, segs[u], WEIGHT))
        deps.append(out)
    ids = [order[m[0]].id if len(m) == 1 else f"{order[m[0]].id} (x{len(m)})"
           for m in members]
    return Batch(kernel, firings, order, chip, members, ids, sizes, segs, deps)


def solve_batched(kernel: Kernel, firings: dict[str, Firing], order: list[Node],
                  chip: ChipConfig, *, window: int = 1 << 19
                  ) -> tuple[dict[str, np.ndarray], SolveStats]:
    """``burst_timing.solve_times`` with an unrolled kernel's copies solved as one problem
    (the module docstring): the same times, unit by unit. A deadlock or the watchdog is
    reported by the unbatched solve (the same error, naming the same units).
    Raises: SimulationError as ``solve_times``."""
    batch = (plan_batch(kernel, firings, order, chip)
             if chip.sim.max_cycles < INT32_TIMES else None)
    if batch is None:
        return solve_times(kernel, firings, order, chip, window=window)
    try:
        times, stats = solve_times(kernel, firings, order, chip, window=window, batch=batch)
    except SimulationError:
        return solve_times(kernel, firings, order, chip, window=window)
    return batch.split(times, stats)


__all__ = ["Batch", "copy_groups", "plan_batch", "solve_batched"]
