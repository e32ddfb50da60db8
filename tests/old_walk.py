"""The burst solver's first walk of a tight-loop window (before ``simulator.burst_loop``):
units take turns in topological order, each going as far as its terms are solved. Kept
here, out of the simulator, as an independent reference the new walk is checked against
(tests/test_burst_loop.py)."""

from __future__ import annotations

import numpy as np

from simulator.burst_loop import _window_terms
from simulator.burst_timing import _Dep


def _sequential_window(deps: list[list[_Dep]], times: list[np.ndarray], lo: list[int],
                       hi: list[int], active: list[int]) -> bool:
    """The window's times step by step: the longest paths of its step graph in a
    topological order of its steps. The terms from final steps are gathered with numpy; in
    Python each unit advances through its steps while the window steps they wait for are
    final, and a unit that meets one that is not waits until that step is solved; the units
    take turns in topological order (a pass moves tokens down the pipeline and the next one
    room back up, fewer and cheaper turns than a work queue's). Linear in the window's
    steps and dependencies. Returns False if no unit can advance (a cycle)."""
    sizes = [hi[u] - lo[u] for u in active]
    # the window's steps numbered unit after unit (unit x's from woff[x]), the terms reading
    # final steps folded into a base per step, the rest sorted by target once (the set-up
    # the simulator's walks share: ``burst_loop._window_terms``)
    woff, base, in_pos, in_src, in_w = _window_terms(deps, times, lo, hi, active)
    if in_pos:
        tg = np.concatenate(in_pos)
        o = np.argsort(tg, kind="stable")
        ptr_all = np.searchsorted(tg[o], np.arange(woff[-1] + 1)).tolist()
        src = np.concatenate(in_src)[o]
        unit = np.searchsorted(np.asarray(woff), src, side="right") - 1
        src_all = unit.tolist()
        rel_all = (src - np.asarray(woff)[unit]).tolist()
        w_all = np.concatenate(in_w)[o].tolist()
    else:
        ptr_all, src_all, rel_all, w_all = [0] * (woff[-1] + 1), [], [], []
    base_all = base.tolist()
    # each unit's solved times, None where not solved yet; each term holds its source's
    # list (a step is final once it is not None: no length check per term)
    got: list[list[int | None]] = [[None] * n for n in sizes]
    lst_all = list(map(got.__getitem__, src_all))
    units = [(ptr_all[woff[x]:woff[x + 1] + 1], rel_all, w_all, lst_all, got[x],
              base_all[woff[x]:woff[x + 1]], sizes[x]) for x in range(len(active))]
    # passes over the units in topological order, each going as far as it can: a pass
    # carries the tokens down the pipeline, the next one the room back up; a unit waits
    # (is skipped) until the step it stopped at is solved; a pass in which no unit moves
    # leaves a unit short of its window only if its steps wait in a cycle.
    # An entry: [unit, the list it waits on (None: none), the step it waits for, its next step]
    todo = [[x, None, 0, 0] for x in units if x[6]]
    moved = True
    while todo and moved:
        moved = False
        left = []
        for entry in todo:
            wait = entry[1]
            if wait is not None and wait[entry[2]] is None:
                left.append(entry)
                continue
            ptr, rel, w, lst, tu, bu, n = entry[0]
            f = start = entry[3]
            prev = tu[f - 1] if f else bu[0] - 1
            end = ptr[f]
            while f < n:
                c = prev + 1
                x = bu[f]
                if x > c:
                    c = x
                k = end
                end = ptr[f + 1]
                while k < end:
                    x = lst[k][rel[k]]
                    if x is None:
                        entry[1] = lst[k]
                        entry[2] = rel[k]
                        break
                    x += w[k]
                    if x > c:
                        c = x
                    k += 1
                else:
                    tu[f] = c
                    prev = c
                    f += 1
                    continue
                break
            entry[3] = f
            if f > start:
                moved = True
            if f < n:
                left.append(entry)
        todo = left
    if todo:
        return False
    for u, t in zip(active, got):
        times[u][lo[u]:hi[u]] = t
    return True
