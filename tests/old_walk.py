"""The burst solver's first walk of a tight-loop window (before ``simulator.burst_loop``):
units take turns in topological order, each going as far as its terms are solved. Kept
here, out of the simulator, as an independent reference the new walk is checked against
(tests/test_burst_loop.py)."""

from __future__ import annotations

import numpy as np

from simulator.burst_fire import I64
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
    slot = {u: k for k, u in enumerate(active)}
    sizes = [hi[u] - lo[u] for u in active]
    # the window's steps numbered unit after unit (unit x's from woff[x]); the terms of
    # every unit gathered into one set of arrays, sorted by target once (a dependency's
    # indices never decrease, so the terms reading final steps are a prefix of its slice)
    woff = [0]
    for n in sizes:
        woff.append(woff[-1] + n)
    base = np.zeros(woff[-1], I64)
    out_pos: list[np.ndarray] = []
    out_val: list[np.ndarray] = []
    in_pos: list[np.ndarray] = []
    in_rel: list[np.ndarray] = []
    in_src: list[int] = []
    in_w: list[int] = []
    in_len: list[int] = []
    for x, u in enumerate(active):
        a = lo[u]
        shift = woff[x] - a
        for d in deps[u]:
            k0, k1 = d.span(a, hi[u])
            if k1 <= k0:
                continue
            idx = d.index[k0:k1]
            ls = lo[d.src]
            kin = int(idx.searchsorted(ls))
            steps = d.steps(k0, k1)
            if kin:
                out_pos.append(steps[:kin] + shift)
                out_val.append(times[d.src][idx[:kin]].astype(I64) + d.weight)
            if kin < len(idx):
                in_pos.append(steps[kin:] + shift)
                in_rel.append(idx[kin:] - ls)
                in_src.append(slot[d.src])
                in_w.append(d.weight)
                in_len.append(len(idx) - kin)
        if a:
            base[woff[x]] = int(times[u][a - 1]) + 1
    if out_pos:
        np.maximum.at(base, np.concatenate(out_pos), np.concatenate(out_val))
    if in_len:
        tg = np.concatenate(in_pos)
        o = np.argsort(tg, kind="stable")
        ptr_all = np.searchsorted(tg[o], np.arange(woff[-1] + 1)).tolist()
        lens = np.asarray(in_len, dtype=I64)
        src_all = np.repeat(np.asarray(in_src, dtype=I64), lens)[o].tolist()
        rel_all = np.concatenate(in_rel)[o].tolist()
        w_all = np.repeat(np.asarray(in_w, dtype=I64), lens)[o].tolist()
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
