"""Tight back-pressure loops of the burst timing solver: a window's times step by step.

A window whose Gauss-Seidel sweeps do not settle (``simulator.burst_timing.solve_times``) is
a tight loop: its binding constraint alternates between units every few tokens (an
unbalanced reconvergent path: the short path's FIFO fills and the producer waits for the
consumer's pops, which wait for the long path), so each sweep carries the solution one turn
of the loop further. ``walk_window`` solves such a window in one pass: the longest paths of
its step graph, each step's time computed once every step it reads is solved.

The set-up is numpy: the window's steps are numbered unit after unit, the terms that read
final steps (outside the window) are folded into one base time per step (itself a term,
reading a solved slot past the window's steps), and the terms are sorted by target into
three flat lists (where each step's terms start, the step each reads, its weight). The walk
is Python: a unit advances while the steps it reads are solved; one that meets an unsolved
step hands over to that step's unit (a stack), which hands back as soon as the unit below it
can go on, so no waiting unit is visited in vain and a cycle of waits (a deadlock) is found
when it closes. Solved times live in one flat list indexed by step, so a term costs one list
read, an add and a compare. The result does not depend on the order of the turns: every
step's time is the maximum over its terms of solved values, so the times are the window's
longest paths, exactly what the cycle engine's as-soon-as-possible processes produce.

Why not numpy for the loop itself (measured on unbalanced SpM*SpM 256^3 @5%, see
docs/fidelity.md, issue 11's fifth pass): the loop's sequential depth is its number of turns,
and an exact method must discover where the binding constraint switches, which happens
about once per turn and depends on the exact times before it.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Protocol

import numpy as np

I64 = np.int64


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


def walk_window(deps: list[list[Dep]], times: list[np.ndarray], lo: list[int],
                hi: list[int], active: list[int]) -> bool:
    """Solve the steps [lo[u], hi[u]) of the ``active`` units (a downset of the step graph:
    every step they read is final or in the window) in place in ``times``. Returns False,
    leaving ``times`` unchanged, if the window's steps wait on each other in a cycle (a
    deadlock)."""
    sizes = [hi[u] - lo[u] for u in active]
    nunits = len(active)
    woff = [0]
    for n in sizes:
        woff.append(woff[-1] + n)
    total = woff[-1]
    if not total:
        return True
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
        if a:
            base[woff[x]] = int(times[u][a - 1]) + 1
    if out_pos:
        np.maximum.at(base, np.concatenate(out_pos), np.concatenate(out_val))
    del out_pos, out_val
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


__all__ = ["walk_window"]
