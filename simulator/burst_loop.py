"""Tight back-pressure loops of the burst timing solver: a window's times in one pass.

A window whose Gauss-Seidel sweeps do not settle (``simulator.burst_timing.solve_times``) is
a tight loop: its binding constraint alternates between units every few tokens (an
unbalanced reconvergent path: the short path's FIFO fills and the producer waits for the
consumer's pops, which wait for the long path), so each sweep carries the solution one turn
of the loop further. Such a window is solved in one pass: the longest paths of its step graph
(a DAG whose edges are a unit's chain, t[f] >= t[f-1] + 1, and the terms reading window
steps; each step's base, the latest of its terms reading final steps, starts its paths).

``dijkstra_window`` computes them with scipy's compiled graph routines. Longest paths are
shortest paths with the weights negated, which Dijkstra cannot take; but with a potential
pi that grows by more than an edge's weight along every edge, the reduced weights
pi[v] - pi[u] - w are all positive, and a path's reduced length is pi[end] - pi[start] minus
its weight, so the shortest reduced paths from a source (an edge to every step with a base,
of reduced weight pi - base) are pi - (the longest paths). Such a potential is a
topological numbering times (W + 1): one depth-first search from the source gives it
(``_topological``, from the search's visit order and tree, without a sort). Where a window's
steps wait on each other in a cycle, no numbering is topological: the Python walk then
finds and reports the deadlock. Every equation t[f] = max(base, t[f-1] + 1, terms) is
checked on the result (a DAG's equations have one solution), with the walk as the fallback.

``walk_window`` is the same in Python (the fallback, and the reference the tests compare
with): the window's steps are numbered unit after unit, each step's base is one more term
(reading a solved slot past the window's steps), and the terms are sorted by target into
three flat lists (where each step's terms start, the step each reads, its weight). A unit
advances while the steps it reads are solved; one that meets an unsolved step hands over to
that step's unit (a stack), which hands back as soon as the unit below it can go on, so a
cycle of waits (a deadlock) is found when it closes. The result does not depend on the
order: every step's time is the maximum over its terms of solved values, so the times are
the window's longest paths, exactly what the cycle engine's as-soon-as-possible processes
produce.

Why no numpy formulation (measured on unbalanced SpM*SpM 256^3 @5%, see docs/fidelity.md,
issue 11's fifth and sixth passes): the loop's sequential depth is its number of turns, and
an exact method must discover where the binding constraint switches, which happens about
once per turn and depends on the exact times before it; a unit advances 1-3 steps before
it waits for another. Dijkstra's heap is that sequential discovery, compiled (about 0.4 us
a step here with the set-up, against 0.6-1 us for the walk).
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from typing import Protocol

import numpy as np

I64 = np.int64
IMPORT_STEPS = 200_000   # steps a process walks in Python before scipy's graph routines
IMPORT_WINDOW = 32_768   # pay for their import (50-60 ms against 0.3 us a step), and windows
# this large are not walked at all (a tight loop the size of a walked window goes on)
_WALKED = [0]            # steps this process has walked so far


class Dep(Protocol):
    """What the walk reads of a constraint (``simulator.burst_timing._Dep``):
    ``t[u][targets] >= t[src][index] + weight``."""

    src: int
    index: np.ndarray
    weight: int | np.ndarray

    def span(self, lo: int, hi: int) -> tuple[int, int]: ...

    def steps(self, k0: int, k1: int) -> np.ndarray: ...


def _weights(weight: int | np.ndarray, k0: int, k1: int) -> np.ndarray:
    """A constraint's weights at its positions [k0, k1): one int or an array aligned with
    its index."""
    w = np.asarray(weight, dtype=I64)
    if w.ndim == 0:
        return np.broadcast_to(w, (k1 - k0,))
    return w[k0:k1]


def _window_terms(deps: list[list[Dep]], times: list[np.ndarray], lo: list[int],
                  hi: list[int], active: list[int]
                  ) -> tuple[list[int], np.ndarray, list[np.ndarray], list[np.ndarray],
                             list[np.ndarray]]:
    """The window's steps numbered unit after unit (``woff``: where each active unit's steps
    start, the total last), each step's base (the latest of its terms that read final steps
    and of its chain from a final step; 0 where there is none: times are never negative) and
    the terms that read window steps, as lists of arrays (target steps, source steps,
    weights), a few sorted runs per constraint."""
    woff = [0]
    for u in active:
        woff.append(woff[-1] + hi[u] - lo[u])
    total = woff[-1]
    slot = {u: x for x, u in enumerate(active)}
    base = np.zeros(total, I64)
    out_pos: list[np.ndarray] = []
    out_val: list[np.ndarray] = []
    in_pos: list[np.ndarray] = []
    in_src: list[np.ndarray] = []
    in_w: list[np.ndarray] = []
    for x, u in enumerate(active):
        a = lo[u]
        shift = woff[x] - a
        for d in deps[u]:
            k0, k1 = d.span(a, hi[u])
            if k1 <= k0:
                continue
            idx = d.index[k0:k1]
            ls = lo[d.src]
            # an index never decreases: the terms reading final steps are a prefix
            kin = int(idx.searchsorted(ls))
            steps = d.steps(k0, k1)
            w = d.weight if isinstance(d.weight, int) else _weights(d.weight, k0, k1)
            if kin:
                out_pos.append(steps[:kin] + shift)
                v = times[d.src][idx[:kin]].astype(I64)
                v += w if isinstance(w, int) else w[:kin]
                out_val.append(v)
            if kin < len(idx):
                in_pos.append(steps[kin:] + shift)
                in_src.append(idx[kin:] + (woff[slot[d.src]] - ls))
                in_w.append(np.full(len(idx) - kin, w, I64) if isinstance(w, int) else w[kin:])
        if a and hi[u] > a:
            base[woff[x]] = int(times[u][a - 1]) + 1
    if out_pos:
        np.maximum.at(base, np.concatenate(out_pos), np.concatenate(out_val))
    return woff, base, in_pos, in_src, in_w


def walk_window(deps: list[list[Dep]], times: list[np.ndarray], lo: list[int],
                hi: list[int], active: list[int]) -> bool:
    """Solve the steps [lo[u], hi[u]) of the ``active`` units (a downset of the step graph:
    every step they read is final or in the window) in place in ``times``, step by step in
    Python. Returns False, leaving ``times`` unchanged, if the window's steps wait on each
    other in a cycle (a deadlock)."""
    nunits = len(active)
    woff, base, in_pos, in_src, in_w = _window_terms(deps, times, lo, hi, active)
    total = woff[-1]
    if not total:
        return True
    # a step's base (its terms reading final steps, its chain from a final step) is one
    # more term, reading a solved slot past the window's steps; a base of 0 never binds
    cpos = np.flatnonzero(base > 0)
    consts = base[cpos].tolist()
    del base
    in_pos.append(cpos)
    in_src.append(np.arange(total, total + len(cpos), dtype=I64))
    in_w.append(np.zeros(len(cpos), I64))
    # by target: the concatenation is a few sorted runs per unit, which a stable sort
    # (timsort) merges in about a third of the time of a quicksort; each array is freed
    # once it is a list (the lists are the walk's memory, about 190 bytes a step)
    tg = np.concatenate(in_pos)
    in_pos.clear()
    o = np.argsort(tg, kind="stable")
    ptr_a = np.zeros(total + 1, I64)
    np.cumsum(np.bincount(tg, minlength=total), out=ptr_a[1:])
    del tg
    ptr = ptr_a.tolist()
    del ptr_a
    src = np.concatenate(in_src)[o].tolist()
    in_src.clear()
    wts = np.concatenate(in_w)[o].tolist()
    in_w.clear()
    del o
    got: list[int | None] = [None] * total
    got += consts
    del consts
    pos = woff[:-1]
    ends = woff[1:]
    wait = [-1] * nunits            # the step a unit waits for (-1: none)
    # demand-driven turns: a unit advances as far as the steps it reads are solved; one that
    # stops at an unsolved step hands over to that step's unit (pushed on a stack), which
    # hands back as soon as the unit below it can go on. Every unit on the stack waits for
    # a step of the unit above it, so a unit that waits for one on the stack closes a
    # cycle of unsolved steps, each waiting for the next: a deadlock
    on = [False] * nunits
    for root in range(nunits):
        if pos[root] == ends[root]:
            continue
        stack = [root]
        on[root] = True
        while stack:
            x = stack[-1]
            f = pos[x]
            end = ends[x]
            prev = got[f - 1] if f > woff[x] else -1
            k = ptr[f]
            while f < end:
                c = prev + 1
                stop = ptr[f + 1]
                while k < stop:
                    v = got[src[k]]
                    if v is None:
                        break
                    v += wts[k]
                    if v > c:
                        c = v
                    k += 1
                else:
                    got[f] = c
                    prev = c
                    f += 1
                    continue
                wait[x] = src[k]
                break
            pos[x] = f
            if f == end or (len(stack) > 1 and got[wait[stack[-2]]] is not None):
                stack.pop()
                on[x] = False
                continue
            y = bisect_right(woff, wait[x]) - 1
            if on[y]:
                return False
            stack.append(y)
            on[y] = True
    solved = np.fromiter(got[:total], I64, total)
    for x, u in enumerate(active):
        times[u][lo[u]:hi[u]] = solved[woff[x]:woff[x + 1]]
    return True


def dijkstra_window(deps: list[list[Dep]], times: list[np.ndarray], lo: list[int],
                    hi: list[int], active: list[int]) -> bool:
    """``walk_window``'s result, computed by scipy's Dijkstra (compiled) instead of a Python
    walk: the window's longest paths are shortest paths once every edge's weight is
    reduced by a potential that makes it positive (the module docstring). Falls back to
    ``walk_window`` where the window holds a cycle of waits (a deadlock: the walk reports
    it) or the result does not satisfy every equation, and walks windows below
    ``IMPORT_WINDOW`` steps, up to ``IMPORT_STEPS`` in a process, unless
    scipy.sparse.csgraph is loaded already."""
    if "scipy.sparse.csgraph" not in sys.modules:
        # its first import costs 50-60 ms (it loads scipy.linalg), the walk about 0.3 us
        # a step more: a small window is walked, until the process has walked IMPORT_STEPS
        steps = sum(hi[u] - lo[u] for u in active)
        if steps < IMPORT_WINDOW and _WALKED[0] + steps < IMPORT_STEPS:
            _WALKED[0] += steps
            return walk_window(deps, times, lo, hi, active)
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import depth_first_order

    woff, base, in_pos, in_src, in_w = _window_terms(deps, times, lo, hi, active)
    total = woff[-1]
    if not total:
        return True
    n = total + 1                   # node ``total``: the source, one edge to every step
    starts = np.asarray(woff[:-1], I64)
    first = np.zeros(total, dtype=bool)
    first[starts[starts < total]] = True
    chain = np.flatnonzero(~first)
    rooted = np.flatnonzero(first | (base > 0))
    src = np.concatenate(in_src + [chain - 1, np.full(len(rooted), total, I64)])
    dst = np.concatenate(in_pos + [chain, rooted])
    w = np.concatenate(in_w + [np.ones(len(chain), I64)])
    in_pos.clear()
    in_src.clear()
    in_w.clear()
    nreal = len(w)
    # by source (a few sorted runs: the stable sort merges them); the source's edges come
    # last (its number is the largest), so the real edges are the first ``nreal``
    order = np.argsort(src, kind="stable")
    src = src[order]
    dst = dst[order]
    w = w[order[:nreal]]
    del order
    indptr = np.zeros(n + 1, I64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    graph = csr_matrix((np.ones(len(dst)), dst, indptr), shape=(n, n))
    pre, parent = depth_first_order(graph, total, directed=True, return_predecessors=True)
    if len(pre) != n:
        return walk_window(deps, times, lo, hi, active)
    order = _topological(pre, parent, n)
    del pre, parent
    # the DFS's tree and visit order give every step a place after every step it reads if
    # the window is a DAG; an edge that goes back closes a cycle of waits (a deadlock)
    if bool((order[src] >= order[dst]).any()):
        return walk_window(deps, times, lo, hi, active)
    top = int(w.max(initial=0)) + 1
    low = int(base.max()) + 1
    pi = order - order.min()
    del order
    if top * (int(pi.max()) + 1) + low >= 1 << 52:     # past float64's exact integers
        return walk_window(deps, times, lo, hi, active)
    # potential: (W + 1) (topological place) + K is above every step's base and grows by
    # more than the weight W along every edge, so every reduced weight is at least 1
    pi *= top
    pi += low
    rs, rd = src[:nreal], dst[:nreal]
    red = np.empty(len(dst), np.float64)
    red[:nreal] = pi[rd] - pi[rs] - w
    red[nreal:] = pi[dst[nreal:]] - base[dst[nreal:]]
    graph.data = red
    dist = _shortest(graph, total)
    got = pi[:total] - dist[:total].astype(I64)
    del dist, graph, red, pi
    # every equation t[f] = max(base, t[f-1] + 1, terms) must hold: then these are the
    # window's times (a DAG's equations have one solution)
    check = base
    np.maximum.at(check, rd, got[rs] + w)
    if not np.array_equal(check, got):
        return walk_window(deps, times, lo, hi, active)
    for x, u in enumerate(active):
        times[u][lo[u]:hi[u]] = got[woff[x]:woff[x + 1]]
    return True


def _shortest(graph, source: int) -> np.ndarray:
    """scipy's Dijkstra from ``source`` (its distances, float64)."""
    from scipy.sparse.csgraph import dijkstra

    return dijkstra(graph, directed=True, indices=source)


