"""Model layers: mixture-of-experts, pruned linear and activation-sparse FFN layers.

A layer holds its token activations concretely and its weights as :class:`Weight` objects
that produce any block of rows on demand: either slices of real (pruned) weights loaded from
a checkpoint, or seeded synthetic weights generated chunk by chunk, so a full-size layer
(Mixtral's 8 experts x 3 x 4096 x 14336 weights) never has to sit in memory at once.

Synthetic weights. Chunk ``c`` (rows ``c*CHUNK_ROWS ..``) of a matrix is generated from its own
seed (layer seed, matrix id, chunk), so a block is the same whatever tiling asked for it.
Values are odd multiples of ``scale/128`` (never zero: all zeros are pruning's), kept where a
pruning mask says so (:func:`workloads.pruning.synthetic_mask` semantics: unstructured with a
per-row keep probability whose CV follows measured pruned models, exact N:M along the input
dimension, or HxW blocks). Weights stored ``transposed`` (a down projection [d x f] generated
as rows of its transpose, so its columns come in f-chunks) apply the same patterns along the
same (input) dimension.

The reference forward pass of every layer is plain numpy in float64 (``reference``), chunked
along the FFN dimension; the simulator computes the same layer from its tiles and compares.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workloads.base import WorkloadError

CHUNK_ROWS = 256
"""Rows of one synthetic-weight generation chunk (a multiple of every block and N:M size)."""


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode())


def _pattern(text: str):
    from workloads.pruning import parse_pattern

    return parse_pattern(text)


@dataclass(frozen=True)
class Weight:
    """A weight matrix [out x in] (``shape``), produced by row or column blocks.

    ``data`` holds real weights (already pruned); otherwise the matrix is synthetic (module
    docstring). ``transposed``: synthetic chunks are rows of W^T, so ``cols`` is the cheap
    access; ``rows`` is cheap otherwise. The layer code asks for the cheap direction only.
    """

    name: str
    shape: tuple[int, int]
    pattern: str = "dense"
    sparsity: float = 0.0
    seed: int = 0
    scale: float = 1.0
    transposed: bool = False
    row_cv: float | None = None
    data: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (0.0 <= self.sparsity < 1.0):
            raise WorkloadError(f"weight {self.name}: weight_sparsity must be in [0, 1), got "
                                f"{self.sparsity}")
        if self.data is not None and tuple(self.data.shape) != tuple(self.shape):
            raise WorkloadError(f"weight {self.name}: data has shape {self.data.shape}, "
                                f"expected {self.shape}")

    # ---------------------------------------------------------------- access
    @property
    def chunk_axis_len(self) -> int:
        """Length of the axis chunks run along (out, or in when transposed)."""
        return self.shape[1] if self.transposed else self.shape[0]

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """W[r0:r1, :] as float32 (zeros where pruned)."""
        if self.data is not None:
            return np.asarray(self.data[r0:r1], dtype=np.float32)
        if self.transposed:
            return self._block(0, self.shape[1]).T[r0:r1].copy()
        return self._block(r0, r1)

    def cols(self, c0: int, c1: int) -> np.ndarray:
        """W[:, c0:c1]^T (shape (c1-c0) x out) as float32."""
        if self.data is not None:
            return np.ascontiguousarray(np.asarray(self.data[:, c0:c1], dtype=np.float32).T)
        if not self.transposed:
            return self._block(0, self.shape[0])[:, c0:c1].T.copy()
        return self._block(c0, c1)

    def dense(self) -> np.ndarray:
        """The whole matrix (small layers and tests only)."""
        if self.data is not None:
            return np.asarray(self.data, dtype=np.float32)
        return self.cols(0, self.shape[1]).T.copy() if self.transposed \
            else self.rows(0, self.shape[0])

    # ---------------------------------------------------------------- synthetic generation
    def _block(self, a0: int, a1: int) -> np.ndarray:
        """Rows a0:a1 of the generated matrix (W, or W^T when transposed)."""
        width = self.shape[0] if self.transposed else self.shape[1]
        out = np.empty((a1 - a0, width), dtype=np.float32)
        c0, c1 = a0 // CHUNK_ROWS, -(-a1 // CHUNK_ROWS)
        for c in range(c0, c1):
            lo, hi = c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, self.chunk_axis_len)
            s0, s1 = max(lo, a0), min(hi, a1)
            if (s0, s1) == (lo, hi):       # the whole chunk: generate it in place
                self._chunk(c, hi - lo, width, out[s0 - a0:s1 - a0])
            else:
                out[s0 - a0:s1 - a0] = self._chunk(c, hi - lo, width)[s0 - lo:s1 - lo]
        return out

    def _keep_threshold(self) -> np.ndarray:
        """Per-output-row keep threshold of the unstructured mask (a draw of 16 random bits
        below it keeps the weight): the same lognormal for every chunk, so drawn once."""
        cv = None if self.row_cv is None else float(self.row_cv)
        return _keep_threshold(self.seed, self.name, float(self.sparsity), cv, self.shape[0])

    def _chunk(self, c: int, n: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
        """Chunk ``c`` (``n`` x ``width``), written into ``out`` when given."""
        rng = np.random.default_rng([self.seed, _stable_id(self.name), c])
        vals = _random_bytes(rng, n * width).view(np.int8).reshape(n, width)
        np.bitwise_or(vals, np.int8(1), out=vals)       # odd codes: never zero
        if out is None:
            out = np.empty((n, width), dtype=np.float32)
        step = np.float32(self.scale / 128.0)
        pat = _pattern(self.pattern) if self.pattern != "dense" else None
        if pat is None or (pat.kind != "nm" and self.sparsity == 0.0):
            np.multiply(vals, step, out=out)
            return out
        # the mask in W's orientation is (n_out x n_in); in a transposed chunk, rows are inputs
        if pat.kind == "unstructured":
            thr = self._keep_threshold()
            draw = _random_bytes(rng, 2 * n * width).view("<u2").reshape(n, width)
            if self.transposed:      # columns are output rows
                keep = draw < thr[None, :]
            else:
                keep = draw < thr[c * CHUNK_ROWS:c * CHUNK_ROWS + n, None]
        elif pat.kind == "nm":
            keep = _nm_keep(rng, n, width, pat.n, pat.m, along_rows=self.transposed)
        else:   # block: HxW in W's orientation
            bh, bw = (pat.bw, pat.bh) if self.transposed else (pat.bh, pat.bw)
            gr, gc = -(-n // bh), -(-width // bw)
            blocks = rng.random((gr, gc), dtype=np.float32) < np.float32(1.0 - self.sparsity)
            keep = np.repeat(np.repeat(blocks, bh, axis=0), bw, axis=1)[:n, :width]
        if step >= 0:
            # zero the pruned int8 codes before the one float pass: 0 x step is +0.0, the
            # same bits as clearing the float (values are odd, so only pruned codes are 0)
            np.multiply(vals, keep, out=vals)
            np.multiply(vals, step, out=out)
            return out
        # a negative step would give -0.0: clear the float's bits instead (branch-free)
        np.multiply(vals, step, out=out)
        u = out.view(np.uint32)
        np.bitwise_and(u, np.subtract(0, keep, dtype=np.uint32), out=u)
        return out


def _random_bytes(rng: np.random.Generator, length: int) -> np.ndarray:
    """``rng.bytes(length)`` as a writable uint8 array, the same bytes and the same generator state
    after, about 4x faster: ``bytes`` draws buffered 32-bit halves of the 64-bit outputs
    (low half first, little-endian), so a whole number of 64-bit outputs with no half
    buffered is exactly ``random_raw`` in little-endian order."""
    bitgen = rng.bit_generator
    if length % 8 or not isinstance(bitgen, np.random.PCG64) or bitgen.state["has_uint32"]:
        return np.frombuffer(bytearray(rng.bytes(length)), dtype=np.uint8)   # writable
    return bitgen.random_raw(length // 8).astype("<u8", copy=False).view(np.uint8)


@functools.lru_cache(maxsize=256)
def _keep_threshold(seed: int, name: str, sparsity: float, row_cv: float | None,
                    n_out: int) -> np.ndarray:
    """Weight._keep_threshold: (1-s) x lognormal(mean 1, CV) per output row, as a 16-bit
    threshold (read-only: it is shared by every chunk of the weight)."""
    from workloads.pruning import row_cv_default

    cv = row_cv_default(sparsity) if row_cv is None else row_cv
    rng = np.random.default_rng([seed, _stable_id(name), 0xC0])
    if cv <= 0:
        g = np.ones(n_out)
    else:
        sigma2 = np.log1p(cv * cv)
        g = rng.lognormal(-sigma2 / 2, np.sqrt(sigma2), n_out)
    p = np.clip((1.0 - sparsity) * g, 0.0, 1.0)
    thr = np.minimum(np.round(p * 65536.0), 65535).astype(np.uint16)
    thr.flags.writeable = False
    return thr


def _nm_keep(rng: np.random.Generator, n: int, width: int, nn: int, m: int, *,
             along_rows: bool) -> np.ndarray:
    """Exactly ``nn`` random positions of each group of ``m`` along the input dimension
    (columns; rows of a transposed chunk). A final partial group of r keeps min(nn, r)."""
    if along_rows:
        return _nm_keep(rng, width, n, nn, m, along_rows=False).T
    groups = -(-width // m)
    keys = rng.random((n, groups, m), dtype=np.float32)
    pad = groups * m - width
    if pad:
        keys[:, -1, m - pad:] = 2.0        # padding ranks last
    rank = np.argsort(np.argsort(keys, axis=2), axis=2)
    return (rank < nn).reshape(n, groups * m)[:, :width]


# ------------------------------------------------------------------------------ FFNs
ACTS = ("silu", "gelu", "relu")


@dataclass(frozen=True)
class FFNWeights:
    """One FFN (an expert, a shared expert or a dense FFN): ``down(act(gate x) * up x)``
    (gated, SwiGLU/GEGLU) or ``down(act(up x))`` when ``gate`` is None."""

    up: Weight                  # [f x d]
    down: Weight                # [d x f], transposed storage
    gate: Weight | None = None  # [f x d]
    act: str = "silu"

    @property
    def f(self) -> int:
        return self.up.shape[0]

    @property
    def d(self) -> int:
        return self.up.shape[1]

    def matrices(self) -> tuple[Weight, ...]:
        return tuple(w for w in (self.gate, self.up, self.down) if w is not None)


def act_fn(name: str, x: np.ndarray) -> np.ndarray:
    """The activation functions the ALU implements (float64 reference)."""
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "gelu":   # tanh form, as the PE's GELU
        return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))
    if name == "relu":
        return np.maximum(x, 0.0)
    raise WorkloadError(f"unknown activation function {name!r} (use {', '.join(ACTS)})")


@dataclass(frozen=True)
class ActivationSparsity:
    """How the FFN intermediate (or the inputs) become sparse.

    kind ``none``: dense. ``relu``: the gate's pre-activation is shifted by a per-neuron
    threshold theta_n and passed through ReLU, so neuron n fires with probability rate_n
    (skewed Beta rates of mean 1 - zero_fraction; theta_n from the gate row's norm, the
    pre-activation's standard deviation for unit-variance inputs). ``threshold`` (TEAL): the
    inputs of every matrix are zeroed below the magnitude quantile ``zero_fraction``.
    """

    name: str = "none"
    kind: str = "none"
    zero_fraction: float = 0.0
    seed: int = 0


def ffn_chunk(w: FFNWeights, x: np.ndarray, f0: int, f1: int, sparsity: ActivationSparsity,
              gate_rows: np.ndarray | None, up_rows: np.ndarray, *,
              theta: np.ndarray | None = None) -> np.ndarray:
    """The FFN intermediate h[:, f0:f1] for inputs ``x`` from the weight rows, in ``x``'s
    precision (float64 for the reference forward pass; float32 weight rows are then not
    copied): the reference definition (the simulator builds h from its tiles' outputs with
    :func:`intermediate`). ``theta``: the neurons' thresholds when the caller has them."""
    up = x @ np.asarray(up_rows, dtype=x.dtype).T
    gate = None if gate_rows is None else x @ np.asarray(gate_rows, dtype=x.dtype).T
    if theta is None:
        theta = neuron_thresholds(w, sparsity, f0, f1, gate_rows if gate_rows is not None
                                  else up_rows)
    return intermediate(w.act, sparsity, gate, up, theta)


def neuron_thresholds(w: FFNWeights, sparsity: ActivationSparsity, f0: int, f1: int,
                      rows: np.ndarray) -> np.ndarray | None:
    """theta_n for neurons f0:f1 (``relu`` sparsity), else None."""
    if sparsity.kind != "relu":
        return None
    from workloads.activations import firing_rates, relu_thresholds

    rng = np.random.default_rng([sparsity.seed, _stable_id(w.up.name), 0xF1])
    rates = firing_rates(rng, w.f, sparsity.zero_fraction)[f0:f1]
    std = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1))
    return relu_thresholds(rates, np.maximum(std, 1e-30))


