"""The analytic tile model of one layer product, in time linear in tokens and nonzeros.

``Y = A W^T`` runs as tiles (token block ``tb``, K chunk ``kc``, N block ``nb``) of the
Gustavson SpM*SpM kernel (simulator.layers). The analytic model (simulator.layers docstring)
costs token row t of a tile as max(P_t + 2R_t, a_t + b - R_t + 1, Y_t); this module computes
those per-row terms for every tile without a dense pass per row:

- per row of W^T, its nonzeros per N block (``cnt``) and per K chunk, the columns of each N
  block it reaches (``_reach``), are reductions over groups of the weight mask in its own
  memory order (no padded copy; one pass each);
- a row of A that holds every coordinate of a K chunk ("full") has the chunk's own P, R and
  Y (all of its rows of W^T); a row with none ("empty") is absent from the tile's compressed
  A, as the padding rows of the last token block are absent from its tile: the kernel never
  visits it, so it costs no cycle, step or token (burst agrees exactly). Both cost O(tiles),
  whatever the tokens;
- only rows holding part of a chunk need their own terms: P and R by a batched product of
  the row's mask with ``cnt``, Y (output columns reached) by OR-ing the packed rows of W^T
  the row selects (the mask packed along N, one byte-aligned group of bits per N block:
  ``_pack``) and counting bits. These run over slabs of at most :data:`SLAB` elements,
  so no intermediate grows with the tokens or the weights beyond the operands' own masks.

Counts are integers (int64) throughout. Tile sums over rows of P, R and the join term come
from per-token-block column counts of A, without the per-row terms.
"""

from __future__ import annotations

import math

import numpy as np

from isa.arch import cdiv

SLAB = 1 << 20
"""Largest per-row intermediate (elements) of the partial-row pass."""

_POP8 = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)


def _block_bytes(nb: int) -> int:
    """Bytes per N block of packed bits: 1, 2, 4, 8 or a multiple of 8 (whole words)."""
    n = cdiv(nb, 8)
    return n if n in (1, 2, 4) else 8 * cdiv(n, 8)


def _pack(bmask: np.ndarray, nb: int) -> np.ndarray:
    """The K x N mask as bits, [K, NB * w] bytes: block r holds columns r*nb.. in w bytes."""
    K, N = bmask.shape
    NB, w = cdiv(N, nb), _block_bytes(nb)
    if nb != 8 * w or NB * nb != N:
        pad = np.zeros((K, NB, 8 * w), dtype=bool)
        whole = N // nb
        pad[:, :whole, :nb] = bmask[:, :whole * nb].reshape(K, whole, nb)
        if whole < NB:
            pad[:, whole, :N - whole * nb] = bmask[:, whole * nb:]
        bmask = pad
    return np.packbits(bmask.reshape(K, NB * 8 * w), axis=1)


