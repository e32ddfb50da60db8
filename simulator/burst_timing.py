"""The burst engine's timing solver: the cycle engine's rules as max-plus recurrences.

Step f of a unit happens at t[f] = max(t[f-1] + 1, c[f]) where c[f] is the latest of the
arrival of every head it peeked (put + latency) and the room in every output it writes (pop
of the token ``depth`` places earlier, + 1). For fixed c this is t = f + cummax(c - f). The
arrivals come from producers earlier in topological order; the room terms from consumers
later in it, so the pass is repeated (Gauss-Seidel) until no time changes: the least fixed
point, which is exactly the schedule the cycle engine's as-soon-as-possible processes produce.
The firing tables it reads are ``simulator.burst_fire``'s.

If the fixed point has not settled after ``check_after`` sweeps, the step dependency graph is
checked for a cycle (scipy's strongly connected components): a cycle is a deadlock, reported
with the units caught in it. Otherwise a back-pressure loop is stalling the pipeline once per
fiber (one sweep per stall), and the times are finished by a sequential solver (a
longest-path pass over the steps in topological order, in Python: linear in the steps, the
same least fixed point).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.program import Kernel, Node
from simulator.burst_fire import I64, Firing
from simulator.engine_cycle import channel_shape


@dataclass
class _Constraint:
    """t[dst][targets] >= t[src][index] + weight, precomputed once per edge."""

    src: str
    index: np.ndarray
    targets: np.ndarray | None      # None: every step of the destination, in order
    weight: int


def _constraints(kernel: Kernel, firings: dict[str, Firing], chip: ChipConfig
                 ) -> dict[str, list[_Constraint]]:
    """Arrival (emit -> peek, + latency) and room (pop -> emit depth later, + 1) terms per
    unit. A scanner's crd and ref streams share their steps, so identical terms are merged."""
    out: dict[str, list[_Constraint]] = {n.id: [] for n in kernel.nodes}
    seen: set[tuple] = set()

    def add(dst: str, src: str, index: np.ndarray, targets: np.ndarray, weight: int,
            key: tuple) -> None:
        if key in seen or len(targets) == 0:
            return
        seen.add(key)
        n = firings[dst].n
        full = len(targets) == n and targets[0] == 0 and targets[-1] == n - 1
        out[dst].append(_Constraint(src, index, None if full else targets, weight))

    for e in kernel.edges:
        depth, latency = channel_shape(e, chip)
        es = firings[e.src].emits[e.src_port]
        ps, pt = firings[e.dst].peeks[e.dst_port]
        add(e.dst, e.src, es[pt], ps, latency,
            ("arrive", e.src, id(es), e.dst, id(ps), id(pt), latency))
        if len(es) > depth:
            pops = firings[e.dst].pops[e.dst_port]
            add(e.src, e.dst, pops[: len(es) - depth], es[depth:], 1,
                ("room", e.dst, id(pops), e.src, id(es), depth))
    return out


@dataclass
class SolveStats:
    """How the timing solver converged: sweeps, recomputations per unit, and whether the
    sequential solver finished the job (``_solve_sequential``)."""

    sweeps: int
    recomputed: dict[str, int]
    sequential: bool = False


def solve_times(kernel: Kernel, firings: dict[str, Firing], order: list[Node],
                chip: ChipConfig, *, max_iterations: int = 100_000,
                check_after: int = 64) -> tuple[dict[str, np.ndarray], SolveStats]:
    """Least fixed point of the max-plus timing recurrences; returns (step times per unit,
    solver statistics). A sweep recomputes, in topological order, only the units whose
    inputs' or consumers' times changed since they were last computed.

    If ``check_after`` sweeps have not settled, the step graph is checked for a cycle (a
    deadlock) and the times are finished by ``_solve_sequential``: back-pressure loops that
    stall the pipeline once per fiber need one sweep each, while the sequential solver's cost
    is linear in the steps (a pure-Python pass, about as costly as 50-100 sweeps)."""
    cons = _constraints(kernel, firings, chip)
    readers: dict[str, set[str]] = {n.id: set() for n in order}
    for dst, lst in cons.items():
        for c in lst:
            readers[c.src].add(dst)
    times: dict[str, np.ndarray] = {}
    # int32 cycles halve the memory traffic; the watchdog (sim.max_cycles) bounds every time
    tdtype = np.int32 if chip.sim.max_cycles < 2**31 - 2**24 else I64
    ar = {n.id: np.arange(firings[n.id].n, dtype=tdtype) for n in order}
    dirty = {n.id for n in order}
    recomputed: dict[str, int] = {}
    for it in range(1, max_iterations + 1):
        if it > check_after:
            _check_deadlock(kernel, firings, order,
                            {e.name: channel_shape(e, chip) for e in kernel.edges})
            return (_solve_sequential(kernel, firings, order, cons, chip, tdtype),
                    SolveStats(it - 1, recomputed, sequential=True))
        changed_any = False
        for node in order:
            uid = node.id
            if uid not in dirty:
                continue
            dirty.discard(uid)
            recomputed[uid] = recomputed.get(uid, 0) + 1
            c = np.zeros(firings[uid].n, tdtype)
            for con in cons[uid]:
                src_t = times.get(con.src)
                if src_t is None:
                    continue
                v = src_t[con.index]
                v += con.weight
                if con.targets is None:
                    np.maximum(c, v, out=c)
                else:
                    c[con.targets] = np.maximum(c[con.targets], v)
            a = ar[uid]
            c -= a
            np.maximum.accumulate(c, out=c)
            c += a
            if len(c) and c[-1] >= chip.sim.max_cycles:
                raise SimulationError(
                    f"watchdog: {node.op.value} {uid} in {kernel.name} would run past "
                    f"sim.max_cycles={chip.sim.max_cycles} (burst engine)")
            old = times.get(uid)
            if old is None or not np.array_equal(old, c):
                times[uid] = c
                changed_any = True
                dirty |= readers[uid]
        if not changed_any and not dirty:
            return times, SolveStats(it, recomputed)
    raise SimulationError(f"burst engine: timing did not settle after {max_iterations} "
                          f"sweeps in {kernel.name}")


