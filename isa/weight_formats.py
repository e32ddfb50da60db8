"""Bytes of a pruned weight as the chip stores and moves it: block sparse rows (BSR) for a
block-pruned weight. (N:M compression: compiler.dense.nm_bytes.)"""

from __future__ import annotations

import numpy as np


def bsr_bytes(b: np.ndarray, block: tuple[int, int], word_bytes: int = 2) -> int:
    """Bytes of a K x N block-pruned weight stored as block sparse rows (BSR, the format of
    scipy.sparse.bsr_matrix and cuSPARSE's bsrmm) with blocks of ``block`` = (bk along K, bn
    along N): the values of every block holding a nonzero, one block-column index per kept
    block and ceil(K/bk) + 1 block-row pointers, each a ``word_bytes`` word. ASSUMPTION: an
    edge block stores only its in-range elements (no padding), and indices take one word
    each (16-bit words index up to 65,535 blocks per row, enough for every catalogue layer)."""
    k, n = b.shape
    bk, bn = block
    gk, gn = -(-k // bk), -(-n // bn)
    nz = np.zeros((gk * bk, gn * bn), dtype=bool)
    nz[:k, :n] = b != 0
    kept = nz.reshape(gk, bk, gn, bn).any(axis=(1, 3))          # (gk, gn) kept blocks
    rows_in = np.minimum(bk, k - np.arange(gk) * bk)             # in-range size of each
    cols_in = np.minimum(bn, n - np.arange(gn) * bn)             # block row / column
    values = int((kept * np.outer(rows_in, cols_in)).sum())
    return (values + int(kept.sum()) + gk + 1) * word_bytes
