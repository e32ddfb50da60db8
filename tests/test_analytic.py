"""The analytic tile model (simulator.analytic) against a direct per-row evaluation of the
same formula, and the BLAS thread limit of a run (sieve.blas)."""

from __future__ import annotations

import numpy as np
import pytest

import simulator.analytic as analytic
from isa.errors import ConfigError
from sieve.blas import with_blas_threads


def _direct(a: np.ndarray, b: np.ndarray, tb: int, kc: int, nb: int, fill: int):
    """Every tile, every visited row (a nonzero in the tile): max(P + 2R, a_t + b - R + 1, Y)
    + 2 (the vector reducer emits a row while it takes the next one's inputs); empty rows and
    the padding of the last token block are absent from the compressed tile."""
    T, K = a.shape
    N = b.shape[1]
    A, B = a != 0, b != 0
    TQ, Q, NB = -(-T // tb), -(-K // kc), -(-N // nb)
    cyc = np.zeros((Q, TQ, NB), dtype=np.int64)
    P = np.zeros_like(cyc)
    Y = np.zeros_like(cyc)
    for q in range(Q):
        for t in range(TQ):
            for r in range(NB):
                at = A[t * tb:(t + 1) * tb, q * kc:(q + 1) * kc]
                bt = B[q * kc:(q + 1) * kc, r * nb:(r + 1) * nb]
                if not at.any() or not bt.any():
                    continue
                cnt = bt.sum(axis=1)
                bn = int((cnt > 0).sum())
                total = 0
                for sel in at:
                    if not sel.any():
                        continue
                    p, rr = int(cnt[sel].sum()), int((cnt[sel] > 0).sum())
                    y = int(bt[sel].any(axis=0).sum())
                    total += max(p + 2 * rr, int(sel.sum()) + bn - rr + 1, y) + 2
                    P[q, t, r] += p
                    Y[q, t, r] += y
                cyc[q, t, r] = total + fill
    return cyc, P, Y


@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize("T,K,N,da,db,words", [
    (9, 40, 30, 1.0, 0.5, 64), (21, 70, 45, 0.5, 0.3, 128), (6, 33, 70, 0.9, 0.2, 64),
    (40, 24, 24, 0.2, 0.8, 256), (5, 64, 17, 0.0, 0.5, 64), (12, 50, 90, 1.0, 1.0, 96)])
def test_tiles_equal_the_per_row_formula(monkeypatch, T, K, N, da, db, words, column_major):
    monkeypatch.setattr(analytic, "SLAB", 64)     # many slabs: the slab loop is exercised
    rng = np.random.default_rng(T * K + N)
    a = (rng.random((T, K)) < da) * rng.standard_normal((T, K))
    a[1, :] = 1.0                                   # full rows next to partial and empty
    a[2, :] = 0.0
    b = (rng.random((K, N)) < db) * rng.standard_normal((K, N))
    if column_major:       # W^T as a view of W's rows, as the layer engine passes it
        b = np.asfortranarray(b)
    cyc, c, (tb, kc, nb) = analytic.analytic_tiles(a, b, words, fill=3)
    want, P, Y = _direct(a, b, tb, kc, nb, 3)
    assert np.array_equal(cyc, want)
    live = c["live"]
    assert np.array_equal(np.where(live, c["P"], 0), P)
    assert np.array_equal(np.where(live, c["Y"], 0), Y)
    assert int(np.where(live, c["P"], 0).sum()) == int(((a != 0) * 1 @ (b != 0) * 1).sum())


def test_empty_and_padding_rows_cost_nothing_as_on_burst(onyx_chip):
    """A row of A with no nonzero in a tile is absent from the tile's compressed A, and the
    last token block has no padding rows: burst takes the same cycles with such rows as
    without them, and so does the analytic model (it charged each b + 1 cycles before)."""
    from compiler.layers import plan_layer
    from simulator.layers import LayerEngine

    chip = onyx_chip
    plan = plan_layer(chip)
    rng = np.random.default_rng(1)

    def cycles(a: np.ndarray, b: np.ndarray, fidelity: str, words: int) -> int:
        eng = LayerEngine(plan, chip, fidelity)
        eng.words = words
        eng.product(a, b, lane=0, expert=-1, label="p")
        return eng.work.kernel_cycles

    a = (rng.random((8, 64)) < 0.5) * rng.standard_normal((8, 64))
    b = (rng.random((64, 40)) < 0.5) * rng.standard_normal((64, 40))
    holes = a.copy()
    holes[[1, 4, 6]] = 0.0
    kept = a[[0, 2, 3, 5, 7]]
    for fidelity in ("burst", "analytic"):
        assert cycles(holes, b, fidelity, 2048) == cycles(kept, b, fidelity, 2048)
    # 48 words: token blocks of 6 rows, so 7 tokens leave a last block of 1 row (5 padding)
    a7 = (rng.random((7, 64)) < 0.6) * rng.standard_normal((7, 64))
    burst, model = cycles(a7, b, "burst", 48), cycles(a7, b, "analytic", 48)
    assert abs(model / burst - 1) < 0.08, (model, burst)     # was +21% with padding charged


@pytest.mark.parametrize("w", [1, 2, 4, 8, 16])
def test_popcount_without_bitwise_count(monkeypatch, w):
    bits = np.random.default_rng(w).integers(0, 256, (7, 3 * w), dtype=np.uint8)
    want = np.unpackbits(bits, axis=1).reshape(7, 3, 8 * w).sum(axis=2)
    assert np.array_equal(analytic._popcount(bits, w), want)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert np.array_equal(analytic._popcount(bits, w), want)


def test_runs_limit_blas_threads(monkeypatch):
    from threadpoolctl import threadpool_info

    @with_blas_threads
    def threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    monkeypatch.setenv("SIEVE_BLAS_THREADS", "1")
    assert set(threads()) <= {1}
    monkeypatch.setenv("SIEVE_BLAS_THREADS", "two")
    with pytest.raises(ConfigError, match="SIEVE_BLAS_THREADS"):
        threads()