def _solve_sequential(kernel: Kernel, firings: dict[str, Firing], order: list[Node],
                      cons: dict[str, list[_Constraint]], chip: ChipConfig,
                      tdtype: type) -> dict[str, np.ndarray]:
    """The same least fixed point, step by step: the longest paths of the step dependency
    graph in a topological order of its steps.

    Every unit advances through its steps while the steps its next step depends on (the
    emits it peeks, the pops that free its output slots) are final; a unit that meets one
    that is not waits for that unit to advance. Python work per step and dependency, no
    sweeps: the fallback for runs whose sweeps settle one stall at a time.
    Raises: SimulationError for a deadlock (no unit can advance) or the watchdog.
    """
    ids = [n.id for n in order]
    index = {u: k for k, u in enumerate(ids)}
    sizes = [firings[u].n for u in ids]
    deps = []
    for u, n in zip(ids, sizes):
        tg, src, idx, w = [], [], [], []
        for con in cons[u]:
            targets = np.arange(n, dtype=I64) if con.targets is None else con.targets
            tg.append(targets)
            src.append(np.full(len(targets), index[con.src], dtype=I64))
            idx.append(np.asarray(con.index, dtype=I64))
            w.append(np.full(len(targets), con.weight, dtype=I64))
        if tg:
            t_all = np.concatenate(tg)
            o = np.argsort(t_all, kind="stable")
            ptr = np.searchsorted(t_all[o], np.arange(n + 1))
            deps.append((ptr.tolist(), np.concatenate(src)[o].tolist(),
                         np.concatenate(idx)[o].tolist(), np.concatenate(w)[o].tolist()))
        else:
            deps.append(([0] * (n + 1), [], [], []))
    times: list[list[int]] = [[] for _ in ids]
    done = [0] * len(ids)                    # steps of each unit whose times are final
    waiting: list[set[int]] = [set() for _ in ids]
    queue = deque(range(len(ids)))
    queued = [True] * len(ids)
    limit = chip.sim.max_cycles
    while queue:
        u = queue.popleft()
        queued[u] = False
        f, n = done[u], sizes[u]
        if f == n:
            continue
        ptr, src, idx, w = deps[u]
        tu = times[u]
        prev = tu[-1] if f else -1
        while f < n:
            c = prev + 1
            k, hi = ptr[f], ptr[f + 1]
            while k < hi:
                v, g = src[k], idx[k]
                if g >= done[v]:
                    break
                x = times[v][g] + w[k]
                if x > c:
                    c = x
                k += 1
            if k < hi:
                waiting[src[k]].add(u)
                break
            tu.append(c)
            prev = c
            f += 1
        if f > done[u]:
            if prev >= limit:
                node = order[u]
                raise SimulationError(
                    f"watchdog: {node.op.value} {node.id} in {kernel.name} would run past "
                    f"sim.max_cycles={limit} (burst engine)")
            done[u] = f
            for r in waiting[u]:
                if not queued[r]:
                    queued[r] = True
                    queue.append(r)
            waiting[u].clear()
    stuck = [f"  {order[u].op.value} {ids[u]}: blocked from its step {done[u]} of {sizes[u]}"
             for u in range(len(ids)) if done[u] < sizes[u]]
    if stuck:
        raise SimulationError(f"deadlock in {kernel.name}: the units' dependencies form a "
                              "cycle (no unit can make progress):\n" + "\n".join(stuck))
    return {u: np.asarray(t, dtype=tdtype) for u, t in zip(ids, times)}


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
