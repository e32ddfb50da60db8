"""The burst engine's functional pass: each unit's firing table, computed with numpy.

A graph of SAM primitives is a Kahn process network: which tokens each unit consumes and
produces does not depend on timing. Per unit, in topological order, a numpy function per
opcode (``FIRE``) computes the unit's output streams and its *firing table*: how many steps it
takes, which head token of each input port each step peeks, the step that pops each input
token, the step that emits each output token, and its action totals. Each function reproduces,
array-wise, the step sequence of the unit's behaviour in ``isa.interp`` (tests compare them
step for step). No Python loop runs per token, per nonzero or per MAC. The times of the steps
are ``simulator.burst_timing``'s concern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isa.copies import dealt_copy
from isa.errors import SimulationError
from isa.fibertree import BITMAP_WORD_BITS, FiberTree, _ranges, bitmap_masks
from isa.interp import ELEMENTS_PER_WORD, Memory
from isa.ops import ALU_UNARY, WRITERS, Opcode
from isa.program import Kernel, Node
from isa.tokens import DONE, EMPTY, REP, Done, Empty, Rep, Stop

DATA, STOP, DONE_K, EMPTY_K, REP_K = 0, 1, 2, 3, 4
I64 = np.int64


# ----------------------------------------------------------------------------- streams
@dataclass
class Stream:
    """A token stream as arrays: ``kind`` (DATA, STOP, DONE, EMPTY, REP) and ``data`` (the
    number of a data token, the level of a stop)."""

    kind: np.ndarray
    data: np.ndarray
    # what units reading this stream derive from it alike (the stream filters of an
    # unrolled kernel's copies: each element's copy), computed by the first of them
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def encode(toks: list[Any]) -> Stream:
        kind = np.zeros(len(toks), dtype=np.int8)
        data = [0] * len(toks)
        for i, t in enumerate(toks):
            if isinstance(t, Stop):
                kind[i], data[i] = STOP, t.level
            elif isinstance(t, Done):
                kind[i] = DONE_K
            elif isinstance(t, Empty):
                kind[i] = EMPTY_K
            elif isinstance(t, Rep):
                kind[i] = REP_K
            else:
                data[i] = t
        arr = np.asarray(data)
        if arr.dtype.kind not in "iuf":
            arr = arr.astype(np.float64)
        return Stream(kind, arr if len(toks) else np.zeros(0, dtype=I64))

    def decode(self) -> list[Any]:
        out: list[Any] = []
        for k, d in zip(self.kind.tolist(), self.data.tolist()):
            out.append(d if k == DATA else Stop(int(d)) if k == STOP else
                       DONE if k == DONE_K else EMPTY if k == EMPTY_K else REP)
        return out


@dataclass
class Firing:
    """A unit's firing table and outputs (see the module docstring)."""

    n: int
    peeks: Mapping[str, tuple[np.ndarray, np.ndarray]]   # port -> (steps, token indices)
    pops: dict[str, np.ndarray]                       # port -> step popping each token
    emits: dict[str, np.ndarray]                      # port -> step emitting each token
    outs: dict[str, Stream]
    acts: dict[str, int] = field(default_factory=dict)
    # ports whose every token is first peeked the step after the previous one is popped
    # (the first token at step 0), as a unit peeking its head at every step does: the
    # timing reads those first peeks from pops[port] instead of deduplicating the peeks
    dense: frozenset[str] = frozenset()


def _bad(node: Node, what: str) -> SimulationError:
    return SimulationError(f"{node.op.value} {node.id}: malformed input: {what}")


def _word_changes(elements: np.ndarray, start: int = -1) -> int:
    """SRAM word fetches of a one-word cache walking ``elements`` in order."""
    if len(elements) == 0:
        return 0
    w = elements // ELEMENTS_PER_WORD
    return int(w[0] != start) + int(np.count_nonzero(w[1:] != w[:-1]))


@dataclass(frozen=True)
class Copies:
    """An unrolled kernel's copies of one unit fired as one (``fire_kernel``): their input
    streams concatenated port by port, ``of[port]`` the copy of each token. The opcode
    functions that accept it return each action count as an array, one per copy."""

    count: int
    of: dict[str, np.ndarray]
    cuts: dict[str, np.ndarray]     # port -> each copy's first token (and the total)

    def tally(self, port: str, where: np.ndarray) -> np.ndarray:
        """Per copy, how many of the tokens of ``port`` at the indices or mask ``where``."""
        return np.bincount(self.of[port][where], minlength=self.count)


def _chain_words(fw: np.ndarray, lw: np.ndarray, cid: np.ndarray | None = None,
                 copies: int = 1) -> Any:
    """SRAM word fetches of a one-word cache walking runs of elements in order, run i from
    word ``fw[i]`` to word ``lw[i]``: the words each run crosses, plus one where a run
    starts on another word than the previous run ended on (the first run always). With
    ``cid`` (the copy of each run), per copy: the cache starts empty in every copy."""
    if cid is None:
        if len(fw) == 0:
            return 0
        return int((lw - fw).sum()) + 1 + int(np.count_nonzero(fw[1:] != lw[:-1]))
    out = np.bincount(cid, weights=lw - fw, minlength=copies).astype(I64)
    out += np.bincount(cid, minlength=copies) > 0
    brk = (fw[1:] != lw[:-1]) & (cid[1:] == cid[:-1])
    out += np.bincount(cid[1:][brk], minlength=copies)
    return out


_IOTA: list[np.ndarray] = [np.zeros(0, I64)]
IOTA_CACHED = 1 << 20
"""Step and token numbers up to this many are views of one read-only arange (``_iota``)."""


def _iota(n: int) -> np.ndarray:
    """``np.arange(n)`` as a read-only view of one shared array (up to ``IOTA_CACHED``):
    the step and token numbers of a firing table that peeks, pops or emits once a step cost
    neither an allocation nor its first touch (tables are read-only)."""
    if n > IOTA_CACHED:
        return np.arange(n, dtype=I64)
    if n > len(_IOTA[0]):
        grown = np.arange(min(max(n, 2 * len(_IOTA[0]), 4096), IOTA_CACHED), dtype=I64)
        grown.flags.writeable = False
        _IOTA[0] = grown
    return _IOTA[0][:n]


def _exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts), dtype=I64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=out[1:])
    return out


def _cat(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=I64)


def _sorted_stream(pieces: list[tuple[np.ndarray, Any, Any]]
                   ) -> tuple[np.ndarray, Stream]:
    """Merge (steps, kinds, data) pieces of one output port into step order.

    Each step emits at most one token per port, so the pieces are scattered into per-step
    slots and compacted: linear time, no sort."""
    size = 1 + max((int(p[0].max()) for p in pieces if len(p[0])), default=-1)
    datas = [np.asarray(p[2]) for p in pieces]
    dtype = np.result_type(*[d.dtype for d in datas]) if datas else I64
    total = sum(len(p[0]) for p in pieces)
    if total * 16 < size:         # few tokens over many steps: sort them instead
        steps = np.concatenate([p[0] for p in pieces]).astype(I64)
        kind = np.concatenate([np.broadcast_to(np.asarray(p[1], np.int8), p[0].shape)
                               for p in pieces])
        data = np.concatenate([np.broadcast_to(d, p[0].shape).astype(dtype)
                               for p, d in zip(pieces, datas)])
        o = np.argsort(steps, kind="stable")
        return steps[o], Stream(kind[o], data[o])
    kinds = np.full(size, -1, dtype=np.int8)
    data = np.zeros(size, dtype=dtype)
    for (steps, kind, _), d in zip(pieces, datas):
        kinds[steps] = kind
        data[steps] = d
    steps = np.flatnonzero(kinds >= 0)
    return steps.astype(I64), Stream(kinds[steps], data[steps])


# ----------------------------------------------------------------------------- opcodes
def fire_scan(node: Node, ins: dict[str, Stream], mem: Memory,
              cp: Copies | None = None) -> Firing:
    a = node.a
    lv = mem.level(a["tensor"], a["level"])
    dense = a["fmt"] == "dense"
    root = a["root"]
    src = Stream(np.array([DATA, DONE_K], np.int8), np.array([0, 0], I64)) if root \
        else ins["ref"]
    k, d = src.kind, src.data.astype(I64, copy=False)
    n_in = len(k)
    if n_in == 0 or k[-1] != DONE_K:
        raise _bad(node, "ref stream does not end with D")
    fib = (k == DATA) | (k == EMPTY_K)
    prev_fib = np.zeros(n_in, bool)
    prev_fib[1:] = fib[:-1]
    absorbed = (k == STOP) & prev_fib
    if (k == REP_K).any():
        raise _bad(node, "R on a ref stream")
    is_data = k == DATA
    r = d[is_data]
    start = np.zeros(n_in, I64)
    length = np.zeros(n_in, I64)
    if dense:
        start[is_data] = r * a["dim"]
        length[is_data] = a["dim"]
    else:
        if len(r) and (r.min() < 0 or r.max() + 1 >= len(lv.seg)):
            raise _bad(node, f"ref outside {a['tensor']} level {a['level']}")
        start[is_data] = lv.seg[r]
        length[is_data] = lv.seg[r + 1] - lv.seg[r]
    bitmap = a["fmt"] == "bitmap"
    if not bitmap and not a["skip_zeros"]:
        return _scan_plain(node, lv, dense, root, k, d, fib, absorbed, start, length, r, cp)
    fi = np.flatnonzero(fib)                       # fiber tokens
    lens = length[fi]
    pos = _ranges(start[fi], lens)                 # positions in the level
    crd = pos - np.repeat(start[fi], lens) if dense else lv.crd[pos].astype(I64)
    span = length.copy()                           # steps of each fiber's walk
    extra = None                                   # bitmap: empty mask words before a crd
    if bitmap:
        words = lv.words_per_fiber()
        fid = np.repeat(np.arange(len(fi)), lens)
        word = crd // BITMAP_WORD_BITS
        new = np.ones(len(pos), bool)
        if len(pos) > 1:
            new[1:] = (fid[1:] != fid[:-1]) | (word[1:] != word[:-1])
        cnew = np.concatenate([[0], np.cumsum(new)])
        firsts = _exclusive_cumsum(lens)
        nb = cnew[1:] - np.repeat(cnew[firsts], lens)   # nonempty words up to this crd's
        extra = word - (nb - 1)
        nonempty = np.bincount(fid, weights=new, minlength=len(fi)).astype(I64)
        span[fi] = lens + np.where(k[fi] == DATA, words - nonempty, 0)
    counts = np.where(fib, 2 + span, np.where(absorbed, 0, 1))
    off = _exclusive_cumsum(counts)
    n = int(counts.sum())
    last = off + counts - 1                        # each token's last step (a fiber's: its end)
    nxt = fi + 1                                   # the token the ended step peeks
    nxt_stop = k[nxt] == STOP
    # coordinate steps: a fiber's walk starts the step after its reference's
    coord_step = pos + np.repeat(off[fi] + 1 - start[fi], lens)
    if extra is not None:
        coord_step += extra
    acts: dict[str, int] = {}
    keep = None
    if a["skip_zeros"]:
        vals = mem.vals(a["tensor"])
        keep = vals[pos] != 0
        acts["skipped_zero_count"] = int(np.count_nonzero(~keep))
        val_reads = _word_changes(pos)
    else:
        val_reads = 0
    if bitmap:
        masks = _ranges(r * words, np.full(len(r), words, I64))
        acts["sram_read_words"] = _word_changes(r) + _word_changes(masks) + val_reads
    elif not dense:
        w0 = r // ELEMENTS_PER_WORD
        w1 = (r + 1) // ELEMENTS_PER_WORD
        prev = np.concatenate([[-1], w1[:-1]]) if len(r) else w1
        seg_reads = int(np.count_nonzero(w0 != prev) + np.count_nonzero(w1 != w0))
        acts["sram_read_words"] = seg_reads + _word_changes(pos) + val_reads
    elif val_reads:
        acts["sram_read_words"] = val_reads
    # the outputs, in step order = token order: each fiber's kept coordinates then its stop
    # (S_(l+1) if a stop S_l follows, else S0); a lone stop S_l gives S_(l+1), D gives D
    own = ~absorbed
    kept = lens
    if keep is not None:
        ck = np.concatenate([[0], np.cumsum(keep)])
        firsts = _exclusive_cumsum(lens)
        kept = ck[firsts + lens] - ck[firsts]
        coord_step, crd, pos = coord_step[keep], crd[keep], pos[keep]
    out_counts = own.astype(I64)
    out_counts[fi] += kept
    ctl_pos = (np.cumsum(out_counts) - 1)[own]
    total = len(coord_step) + len(ctl_pos)
    ctl_data = np.where(k == STOP, d + 1, 0)
    ctl_data[fi] = np.where(nxt_stop, d[nxt] + 1, 0)
    is_crd = np.ones(total, bool)
    is_crd[ctl_pos] = False
    e_crd = np.empty(total, I64)
    e_crd[ctl_pos] = last[own]
    e_crd[is_crd] = coord_step
    kind = np.zeros(total, np.int8)
    kind[ctl_pos] = np.where(k[own] == DONE_K, DONE_K, STOP)
    crd_data = np.empty(total, I64)
    crd_data[ctl_pos] = ctl_data[own]
    ref_data = crd_data.copy()
    crd_data[is_crd] = crd
    ref_data[is_crd] = pos
    s_crd, s_ref = Stream(kind, crd_data), Stream(kind, ref_data)
    peeks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pops: dict[str, np.ndarray] = {}
    if not root:
        # every token is peeked at its first step, the one after a fiber at the fiber's end
        pop = off.copy()
        ab = np.flatnonzero(absorbed)
        pop[ab] = last[ab - 1]
        npk = own.astype(I64) + fib             # peeks: 1 per token, 2 per fiber
        pk_end = np.cumsum(npk)
        ps = np.empty(int(pk_end[-1]), I64)
        pt = np.empty(len(ps), I64)
        tok = np.flatnonzero(own)
        first_pk = pk_end[tok] - npk[tok]
        ps[first_pk] = off[tok]
        pt[first_pk] = tok
        ps[pk_end[fi] - 1] = last[fi]
        pt[pk_end[fi] - 1] = nxt
        peeks["ref"] = (ps, pt)
        pops["ref"] = pop
    return Firing(n, peeks, pops, {"crd": e_crd, "ref": e_crd}, {"crd": s_crd, "ref": s_ref},
                  acts)