def intermediate(act: str, sparsity: ActivationSparsity, gate: np.ndarray | None,
                 up: np.ndarray, theta: np.ndarray | None) -> np.ndarray:
    """h from the gate and up projections: act(gate) * up (gated) or act(up); under ``relu``
    sparsity the gating activation is ReLU(pre - theta)."""
    pre = up if gate is None else gate
    if sparsity.kind == "relu":
        a = np.maximum(pre - theta[None, :], 0.0)
    else:
        a = act_fn(act, pre)
    return a if gate is None else a * up


def teal(x: np.ndarray, sparsity: ActivationSparsity, tau: float | None = None) -> np.ndarray:
    """TEAL input sparsification: zero entries below the ``zero_fraction`` magnitude
    quantile of ``x`` (identity for other kinds). ``tau``: the tensor's threshold when ``x``
    is only part of the tensor (see :func:`teal_h_threshold`)."""
    if sparsity.kind != "threshold" or x.size == 0:
        return x
    if tau is None:
        from workloads.activations import magnitude_threshold

        tau = magnitude_threshold(x, sparsity.zero_fraction)
    return np.where(np.abs(x) >= tau, x, 0.0)


def teal_h_threshold(w: FFNWeights, xs: np.ndarray, sparsity: ActivationSparsity,
                     chunk: int = 1024) -> float | None:
    """TEAL's one threshold for the FFN intermediate h (TEAL sparsifies per tensor): the
    ``zero_fraction`` magnitude quantile over all of h for the sparsified float64 inputs
    ``xs``, computed in ``chunk``-wide pieces of f. It does not depend on how a caller chunks f
    afterwards, so the simulated layer (512-wide chunks) and :func:`ffn_reference` zero the
    same entries. None for other kinds or no tokens."""
    if sparsity.kind != "threshold" or xs.shape[0] == 0:
        return None
    from workloads.activations import magnitude_threshold

    mags = np.empty((xs.shape[0], w.f))
    for f0, f1 in ffn_chunks(w.f, chunk):
        g = None if w.gate is None else w.gate.rows(f0, f1)
        mags[:, f0:f1] = np.abs(ffn_chunk(w, xs, f0, f1, sparsity, g, w.up.rows(f0, f1)))
    return magnitude_threshold(mags, sparsity.zero_fraction)