def _topological(pre: np.ndarray, parent: np.ndarray, n: int) -> np.ndarray:
    """A place for every node such that every edge goes to a later place, from a DFS's visit
    order ``pre`` and tree ``parent`` (scipy's ``depth_first_order``) over a DAG: a node's
    subtree follows it in visit order and ends at the leaf reached by last children (found
    by pointer doubling, log depth numpy passes). An edge u -> v either stays in u's
    subtree (v's subtree ends no later than u's and v comes later in visit order) or
    reaches a node finished before u was visited (whose subtree ends before u's): so
    sorting by (subtree end, descending; visit order) is a topological order, and
    ``visit - n * end`` numbers it without a sort."""
    at = np.empty(n, I64)
    at[pre] = np.arange(n, dtype=I64)
    me = np.arange(n, dtype=I64)
    up = parent.astype(I64)
    root = int(pre[0])
    up[root] = root
    last = np.full(n, -1, I64)
    kids = np.flatnonzero(up != me)
    np.maximum.at(last, up[kids], at[kids])
    leaf = me.copy()
    has = last >= 0
    leaf[has] = pre[last[has]]
    while True:
        nxt = leaf[leaf]
        if np.array_equal(nxt, leaf):
            break
        leaf = nxt
    return at - n * at[leaf]


__all__ = ["dijkstra_window", "walk_window"]