def _fiber_word_changes(first: np.ndarray, length: np.ndarray) -> int:
    """``_word_changes`` of the positions of fibers laid end to end (fiber f: ``first[f]``
    to ``first[f] + length[f] - 1``), from the fibers alone: each nonempty fiber crosses
    (last word - first word) words, and a fiber whose first word is not the previous
    nonempty fiber's last word fetches one more (the first fiber always does)."""
    ne = length > 0
    if not ne.any():
        return 0
    fw = first[ne] // ELEMENTS_PER_WORD
    lw = (first[ne] + length[ne] - 1) // ELEMENTS_PER_WORD
    return int((lw - fw).sum()) + 1 + int(np.count_nonzero(fw[1:] != lw[:-1]))


def _scan_plain(node: Node, lv: Any, dense: bool, root: bool, k: np.ndarray, d: np.ndarray,
                fib: np.ndarray, absorbed: np.ndarray, start: np.ndarray, length: np.ndarray,
                r: np.ndarray, cp: Copies | None = None) -> Firing:
    """``fire_scan`` of a compressed or dense level without zero skipping: every coordinate
    of a fiber is emitted, so each token's outputs (a fiber's coordinates then its stop; a
    lone stop's S_(l+1); D) are a run of consecutive steps and level positions, built with
    one ``repeat`` each instead of scattering coordinates and control tokens apart."""
    n_in = len(k)
    counts = np.where(fib, 2 + length, 1 - absorbed)
    off = np.empty(n_in, I64)
    off[0] = 0
    np.cumsum(counts[:-1], out=off[1:])
    n = int(off[-1] + counts[-1])
    own = ~absorbed
    oi = np.flatnonzero(own)
    c = length[oi] + 1                             # outputs of each own token
    cend = np.cumsum(c)
    total = int(cend[-1])
    first_out = cend - c
    ctl_pos = cend - 1
    idx = _iota(total)
    # a fiber's outputs at steps off+1 .. off+1+len (the stop last), a lone token's at off
    e_crd = np.repeat(off[oi] + fib[oi] - first_out, c)
    e_crd += idx
    # the level position of each output (a fiber's stop slot: one past its last; overwritten)
    ref_data = np.repeat(start[oi] - first_out, c)
    ref_data += idx
    if dense:
        crd_data = idx - np.repeat(first_out, c)
    elif len(lv.crd):
        crd_data = np.take(lv.crd, ref_data, mode="clip").astype(I64, copy=False)
    else:
        crd_data = np.zeros(total, I64)
    # control data: S_(l+1) for a stop S_l; a fiber's stop is S_(l+1) if a stop S_l
    # follows (absorbed), else S0; D carries 0
    x = np.where(k == STOP, d + 1, 0)
    x[:-1] += np.where(absorbed[1:], x[1:], 0)
    ctl = x[oi]
    ref_data[ctl_pos] = ctl
    crd_data[ctl_pos] = ctl
    kind = np.zeros(total, np.int8)
    kind[ctl_pos] = _CTL_KIND[k[oi]]
    acts: dict[str, Any] = {}
    if not dense and cp is None:
        w0 = r // ELEMENTS_PER_WORD
        w1 = (r + 1) // ELEMENTS_PER_WORD
        seg_reads = int(np.count_nonzero(w1 != w0))
        if len(r):
            seg_reads += 1 + int(np.count_nonzero(w0[1:] != w1[:-1]))
        acts["sram_read_words"] = seg_reads + _fiber_word_changes(start[oi], length[oi])
    elif not dense:
        # the segment reads (each reference: its two seg entries) and the coordinate reads
        # (each nonempty fiber: its positions), one word cache each, per copy
        cid = cp.of["ref"]
        ne = oi[length[oi] > 0]
        acts["sram_read_words"] = _chain_words(
            r // ELEMENTS_PER_WORD, (r + 1) // ELEMENTS_PER_WORD, cid[k == DATA], cp.count) + \
            _chain_words(start[ne] // ELEMENTS_PER_WORD,
                         (start[ne] + length[ne] - 1) // ELEMENTS_PER_WORD, cid[ne], cp.count)
    peeks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pops: dict[str, np.ndarray] = {}
    if not root:
        # every own token is peeked at its first step; a fiber's end step peeks the next
        npk = 1 + fib[oi]
        pk_end = np.cumsum(npk)
        ps = np.empty(int(pk_end[-1]), I64)
        pt = np.empty(len(ps), I64)
        first_pk = pk_end - npk
        ps[first_pk] = off[oi]
        pt[first_pk] = oi
        fo = npk == 2
        ps[pk_end[fo] - 1] = (off[oi] + counts[oi] - 1)[fo]
        pt[pk_end[fo] - 1] = oi[fo] + 1
        peeks["ref"] = (ps, pt)
        pops["ref"] = off - absorbed              # an absorbed stop: its fiber's end step
    return Firing(n, peeks, pops, {"crd": e_crd, "ref": e_crd},
                  {"crd": Stream(kind, crd_data), "ref": Stream(kind, ref_data)}, acts)


_CTL_KIND = np.array([STOP, STOP, DONE_K, STOP, STOP], np.int8)
"""The control token a scanner emits for each input kind (a fiber's stop, S_(l+1), D)."""


def fire_repsig(node: Node, ins: dict[str, Stream], mem: Memory,
                cp: Copies | None = None) -> Firing:
    s = ins["crd"]
    n = len(s)
    steps = _iota(n)
    kind = np.where(s.kind == DATA, REP_K, s.kind).astype(np.int8)
    data = np.zeros(n, I64)                        # R carries 0, a stop its level
    ctl = np.flatnonzero(s.kind != DATA)
    data[ctl] = s.data[ctl]
    return Firing(n, {"crd": (steps, steps)}, {"crd": steps}, {"repsig": steps},
                  {"repsig": Stream(kind, data)}, dense=frozenset({"crd"}))


def fire_repeat(node: Node, ins: dict[str, Stream], mem: Memory,
                cp: Copies | None = None) -> Firing:
    root = node.attr("root")
    ref = Stream(np.array([DATA, DONE_K], np.int8), np.array([0, 0], I64)) if root \
        else ins["ref"]
    sig = ins["repsig"]
    rk, sk = ref.kind, sig.kind
    prev_fib = np.zeros(len(rk), bool)
    prev_fib[1:] = (rk[:-1] == DATA) | (rk[:-1] == EMPTY_K)
    dropped = (rk == STOP) & prev_fib
    consumer = np.flatnonzero(~dropped)
    ends = np.flatnonzero(sk != REP_K)
    if len(ends) != len(consumer):
        raise _bad(node, f"{len(consumer)} refs to repeat but {len(ends)} repsig fibers")
    gsize = np.diff(np.concatenate([[-1], ends]))
    ck = rk[consumer]
    is_fib = (ck == DATA) | (ck == EMPTY_K)
    if ((~is_fib) & (gsize != 1)).any() or \
            (sk[ends] == DONE_K).sum() != (1 if cp is None else cp.count) \
            or ((ck == DONE_K) != (sk[ends] == DONE_K)).any():
        raise _bad(node, "repsig and ref streams out of step")
    counts = np.ones(len(rk), I64)
    counts[consumer] = gsize
    off = _exclusive_cumsum(counts)
    n = int(counts.sum())
    # each repsig token is handled by one step, in order, skipping drop steps; a consumed
    # reference is peeked by its group's steps, a dropped one by its own: every step peeks
    # the reference whose steps it is among
    sig_step = np.repeat(off[consumer] - (ends - gsize + 1), gsize) + np.arange(len(sk))
    out_kind = np.repeat(ck, gsize)
    out_kind[ends] = sk[ends]
    out_data = np.repeat(ref.data[consumer], gsize).astype(
        np.result_type(ref.data.dtype, sig.data.dtype), copy=False)
    out_data[ends] = sig.data[ends]
    peeks = {"repsig": (sig_step, _iota(len(sk)))}
    pops = {"repsig": sig_step}
    if not root:
        peeks["ref"] = (_iota(n), np.repeat(_iota(len(rk)), counts))
        pops["ref"] = off + counts - 1
    return Firing(n, peeks, pops, {"ref": sig_step}, {"ref": Stream(out_kind, out_data)},
                  dense=frozenset(peeks) - {"repsig"})


def _heads(pop: np.ndarray, n: int) -> np.ndarray:
    """Head token index at each of n steps, given each token's popping step (in order)."""
    if len(pop) == 0:
        return np.zeros(n, I64)
    held = np.empty(len(pop) + 1, I64)            # steps each token is the head for
    held[0] = pop[0] + 1
    np.subtract(pop[1:], pop[:-1], out=held[1:-1])
    held[-1] = n - 1 - pop[-1]
    return np.repeat(np.arange(len(held), dtype=I64), held)


class HeadPeeks(Mapping[str, tuple[np.ndarray, np.ndarray]]):
    """The peeks of a unit that peeks the head of every input port at every step (a
    joiner): (range(n), the head at each step), computed from the pops when first read (the
    timing reads the pops: ``Firing.dense``)."""

    def __init__(self, pops: dict[str, np.ndarray], n: int) -> None:
        self._pops = pops
        self._n = n
        self._made: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __getitem__(self, port: str) -> tuple[np.ndarray, np.ndarray]:
        got = self._made.get(port)
        if got is None:
            got = self._made[port] = (np.arange(self._n, dtype=I64),
                                      _heads(self._pops[port], self._n))
        return got

    def __iter__(self) -> Iterator[str]:
        return iter(self._pops)

    def __len__(self) -> int:
        return len(self._pops)


def _fire_join(node: Node, ins: dict[str, Stream], union: bool,
               cp: Copies | None = None) -> Firing:
    ca, ra, cb, rb = ins["crd_a"], ins["ref_a"], ins["crd_b"], ins["ref_b"]
    ctl_a = np.flatnonzero(ca.kind != DATA)
    ctl_b = np.flatnonzero(cb.kind != DATA)
    if len(ctl_a) != len(ctl_b) or (ca.kind[ctl_a] != cb.kind[ctl_b]).any() or \
            (ca.data[ctl_a] != cb.data[ctl_b]).any():
        raise _bad(node, "fiber structure differs between the two inputs")
    if len(ca) != len(ra) or len(cb) != len(rb):
        raise _bad(node, "crd and ref streams differ in length")
    da_i = np.flatnonzero(ca.kind == DATA)
    db_i = np.flatnonzero(cb.kind == DATA)
    na, nb = len(da_i), len(db_i)
    if (na and (not len(ctl_a) or da_i[-1] > ctl_a[-1])) or \
            (nb and (not len(ctl_b) or db_i[-1] > ctl_b[-1])):
        raise _bad(node, "coordinates after the last control token")
    # the segment of each coordinate: the control tokens before it
    seg_of_a = da_i - _iota(na)
    # one sortable key per coordinate: (segment, coordinate); each side is already sorted
    crd_a = np.asarray(ca.data[da_i], dtype=I64)
    crd_b = np.asarray(cb.data[db_i], dtype=I64)
    span = int(max(crd_a.max(initial=0), crd_b.max(initial=0))) + 1
    ka = seg_of_a * span
    ka += crd_a
    kb = db_i - _iota(nb)           # b's segments, then its keys in place
    kb *= span
    kb += crd_b
    if (na > 1 and bool((ka[1:] <= ka[:-1]).any())) or \
            (nb > 1 and bool((kb[1:] <= kb[:-1]).any())):
        raise _bad(node, "coordinates not strictly increasing within a fiber")
    # merge the two sorted runs: the steps before a coordinate are the tokens before it on
    # its own side (each a step: a coordinate's or a control token's) and the coordinates of
    # the other side below it that match none of its own (a matched pair is one step)
    lb = np.searchsorted(kb, ka)                  # b keys below each a key
    hit_a = lb < nb
    hit_a[hit_a] = kb[lb[hit_a]] == ka[hit_a]
    ia_match = np.flatnonzero(hit_a)
    ib_match = lb[ia_match]
    step_a = da_i + lb - (np.cumsum(hit_a) - hit_a)
    n_seg = len(ctl_a)
    distinct = na + nb - len(ia_match)
    n = int(distinct + n_seg)
    # b's tokens (coordinates and control tokens) each take one step, after the unmatched
    # a coordinates merged before them: those below a b coordinate, or (above every b
    # coordinate of their segment) before the segment's control token
    ua = np.flatnonzero(~hit_a)
    lu = lb[ua]
    in_seg = lu < nb
    in_seg[in_seg] = kb[lu[in_seg]] // span == seg_of_a[ua[in_seg]]
    at_b = np.where(in_seg, db_i[np.minimum(lu, max(nb - 1, 0))] if nb else 0,
                    ctl_b[seg_of_a[ua]] if n_seg else 0)
    if len(at_b):           # at_b is nondecreasing: how many are <= each b token, by runs
        edges = np.empty(len(at_b) + 2, I64)
        edges[0], edges[-1] = 0, len(cb)
        edges[1:-1] = at_b
        pop_b = np.repeat(np.arange(len(at_b) + 1, dtype=I64), np.diff(edges))
        pop_b += _iota(len(cb))
    else:
        pop_b = np.arange(len(cb), dtype=I64)
    ctl_step = pop_b[ctl_b]
    pop_a = np.empty(len(ca), I64)
    pop_a[da_i] = step_a
    pop_a[ctl_a] = ctl_step
    acts: dict[str, Any] = {"match_count": len(ia_match) if cp is None else
                            cp.tally("crd_a", da_i[ia_match])}
    ctl_kind = ca.kind[ctl_a]
    ctl_data = ca.data[ctl_a].astype(I64)
    if union:
        # a union emits on every step: write the outputs straight into per-step slots
        step_b = pop_b[db_i]
        b_is_match = np.zeros(nb, bool)
        b_is_match[ib_match] = True
        only_b = np.flatnonzero(~b_is_match)
        a_only = np.flatnonzero(~hit_a)
        ddt = np.result_type(ra.data.dtype, rb.data.dtype, ca.data.dtype)
        outs = {}
        for port in ("crd", "ref_a", "ref_b"):
            kind = np.empty(n, np.int8)
            data = np.empty(n, ddt)
            kind[ctl_step] = ctl_kind
            data[ctl_step] = ctl_data
            outs[port] = [kind, data]
        (ck, cd), (ak, ad), (bk, bd) = outs["crd"], outs["ref_a"], outs["ref_b"]
        ck[step_a] = DATA
        cd[step_a] = crd_a
        ck[step_b[only_b]] = DATA
        cd[step_b[only_b]] = crd_b[only_b]
        ak[step_a] = ra.kind[da_i]
        ad[step_a] = ra.data[da_i]
        ak[step_b[only_b]] = EMPTY_K
        ad[step_b[only_b]] = 0
        bk[step_b] = rb.kind[db_i]
        bd[step_b] = rb.data[db_i]
        bk[step_a[a_only]] = EMPTY_K
        bd[step_a[a_only]] = 0
        e = _iota(n)
        s_crd, s_ra, s_rb = (Stream(*outs[p]) for p in ("crd", "ref_a", "ref_b"))
    else:
        # in step order: each segment's matches, then its control token
        ia, ib = da_i[ia_match], db_i[ib_match]
        seg_m = seg_of_a[ia_match]
        at_m = np.arange(len(ia_match), dtype=I64) + seg_m
        at_c = np.cumsum(np.bincount(seg_m, minlength=n_seg)) + np.arange(n_seg, dtype=I64)
        e = np.empty(len(at_m) + n_seg, I64)
        e[at_m] = step_a[ia_match]
        e[at_c] = ctl_step
        streams = []
        for kind_m, data_m in ((DATA, crd_a[ia_match]), (ra.kind[ia], ra.data[ia]),
                               (rb.kind[ib], rb.data[ib])):
            kind = np.empty(len(e), np.int8)
            kind[at_m] = kind_m
            kind[at_c] = ctl_kind
            data = np.empty(len(e), np.result_type(data_m.dtype, I64))
            data[at_m] = data_m
            data[at_c] = ctl_data
            streams.append(Stream(kind, data))
        s_crd, s_ra, s_rb = streams
    pops = {"crd_a": pop_a, "ref_a": pop_a, "crd_b": pop_b, "ref_b": pop_b}
    # both heads are peeked at every step: the peeks follow from the pops, computed if read
    return Firing(n, HeadPeeks(pops, n), pops, {"crd": e, "ref_a": e, "ref_b": e},
                  {"crd": s_crd, "ref_a": s_ra, "ref_b": s_rb}, acts, frozenset(pops))


def fire_intersect(node: Node, ins: dict[str, Stream], mem: Memory,
                   cp: Copies | None = None) -> Firing:
    return _fire_join(node, ins, False, cp)


def fire_union(node: Node, ins: dict[str, Stream], mem: Memory,
               cp: Copies | None = None) -> Firing:
    return _fire_join(node, ins, True, cp)


def fire_array(node: Node, ins: dict[str, Stream], mem: Memory,
               cp: Copies | None = None) -> Firing:
    s = ins["ref"]
    vals = mem.vals(node.attr("tensor"))
    n = len(s)
    steps = _iota(n)
    is_data = s.kind == DATA
    r = s.data[np.flatnonzero(is_data)].astype(I64, copy=False)
    if len(r) and (r.min() < 0 or r.max() >= len(vals)):
        raise _bad(node, f"ref outside {node.attr('tensor')} values")
    if len(vals) and s.data.dtype.kind in "iu":
        # every token's value read at its data (a control token's level, in range once
        # clipped), then the control tokens given their own data back
        out = np.take(vals, s.data, mode="clip")
        ctl = np.flatnonzero(~is_data)
        out[ctl] = s.data[ctl]
    else:
        out = np.zeros(n, dtype=vals.dtype if len(vals) else I64)
        out[is_data] = vals[r]
        out[~is_data] = s.data[~is_data]
    if cp is None:
        reads = _word_changes(r)
    else:
        w = r // ELEMENTS_PER_WORD
        reads = _chain_words(w, w, cp.of["ref"][is_data], cp.count)
    return Firing(n, {"ref": (steps, steps)}, {"ref": steps}, {"val": steps},
                  {"val": Stream(s.kind, out)}, {"sram_read_words": reads},
                  frozenset({"ref"}))


_NP_OPS: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum,
    "relu": lambda x: np.maximum(x, 0),
    "silu": lambda x: x / (1.0 + np.exp(-x.astype(np.float64))),
    "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
}


def fire_alu(node: Node, ins: dict[str, Stream], mem: Memory,
             cp: Copies | None = None) -> Firing:
    a = node.a
    op = a["op"]
    x = ins["a"]
    n = len(x)
    steps = _iota(n)
    xv = (x.kind == DATA) | (x.kind == EMPTY_K)
    if op in ALU_UNARY:
        out = x.data.astype(np.float64 if op != "relu" else x.data.dtype).copy()
        vx = np.where(x.kind == EMPTY_K, 0, x.data)[xv]
        out[xv] = _NP_OPS[op](vx)
        kind = np.where(xv, DATA, x.kind).astype(np.int8)
        return Firing(n, {"a": (steps, steps)}, {"a": steps}, {"val": steps},
                      {"val": Stream(kind, out)}, {"effectual_op_count": int(xv.sum())},
                      frozenset({"a"}))
    y = ins["b"]
    xe = x.kind == EMPTY_K
    ye = y.kind == EMPTY_K
    xv = (x.kind == DATA) | xe
    ctl = np.flatnonzero(~xv)
    if len(y) != n or (xv != ((y.kind == DATA) | ye)).any() or \
            (x.kind[ctl] != y.kind[ctl]).any() or (x.data[ctl] != y.data[ctl]).any():
        raise _bad(node, "operands out of step")
    any_empty = bool(xe.any())
    vx = np.where(xe, 0, x.data) if any_empty else x.data
    vy = np.where(ye, 0, y.data) if ye.any() else y.data
    dtype = np.result_type(vx.dtype, vy.dtype)
    out = _NP_OPS[op](vx.astype(dtype, copy=False), vy.astype(dtype, copy=False))
    out[ctl] = x.data[ctl]                  # a control token passes its own data
    acts: dict[str, Any] = {}
    n_val: Any = n - len(ctl)
    if cp is not None:
        n_val = cp.tally("a", xv)
    if op == "mul":
        # the classification of isa.interp.alu_op_kind, array-wise: a zero operand is
        # ineffectual if every zero operand of the op has policy none, else gated
        za = vx == 0
        za &= xv
        zb = vy == 0
        zb &= xv
        zero = za | zb
        count = (lambda m: int(np.count_nonzero(m))) if cp is None else \
            (lambda m: cp.tally("a", m))
        n_zero = count(zero)
        none_a, none_b = a["zero_a"] == "none", a["zero_b"] == "none"
        if none_a and none_b:
            n_ineff = n_zero
        elif not none_a and not none_b:
            n_ineff = 0 * n_zero
        else:                                # the zeros of the none operand's side alone
            n_ineff = count(zero & ~(zb if none_a else za))
        acts["effectual_op_count"] = n_val - n_zero
        acts["ineffectual_op_count"] = n_ineff
        acts["gated_op_count"] = n_zero - n_ineff
    else:
        acts["effectual_op_count"] = n_val
    kind = np.where(xv, DATA, x.kind).astype(np.int8) if any_empty else x.kind
    return Firing(n, {"a": (steps, steps), "b": (steps, steps)}, {"a": steps, "b": steps},
                  {"val": steps}, {"val": Stream(kind, out)},
                  {k: v for k, v in acts.items() if cp is not None or v}, frozenset({"a", "b"}))


def _fiber_sums(kind: np.ndarray, data: np.ndarray, boundary: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """For each boundary token: the sum and count of the value tokens since the previous
    boundary (EMPTY counts as 0)."""
    val = (kind == DATA) | (kind == EMPTY_K)
    v = np.where(kind == DATA, data, 0)
    grp = np.cumsum(boundary) - boundary             # group of each token
    nb = int(boundary.sum())
    sums = np.zeros(nb, dtype=v.dtype if v.dtype.kind in "iuf" else np.float64)
    np.add.at(sums, grp[val], v[val])
    counts = np.bincount(grp[val], minlength=nb)
    return sums, counts


def fire_reduce(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    s = ins["val"]
    k = s.kind
    drop = node.attr("drop_empty")
    if (k == REP_K).any():
        raise _bad(node, "R on a val stream")
    ctl = k == STOP
    sums, counts = _fiber_sums(k, s.data, ctl)
    ci = np.flatnonzero(ctl)
    lvl = s.data[ci].astype(I64)
    emit_sum = (counts > 0) | (not drop)
    counts_tok = np.ones(len(k), I64)
    counts_tok[ci] = np.where((lvl >= 1) & emit_sum, 2, 1)
    off = _exclusive_cumsum(counts_tok)
    n = int(counts_tok.sum())
    last = off + counts_tok - 1
    sum_step = off[ci][emit_sum]
    lower = ci[lvl >= 1]
    lower_step = last[lower]
    done = np.flatnonzero(k == DONE_K)
    e, out = _sorted_stream([(sum_step, DATA, sums[emit_sum]),
                             (lower_step, STOP, s.data[lower].astype(I64) - 1),
                             (off[done], DONE_K, 0)])
    steps_all = off
    return Firing(n, {"val": (steps_all, _iota(len(k)))}, {"val": last},
                  {"val": e}, {"val": out},
                  {"add_count": int(np.count_nonzero((k == DATA) | (k == EMPTY_K)))})


def fire_vreduce(node: Node, ins: dict[str, Stream], mem: Memory,
                 cp: Copies | None = None) -> Firing:
    """The vector reducer (``isa.interp.vreduce``): step k pops input token k; output token m,
    queued at the step of the input that completes it (a fiber's S_n, n >= 1, or D), is
    emitted at e_m = max(queued_m, e_(m-1) + 1), i.e. m + cummax(queued - m)."""
    c, v = ins["crd"], ins["val"]
    is_d = c.kind == DATA
    ve = v.kind == EMPTY_K
    if len(c) != len(v) or (is_d != ((v.kind == DATA) | ve)).any():
        raise _bad(node, "crd and val streams out of step")
    k = c.kind
    flush = (k == STOP) & (c.data >= 1)
    di = np.flatnonzero(is_d)
    vals = np.where(ve[di], 0, v.data[di]) if ve.any() else v.data[di]
    fi = np.flatnonzero(flush)
    # the fiber of each coordinate: the flushing stops before it, by runs of coordinates
    runs = np.diff(np.searchsorted(di, fi), prepend=0, append=len(di))
    g = np.repeat(np.arange(len(fi) + 1, dtype=I64), runs)
    cc = c.data[di].astype(I64, copy=False)
    ug, uc, sums = _sums_by_key(g, cc, vals)
    done = np.flatnonzero(k == DONE_K)
    if cp is not None:
        return _vreduce_copies(node, c, di, fi, g, done, ug, uc, sums, cp)
    if len(done) != 1 or done[0] != len(k) - 1:
        raise _bad(node, "the input does not end with one D")
    if len(ug) and ug[-1] >= len(fi):
        raise _bad(node, "coordinates after the last fiber's stop")
    m = np.bincount(ug, minlength=len(fi)) if len(fi) else np.zeros(0, I64)
    # output order: each fiber's entries then its lowered stop, all queued at the fiber's
    # flushing stop, then D; the slot of each entry and stop
    n_out = len(ug) + len(fi) + 1
    entry_slot = np.arange(len(ug), dtype=I64)
    entry_slot += ug
    stop_slot = np.cumsum(m + 1) - 1
    emit = np.empty(n_out, I64)
    emit[:-1] = np.repeat(fi, m + 1)
    emit[-1] = done[0]
    idx = np.arange(n_out, dtype=I64)
    emit -= idx
    np.maximum.accumulate(emit, out=emit)
    emit += idx                                        # increasing: slots in step order
    n = int(emit[-1]) + 1
    lvl = c.data[fi].astype(I64) - 1
    kind = np.zeros(n_out, np.int8)
    kind[stop_slot] = STOP
    kind[-1] = DONE_K
    out = []
    for data in (uc, sums):
        col = np.empty(n_out, np.result_type(data.dtype, I64))
        col[entry_slot] = data
        col[stop_slot] = lvl
        col[-1] = 0
        out.append(Stream(kind, col))
    tok = _iota(len(k))
    peeks = {"crd": (tok, tok), "val": (tok, tok)}
    return Firing(n, peeks, {"crd": tok, "val": tok}, {"crd": emit, "val": emit},
                  {"crd": out[0], "val": out[1]}, {"add_count": len(di)}, frozenset(peeks))


def _vreduce_copies(node: Node, c: Stream, di: np.ndarray, fi: np.ndarray, g: np.ndarray,
                    done: np.ndarray, ug: np.ndarray, uc: np.ndarray, sums: np.ndarray,
                    cp: Copies) -> Firing:
    """``fire_vreduce`` of a role's copies on their concatenated streams: a copy's steps
    restart at 0 and its output queue drains after its own D, so each copy's emits are its
    own running maximum (kept apart by an offset per copy larger than any difference within
    one) and the copies' steps are laid end to end by their own step counts."""
    tokc = cp.of["crd"]
    count = cp.count
    cut = cp.cuts["crd"]
    if len(done) != count or (done != cut[1:] - 1).any():
        raise _bad(node, "a copy's input does not end with one D")
    if len(g) and (g[-1] >= len(fi) or (tokc[fi[g[g < len(fi)]]] != tokc[di]).any()):
        raise _bad(node, "coordinates after the last fiber's stop")
    m = np.bincount(ug, minlength=len(fi)) if len(fi) else np.zeros(0, I64)
    # output items in input order: each fiber (its entries, then its lowered stop) and each
    # copy's D, queued at the token that completes it
    item_tok = np.concatenate([fi, done])
    order = np.argsort(item_tok, kind="stable")
    size = np.concatenate([m + 1, np.ones(count, I64)])[order]
    item_tok = item_tok[order]
    start = _exclusive_cumsum(size)
    n_out = int(start[-1] + size[-1])
    queued = np.repeat(item_tok, size)
    sc = tokc[queued]                                  # each output's copy
    first_out = np.searchsorted(sc, np.arange(count + 1))
    local_idx = np.arange(n_out, dtype=I64) - first_out[sc]
    spread = len(tokc) + n_out + 1
    v = queued - cut[sc] - local_idx + sc * spread
    np.maximum.accumulate(v, out=v)
    emit = local_idx + v - sc * spread                 # each copy's own steps
    steps = emit[first_out[1:] - 1] + 1                # each copy's step count
    base = _exclusive_cumsum(steps)
    emit += base[sc]
    n = int(steps.sum())
    fiber_start = start[np.argsort(order, kind="stable")[:len(fi)]]
    entry_slot = np.arange(len(ug), dtype=I64) + (fiber_start - _exclusive_cumsum(m))[ug]
    stop_slot = fiber_start + m
    d_slot = start[order >= len(fi)]
    kind = np.zeros(n_out, np.int8)
    kind[stop_slot] = STOP
    kind[d_slot] = DONE_K
    lvl = c.data[fi].astype(I64) - 1
    out = []
    for data in (uc, sums):
        col = np.empty(n_out, np.result_type(data.dtype, I64))
        col[entry_slot] = data
        col[stop_slot] = lvl
        col[d_slot] = 0
        out.append(Stream(kind, col))
    pop = np.arange(len(tokc), dtype=I64) + (base - cut[:-1])[tokc]
    tok = _iota(len(tokc))
    peeks = {"crd": (pop, tok), "val": (pop, tok)}
    return Firing(n, peeks, {"crd": pop, "val": pop}, {"crd": emit, "val": emit},
                  {"crd": out[0], "val": out[1]}, {"add_count": cp.tally("crd", di)},
                  frozenset(peeks))


def _sums_by_key(g: np.ndarray, cc: np.ndarray, vals: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (g, cc) pairs in sorted order (``g`` nondecreasing) and the sum of the
    values of each, added in input order from 0 as ``isa.interp.vreduce`` adds them. Over a
    dense table of the pairs when it is not much larger than the input, else sorted."""
    if len(g) == 0:
        return g.astype(I64), cc, vals
    lo = int(cc.min())
    span = int(cc.max()) - lo + 1
    key = g * span
    key += cc
    if lo:
        key -= lo
    size = (int(g[-1]) + 1) * span
    if size <= 4 * len(key) + 4096:
        present = np.zeros(size, bool)
        present[key] = True
        acc = np.zeros(size, vals.dtype)
        np.add.at(acc, key, vals)
        uk = np.flatnonzero(present)
        sums = acc[uk]
        ug, uc = np.divmod(uk, span)
        uc += lo
        return ug, uc, sums
    else:
        uk, inv = np.unique(key, return_inverse=True)
        sums = np.zeros(len(uk), vals.dtype)
        np.add.at(sums, inv, vals)
    return uk // span, uk % span + lo, sums


def _inner_fibers(node: Node, outer: Stream, inner: Stream):
    """Pair outer tokens with inner fibers for the dropper and the hold.

    Returns: the mask of outer stops that close a non-empty outer fiber (they consume no inner
    token), the outer tokens that consume an inner fiber, each such fiber's first token,
    data length and end token, and the data length per outer token (0 where none)."""
    ok = outer.kind
    prev_data = np.zeros(len(ok), bool)
    prev_data[1:] = ok[:-1] == DATA
    stop_after = (ok == STOP) & prev_data          # closes a non-empty outer fiber: no inner
    consumer = ~stop_after
    ends = np.flatnonzero(inner.kind != DATA)       # inner fiber ends (stops, D)
    ci = np.flatnonzero(consumer)
    if len(ends) != len(ci):
        raise _bad(node, f"{len(ci)} outer coordinates/fibers but {len(ends)} inner fibers")
    first = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else ends
    length = ends - first
    if ((ok[ci] != DATA) & (length != 0)).any():
        raise _bad(node, "an empty outer fiber has inner coordinates")
    if ((ok[ci] == DONE_K) != (inner.kind[ends] == DONE_K)).any():
        raise _bad(node, "outer and inner streams end at different places")
    if ((ok[ci] == STOP) & ((inner.kind[ends] != STOP) |
                            (inner.data[ends] != outer.data[ci] + 1))).any():
        raise _bad(node, "empty outer fiber and inner stop disagree")
    L = np.zeros(len(ok), I64)
    L[ci] = length
    return stop_after, ci, first, length, ends, L


def fire_crddrop(node: Node, ins: dict[str, Stream], mem: Memory,
                 cp: Copies | None = None) -> Firing:
    outer, inner = ins["outer"], ins["inner"]
    prune = bool(node.a.get("prune", False))
    ok = outer.kind
    stop_after, ci, first, length, ends, L = _inner_fibers(node, outer, inner)
    n_o = len(ok)
    fst = np.zeros(n_o, I64)
    fst[ci] = first
    end = np.zeros(n_o, I64)
    end[ci] = ends
    is_d = ok == DATA
    kept = is_d & (L > 0)
    ck = np.cumsum(kept) - kept                      # kept tokens strictly before
    if not prune:
        return _crddrop_plain(outer, inner, stop_after, ci, fst, L, is_d, kept, ck, cp)
    ki = np.flatnonzero(kept)
    ctl = np.flatnonzero(~is_d)
    ctl_stop = ctl[ok[ctl] == STOP]
    ctl_done = ctl[ok[ctl] == DONE_K]
    if prune:
        # a separator (the owed closing stop) before every kept fiber but the first, and one
        # before D if any fiber was kept; its level: the highest outer stop in between, + 1
        open_before = kept & (ck > 0)
        closes = np.where(ok == STOP, outer.data.astype(I64) + 1, -1)
        owed = np.maximum(np.maximum.reduceat(closes, ki), 0) if len(ki) else ki
    else:
        fiber = np.cumsum(ok == STOP) - (ok == STOP)     # outer fiber of each token
        start_of_fiber = np.zeros(int(fiber.max()) + 1 if n_o else 0, I64)
        # kept count at the first token of each outer fiber
        firsts = np.flatnonzero(np.concatenate([[True], fiber[1:] != fiber[:-1]])) \
            if n_o else ci
        start_of_fiber[fiber[firsts]] = ck[firsts]
        open_before = kept & (ck - start_of_fiber[fiber] > 0)
    counts = np.where(kept, open_before + L + 1, 1).astype(I64)
    final_owed = prune and len(ki) > 0
    if final_owed:
        counts[ctl_done] += 1
    off = _exclusive_cumsum(counts)
    last = off + counts - 1
    n = int(counts.sum())
    sep_step = off[ki][open_before[ki]]
    first_step = off[ki] + open_before[ki]
    # inner data steps: first at first_step, the rest one per cycle after it
    inner_data_tok = _ranges(fst[ki], L[ki])
    inner_data_step = _ranges(first_step, L[ki])
    inner_stop_step = first_step + L[ki]
    dropped = np.flatnonzero(is_d & (L == 0))
    sa = np.flatnonzero(stop_after)
    out_o = [(first_step, DATA, outer.data[ki]), (last[ctl], ok[ctl], outer.data[ctl])]
    if prune:
        out_i = [(sep_step, STOP, owed[:-1]), (inner_data_step, DATA, inner.data[inner_data_tok]),
                 (last[ctl_done], DONE_K, 0)]
        if final_owed:
            out_i.append((off[ctl_done], STOP, owed[-1:]))
    else:
        out_i = [(sep_step, STOP, 0), (inner_data_step, DATA, inner.data[inner_data_tok]),
                 (off[ctl_stop], STOP, outer.data[ctl_stop].astype(I64) + 1),
                 (off[ctl_done], DONE_K, 0)]
    e_o, s_o = _sorted_stream(out_o)
    e_i, s_i = _sorted_stream(out_i)
    # peeks: outer at every between-step (not inside); inner where the decision needed it
    mark = np.ones(n, bool)
    mark[_inside_steps(first_step, L[ki])] = False
    mark[inner_stop_step] = False
    between = np.flatnonzero(mark)
    tok_o = np.repeat(np.arange(n_o, dtype=I64), counts)
    po = (between, tok_o[between])
    outer_only = np.zeros(n, bool)
    outer_only[off[sa]] = True
    no_inner = outer_only[between]
    pi_steps_b = between[~no_inner]
    pop_o = last.copy()
    pop_o[ki] = first_step
    pop_i = np.empty(len(inner.kind), I64)
    pop_i[inner_data_tok] = inner_data_step
    pop_i[ends] = np.where(kept[ci], inner_stop_step_at(ci, kept, inner_stop_step), last[ci])
    # inner head at a between step: the first token of the pending fiber
    tok_i_b = _inner_head(pi_steps_b, pop_i)
    pi_steps = _cat(pi_steps_b, _inside_steps(first_step, L[ki]), inner_stop_step)
    pi_toks = _cat(tok_i_b, _inside_toks(fst[ki], L[ki]), end[ki])
    o = np.argsort(pi_steps, kind="stable")
    return Firing(n, {"outer": po, "inner": (pi_steps[o], pi_toks[o])},
                  {"outer": pop_o, "inner": pop_i}, {"outer": e_o, "inner": e_i},
                  {"outer": s_o, "inner": s_i},
                  {"dropped_count": len(dropped)} if len(dropped) else {})


def _crddrop_plain(outer: Stream, inner: Stream, stop_after: np.ndarray, ci: np.ndarray,
                   fst: np.ndarray, L: np.ndarray, is_d: np.ndarray, kept: np.ndarray,
                   ck: np.ndarray, cp: Copies | None = None) -> Firing:
    """``fire_crddrop`` without ``prune``: every outer token's steps are one run (a kept
    coordinate: the S0 separator if a kept fiber precedes it in its outer fiber, its first
    step, its inner data, the step popping the inner stop; any other token: one step), and
    so is every output and peek of it: each is built with one ``repeat`` per array."""
    ok = outer.kind
    n_o = len(ok)
    is_stop = ok == STOP
    fiber = np.cumsum(is_stop) - is_stop             # outer fiber of each token
    # kept coordinates before each one in its own outer fiber: ck less ck at the fiber's start
    first_of = np.ones(n_o, bool)
    first_of[1:] = fiber[1:] != fiber[:-1]
    ck0 = ck[first_of]
    ob = kept & (ck > ck0[fiber])                    # a separator opens the fiber
    Lk = np.where(kept, L, 0)
    counts = 1 + ob + Lk
    off = np.empty(n_o, I64)
    off[0] = 0
    np.cumsum(counts[:-1], out=off[1:])
    n = int(off[-1] + counts[-1])
    first_step = off + ob                            # pops the kept coordinate
    # outer output: kept coordinates and every control token, in token order
    sel = np.flatnonzero(kept | ~is_d)
    e_o = first_step[sel]
    s_o = Stream(ok[sel], outer.data[sel])
    # inner output per outer token: a kept one's separator and data, a control token's own
    ni = np.where(kept, ob + L, ~is_d)
    ti = np.flatnonzero(ni)
    m_i = ni[ti]
    iend = np.cumsum(m_i)
    idx = _iota(int(iend[-1]) if len(iend) else 0)
    istart = iend - m_i
    e_i = np.repeat(off[ti] - istart, m_i)
    e_i += idx
    src = np.repeat(fst[ti] - ob[ti] - istart, m_i)  # the inner token forwarded
    src += idx
    i_kind = np.take(inner.kind, src, mode="clip") if len(inner.kind) else idx.astype(np.int8)
    i_data = np.take(inner.data, src, mode="clip") if len(inner.kind) else idx
    i_data = i_data.astype(np.result_type(inner.data.dtype, I64), copy=True)
    head = istart[ob[ti]]                            # separators: S0
    i_kind[head] = STOP
    i_data[head] = 0
    ctl = np.flatnonzero(~is_d[ti])
    at = istart[ctl]
    tc = ti[ctl]
    i_kind[at] = ok[tc]
    i_data[at] = np.where(ok[tc] == STOP, outer.data[tc].astype(I64) + 1, 0)
    s_i = Stream(i_kind, i_data)
    # peeks: the outer token at each step up to its first (not inside a kept fiber); the
    # inner stream's pending token at each step of a token that consumes an inner fiber
    nb = 1 + ob
    pb_end = np.cumsum(nb)
    pb = np.arange(int(pb_end[-1]), dtype=I64)
    rep_o = np.repeat(np.arange(n_o, dtype=I64), nb)
    po = (pb + (off - pb_end + nb)[rep_o], rep_o)
    mc = counts[ci]
    m_end = np.cumsum(mc)
    M = int(m_end[-1]) if len(m_end) else 0
    pi_steps = np.arange(M, dtype=I64)
    pi_steps += np.repeat(off[ci] - (m_end - mc), mc)
    # each inner token is peeked once, a kept fiber's first also at its separator step
    reps = np.ones(len(inner.kind), I64)
    reps[fst[ob]] += 1
    pi_toks = np.repeat(_iota(len(inner.kind)), reps)
    pop_o = np.where(kept, first_step, off + counts - 1)
    # inner tokens: a kept fiber's from its first step on, an empty one's at its token's step
    pop_i = _iota(len(inner.kind)) + np.repeat(first_step[ci] - fst[ci], L[ci] + 1)
    if cp is not None:
        acts: dict[str, Any] = {"dropped_count": cp.tally("outer", is_d & (L == 0))}
    else:
        dropped = int(np.count_nonzero(is_d & (L == 0)))
        acts = {"dropped_count": dropped} if dropped else {}
    return Firing(n, {"outer": po, "inner": (pi_steps, pi_toks)},
                  {"outer": pop_o, "inner": pop_i}, {"outer": e_o, "inner": e_i},
                  {"outer": s_o, "inner": s_i}, acts)


def _inside_steps(first_step: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Steps after a kept fiber's first one that forward its remaining data."""
    return _ranges(first_step + 1, np.maximum(L - 1, 0))


def _inside_toks(first_tok: np.ndarray, L: np.ndarray) -> np.ndarray:
    return _ranges(first_tok + 1, np.maximum(L - 1, 0))


def inner_stop_step_at(ci: np.ndarray, kept: np.ndarray, inner_stop_step: np.ndarray
                       ) -> np.ndarray:
    """inner_stop_step (indexed by kept tokens) gathered for consumer tokens (kept ones)."""
    out = np.zeros(len(ci), I64)
    kc = kept[ci]
    out[kc] = inner_stop_step
    return out


def _inner_head(steps: np.ndarray, pop_i: np.ndarray) -> np.ndarray:
    """Index of the inner head token at each step (tokens popped in order)."""
    return np.searchsorted(pop_i, steps, side="left")


def fire_crdhold(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    outer, inner = ins["outer"], ins["inner"]
    ok = outer.kind
    _stop_after, ci, first, length, ends, L = _inner_fibers(node, outer, inner)
    n_o = len(ok)
    counts = np.where(ok == DATA, L + 1, 1).astype(I64)
    off = _exclusive_cumsum(counts)
    n = int(counts.sum())
    # consumers: each inner token (data then its end) is handled by one step, in order
    cons_off = off[ci]
    inner_step = np.empty(len(inner.kind), I64)
    all_first = first
    inner_step_data = _ranges(cons_off, length)
    inner_step[_ranges(all_first, length)] = inner_step_data
    inner_step[ends] = cons_off + length
    # outputs: every inner token is emitted on both ports (data with its outer coordinate)
    owner = np.repeat(ci, length + 1)                # outer token of each inner token
    tok_i = np.arange(len(inner.kind), dtype=I64)
    is_d = inner.kind == DATA
    o_kind = np.where(is_d, DATA, inner.kind).astype(np.int8)
    o_data = np.where(is_d, outer.data[owner], inner.data)
    order = np.argsort(inner_step, kind="stable")
    e = inner_step[order]
    s_o = Stream(o_kind[order], o_data[order])
    s_i = Stream(inner.kind[order].astype(np.int8), inner.data[order])
    pop_o = off + counts - 1
    pop_i = inner_step
    # peeks: outer at the first step of every outer token; inner at every inner step
    peek_o = (off, _iota(n_o))
    peek_i = (inner_step[order], tok_i[order])
    return Firing(n, {"outer": peek_o, "inner": peek_i}, {"outer": pop_o, "inner": pop_i},
                  {"outer": e, "inner": e}, {"outer": s_o, "inner": s_i})


def fire_write_crd(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    s = ins["crd"]
    n = len(s)
    steps = _iota(n)
    is_d = s.kind == DATA
    crd = s.data[is_d].astype(I64, copy=False)
    stops = s.kind == STOP
    seg = np.concatenate([[0], np.cumsum(is_d)[stops]]).astype(I64, copy=False)
    out = mem.writer_of(node, node.attr("level"))
    out.crd, out.seg = crd, seg
    nc, ns = len(crd), len(seg)
    words = nc // 4 + (ns // 4) + int(nc % 4 != 0) + int(ns % 4 != 0)
    return Firing(n, {"crd": (steps, steps)}, {"crd": steps}, {}, {},
                  {"sram_write_words": words}, frozenset({"crd"}))


def fire_write_val(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    s = ins["val"]
    n = len(s)
    steps = _iota(n)
    val = (s.kind == DATA) | (s.kind == EMPTY_K)
    v = np.where(s.kind == DATA, s.data, 0)[val]
    out = mem.writer_of(node, -1)
    out.vals = v
    nv = len(v)
    return Firing(n, {"val": (steps, steps)}, {"val": steps}, {}, {},
                  {"sram_write_words": nv // 4 + int(nv % 4 != 0)}, frozenset({"val"}))


def _locate_fibers(node: Node, ins: dict[str, Stream]):
    """The pairing of a locator's coordinate fibers with its outer references (shared by
    the dense and the bitmap locator): returns the coordinate stream, the reference stream,
    the reference token consumed per coordinate fiber, each fiber's closing token, the
    owning reference of every coordinate token, and which fibers end with a drop step."""
    root = node.attr("root")
    ref = Stream(np.array([DATA, DONE_K], np.int8), np.array([0, 0], I64)) if root \
        else ins["ref"]
    c = ins["crd"]
    ck, rk = c.kind, ref.kind
    if (ck == REP_K).any() or (ck == EMPTY_K).any() or (rk == REP_K).any():
        raise _bad(node, "R or N on a coordinate stream, or R on a reference stream")
    fib = (rk == DATA) | (rk == EMPTY_K)
    prev_fib = np.zeros(len(rk), bool)
    prev_fib[1:] = fib[:-1]
    absorbed = (rk == STOP) & prev_fib             # popped in a step of its own
    consumer = np.flatnonzero(~absorbed)           # one per coordinate fiber
    ends = np.flatnonzero(ck != DATA)              # each fiber's closing stop (or D)
    if len(ends) != len(consumer) or len(ck) == 0 or ck[-1] != DONE_K:
        raise _bad(node, f"{len(consumer)} outer references but {len(ends)} coordinate fibers")
    length = np.diff(np.concatenate([[-1], ends])) - 1
    owner_kind = rk[consumer]
    end_kind, end_lvl = ck[ends], c.data[ends].astype(I64)
    nxt = np.minimum(consumer + 1, len(rk) - 1)
    nxt_stop = absorbed[nxt] & (consumer + 1 < len(rk))
    is_fib = (owner_kind == DATA) | (owner_kind == EMPTY_K)
    want_lvl = np.where(nxt_stop, ref.data[nxt].astype(I64) + 1, 0)
    lone = owner_kind == STOP
    ok = np.where(is_fib, (end_kind == STOP) & (end_lvl == want_lvl),
                  np.where(lone, (end_kind == STOP) & (length == 0)
                           & (end_lvl == ref.data[consumer].astype(I64) + 1),
                           (owner_kind == DONE_K) & (end_kind == DONE_K) & (length == 0)))
    if not ok.all():
        raise _bad(node, "coordinate and reference streams out of step")
    drop_after = is_fib & nxt_stop                 # fiber ends followed by a drop step
    fiber = np.cumsum(ck != DATA) - (ck != DATA)  # fiber of each coordinate token
    return c, ref, consumer, ends, consumer[fiber], drop_after


def _ref_stream_steps(off: np.ndarray, owner: np.ndarray, consumer: np.ndarray,
                      ends: np.ndarray, drop_step: np.ndarray, drop_tok: np.ndarray, n_ref: int
                      ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """A locator's peeks and pops of its outer reference stream: every coordinate step
    ``off`` peeks its fiber's reference ``owner``, the absorbing steps ``drop_step`` peek the
    reference stream's own stops ``drop_tok``; a reference is popped by its fiber's closing
    step (``consumer`` -> ``off[ends]``), an absorbed stop by its own step."""
    ps = np.concatenate([off, drop_step])
    pt = np.concatenate([owner, drop_tok])
    o = np.argsort(ps, kind="stable")
    pop = np.empty(n_ref, I64)
    pop[consumer] = off[ends]
    pop[drop_tok] = drop_step
    return (ps[o], pt[o]), pop


def fire_locate(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    """The locator (``isa.interp.locate``): one step per coordinate-stream token, plus one
    per reference stop that a higher coordinate stop already accounts for."""
    dim = int(node.attr("dim"))
    root = node.attr("root")
    c, ref, consumer, ends, owner, drop_after = _locate_fibers(node, ins)
    ck, rk = c.kind, ref.kind
    counts = np.ones(len(ck), I64)
    counts[ends[drop_after]] = 2
    off = _exclusive_cumsum(counts)
    n = int(counts.sum())
    drop_step = off[ends[drop_after]] + 1
    drop_tok = consumer[drop_after] + 1
    out_kind = ck.copy()
    di = np.flatnonzero(ck == DATA)
    o_data = ref.data[owner[di]].astype(I64)
    out_data = np.zeros(len(ck), I64)
    out_data[ck != DATA] = c.data[ck != DATA]
    absent = rk[owner[di]] == EMPTY_K
    out_kind[di[absent]] = EMPTY_K
    out_data[di] = np.where(absent, 0, o_data * dim + c.data[di].astype(I64))
    peeks: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "crd": (off, _iota(len(ck)))}
    pops: dict[str, np.ndarray] = {"crd": off}
    if not root:
        peeks["ref"], pops["ref"] = _ref_stream_steps(off, owner, consumer, ends, drop_step,
                                                      drop_tok, len(rk))
    return Firing(n, peeks, pops, {"ref": off}, {"ref": Stream(out_kind, out_data)})


# ----------------------------------------------------------------------------- bitmap levels
POP16 = sum((np.arange(1 << BITMAP_WORD_BITS, dtype=I64) >> b) & 1
            for b in range(BITMAP_WORD_BITS))
"""Set bits of every 16-bit word (a popcount table)."""

_BIT = np.arange(BITMAP_WORD_BITS, dtype=I64)


def _bitmap(node: Node, mem: Memory):
    """(level, mask words, words per fiber) of the bitmap level a unit reads."""
    lv = mem.level(node.attr("tensor"), node.attr("level"))
    if lv.fmt != "bitmap":
        raise _bad(node, f"{node.attr('tensor')} level {node.attr('level')} is {lv.fmt}, "
                   "not bitmap")
    return lv, bitmap_masks(lv), lv.words_per_fiber()


def fire_scan_bv(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    """The bitvector scanner (``isa.interp.scan_bv``): per fiber a ref step, W word steps
    and an end step; a lone stop or D one step."""
    lv, masks, words = _bitmap(node, mem)
    root = node.attr("root")
    src = Stream(np.array([DATA, DONE_K], np.int8), np.array([0, 0], I64)) if root \
        else ins["ref"]
    k, d = src.kind, src.data.astype(I64, copy=False)
    n_in = len(k)
    if n_in == 0 or k[-1] != DONE_K or (k == REP_K).any():
        raise _bad(node, "ref stream does not end with D, or carries R")
    fib = (k == DATA) | (k == EMPTY_K)
    prev_fib = np.zeros(n_in, bool)
    prev_fib[1:] = fib[:-1]
    absorbed = (k == STOP) & prev_fib
    r = d[k == DATA]
    if len(r) and (r.min() < 0 or r.max() + 1 >= len(lv.seg)):
        raise _bad(node, f"ref outside {node.attr('tensor')} level {node.attr('level')}")
    counts = np.where(fib, 2 + words, np.where(absorbed, 0, 1))
    off = _exclusive_cumsum(counts)
    n = int(counts.sum())
    fi = np.flatnonzero(fib)
    nxt = fi + 1
    ended_step = off[fi] + 1 + words
    # word steps: every fiber's W words; an absent fiber (N) gives zero words, N references
    wstep = _ranges(off[fi] + 1, np.full(len(fi), words, I64))
    present = k[fi] == DATA
    rr = np.where(present, d[fi], 0)
    elem = _ranges(rr * words, np.full(len(fi), words, I64))
    wpresent = np.repeat(present, words)
    bv = np.where(wpresent, masks[elem] if len(masks) else 0, 0)
    cum = _exclusive_cumsum(POP16[masks]) if len(masks) else np.zeros(0, I64)
    wref = np.where(wpresent, cum[elem] if len(cum) else 0, 0)
    lone = np.flatnonzero((k == STOP) & ~absorbed)
    done = np.flatnonzero(k == DONE_K)
    nxt_stop = k[nxt] == STOP
    ctl = [(ended_step, STOP, np.where(nxt_stop, d[nxt] + 1, 0)),
           (off[lone], STOP, d[lone] + 1), (off[done], DONE_K, 0)]
    e, s_bv = _sorted_stream([(wstep, DATA, bv), *ctl])
    _, s_ref = _sorted_stream([(wstep[wpresent], DATA, wref[wpresent]),
                               (wstep[~wpresent], EMPTY_K, 0), *ctl])
    acts = {"sram_read_words": _word_changes(r) + _word_changes(
        _ranges(r * words, np.full(len(r), words, I64)))}
    peeks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pops: dict[str, np.ndarray] = {}
    if not root:
        pop = off.copy()
        ab = np.flatnonzero(absorbed)
        pop[ab] = off[ab - 1] + 1 + words
        own = np.flatnonzero(~absorbed)
        ps = np.concatenate([off[own], ended_step])
        pt = np.concatenate([own, nxt])
        o = np.argsort(ps, kind="stable")
        peeks["ref"] = (ps[o], pt[o])
        pops["ref"] = pop
    return Firing(n, peeks, pops, {"bv": e, "ref": e}, {"bv": s_bv, "ref": s_ref}, acts)


def _fire_bv_join(node: Node, ins: dict[str, Stream], union: bool) -> Firing:
    """The word-wide joiner (``isa.interp._bv_join``): a word pair takes one step per set bit
    of its AND (OR), at least one; a control token one step."""
    ba, ra, bb, rb = ins["bv_a"], ins["ref_a"], ins["bv_b"], ins["ref_b"]
    if len(ba) != len(bb) or (ba.kind != bb.kind).any() or len(ra) != len(ba) \
            or len(rb) != len(bb):
        raise _bad(node, "fiber structure differs between the two inputs")
    kind = ba.kind
    ctl = np.flatnonzero(kind != DATA)
    if (ba.data[ctl] != bb.data[ctl]).any() or (kind == EMPTY_K).any() or (kind == REP_K).any():
        raise _bad(node, "fiber structure differs between the two inputs")
    di = np.flatnonzero(kind == DATA)
    ma, mb = ba.data[di].astype(I64), bb.data[di].astype(I64)
    if ((ma != 0) & (ra.kind[di] != DATA)).any() or ((mb != 0) & (rb.kind[di] != DATA)).any():
        raise _bad(node, "a mask word with set bits has no reference")
    m = (ma | mb) if union else (ma & mb)
    nbits = POP16[m]
    counts = np.ones(len(kind), I64)
    counts[di] = np.maximum(nbits, 1)
    off = _exclusive_cumsum(counts)
    n = int(counts.sum())
    last_ctl = np.maximum.accumulate(np.where(kind != DATA, np.arange(len(kind)), -1))
    word = (di - last_ctl[di] - 1) if len(di) else di
    # the set bits, word by word in order: (data token, bit)
    row, bit = np.nonzero((m[:, None] >> _BIT) & 1) if len(di) else (di, di)
    step = off[di][row] + (np.arange(len(row)) - np.repeat(_exclusive_cumsum(nbits), nbits))
    low = (np.left_shift(1, bit) - 1).astype(I64)
    outs_ref = []
    for mask, ref in ((ma, ra), (mb, rb)):
        has = (mask[row] >> bit) & 1 == 1
        data = ref.data[di][row].astype(I64) + POP16[mask[row] & low]
        pieces = [(step[has], DATA, data[has]), (step[~has], EMPTY_K, 0)]
        outs_ref.append(pieces)
    cpieces = [(off[ctl], kind[ctl], ba.data[ctl].astype(I64))]
    e, s_crd = _sorted_stream([(step, DATA, word[row] * BITMAP_WORD_BITS + bit), *cpieces])
    _, s_ra = _sorted_stream(outs_ref[0] + cpieces)
    _, s_rb = _sorted_stream(outs_ref[1] + cpieces)
    pop = off + counts - 1
    peeks = {p: (off, _iota(len(kind))) for p in ("bv_a", "ref_a", "bv_b", "ref_b")}
    pops = {p: pop for p in ("bv_a", "ref_a", "bv_b", "ref_b")}
    emits = {"crd": e, "ref_a": e, "ref_b": e}
    acts = {"match_count": len(row)} if len(row) else {}
    return Firing(n, peeks, pops, emits, {"crd": s_crd, "ref_a": s_ra, "ref_b": s_rb}, acts)


def fire_bv_intersect(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    return _fire_bv_join(node, ins, union=False)


def fire_bv_union(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    return _fire_bv_join(node, ins, union=True)


def fire_write_bv(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    """The bitmap level writer (``isa.interp.write_bv``): per fiber one step per coordinate
    and one per mask word (the last with the stop), one step for D."""
    s = ins["crd"]
    dim = int(node.attr("dim"))
    words = -(-dim // BITMAP_WORD_BITS)
    k = s.kind
    if len(k) == 0 or k[-1] != DONE_K or (k == DONE_K).sum() != 1 or \
            ((k != DATA) & (k != STOP) & (k != DONE_K)).any():
        raise _bad(node, "a crd stream of coordinates and stops ending with D expected")
    stops = np.flatnonzero(k == STOP)
    nf = len(stops)
    fiber = np.cumsum(k != DATA) - (k != DATA)          # the fiber of each token
    di = np.flatnonzero(k == DATA)
    c = s.data[di].astype(I64, copy=False)
    fd = fiber[di]
    if len(di) and (fd.max() >= nf or c.min() < 0 or c.max() >= dim):
        raise _bad(node, f"coordinate out of order or outside dim {dim}")
    if len(di) > 1 and ((fd[1:] == fd[:-1]) & (c[1:] <= c[:-1])).any():
        raise _bad(node, f"coordinate out of order or outside dim {dim}")
    ncoords = np.bincount(fd, minlength=nf).astype(I64) if nf else np.zeros(0, I64)
    per = ncoords + words
    foff = _exclusive_cumsum(per)
    n = int(per.sum()) + 1
    rank = np.arange(len(di)) - np.repeat(_exclusive_cumsum(ncoords), ncoords)
    pop = np.empty(len(k), I64)
    pop[di] = foff[fd] + rank + c // BITMAP_WORD_BITS
    pop[stops] = foff + per - 1
    pop[-1] = n - 1
    steps = _iota(n)
    out = mem.writer_of(node, node.attr("level"))
    out.masks = np.bincount(fd * words + c // BITMAP_WORD_BITS,
                            weights=np.left_shift(1, c % BITMAP_WORD_BITS).astype(np.float64),
                            minlength=nf * words).astype(I64)
    out.seg = np.concatenate([[0], np.cumsum(ncoords)]).astype(I64)
    nm, ns = nf * words, nf + 1
    acts = {"sram_write_words": nm // 4 + int(nm % 4 != 0) + ns // 4 + int(ns % 4 != 0)}
    return Firing(n, {"crd": (steps, _heads(pop, n))}, {"crd": pop}, {}, {}, acts)


def fire_locate_bv(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    """The bitmap locator (``isa.interp.locate_bv``): a coordinate takes one step, or one per
    64-bit mask word it fetches if more; a control token one step, plus the drop step."""
    lv, masks, words = _bitmap(node, mem)
    root = node.attr("root")
    c, ref, consumer, ends, owner, drop_after = _locate_fibers(node, ins)
    carry = ins["carry"]
    ck, rk = c.kind, ref.kind
    ctl = np.flatnonzero(ck != DATA)
    if len(carry) != len(ck) or ((carry.kind != DATA) != (ck != DATA)).any() or \
            (carry.kind[ctl] != ck[ctl]).any() or (carry.data[ctl] != c.data[ctl]).any():
        raise _bad(node, "carry stream out of step with the coordinates")
    di = np.flatnonzero(ck == DATA)
    od = owner[di]
    if ((rk[od] != DATA) & (rk[od] != EMPTY_K)).any():
        raise _bad(node, "a coordinate against a stop or D reference")
    present = rk[od] == DATA
    pi = di[present]
    r = ref.data[owner[pi]].astype(I64)
    cc = c.data[pi].astype(I64)
    if len(pi) and (r.min() < 0 or r.max() + 1 >= len(lv.seg) or cc.min() < 0
                    or cc.max() >= lv.size):
        raise _bad(node, f"coordinate outside {node.attr('tensor')} level {node.attr('level')}")
    elem = r * words + cc // BITMAP_WORD_BITS
    target = elem // ELEMENTS_PER_WORD
    start = (r * words) // ELEMENTS_PER_WORD
    first = (pi == 0) | (ck[np.maximum(pi - 1, 0)] != DATA)
    prev = np.concatenate([[-1], target[:-1]]).astype(I64)
    fetch = np.where(first, target - start + 1 - (prev == start), target - prev)
    main = np.ones(len(ck), I64)
    main[pi] = np.maximum(fetch, 1)
    counts = main.copy()
    counts[ends[drop_after]] = 2
    off = _exclusive_cumsum(counts)
    n = int(counts.sum())
    last = off + main - 1
    m = masks[elem] if len(elem) else elem
    bit = cc % BITMAP_WORD_BITS
    kept = (m >> bit) & 1 == 1
    cum = _exclusive_cumsum(POP16[masks]) if len(masks) else masks
    pos = (cum[elem] if len(elem) else elem) + POP16[m & (np.left_shift(1, bit) - 1)]
    ki = pi[kept]
    cpieces = [(off[ctl], ck[ctl], c.data[ctl].astype(I64))]
    e, s_crd = _sorted_stream([(last[ki], DATA, c.data[ki].astype(I64)), *cpieces])
    _, s_ref = _sorted_stream([(last[ki], DATA, pos[kept]), *cpieces])
    _, s_carry = _sorted_stream([(last[ki], carry.kind[ki], carry.data[ki].astype(I64)),
                                 *cpieces])
    tok = np.arange(len(ck), dtype=I64)
    peeks: dict[str, tuple[np.ndarray, np.ndarray]] = {"crd": (off, tok), "carry": (last, tok)}
    pops: dict[str, np.ndarray] = {"crd": last, "carry": last}
    if not root:
        peeks["ref"], pops["ref"] = _ref_stream_steps(
            off, owner, consumer, ends, off[ends[drop_after]] + 1, consumer[drop_after] + 1,
            len(rk))
    reads = int(fetch.sum()) + _word_changes(r[first])
    return Firing(n, peeks, pops, {"crd": e, "ref": e, "carry": e},
                  {"crd": s_crd, "ref": s_ref, "carry": s_carry},
                  {"sram_read_words": reads} if reads else {})
# ----------------------------------------------------------------------------- unrolling
def fire_filter(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    """The stream filter (``isa.interp.filter_``): one step per token; element p of the
    outermost fiber is emitted when p mod copies == copy, its S0 and D always."""
    s = ins["in"]
    n = len(s)
    copy, copies = int(node.attr("copy")), int(node.attr("copies"))
    memo = s.memo.get(("deal", copies))
    if memo is None:         # the first copy's filter: each token's copy (-1: every copy)
        elem = s.kind != STOP
        elem[-1:] = False
        if n == 0 or s.kind[-1] != DONE_K or (s.kind[:-1] == DONE_K).any() \
                or (s.data[s.kind == STOP] != 0).any():
            raise _bad(node, "an outermost-fiber stream holds elements, S0 and one final D")
        pos = np.cumsum(elem) - elem
        memo = s.memo[("deal", copies)] = (np.where(elem, dealt_copy(pos, copies), -1),
                                           _iota(n))
    dest, steps = memo
    keep = np.flatnonzero((dest == copy) | (dest < 0))
    return Firing(n, {"in": (steps, steps)}, {"in": steps}, {"out": keep},
                  {"out": Stream(s.kind[keep], s.data[keep])}, dense=frozenset({"in"}))


def _items(node: Node, s: Stream, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(first token, token count) of each item of one arbiter input (``isa.interp.arbiter``):
    an element for depth 0 (then ``S0 D``); for depth d >= 1 the tokens up to a closing
    stop of level d-1, the last item's of level d (then D)."""
    k, lvl = s.kind, s.data
    if len(k) == 0 or k[-1] != DONE_K or (k[:-1] == DONE_K).any():
        raise _bad(node, "an arbiter input ends with one D")
    if depth == 0:
        if len(k) < 2 or k[-2] != STOP or (k[:-2] == STOP).any() or lvl[-2] != 0:
            raise _bad(node, "a depth-0 arbiter input holds elements, then S0 D")
        first = np.arange(len(k) - 2, dtype=I64)
        return first, np.ones(len(first), I64)
    stops = k == STOP
    if (lvl[stops] > depth).any():
        raise _bad(node, f"a stop above level {depth} on a depth-{depth} stream")
    ends = np.flatnonzero(stops & (lvl >= depth - 1))
    if len(ends) == 0 or ends[-1] != len(k) - 2 or lvl[ends[-1]] != depth \
            or (lvl[ends[:-1]] != depth - 1).any():
        raise _bad(node, f"items of a depth-{depth} stream close with S{depth - 1}, the "
                         f"last with S{depth}, then D")
    first = np.concatenate([[0], ends[:-1] + 1]).astype(I64)
    return first, ends - first + 1


def fire_arbiter(node: Node, ins: dict[str, Stream], mem: Memory) -> Firing:
    """The stream arbiter (``isa.interp.arbiter``): items in rounds of take_a from a then
    take_b from b, one step per token; the last item's closing stop becomes S_depth; then
    (depth 0) one step popping both S0 and one popping both D, or (depth >= 1) one step
    popping both D."""
    depth = int(node.attr("depth"))
    ta, tb = int(node.attr("take_a")), int(node.attr("take_b"))
    a, b = ins["a"], ins["b"]
    fa, la = _items(node, a, depth)
    fb, lb = _items(node, b, depth)
    rnd = ta + tb
    ia, ib = np.arange(len(fa), dtype=I64), np.arange(len(fb), dtype=I64)
    key = np.concatenate([(ia // ta) * rnd + ia % ta, (ib // tb) * rnd + ta + ib % tb])
    items = len(key)                                   # key: each item's place in the output
    placed = np.bincount(key, minlength=items) if items else key
    if len(placed) != items or (placed != 1).any():
        raise _bad(node, "the inputs' item counts do not fit the round-robin rounds")
    length = np.empty(items, I64)
    length[key] = np.concatenate([la, lb])
    total = int(length.sum())
    start = _exclusive_cumsum(length)
    tail = 2 if depth == 0 else 1                      # the finishing steps
    n = total + tail
    # each input's tokens keep their order in the output: its items' runs of output steps
    at_a = _ranges(start[key[:len(fa)]], la)
    at_b = _ranges(start[key[len(fa):]], lb)
    dtype = np.result_type(a.data.dtype, b.data.dtype)
    kind = np.empty(n, np.int8)
    data = np.empty(n, dtype if total else np.result_type(dtype, I64))
    for at, s in ((at_a, a), (at_b, b)):
        kind[at] = s.kind[:len(at)]
        data[at] = s.data[:len(at)]
    kind[total:] = [STOP, DONE_K] if depth == 0 else [DONE_K]
    data[total:] = 0
    if depth >= 1 and items:
        close = start + length - 1
        data[close] = depth - 1
        data[close[-1]] = depth
    fin = np.arange(total, n, dtype=I64)
    peeks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pops: dict[str, np.ndarray] = {}
    for port, at, s in (("a", at_a, a), ("b", at_b, b)):
        own_steps = np.concatenate([at, fin])
        peeks[port] = (own_steps, np.arange(len(s), dtype=I64))
        pops[port] = own_steps
    return Firing(n, peeks, pops, {"out": _iota(n)}, {"out": Stream(kind, data)})


FIRE: dict[Opcode, Callable[[Node, dict[str, Stream], Memory], Firing]] = {
    Opcode.SCAN: fire_scan,
    Opcode.REPSIG: fire_repsig,
    Opcode.REPEAT: fire_repeat,
    Opcode.INTERSECT: fire_intersect,
    Opcode.UNION: fire_union,
    Opcode.ARRAY: fire_array,
    Opcode.ALU: fire_alu,
    Opcode.REDUCE: fire_reduce,
    Opcode.VREDUCE: fire_vreduce,
    Opcode.CRDDROP: fire_crddrop,
    Opcode.CRDHOLD: fire_crdhold,
    Opcode.WRITE_CRD: fire_write_crd,
    Opcode.WRITE_VAL: fire_write_val,
    Opcode.LOCATE: fire_locate,
    Opcode.SCAN_BV: fire_scan_bv,
    Opcode.BV_INTERSECT: fire_bv_intersect,
    Opcode.BV_UNION: fire_bv_union,
    Opcode.WRITE_BV: fire_write_bv,
    Opcode.LOCATE_BV: fire_locate_bv,
    Opcode.FILTER: fire_filter,
    Opcode.ARBITER: fire_arbiter,
}


# ----------------------------------------------------------------------------- driving
def _batched(node: Node) -> Callable[..., Firing] | None:
    """The opcode function that fires the copies of ``node`` as one (``Copies``), if its
    behaviour on the copies' concatenated streams is theirs laid end to end: a unit whose
    state is back to its start once it has passed D, which takes the copy's last step. Only
    ``FIRE``'s own functions are (a replaced entry fires unit by unit)."""
    op = node.op
    fn = FIRE[op]
    if fn not in _BATCHED:
        return None
    if op is Opcode.SCAN:
        a = node.a
        plain = not a["root"] and a["fmt"] != "bitmap" and not a["skip_zeros"]
        return fn if plain else None
    if op is Opcode.CRDDROP:
        return None if node.a.get("prune", False) else fn
    if op is Opcode.ALU:
        return None if node.attr("op") in ALU_UNARY else fn
    if op is Opcode.REPEAT:
        return None if node.attr("root") else fn
    return fn


_BATCHED: frozenset[Callable[..., Firing]] = frozenset({
    fire_scan, fire_crddrop, fire_alu, fire_repeat, fire_intersect, fire_union, fire_array,
    fire_repsig, fire_vreduce})


BATCH_TOKENS = 1 << 18
"""A role's copies are fired as one while each input port's concatenated stream holds at
most this many tokens: batching saves the opcode function's per-call cost, which only
matters for short streams, and costs a pass to concatenate and one to split each table."""


class _CopiesFired:
    """The concatenated outputs of the roles fired as one (``fire_kernel``), so that a role
    reading them in the same copy order takes them as they are."""

    def __init__(self) -> None:
        self.outs: dict[tuple[str, str], tuple[Stream, np.ndarray]] = {}  # first member's
        self.members: dict[str, list[str]] = {}                           # first member's


def _fire_copies(members: list[Node], fn: Callable[..., Firing], in_edges: dict[str, list],
                 streams: dict[tuple[str, str], Stream], mem: Memory,
                 done: _CopiesFired) -> list[Firing] | None:
    """Fire a role's copies (same opcode and attributes, inputs from the same roles) as one
    unit on their concatenated input streams and split the firing table back per copy: each
    copy's steps are a run (its step numbers restart at 0), its tokens a run of every port.
    None when that cannot be done exactly (the copies' streams differ in dtype, or one does
    not end with D): the caller fires them one by one (and reports any malformed input)."""
    ids = [m.id for m in members]
    count = len(members)
    edges = {e.dst_port: [] for e in in_edges[ids[0]]}
    for m in ids:
        for e in in_edges[m]:
            if e.dst_port not in edges:
                return None
            edges[e.dst_port].append(e)
    ins: dict[str, Stream] = {}
    cuts: dict[str, np.ndarray] = {}
    shared = 0
    for port, es in edges.items():
        if len(es) != count:
            return None
        got = done.outs.get((es[0].src, es[0].src_port))
        if got is not None and done.members[es[0].src] == [e.src for e in es] and \
                all(e.src_port == es[0].src_port for e in es):
            if len(got[0]) > BATCH_TOKENS:
                return None
            ins[port], cuts[port] = got
            continue
        parts = [streams[(e.src, e.src_port)] for e in es]
        if len({(p.kind.dtype, p.data.dtype) for p in parts}) != 1 or \
                sum(len(p) for p in parts) > BATCH_TOKENS:
            return None
        if all(p is parts[0] for p in parts):
            shared += 1
        lens = np.array([len(p) for p in parts], I64)
        cut = np.zeros(count + 1, I64)
        np.cumsum(lens, out=cut[1:])
        ins[port] = Stream(np.concatenate([p.kind for p in parts]),
                           np.concatenate([p.data for p in parts]))
        cuts[port] = cut
    if shared == len(edges):        # the very same streams: one firing, shared by the caller
        return None
    for port, cut in cuts.items():
        if (cut[1:] == cut[:-1]).any() or (ins[port].kind[cut[1:] - 1] != DONE_K).any():
            return None
    cp = Copies(count, {p: np.repeat(_iota(count), c[1:] - c[:-1])
                        for p, c in cuts.items()}, cuts)
    try:
        f = fn(members[0], ins, mem, cp=cp)
    except SimulationError:
        return None
    first = next(iter(cuts))
    # each copy's first step: after its last one, which pops its D (and any output D, as a
    # vector reducer's drained queue, may come later)
    last = f.pops[first][cuts[first][1:] - 1]
    for p, o in f.outs.items():
        ends = np.flatnonzero(o.kind == DONE_K)
        if len(ends) != count:
            return None
        last = np.maximum(last, f.emits[p][ends])
    bound = np.zeros(count + 1, I64)
    bound[1:] = last + 1
    if bound[-1] != f.n:
        return None
    local: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def steps_of(arr: np.ndarray, cut: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                           np.ndarray]:
        """``arr`` (steps, in copy order) less each copy's first step, and its copy cuts
        (``cut`` if given, else found by step)."""
        got = local.get(id(arr))
        if got is None:
            if cut is None:
                cut = np.searchsorted(arr, bound)
            got = local[id(arr)] = (arr - np.repeat(bound[:-1], cut[1:] - cut[:-1]), cut)
        return got

    pops = {p: steps_of(a, cuts[p])[0] for p, a in f.pops.items()}
    emits = {p: steps_of(a) for p, a in f.emits.items()}
    heads = isinstance(f.peeks, HeadPeeks)
    peeks = {}
    if not heads:
        for p, (ps, pt) in f.peeks.items():
            ls, pc = steps_of(ps)
            if pt is ps and np.array_equal(cuts[p], bound):   # a token per step: one array
                peeks[p] = (ls, ls, pc)
            else:
                peeks[p] = (ls, pt - np.repeat(cuts[p][:-1], pc[1:] - pc[:-1]), pc)
    acts = {k: np.broadcast_to(v, count).tolist() for k, v in f.acts.items()}
    n = (bound[1:] - bound[:-1]).tolist()
    parts: dict[int, list[np.ndarray]] = {}

    def split(arr: np.ndarray, cut: np.ndarray) -> list[np.ndarray]:
        """Each copy's part of ``arr``: one view object per array and copy, so an array
        two ports share stays shared (the timing merges the terms of one array)."""
        got = parts.get(id(arr))
        if got is None:
            at = cut.tolist()
            got = parts[id(arr)] = [arr[lo:hi] for lo, hi in zip(at, at[1:])]
        return got

    pops_s = {p: split(a, cuts[p]) for p, a in pops.items()}
    emits_s = {p: split(e, q) for p, (e, q) in emits.items()}
    outs_s = {p: (split(f.outs[p].kind, q), split(f.outs[p].data, q))
              for p, (_, q) in emits.items()}
    peeks_s = {p: (split(ls, pc), split(lt, pc)) for p, (ls, lt, pc) in peeks.items()}
    out: list[Firing] = []
    for c in range(count):
        pops_c = {p: v[c] for p, v in pops_s.items()}
        peeks_c: Mapping[str, tuple[np.ndarray, np.ndarray]] = HeadPeeks(pops_c, n[c]) \
            if heads else {p: (ls[c], lt[c]) for p, (ls, lt) in peeks_s.items()}
        out.append(Firing(n[c], peeks_c, pops_c, {p: v[c] for p, v in emits_s.items()},
                          {p: Stream(k[c], d[c]) for p, (k, d) in outs_s.items()},
                          {k: v[c] for k, v in acts.items() if v[c]}, f.dense))
    done.members[ids[0]] = ids
    for p, (_, q) in emits.items():
        done.outs[(ids[0], p)] = (f.outs[p], q)
    return out


def fire_kernel(kernel: Kernel, images: dict[str, FiberTree]
                ) -> tuple[dict[str, Firing], Memory, list[Node]]:
    """The functional pass over a whole kernel, in topological order of its roles.

    A *role* is a set of units of the same opcode and attributes (but ``copy``) whose inputs
    come from the same ports of the same roles: an unrolled kernel's copies of one unit.
    Roles are formed in topological order, which is then a topological order of the roles.
    The copies of a role whose opcode allows it (``_batched``) are fired as one on their
    concatenated streams (``_fire_copies``). Otherwise, units of the same opcode and
    attributes reading the very same input streams (the copies of an unrolled kernel's
    outer scanners and repeaters) have the same firing table: it is computed once and shared
    (the tables are read-only). Writers are always fired, each on its own."""
    mem = Memory(images)
    streams: dict[tuple[str, str], Stream] = {}
    firings: dict[str, Firing] = {}
    order = kernel.topo_order()
    in_edges: dict[str, list] = {node.id: [] for node in order}
    for e in kernel.edges:
        in_edges[e.dst].append(e)
    role_of: dict[str, int] = {}
    roles: dict[Any, list[Node]] = {}
    for node in order:
        key: Any = node.id
        if node.op not in WRITERS:   # they fill the memory's output levels, in order
            key = (node.op.value, tuple([kv for kv in node.attrs if kv[0] != "copy"]),
                   *sorted((e.dst_port, role_of[e.src], e.src_port) for e in in_edges[node.id]))
        try:
            members = roles.setdefault(key, [])
        except TypeError:           # an unhashable attribute value: a role of its own
            members = roles.setdefault(node.id, [])
        role_of[node.id] = id(members)
        members.append(node)
    fired: dict[tuple, Firing] = {}
    done = _CopiesFired()
    for members in roles.values():
        fn = _batched(members[0]) if len(members) > 1 else None
        if fn is not None:
            got = _fire_copies(members, fn, in_edges, streams, mem, done)
            if got is not None:
                for node, f in zip(members, got):
                    for port, s in f.outs.items():
                        streams[(node.id, port)] = s
                    firings[node.id] = f
                continue
        for node in members:
            ins = {e.dst_port: streams[(e.src, e.src_port)] for e in in_edges[node.id]}
            f = None
            key = None
            if node.op not in WRITERS:
                key = (node.op.value, node.attrs, *sorted((p, id(s)) for p, s in ins.items()))
                try:
                    f = fired.get(key)
                except TypeError:   # an unhashable attribute value: fire it on its own
                    key = None
            if f is None:
                f = FIRE[node.op](node, ins, mem)
                if key is not None:
                    fired[key] = f
            for port, s in f.outs.items():
                streams[(node.id, port)] = s
            firings[node.id] = f
    return firings, mem, order


__all__ = ["FIRE", "Firing", "Stream", "fire_kernel"]