def ffn_chunks(f: int, chunk: int) -> Iterator[tuple[int, int]]:
    for f0 in range(0, f, chunk):
        yield f0, min(f, f0 + chunk)


def ffn_reference(w: FFNWeights, x: np.ndarray, sparsity: ActivationSparsity,
                  chunk: int = 1024) -> np.ndarray:
    """The FFN's output for inputs ``x`` [T x d] in float64, chunked along f."""
    x = teal(np.asarray(x, dtype=np.float64), sparsity)
    y = np.zeros((x.shape[0], w.d))
    if x.shape[0] == 0:
        return y
    tau_h = teal_h_threshold(w, x, sparsity)
    for f0, f1 in ffn_chunks(w.f, chunk):
        g = None if w.gate is None else w.gate.rows(f0, f1)
        h = ffn_chunk(w, x, f0, f1, sparsity, g, w.up.rows(f0, f1))
        h = teal(h, sparsity, tau_h)
        y += h @ w.down.cols(f0, f1).astype(np.float64)
    return y


# ------------------------------------------------------------------------------ layers
@dataclass(frozen=True)
class Gating:
    """A router's rules (workloads.routing.topk_gating)."""

    kind: str = "softmax_topk"
    n_group: int = 1
    topk_group: int = 1
    scaling: float = 1.0
    capacity_factor: float | None = None    # Switch: drop tokens beyond expert capacity