def _popcount(bits: np.ndarray, w: int) -> np.ndarray:
    """Set bits per block of ``w`` bytes along the last axis of ``bits`` -> int64 [..., NB]."""
    word = min(w, 8)
    kind = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[word]
    v = np.ascontiguousarray(bits).view(kind)
    if hasattr(np, "bitwise_count"):
        n = np.bitwise_count(v)
    else:   # numpy < 2.0
        n = _POP8[v.view(np.uint8)].reshape(*v.shape, word).sum(axis=-1, dtype=np.uint8)
    if w > 8:
        return n.reshape(*n.shape[:-1], -1, w // 8).sum(axis=-1, dtype=np.int64)
    return n.astype(np.int64)


def _groups(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` [rows, n] as [rows, groups, size], zero-padded (ufunc.reduceat is slow on many
    short groups; a loop over ``size`` strided slices is not, nor a reduction over long
    ones)."""
    rows, n = x.shape
    q = cdiv(n, size)
    if q * size != n:
        x = np.pad(x, ((0, 0), (0, q * size - n)))
    return x.reshape(rows, q, size)


def _chunk_sums(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sums (int64) of consecutive groups of ``size`` along ``axis`` (the last one may be
    short) of a 2-D array."""
    if x.dtype == bool:
        x = x.view(np.uint8)
    n = x.shape[axis]
    if axis == 1:
        g = _groups(x, size)
        if size > 32:      # long groups: a contiguous reduction
            return g.sum(axis=2, dtype=np.int64)
        out = g[:, :, 0].astype(np.int64)
        for j in range(1, size):
            out += g[:, :, j]
        return out
    q, whole = cdiv(n, size), n // size
    out = np.empty((q, x.shape[1]), dtype=np.int64)
    acc = np.int32 if x.dtype == np.uint8 else np.int64   # a bool group sums to <= size
    if whole:         # whole groups as a view (no padded copy), the short one apart
        out[:whole] = x[:whole * size].reshape(whole, size, -1).sum(axis=1, dtype=acc)
    if whole < q:
        out[whole] = x[whole * size:].sum(axis=0, dtype=acc)
    return out


def _count_dtype(size: int) -> type:
    """The narrowest unsigned accumulator of a sum of ``size`` booleans (numpy's reductions
    run fastest in it)."""
    return np.uint8 if size < 256 else (np.uint16 if size < 65536 else np.int64)


def _row_groups(u: np.ndarray, size: int, op: np.ufunc) -> np.ndarray:
    """``op`` (add or maximum) over consecutive groups of ``size`` rows of the 2-D uint8
    array ``u`` (the last group may be short) -> [groups, columns]: whole groups as one
    reduction over a reshaped view (no padded copy), the short one apart."""
    rows, cols = u.shape
    whole, q = rows // size, cdiv(rows, size)
    dtype = _count_dtype(size) if op is np.add else np.uint8
    out = np.empty((q, cols), dtype=dtype)
    if whole:
        op.reduce(u[:whole * size].reshape(whole, size, cols), axis=1, dtype=dtype,
                  out=out[:whole])
    if whole < q:
        op.reduce(u[whole * size:], axis=0, dtype=dtype, out=out[whole])
    return out


def _block_counts(bmask: np.ndarray, nb: int) -> np.ndarray:
    """Nonzeros per (row of W^T, N block) [K, NB], in the narrowest unsigned type that holds
    ``nb``: a column-major mask (W^T as a view of W's rows) sums groups of W's rows; a
    row-major one sums runs along its rows."""
    if bmask.flags.f_contiguous and not bmask.flags.c_contiguous:
        return _row_groups(bmask.T.view(np.uint8), nb, np.add).T
    u = np.ascontiguousarray(bmask).view(np.uint8)
    K, N = u.shape
    if nb > 16:         # long runs: one segmented reduction
        return np.add.reduceat(u, np.arange(0, N, nb), axis=1, dtype=_count_dtype(nb))
    whole = N // nb     # short runs: add the nb strided columns of each block
    out = np.empty((K, cdiv(N, nb)), dtype=np.uint8)
    runs = u[:, :whole * nb].reshape(K, whole, nb)
    np.copyto(out[:, :whole], runs[:, :, 0])
    for j in range(1, nb):
        out[:, :whole] += runs[:, :, j]
    if whole < out.shape[1]:
        np.add.reduce(u[:, whole * nb:], axis=1, dtype=np.uint8, out=out[:, whole])
    return out


def _reach(bmask: np.ndarray, kc: int, nb: int) -> np.ndarray:
    """Columns of each N block with a nonzero in each K chunk of W^T [Q, NB] (int64): the
    output nonzeros of a row of A holding the whole chunk."""
    K, N = bmask.shape
    starts = np.arange(0, K, kc)
    if bmask.flags.f_contiguous and not bmask.flags.c_contiguous:
        hit = np.maximum.reduceat(bmask.T.view(np.uint8), starts, axis=1)     # [N, Q]
        return _row_groups(hit, nb, np.add).T.astype(np.int64)
    u = np.ascontiguousarray(bmask).view(np.uint8)
    hit = np.empty((len(starts), N), dtype=np.uint8)                           # [Q, N]
    for q, k0 in enumerate(starts):    # one reduction per K chunk (rows are contiguous)
        np.maximum.reduce(u[k0:k0 + kc], axis=0, out=hit[q])
    return np.add.reduceat(hit, np.arange(0, N, nb), axis=1,
                           dtype=_count_dtype(nb)).astype(np.int64)


def _plan(amask: np.ndarray, bmask: np.ndarray, words: int
          ) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """(tb, kc, nb, per-row block counts [K, NB], nonzeros per (K chunk, N block) [Q, NB])
    so every tile level fits ``words``.

    tb: a token block of words/8 rows; kc: the K chunk sized from A's density, halved until
    every (token block, K chunk) of A holds at most ``words`` nonzeros; nb: the N block sized
    from W's density, halved until every (K chunk, N block) of W holds at most ``words``.
    """
    T, K = amask.shape
    N = bmask.shape[1]
    tb = min(T, max(1, words // 8))
    dens_a = np.count_nonzero(amask) / amask.size if amask.size else 0.0
    kc = min(K, max(1, int(words // max(1.0, math.ceil(tb * dens_a * 1.25)))), words - 1)
    col_a = _chunk_sums(amask, tb, 0)                      # [TQ, K] nonzeros per block column
    while kc > 1:
        if _chunk_sums(col_a, kc, 1).max(initial=0) <= words:
            break
        kc //= 2
    dens_b = np.count_nonzero(bmask) / bmask.size if bmask.size else 0.0
    nb = max(1, min(N, words // max(1, tb), int(words // max(1.0, kc * dens_b * 1.25))))
    while True:
        cnt = _block_counts(bmask, nb)
        b_nnz = _chunk_sums(cnt, kc, 0)
        if nb <= 1 or b_nnz.max(initial=0) <= words:
            return tb, kc, nb, cnt, b_nnz
        nb //= 2


def tile_sizes(amask: np.ndarray, bmask: np.ndarray, words: int) -> tuple[int, int, int]:
    """(token block, K chunk, N block) so that each level of every tile fits ``words``."""
    tb, kc, nb, _, _ = _plan(amask, bmask, words)
    return tb, kc, nb


def _partial_rows(am: np.ndarray, part: np.ndarray, n_a: np.ndarray, cnt_q: np.ndarray,
                  bits_q: np.ndarray, bn: np.ndarray, w: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Sums over the rows marked ``part`` of the row cost and of Y, per (chunk, N block).

    am [m, Q, kc] uint8 masks of one token block; part/n_a [m, Q]; cnt_q [Q, kc, NB];
    bits_q [Q, kc, NB * w] (w bytes per N block); bn [Q, NB]. Returns (row cost sum,
    Y sum), each [Q, NB].
    """
    m, Q, kc = am.shape
    NB = cnt_q.shape[2]
    rows = np.zeros((Q, NB), dtype=np.int64)
    ysum = np.zeros((Q, NB), dtype=np.int64)
    step = max(1, SLAB // (m * max(NB, bits_q.shape[2])))
    cnt_f = cnt_q.astype(np.float32)
    hit_f = (cnt_q > 0).astype(np.float32)
    for q0 in range(0, Q, step):
        q1 = min(Q, q0 + step)
        pm = part[:, q0:q1].T                                        # [g, m]
        if not pm.any():
            continue
        a = np.ascontiguousarray(am[:, q0:q1].transpose(1, 0, 2))    # [g, m, kc]
        af = a.astype(np.float32)
        P = np.matmul(af, cnt_f[q0:q1]).astype(np.int64)             # exact: <= words
        R = np.matmul(af, hit_f[q0:q1]).astype(np.int64)
        acc = np.zeros((q1 - q0, m, bits_q.shape[2]), dtype=np.uint8)
        for j in range(kc):
            acc |= a[:, :, j, None] * bits_q[q0:q1, j][:, None, :]
        Y = _popcount(acc, w)
        join = n_a[:, q0:q1].T[:, :, None] + bn[q0:q1, None] - R + 1
        row = np.maximum(np.maximum(P + 2 * R, join), Y)
        sel = pm[:, :, None]
        rows[q0:q1] = (row * sel).sum(axis=1)
        ysum[q0:q1] = (Y * sel).sum(axis=1)
    return rows, ysum


def analytic_tiles(a: np.ndarray, b: np.ndarray, words: int, fill: int
                   ) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[int, int, int]]:
    """Kernel cycles of every tile of A (T x K) times B (K x N) and their counts (``a`` and
    ``b`` may be given as their nonzero masks: only where they are nonzero matters).

    Returns (cycles [Q, TQ, NB] with 0 for skipped tiles, integer counts per tile, tile
    sizes); a tile's cycles are the sum over its visited rows (rows of A with a nonzero in
    the tile's K chunk) of the row cost + 2 per visited row + ``fill``. Counts: ``rows`` the
    tile's real rows (what its transfers carry), ``visited`` the rows the kernel walks.
    """
    amask = a if a.dtype == bool else a != 0
    bmask = b if b.dtype == bool else b != 0
    T, K = amask.shape
    tb, kc, nb, cnt, b_nnz = _plan(amask, bmask, words)             # b_nnz [Q, NB]
    TQ, Q, NB = cdiv(T, tb), cdiv(K, kc), cnt.shape[1]
    w = _block_bytes(nb)
    kpad = Q * kc - K
    # W per K chunk: its nonzeros, nonempty rows and reachable columns per N block
    hit = cnt > 0                                                    # [K, NB]
    bn = _chunk_sums(hit, kc, 0)
    y_full = _reach(bmask, kc, nb)
    k_real = np.minimum(kc, K - np.arange(Q) * kc)                   # [Q]
    row_full = np.maximum(np.maximum(b_nnz + 2 * bn, (k_real + 1)[:, None]), y_full)
    # A per row and chunk; per token block and column
    n_a = _chunk_sums(amask, kc, 1)                                  # [T, Q]
    col_a = _chunk_sums(amask, tb, 0)                                # [TQ, K]
    a_nnz = _chunk_sums(n_a, tb, 0)                                  # [TQ, Q]
    rows_in_block = np.minimum(tb, T - np.arange(TQ) * tb)           # real rows per block
    full = n_a == k_real[None, :]
    empty = n_a == 0
    part = ~(full | empty)
    n_full = _chunk_sums(full, tb, 0)                                # [TQ, Q]
    visited = (rows_in_block[:, None] - _chunk_sums(empty, tb, 0)).T[:, :, None]  # [Q, TQ, 1]
    # tile sums of P and R over rows: column counts of A times W's per-row counts, one
    # batched product per K chunk (float64 BLAS: integers far below 2**53, so exact)
    cnt_q = np.pad(cnt, ((0, kpad), (0, 0))).reshape(Q, kc, NB)
    col_q = np.pad(col_a, ((0, 0), (0, kpad))).reshape(TQ, Q, kc)
    col_f = np.ascontiguousarray(col_q.transpose(1, 0, 2), dtype=np.float64)   # [Q, TQ, kc]
    Ps = np.matmul(col_f, cnt_q.astype(np.float64)).astype(np.int64)           # [Q, TQ, NB]
    Rs = np.matmul(col_f, np.pad(hit, ((0, kpad), (0, 0))).reshape(Q, kc, NB)
                   .astype(np.float64)).astype(np.int64)
    cyc_rows = n_full.T[:, :, None] * row_full[:, None]              # [Q, TQ, NB]
    Ys = n_full.T[:, :, None] * y_full[:, None]
    if part.any():
        bits = _pack(bmask, nb)
        bits_q = np.pad(bits, ((0, kpad), (0, 0))).reshape(Q, kc, NB * w)
        am = np.pad(amask, ((0, 0), (0, kpad))).view(np.uint8).reshape(T, Q, kc)
        for t in range(TQ):
            s = slice(t * tb, min(T, (t + 1) * tb))
            if part[s].any():
                r, y = _partial_rows(am[s], part[s], n_a[s], cnt_q, bits_q, bn, w)
                cyc_rows[:, t] += r
                Ys[:, t] += y
    live = (a_nnz.T[:, :, None] > 0) & (b_nnz[:, None, :] > 0)       # [Q, TQ, NB]
    cyc = cyc_rows + 2 * visited + fill
    cyc = np.where(live, cyc, 0).astype(np.int64)
    join = a_nnz.T[:, :, None] + visited * (bn[:, None] + 1) - Rs
    counts = {
        "P": Ps, "R": Rs, "Y": Ys, "join": join,
        "a_nnz": np.broadcast_to(a_nnz.T[:, :, None], live.shape),
        "b_nnz": np.broadcast_to(b_nnz[:, None, :], live.shape),
        "b_rows": np.broadcast_to(bn[:, None, :], live.shape),
        "rows": np.broadcast_to(rows_in_block[None, :, None], live.shape),
        "visited": np.broadcast_to(visited, live.shape),
        "live": live,
    }
    return cyc, counts, (tb, kc, nb)


def tile_energy_counts(c: dict[str, np.ndarray], hops: float) -> dict[str, float]:
    """First-order action counts of the Gustavson tile kernel (per live tile, summed).

    Per visited token row (a row with no nonzero in the tile is never walked): the scanners
    emit a_t + 1 (A), b + 1 (W^T rows, re-scanned per row) and P_t + 2R_t (W^T coordinates)
    tokens; arrays read 2 P_t values; the repeat chain handles P_t + R_t tokens twice; the
    reducer accumulates P_t - Y_t times; writers store Y_t coordinates and values. SRAM words
    are 64-bit (4 sequential 16-bit entries per word).
    """
    live = c["live"]

    def s(x: np.ndarray) -> float:
        return float(np.where(live, x, 0).sum())
    P, R, Y, join = s(c["P"]), s(c["R"]), s(c["Y"]), s(c["join"])
    rows = s(c["visited"])
    a_scan = s(c["a_nnz"]) + rows
    b_scan = s(c["b_rows"] * c["visited"]) + rows
    inner = P + 2 * R
    stream_tokens = a_scan + b_scan + 2 * inner + 2 * (P + R) + 3 * P + 2 * Y + join
    return {
        "mac": P,
        "joiner_step": join,
        "reducer_accumulate": max(P - Y, 0.0),
        "pe_control_step": 2 * (P + R) + (P + R) - max(P - Y, 0.0),  # the reducer emits
        #                                                  while it takes input
        "mem_sram_read": (a_scan + b_scan + inner + 2 * P) / 4.0,
        "mem_sram_write": (2 * Y + rows) / 4.0,
        "mem_control_step": a_scan + b_scan + inner + 2 * P + 2 * Y,
        "fifo_push": stream_tokens,
        "interconnect_hop": stream_tokens * hops,
    }