@dataclass(frozen=True)
class MoELayer:
    """A mixture-of-experts layer: router GEMM, top-k gating into the sparse gating tensor
    G(t, e) (k nonzeros per token), routed experts, shared experts, weighted combine.

        y(t) = sum_e G(t, e) * expert_e(x(t))  +  sum_s shared_s(x(t))
    """

    name: str
    model: str
    x: np.ndarray = field(repr=False)          # [T x d] float32
    router: Weight = field(repr=False)         # [E x d]
    router_bias: np.ndarray = field(repr=False)  # [E] (routing profile, DeepSeek-V3's bias)
    experts: tuple[FFNWeights, ...] = field(repr=False)
    shared: tuple[FFNWeights, ...] = field(repr=False)
    k: int = 2
    gating: Gating = Gating()
    sparsity: ActivationSparsity = ActivationSparsity()
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    kind: str = "moe"

    @property
    def tokens(self) -> int:
        return self.x.shape[0]

    @property
    def d(self) -> int:
        return self.x.shape[1]

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def logits(self) -> np.ndarray:
        """Router logits x W_r^T (float32, as the dense array computes them)."""
        return self.x @ self.router.dense().T

    def route(self, logits: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expert index [T x k], gate weight [T x k], kept [T x k]) from the logits."""
        from workloads.routing import apply_capacity, topk_gating

        lg = self.logits() if logits is None else logits
        g = self.gating
        bias = self.router_bias
        # the routing profile shapes the logits for every gating kind; DeepSeek-V3's own
        # correction bias is learned to balance load, which no profile models
        idx, wts = topk_gating(lg.astype(np.float64) + bias[None, :], self.k, g.kind,
                               n_group=g.n_group, topk_group=g.topk_group, scaling=g.scaling)
        kept = np.ones(idx.shape, dtype=bool)
        if g.capacity_factor is not None:
            kept = apply_capacity(idx, self.num_experts, g.capacity_factor)
        return idx, wts, kept

    def gating_matrix(self, logits: np.ndarray | None = None) -> np.ndarray:
        """G [T x E] (float64): the combine weight of every kept token-expert pair."""
        return self.scatter(*self.route(logits))

    def scatter(self, idx: np.ndarray, wts: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """G [T x E] from a route (:meth:`route`'s three arrays)."""
        G = np.zeros((self.tokens, self.num_experts))
        rows = np.repeat(np.arange(self.tokens), self.k)
        np.add.at(G, (rows[kept.ravel()], idx.ravel()[kept.ravel()]), wts.ravel()[kept.ravel()])
        return G

    def reference(self) -> np.ndarray:
        """numpy forward pass [T x d] (float64)."""
        G = self.gating_matrix()
        x = self.x.astype(np.float64)
        y = np.zeros_like(x)
        for e, w in enumerate(self.experts):
            tok = np.flatnonzero(G[:, e])
            if len(tok):
                y[tok] += G[tok, e][:, None] * ffn_reference(w, x[tok], self.sparsity)
        for w in self.shared:
            y += ffn_reference(w, x, self.sparsity)
        return y


@dataclass(frozen=True)
class _TokenLayer:
    """What every model layer has: a name, its model and the token activations [T x d]."""

    name: str
    model: str
    x: np.ndarray = field(repr=False)

    @property
    def tokens(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class FFNLayer(_TokenLayer):
    """A dense-weight (or pruned) FFN with activation sparsity: y = down(act(gate x) * up x)."""

    ffn: FFNWeights = field(default=None, repr=False)  # type: ignore[assignment]
    sparsity: ActivationSparsity = ActivationSparsity()
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    kind: str = "ffn"

    def reference(self) -> np.ndarray:
        return ffn_reference(self.ffn, self.x, self.sparsity)


@dataclass(frozen=True)
class LinearLayer(_TokenLayer):
    """One (pruned) linear layer y = x W^T."""

    weight: Weight = field(default=None, repr=False)  # type: ignore[assignment]
    sparsity: ActivationSparsity = ActivationSparsity()
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    kind: str = "linear"

    def reference(self, chunk: int = 1024) -> np.ndarray:
        x = teal(self.x.astype(np.float64), self.sparsity)
        out = np.empty((x.shape[0], self.weight.shape[0]))
        for r0 in range(0, self.weight.shape[0], chunk):
            r1 = min(self.weight.shape[0], r0 + chunk)
            out[:, r0:r1] = x @ self.weight.rows(r0, r1).astype(np.float64).T
        return out


Layer = MoELayer | FFNLayer | LinearLayer
