"""The functional interpreter: the living definition of every instruction.

Each opcode has one behaviour: a generator that runs one *step* per iteration. A step is
the unit of time of the timing engines (one step = one busy cycle of the tile):

1. it may ``yield Peek(ports)`` to see the head token of some input ports; the engine sends
   back the head tokens as a tuple. A step may peek several times (a decision tree: which
   port to look at next may depend on the heads already seen, never on anything else), and
   it waits for every head it peeked. A unit peeks only what it needs to decide, so it never
   waits for a token that does not change its action;
2. it then ``yield Fire(consume, out, act)``: the input ports whose head it pops, the token
   it emits per output port (at most one per port), and the architectural actions it
   performed (SRAM word reads and writes, ALU ops), as a tuple of (name, count).

The behaviour returns after emitting Done. ``run_kernel`` drives the behaviours with
unbounded queues in topological order and no timing; the cycle engine drives the very same
generators under SimPy timing rules, so the two cannot disagree on what is computed.

Memory tiles hold 64-bit words of four 16-bit elements; each SRAM client (segment reader,
coordinate reader, value reader, writers) keeps a one-word cache, as Onyx's level buffer does,
so a word is fetched only when the client moves to another word.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isa.copies import dealt_copy, union_of_copies
from isa.errors import IsaError
from isa.fibertree import BITMAP_WORD_BITS, FiberTree, Level, bitmap_level, bitmap_masks
from isa.ops import ALU_UNARY, Opcode
from isa.program import Kernel, Node
from isa.tokens import DONE, EMPTY, REP, Done, Empty, Stop, Token, is_data

ELEMENTS_PER_WORD = 4   # 64-bit SRAM word / 16-bit elements


@dataclass(slots=True)
class Peek:
    """Request the head tokens of ``ports`` (in that order)."""

    ports: tuple[str, ...]


@dataclass(slots=True)
class Fire:
    """Pop ``consume``, emit ``out`` (port -> token), record actions ``act``."""

    consume: tuple[str, ...] = ()
    out: dict[str, Token] = field(default_factory=dict)
    act: tuple[tuple[str, int], ...] = ()


Behaviour = Generator[Any, Any, None]


@dataclass(eq=False)
class WrittenLevel:
    """What a level writer has written so far (lists here; the burst engine stores arrays)."""

    seg: Any = field(default_factory=lambda: [0])
    crd: Any = field(default_factory=list)
    vals: Any = field(default_factory=list)
    masks: Any = field(default_factory=list)   # a bitmap level's mask words (seg: its counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WrittenLevel):
            return NotImplemented
        return all(np.array_equal(np.asarray(getattr(self, f)), np.asarray(getattr(other, f)))
                   for f in ("seg", "crd", "vals", "masks"))


class Memory:
    """The memory images a kernel reads and the levels its writers produce."""

    def __init__(self, images: dict[str, FiberTree]):
        self.images = images
        # (tensor, level), or (tensor, level, copy) for a copy's writers (isa.copies)
        self.written: dict[tuple[Any, ...], WrittenLevel] = {}
        self.copies: dict[str, int] = {}     # tensor -> copies its writers were dealt over

    def level(self, tensor: str, level: int) -> Level:
        try:
            return self.images[tensor].levels[level]
        except (KeyError, IndexError):
            raise IsaError(f"no memory image for {tensor} level {level}") from None

    def vals(self, tensor: str) -> np.ndarray:
        try:
            return self.images[tensor].vals
        except KeyError:
            raise IsaError(f"no memory image for {tensor} values") from None

    def writer(self, tensor: str, level: int) -> WrittenLevel:
        return self.written.setdefault((tensor, level), WrittenLevel())

    def writer_of(self, node: Node, level: int) -> WrittenLevel:
        """What level writer ``node`` writes: its tensor's ``level``, or, when it carries the
        output address generator's ``copy``/``copies`` (isa.copies), its copy's part."""
        a = node.a
        if "copies" not in a:
            return self.writer(a["tensor"], level)
        tensor, copies = a["tensor"], int(a["copies"])
        if self.copies.setdefault(tensor, copies) != copies:
            raise IsaError(f"{node.op.value} {node.id}: copies={copies} but other writers of "
                           f"{tensor} have copies={self.copies[tensor]}")
        return self.written.setdefault((tensor, level, int(a["copy"])), WrittenLevel())


class _WordCache:
    """One-word cache of one SRAM client: counts word fetches."""

    __slots__ = ("word",)

    def __init__(self) -> None:
        self.word = -1

    def touch(self, element: int) -> int:
        w = element // ELEMENTS_PER_WORD
        if w == self.word:
            return 0
        self.word = w
        return 1


def _py(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _bad(node: Node, what: str) -> IsaError:
    return IsaError(f"{node.op.value} {node.id}: malformed input: {what}")


# --------------------------------------------------------------------------- behaviours
def scan(node: Node, mem: Memory) -> Behaviour:
    """Level scanner. For each input ref, emit the fiber's (crd, ref) pairs.

    Fibers are separated by S0; an input stop S_n becomes S_(n+1); D passes. A root scanner
    feeds itself ``0 D``. Steps: 1 per input ref (segment fetch), 1 per emitted coordinate,
    1 per separator or stop. With ``skip_zeros`` a coordinate whose value is 0 takes its step
    but is not emitted (zero policy ``skip``).
    """
    a = node.a
    lv = mem.level(a["tensor"], a["level"])
    dense = a["fmt"] == "dense"
    dim = a["dim"] if dense else 0
    vals = mem.vals(a["tensor"]) if a["skip_zeros"] else None
    seg_c, crd_c, val_c = _WordCache(), _WordCache(), _WordCache()
    root_feed = [0, DONE] if a["root"] else None
    p = end = base = 0
    state = "idle"
    plan: deque[tuple[int, int]] = deque()  # bitmap: (mask element or -1, position or -1)
    while True:
        if state == "bitmap":
            word, pos = plan.popleft()
            act = [("sram_read_words", crd_c.touch(word))] if word >= 0 else []
            state = "bitmap" if plan else "ended"
            if pos < 0:
                yield Fire((), {}, tuple(act))
                continue
            if vals is not None:
                act.append(("sram_read_words", val_c.touch(pos)))
                if vals[pos] == 0:
                    act.append(("skipped_zero_count", 1))
                    yield Fire((), {}, tuple(act))
                    continue
            yield Fire((), {"crd": int(lv.crd[pos]), "ref": pos}, tuple(act))
            continue
        if state == "fiber":
            act: list[tuple[str, int]] = []
            if not dense:
                act.append(("sram_read_words", crd_c.touch(p)))
            c = p - base if dense else int(lv.crd[p])
            if vals is not None:
                act.append(("sram_read_words", val_c.touch(p)))
                if vals[p] == 0:
                    act.append(("skipped_zero_count", 1))
                    p += 1
                    state = "fiber" if p < end else "ended"
                    yield Fire((), {}, tuple(act))
                    continue
            p += 1
            state = "fiber" if p < end else "ended"
            yield Fire((), {"crd": c, "ref": p - 1}, tuple(act))
            continue
        if root_feed is not None:
            (tok,) = (root_feed[0],)
        else:
            (tok,) = yield Peek(("ref",))
        consume = () if root_feed is not None else ("ref",)
        if state == "ended":
            state = "idle"
            if isinstance(tok, Stop):
                if root_feed is not None:
                    root_feed.pop(0)
                s = Stop(tok.level + 1)
                yield Fire(consume, {"crd": s, "ref": s})
            else:
                yield Fire((), {"crd": Stop(0), "ref": Stop(0)})
            continue
        if root_feed is not None:
            root_feed.pop(0)
        if isinstance(tok, Done):
            yield Fire(consume, {"crd": DONE, "ref": DONE})
            return
        if isinstance(tok, Stop):
            s = Stop(tok.level + 1)
            yield Fire(consume, {"crd": s, "ref": s})
            continue
        if isinstance(tok, Empty):
            p = end = 0
            state = "ended"
            yield Fire(consume)
            continue
        if not is_data(tok):
            raise _bad(node, f"{tok!r} on a ref stream")
        r = int(tok)
        if dense:
            base = p = r * dim
            end = p + dim
            act = ()
        elif a["fmt"] == "bitmap":
            if r + 1 >= len(lv.seg):
                raise _bad(node, f"ref {r} outside {a['tensor']} level {a['level']}")
            plan = deque(_bitmap_plan(lv, r))  # the mask words go through the crd reader
            act = (("sram_read_words", seg_c.touch(r)),)
            state = "bitmap"
            yield Fire(consume, {}, act)
            continue
        else:
            if r + 1 >= len(lv.seg):
                raise _bad(node, f"ref {r} outside {a['tensor']} level {a['level']}")
            p, end = int(lv.seg[r]), int(lv.seg[r + 1])
            act = (("sram_read_words", seg_c.touch(r) + seg_c.touch(r + 1)),)
        state = "fiber" if p < end else "ended"
        yield Fire(consume, {}, act)


def _bitmap_plan(lv: Level, r: int) -> list[tuple[int, int]]:
    """The steps of bitmap fiber r: (mask element read at this step or -1, position emitted
    or -1), a step per set bit and one per all-zero mask word."""
    words = lv.words_per_fiber()
    lo, hi = int(lv.seg[r]), int(lv.seg[r + 1])
    out: list[tuple[int, int]] = []
    k = lo
    for w in range(words):
        first = True
        while k < hi and int(lv.crd[k]) // BITMAP_WORD_BITS == w:
            out.append((r * words + w if first else -1, k))
            first = False
            k += 1
        if first:
            out.append((r * words + w, -1))
    return out


def repsig(node: Node, mem: Memory) -> Behaviour:
    """Repeat-signal generator: R per coordinate; stops and D pass through."""
    while True:
        (tok,) = yield Peek(("crd",))
        if isinstance(tok, Done):
            yield Fire(("crd",), {"repsig": DONE})
            return
        yield Fire(("crd",), {"repsig": tok if isinstance(tok, Stop) else REP})


def repeat(node: Node, mem: Memory) -> Behaviour:
    """Repeater: emit the head ref once per R; a repsig stop ends that ref's fiber.

    The output's stop structure is the repsig stream's. After a repsig stop S_k with k >= 1
    the ref stream's own stop (S_(k-1)) is already accounted for and is dropped (1 step).
    A ref-stream stop S_m met at a fiber start is an empty outer fiber: it pairs with a bare
    repsig stop S_(m+1).
    """
    root_feed = [0, DONE] if node.attr("root") else None
    drop = False
    while True:
        if drop:
            if root_feed is not None:
                tok = root_feed.pop(0)
                if not isinstance(tok, Stop):
                    raise _bad(node, f"expected a stop on the root ref, got {tok!r}")
                yield Fire()
            else:
                (tok,) = yield Peek(("ref",))
                if not isinstance(tok, Stop):
                    raise _bad(node, f"expected a stop on ref after a repsig stop, got {tok!r}")
                yield Fire(("ref",))
            drop = False
            continue
        if root_feed is not None:
            (sig,) = yield Peek(("repsig",))
            ref = root_feed[0]
        else:
            ref, sig = yield Peek(("ref", "repsig"))
        pop_ref = () if root_feed is not None else ("ref",)
        if isinstance(ref, Done) and isinstance(sig, Done):
            yield Fire(pop_ref + ("repsig",), {"ref": DONE})
            return
        if sig is REP or isinstance(sig, type(REP)):
            if not (is_data(ref) or isinstance(ref, Empty)):
                raise _bad(node, f"R against ref {ref!r}")
            yield Fire(("repsig",), {"ref": ref})
        elif isinstance(sig, Stop):
            if is_data(ref) or isinstance(ref, Empty):
                if root_feed is not None:
                    root_feed.pop(0)
                drop = sig.level >= 1
                yield Fire(pop_ref + ("repsig",), {"ref": sig})
            elif isinstance(ref, Stop) and sig.level == ref.level + 1:
                if root_feed is not None:
                    root_feed.pop(0)
                yield Fire(pop_ref + ("repsig",), {"ref": sig})
            else:
                raise _bad(node, f"repsig {sig!r} against ref {ref!r}")
        else:
            raise _bad(node, f"repsig {sig!r} against ref {ref!r}")


def _join(node: Node, mem: Memory, union: bool) -> Behaviour:
    ports = ("crd_a", "ref_a", "crd_b", "ref_b")
    side_a, side_b = ("crd_a", "ref_a"), ("crd_b", "ref_b")
    while True:
        ca, ra, cb, rb = yield Peek(ports)
        da, db = is_data(ca), is_data(cb)
        if da and db:
            if ca == cb:
                yield Fire(ports, {"crd": ca, "ref_a": ra, "ref_b": rb}, (("match_count", 1),))
            elif ca < cb:
                yield Fire(side_a, {"crd": ca, "ref_a": ra, "ref_b": EMPTY} if union else {})
            else:
                yield Fire(side_b, {"crd": cb, "ref_a": EMPTY, "ref_b": rb} if union else {})
        elif da and isinstance(cb, Stop):
            yield Fire(side_a, {"crd": ca, "ref_a": ra, "ref_b": EMPTY} if union else {})
        elif db and isinstance(ca, Stop):
            yield Fire(side_b, {"crd": cb, "ref_a": EMPTY, "ref_b": rb} if union else {})
        elif isinstance(ca, Stop) and isinstance(cb, Stop):
            if ca.level != cb.level:
                raise _bad(node, f"fiber structure differs: {ca!r} vs {cb!r}")
            yield Fire(ports, {"crd": ca, "ref_a": ca, "ref_b": ca})
        elif isinstance(ca, Done) and isinstance(cb, Done):
            yield Fire(ports, {"crd": DONE, "ref_a": DONE, "ref_b": DONE})
            return
        else:
            raise _bad(node, f"fiber structure differs: {ca!r} vs {cb!r}")


def intersect(node: Node, mem: Memory) -> Behaviour:
    """Two-finger intersection: one comparison per step; a non-match pops the smaller side."""
    return _join(node, mem, union=False)


def union(node: Node, mem: Memory) -> Behaviour:
    """Two-finger union: emits every coordinate of either side, N for the absent side's ref."""
    return _join(node, mem, union=True)


def array(node: Node, mem: Memory) -> Behaviour:
    """Value load: ref -> value; N, stops and D pass through."""
    vals = mem.vals(node.attr("tensor"))
    cache = _WordCache()
    while True:
        (tok,) = yield Peek(("ref",))
        if is_data(tok):
            r = int(tok)
            if not 0 <= r < len(vals):
                raise _bad(node, f"ref {r} outside {node.attr('tensor')} values")
            yield Fire(("ref",), {"val": _py(vals[r])}, (("sram_read_words", cache.touch(r)),))
        else:
            yield Fire(("ref",), {"val": tok})
            if isinstance(tok, Done):
                return


_ALU_FN: dict[str, Callable[..., Any]] = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "max": lambda x, y: max(x, y),
    "relu": lambda x: max(x, 0),
    "silu": lambda x: float(x) / (1.0 + float(np.exp(-float(x)))),
    "gelu": lambda x: 0.5 * float(x) * (1.0 + float(np.tanh(0.7978845608028654 *
                                                              (x + 0.044715 * x ** 3)))),
}


def alu_op_kind(op: str, a: Any, b: Any, zero_a: str, zero_b: str) -> str:
    """Classify one ALU op: 'effectual', 'gated' or 'ineffectual' (done with a zero operand).

    Only a multiply is ineffectual with a zero operand. A zero whose operand policy is
    ``gate`` or ``skip`` (a zero that reached the PE although its operand skips zeros, e.g. the
    N of a union) clock-gates the op; under ``none`` the op runs at full energy.
    """
    if op != "mul" or (a != 0 and b != 0):
        return "effectual"
    policies = ([zero_a] if a == 0 else []) + ([zero_b] if b == 0 else [])
    return "ineffectual" if all(p == "none" for p in policies) else "gated"


def alu(node: Node, mem: Memory) -> Behaviour:
    """ALU: combines its operand streams value by value; N reads as 0; stops must agree."""
    a = node.a
    op = a["op"]
    fn = _ALU_FN[op]
    if op in ALU_UNARY:
        while True:
            (x,) = yield Peek(("a",))
            if is_data(x) or isinstance(x, Empty):
                yield Fire(("a",), {"val": fn(0 if isinstance(x, Empty) else x)},
                           (("effectual_op_count", 1),))
            else:
                yield Fire(("a",), {"val": x})
                if isinstance(x, Done):
                    return
    counters = {"effectual": "effectual_op_count", "gated": "gated_op_count",
                "ineffectual": "ineffectual_op_count"}
    while True:
        x, y = yield Peek(("a", "b"))
        vx = 0 if isinstance(x, Empty) else x
        vy = 0 if isinstance(y, Empty) else y
        if is_data(vx) and is_data(vy):
            kind = alu_op_kind(op, vx, vy, a["zero_a"], a["zero_b"])
            yield Fire(("a", "b"), {"val": fn(vx, vy)}, ((counters[kind], 1),))
        elif isinstance(x, Stop) and isinstance(y, Stop) and x.level == y.level:
            yield Fire(("a", "b"), {"val": x})
        elif isinstance(x, Done) and isinstance(y, Done):
            yield Fire(("a", "b"), {"val": DONE})
            return
        else:
            raise _bad(node, f"operands out of step: {x!r} vs {y!r}")


def reduce(node: Node, mem: Memory) -> Behaviour:
    """Scalar reducer: one sum per innermost fiber; S_n (n>=1) becomes S_(n-1).

    An empty fiber gives 0, or nothing with ``drop_empty``. Steps: 1 per value, 1 per S0,
    2 per S_n with n >= 1 (the sum, then the lowered stop).
    """
    drop_empty = node.attr("drop_empty")
    acc: Any = 0
    count = 0
    while True:
        (tok,) = yield Peek(("val",))
        if is_data(tok) or isinstance(tok, Empty):
            acc = acc + (0 if isinstance(tok, Empty) else tok)
            count += 1
            yield Fire(("val",), {}, (("add_count", 1),))
        elif isinstance(tok, Stop):
            emit = count > 0 or not drop_empty
            if tok.level == 0:
                yield Fire(("val",), {"val": acc} if emit else {})
            else:
                if emit:
                    yield Fire((), {"val": acc})
                yield Fire(("val",), {"val": Stop(tok.level - 1)})
            acc, count = 0, 0
        elif isinstance(tok, Done):
            yield Fire(("val",), {"val": DONE})
            return
        else:
            raise _bad(node, f"{tok!r} on a val stream")


def vreduce(node: Node, mem: Memory) -> Behaviour:
    """Vector reducer (sparse accumulator, order 1): sums values by coordinate across the
    S0-separated sub-fibers of one fiber; a fiber's stop S_n (n >= 1) queues its sorted
    (crd, val) pairs and then S_(n-1) for output, and D queues D.

    It takes input while it emits, as SAM's sparse accumulator does (``SparseAccumulator1``
    accumulates one point and emits one entry of a completed fiber per cycle): every step
    pops one input token (crd and val together) and emits the oldest queued output token, if
    any, the one its own input queued included. After D has been taken, the steps that remain
    drain the queue; the step that emits D is the last. Steps: one per input token plus the
    queue left behind D (the last fiber's entries, at most).
    """
    acc: dict[int, Any] = {}
    queue: deque[tuple[Token, Token]] = deque()
    taken_done = False
    while True:
        consume: tuple[str, ...] = ()
        act: tuple[tuple[str, int], ...] = ()
        if not taken_done:
            c, v = yield Peek(("crd", "val"))
            consume = ("crd", "val")
            if is_data(c):
                if not (is_data(v) or isinstance(v, Empty)):
                    raise _bad(node, f"crd {c!r} with val {v!r}")
                acc[c] = acc.get(c, 0) + (0 if isinstance(v, Empty) else v)
                act = (("add_count", 1),)
            elif isinstance(c, Stop) and isinstance(v, Stop) and c.level == v.level:
                if c.level >= 1:
                    queue.extend((k, acc[k]) for k in sorted(acc))
                    acc = {}
                    s = Stop(c.level - 1)
                    queue.append((s, s))
            elif isinstance(c, Done) and isinstance(v, Done):
                taken_done = True
                queue.append((DONE, DONE))
            else:
                raise _bad(node, f"crd {c!r} with val {v!r}")
        out: dict[str, Token] = {}
        if queue:
            oc, ov = queue.popleft()
            out = {"crd": oc, "val": ov}
        yield Fire(consume, out, act)
        if out and isinstance(out["crd"], Done):
            return


def crddrop(node: Node, mem: Memory) -> Behaviour:
    """Coordinate dropper: removes outer coordinates whose inner fiber is empty.

    The inner output's stops are regenerated from the outer stream's structure (S0 between
    kept fibers, S_(m+1) at an outer S_m), so no duplicate stops remain.

    With ``prune`` the inner output also leaves out the fibers of outer fibers that keep no
    coordinate (the level above drops their coordinates, so a writer must not see a fiber for
    them): the closing stop of a kept fiber is owed until the next kept fiber starts, or D
    arrives, and is then emitted in a step of its own as S_k, k the highest level closed in
    between (S0 if none). The outer output is the same in both modes.
    """
    prune = bool(node.a.get("prune", False))
    open_ = False        # a kept fiber's closing stop is still owed on the inner output
    owed = -1            # prune: the level of the owed closing stop (-1: none)
    in_nonempty = False  # the current input outer fiber has had a coordinate
    inside = False       # within a kept fiber, forwarding inner data
    while True:
        if inside:
            (i,) = yield Peek(("inner",))
            if is_data(i):
                yield Fire(("inner",), {"inner": i})
            elif isinstance(i, Stop):
                inside = False
                yield Fire(("inner",))
            else:
                raise _bad(node, f"inner {i!r} inside a fiber")
            continue
        (o,) = yield Peek(("outer",))
        if isinstance(o, Stop) and in_nonempty:
            in_nonempty = open_ = False
            if prune:
                owed = max(owed, o.level + 1) if owed >= 0 else -1
                yield Fire(("outer",), {"outer": o})
            else:
                yield Fire(("outer",), {"outer": o, "inner": Stop(o.level + 1)})
            continue
        (i,) = yield Peek(("inner",))
        if is_data(o):
            in_nonempty = True
            if is_data(i):
                if prune and owed >= 0:
                    s, owed = Stop(owed), -1
                    yield Fire((), {"inner": s})
                elif open_ and not prune:
                    open_ = False
                    yield Fire((), {"inner": Stop(0)})
                else:
                    open_ = inside = True
                    if prune:
                        owed = 0
                    yield Fire(("outer", "inner"), {"outer": o, "inner": i})
            elif isinstance(i, Stop):
                yield Fire(("outer", "inner"), {}, (("dropped_count", 1),))
            else:
                raise _bad(node, f"outer {o!r} with inner {i!r}")
        elif isinstance(o, Stop):
            if not (isinstance(i, Stop) and i.level == o.level + 1):
                raise _bad(node, f"empty outer fiber {o!r} with inner {i!r}")
            open_ = False
            if prune:
                owed = max(owed, o.level + 1) if owed >= 0 else -1
                yield Fire(("outer", "inner"), {"outer": o})
            else:
                yield Fire(("outer", "inner"), {"outer": o, "inner": Stop(o.level + 1)})
        elif isinstance(o, Done) and isinstance(i, Done):
            if prune and owed >= 0:
                s, owed = Stop(owed), -1
                yield Fire((), {"inner": s})
                continue
            yield Fire(("outer", "inner"), {"outer": DONE, "inner": DONE})
            return
        else:
            raise _bad(node, f"outer {o!r} with inner {i!r}")


def crdhold(node: Node, mem: Memory) -> Behaviour:
    """Coordinate hold: repeats each outer coordinate alongside every coordinate of its inner
    fiber; both outputs carry the inner stream's stop structure."""
    in_nonempty = False
    cur: Any = None
    while True:
        if cur is not None:
            (i,) = yield Peek(("inner",))
            if is_data(i):
                yield Fire(("inner",), {"outer": cur, "inner": i})
            elif isinstance(i, Stop):
                cur = None
                yield Fire(("outer", "inner"), {"outer": i, "inner": i})
            else:
                raise _bad(node, f"inner {i!r} inside a fiber")
            continue
        (o,) = yield Peek(("outer",))
        if isinstance(o, Stop) and in_nonempty:
            in_nonempty = False
            yield Fire(("outer",))
            continue
        (i,) = yield Peek(("inner",))
        if is_data(o):
            in_nonempty = True
            if is_data(i):
                cur = o
                yield Fire(("inner",), {"outer": o, "inner": i})
            elif isinstance(i, Stop):
                yield Fire(("outer", "inner"), {"outer": i, "inner": i})
            else:
                raise _bad(node, f"outer {o!r} with inner {i!r}")
        elif isinstance(o, Stop):
            if not isinstance(i, Stop):
                raise _bad(node, f"empty outer fiber {o!r} with inner {i!r}")
            yield Fire(("outer", "inner"), {"outer": i, "inner": i})
        elif isinstance(o, Done) and isinstance(i, Done):
            yield Fire(("outer", "inner"), {"outer": DONE, "inner": DONE})
            return
        else:
            raise _bad(node, f"outer {o!r} with inner {i!r}")


def write_crd(node: Node, mem: Memory) -> Behaviour:
    """Level writer: appends coordinates; every stop closes a fiber (a segment entry).

    Writes are combined in a one-word buffer per array: an SRAM word write per 4 elements,
    plus the partial last words when D arrives.
    """
    out = mem.writer_of(node, node.attr("level"))
    while True:
        (tok,) = yield Peek(("crd",))
        if is_data(tok):
            out.crd.append(int(tok))
            yield Fire(("crd",), {}, (("sram_write_words", int(len(out.crd) % 4 == 0)),))
        elif isinstance(tok, Stop):
            out.seg.append(len(out.crd))
            yield Fire(("crd",), {}, (("sram_write_words", int(len(out.seg) % 4 == 0)),))
        elif isinstance(tok, Done):
            tail = int(len(out.crd) % 4 != 0) + int(len(out.seg) % 4 != 0)
            yield Fire(("crd",), {}, (("sram_write_words", tail),))
            return
        else:
            raise _bad(node, f"{tok!r} on a crd stream")


def write_val(node: Node, mem: Memory) -> Behaviour:
    """Value writer: appends values; stops carry no information for the value array."""
    out = mem.writer_of(node, -1)
    while True:
        (tok,) = yield Peek(("val",))
        if is_data(tok) or isinstance(tok, Empty):
            out.vals.append(0 if isinstance(tok, Empty) else tok)
            yield Fire(("val",), {}, (("sram_write_words", int(len(out.vals) % 4 == 0)),))
        elif isinstance(tok, Stop):
            yield Fire(("val",))
        elif isinstance(tok, Done):
            yield Fire(("val",), {}, (("sram_write_words", int(len(out.vals) % 4 != 0)),))
            return
        else:
            raise _bad(node, f"{tok!r} on a val stream")


def _absorb_ref_stop(node: Node, root_feed: list[Any] | None) -> Behaviour:
    """A locator's step that pops the reference stream's own stop after a fiber's closing
    stop accounted for it (from the root feed ``0 D`` of a root locator: no pop)."""
    if root_feed is not None:
        tok = root_feed.pop(0)
        consume: tuple[str, ...] = ()
    else:
        (tok,) = yield Peek(("ref",))
        consume = ("ref",)
    if not isinstance(tok, Stop):
        raise _bad(node, f"expected a stop on ref after a fiber's stop, got {tok!r}")
    yield Fire(consume)


def _outer_ref(root_feed: list[Any] | None) -> Generator[Any, Any, tuple[Any, tuple[str, ...]]]:
    """A locator's outer reference for the coordinate at hand, and the ports its step pops."""
    if root_feed is not None:
        return root_feed[0], ()
    (o,) = yield Peek(("ref",))
    return o, ("ref",)


def _stop_meets_ref(node: Node, c: Stop, o: Any, root_feed: list[Any] | None) -> bool:
    """Check a locator's coordinate stop against its outer reference; True when the
    reference stream's own stop follows and must be absorbed in a step of its own."""
    drop = False
    if is_data(o) or isinstance(o, Empty):
        drop = c.level >= 1
    elif not (isinstance(o, Stop) and c.level == o.level + 1):
        raise _bad(node, f"coordinate stop {c!r} against reference {o!r}")
    if root_feed is not None:
        root_feed.pop(0)
    return drop


def locate(node: Node, mem: Memory) -> Behaviour:
    """Locator (SAM's iterate-and-locate; Onyx's PE-tile Locator): random access into a dense
    level by coordinate. For each coordinate c of the iterating side's stream, emit the
    position of c in the located level, ``outer * dim + c``, where ``outer`` is the located
    tensor's reference of that fiber (an absent outer reference N gives N). Stops and D pass
    through, so the output has the coordinate stream's structure.

    The outer reference stream is consumed as a level scanner consumes its input, one
    reference per fiber: a fiber's closing stop S_n pops its reference, and for n >= 1 the
    reference stream's own stop S_(n-1) is already accounted for and is popped in a step of
    its own; an empty outer fiber (a lone stop S_m on the reference stream) meets the
    coordinate stop S_(m+1). A root locator feeds itself ``0 D``. Steps: one per coordinate
    stream token, plus one per absorbed reference stop.
    """
    dim = int(node.attr("dim"))
    root_feed = [0, DONE] if node.attr("root") else None
    drop = False
    while True:
        if drop:
            drop = False
            yield from _absorb_ref_stop(node, root_feed)
            continue
        (c,) = yield Peek(("crd",))
        o, pop = yield from _outer_ref(root_feed)
        if is_data(c):
            if is_data(o):
                yield Fire(("crd",), {"ref": int(o) * dim + int(c)})
            elif isinstance(o, Empty):
                yield Fire(("crd",), {"ref": EMPTY})
            else:
                raise _bad(node, f"coordinate {c!r} against reference {o!r}")
        elif isinstance(c, Stop):
            drop = _stop_meets_ref(node, c, o, root_feed)
            yield Fire(("crd",) + pop, {"ref": c})
        elif isinstance(c, Done) and isinstance(o, Done):
            yield Fire(("crd",) + pop, {"ref": DONE})
            return
        else:
            raise _bad(node, f"coordinate {c!r} against reference {o!r}")


# --------------------------------------------------------------------------- bitmap levels
def _bitmap_image(node: Node, mem: Memory) -> tuple[Level, np.ndarray, int]:
    """The bitmap level a unit reads: (level, its mask words, words per fiber)."""
    lv = mem.level(node.attr("tensor"), node.attr("level"))
    if lv.fmt != "bitmap":
        raise _bad(node, f"{node.attr('tensor')} level {node.attr('level')} is {lv.fmt}, "
                   "not bitmap")
    return lv, bitmap_masks(lv), lv.words_per_fiber()


def _popcount(x: int) -> int:
    return bin(x).count("1")


def scan_bv(node: Node, mem: Memory) -> Behaviour:
    """Bitmap level scanner in bitvector mode (SAM's ``BVRdScan``): for each input ref r, emit
    the fiber's W mask words on ``bv``, each with the position of its first set bit on ``ref``
    (the fiber's count plus the set bits of its earlier words), then the fiber's stop, as the
    coordinate scanner does. An absent fiber (N) gives W zero words with N references.
    Steps: 1 per input ref (count fetch), 1 per mask word (every word, zero or not: the
    joiners pair the two sides' words by position), 1 per separator or stop."""
    a = node.a
    lv, masks, words = _bitmap_image(node, mem)
    seg_c, crd_c = _WordCache(), _WordCache()
    root_feed = [0, DONE] if a["root"] else None
    while True:
        if root_feed is not None:
            tok, consume = root_feed.pop(0), ()
        else:
            (tok,) = yield Peek(("ref",))
            consume = ("ref",)
        if isinstance(tok, Done):
            yield Fire(consume, {"bv": DONE, "ref": DONE})
            return
        if isinstance(tok, Stop):
            s = Stop(tok.level + 1)
            yield Fire(consume, {"bv": s, "ref": s})
            continue
        if isinstance(tok, Empty):
            yield Fire(consume)
            for _ in range(words):
                yield Fire((), {"bv": 0, "ref": EMPTY})
        elif is_data(tok):
            r = int(tok)
            if not 0 <= r < len(lv.seg) - 1:
                raise _bad(node, f"ref {r} outside {a['tensor']} level {a['level']}")
            yield Fire(consume, {}, (("sram_read_words", seg_c.touch(r)),))
            pos = int(lv.seg[r])
            for w in range(words):
                m = int(masks[r * words + w])
                yield Fire((), {"bv": m, "ref": pos},
                           (("sram_read_words", crd_c.touch(r * words + w)),))
                pos += _popcount(m)
        else:
            raise _bad(node, f"{tok!r} on a ref stream")
        # the fiber's end: S0, or S_(n+1) for an input stop S_n (popped with it)
        if root_feed is not None:
            nxt, consume = root_feed[0], ()
        else:
            (nxt,) = yield Peek(("ref",))
            consume = ("ref",)
        if isinstance(nxt, Stop):
            if root_feed is not None:
                root_feed.pop(0)
            s = Stop(nxt.level + 1)
            yield Fire(consume, {"bv": s, "ref": s})
        else:
            yield Fire((), {"bv": Stop(0), "ref": Stop(0)})


def _bv_join(node: Node, mem: Memory, union: bool) -> Behaviour:
    """Word-wide join (SAM's ``IntersectBV2``): AND (OR) the two sides' mask words, one word
    pair per step; a result word with k > 1 set bits takes k steps, one per set bit, each
    emitting the coordinate (16 x word index + bit) and both references (a side's word
    reference plus its set bits below the bit; N where a union's side lacks the bit). The
    last bit's step (or the word's only step) pops the pair. Stops and D pass as in the
    two-finger joiner."""
    ports = ("bv_a", "ref_a", "bv_b", "ref_b")
    w = 0
    while True:
        ba, ra, bb, rb = yield Peek(ports)
        if is_data(ba) and is_data(bb):
            ma, mb = int(ba), int(bb)
            if (ma and not is_data(ra)) or (mb and not is_data(rb)):
                raise _bad(node, f"mask words {ma}, {mb} with references {ra!r}, {rb!r}")
            m = (ma | mb) if union else (ma & mb)
            bits = [b for b in range(BITMAP_WORD_BITS) if m >> b & 1]
            if not bits:
                w += 1
                yield Fire(ports)
                continue
            for k, b in enumerate(bits):
                low = (1 << b) - 1
                out = {"crd": w * BITMAP_WORD_BITS + b,
                       "ref_a": int(ra) + _popcount(ma & low) if ma >> b & 1 else EMPTY,
                       "ref_b": int(rb) + _popcount(mb & low) if mb >> b & 1 else EMPTY}
                last = k == len(bits) - 1
                yield Fire(ports if last else (), out, (("match_count", 1),))
            w += 1
        elif isinstance(ba, Stop) and isinstance(bb, Stop):
            if ba.level != bb.level:
                raise _bad(node, f"fiber structure differs: {ba!r} vs {bb!r}")
            w = 0
            yield Fire(ports, {"crd": ba, "ref_a": ba, "ref_b": ba})
        elif isinstance(ba, Done) and isinstance(bb, Done):
            yield Fire(ports, {"crd": DONE, "ref_a": DONE, "ref_b": DONE})
            return
        else:
            raise _bad(node, f"fiber structure differs: {ba!r} vs {bb!r}")


def bv_intersect(node: Node, mem: Memory) -> Behaviour:
    """Word-wide intersection of two bitvector streams (``_bv_join``)."""
    return _bv_join(node, mem, union=False)


def bv_union(node: Node, mem: Memory) -> Behaviour:
    """Word-wide union of two bitvector streams (``_bv_join``)."""
    return _bv_join(node, mem, union=True)


def locate_bv(node: Node, mem: Memory) -> Behaviour:
    """Locator into a bitmap level: for each coordinate c of the iterating side's stream, the
    position of c in the located fiber (outer reference r): the fiber's count plus the set
    bits of its mask below c. A coordinate whose bit is clear (or whose located fiber is
    absent, N) has no match and is dropped with its ``carry`` token (the iterating side's
    reference), so the locator also intersects: ``crd`` and ``carry`` are the kept
    coordinates and references, ``ref`` the located positions. Stops and D pass on all three;
    the outer reference stream is consumed as ``locate`` consumes it.

    SRAM: the fiber's count (one element, through the count reader's one-word cache) at its
    first coordinate, and the mask words from the fiber's first up to c's, walked forward
    through a one-word cache (coordinates rise within a fiber, so each 64-bit word is fetched
    once per fiber visit). Steps: one per coordinate-stream token, or one per 64-bit mask word
    it fetches if more, plus one per absorbed reference stop."""
    lv, masks, words = _bitmap_image(node, mem)
    root_feed = [0, DONE] if node.attr("root") else None
    seg_c = _WordCache()
    cached = -1          # the mask reader's cached 64-bit word
    walked = -1          # last 64-bit word walked in the current fiber (-1: fiber not begun)
    drop = False
    while True:
        if drop:
            drop = False
            yield from _absorb_ref_stop(node, root_feed)
            continue
        (c,) = yield Peek(("crd",))
        o, pop = yield from _outer_ref(root_feed)
        if is_data(c):
            if isinstance(o, Empty):
                yield Peek(("carry",))
                yield Fire(("crd", "carry"))
                continue
            if not is_data(o):
                raise _bad(node, f"coordinate {c!r} against reference {o!r}")
            r, cc = int(o), int(c)
            if not (0 <= r < len(lv.seg) - 1 and 0 <= cc < lv.size):
                raise _bad(node, f"coordinate {cc} of fiber {r} outside {node.attr('tensor')} "
                           f"level {node.attr('level')}")
            elem = r * words + cc // BITMAP_WORD_BITS
            target = elem // ELEMENTS_PER_WORD
            act = [("sram_read_words", seg_c.touch(r))] if walked < 0 else []
            first = (r * words) // ELEMENTS_PER_WORD if walked < 0 else walked + 1
            fetch = list(range(first, target + 1))
            if fetch and fetch[0] == cached:     # only the walk's first word can be cached
                fetch = fetch[1:]
            walked = max(walked, target)
            for _ in fetch[:-1]:
                yield Fire((), {}, tuple(act) + (("sram_read_words", 1),))
                act = []
            if fetch:
                act.append(("sram_read_words", 1))
                cached = target
            m = int(masks[elem])
            bit = cc % BITMAP_WORD_BITS
            if not m >> bit & 1:
                yield Peek(("carry",))
                yield Fire(("crd", "carry"), {}, tuple(act))
                continue
            before = masks[r * words: elem]
            pos = int(lv.seg[r]) + int(sum(_popcount(int(x)) for x in before)) \
                + _popcount(m & ((1 << bit) - 1))
            (k,) = yield Peek(("carry",))
            yield Fire(("crd", "carry"), {"crd": cc, "ref": pos, "carry": k}, tuple(act))
        elif isinstance(c, Stop):
            drop = _stop_meets_ref(node, c, o, root_feed)
            walked = -1
            yield Peek(("carry",))
            yield Fire(("crd", "carry") + pop, {"crd": c, "ref": c, "carry": c})
        elif isinstance(c, Done) and isinstance(o, Done):
            yield Peek(("carry",))
            yield Fire(("crd", "carry") + pop, {"crd": DONE, "ref": DONE, "carry": DONE})
            return
        else:
            raise _bad(node, f"coordinate {c!r} against reference {o!r}")


def write_bv(node: Node, mem: Memory) -> Behaviour:
    """Bitmap level writer (SAM's bitvector level, written): a fiber's coordinates set bits
    of a 16-bit mask register; each mask word is written when the writer moves past it (to a
    later coordinate's word, or at the fiber's stop), and the stop also writes the fiber's
    count (the set bits before the next fiber). The image is the masks and the counts.
    Steps: one per coordinate, one per mask word of every fiber (the last one together with
    the stop), one for D. Writes are combined in a one-word buffer per array, as the
    compressed writer's."""
    out = mem.writer_of(node, node.attr("level"))
    words = -(-int(node.attr("dim")) // BITMAP_WORD_BITS)
    w = m = n = 0
    prev = -1            # the fiber's last coordinate
    while True:
        (tok,) = yield Peek(("crd",))
        if is_data(tok):
            c = int(tok)
            if not prev < c < int(node.attr("dim")):
                raise _bad(node, f"coordinate {c} out of order or outside dim "
                           f"{node.attr('dim')}")
            if c // BITMAP_WORD_BITS == w:
                m |= 1 << c % BITMAP_WORD_BITS
                n += 1
                prev = c
                yield Fire(("crd",))
                continue
            out.masks.append(m)
            w, m = w + 1, 0
            yield Fire((), {}, (("sram_write_words", int(len(out.masks) % 4 == 0)),))
        elif isinstance(tok, Stop):
            out.masks.append(m)
            if w < words - 1:
                w, m = w + 1, 0
                yield Fire((), {}, (("sram_write_words", int(len(out.masks) % 4 == 0)),))
                continue
            w = m = 0
            out.seg.append(out.seg[-1] + n)
            n, prev = 0, -1
            yield Fire(("crd",), {}, (("sram_write_words", int(len(out.masks) % 4 == 0)
                                       + int(len(out.seg) % 4 == 0)),))
        elif isinstance(tok, Done):
            if w or m or n:
                raise _bad(node, "coordinates after the last stop")
            tail = int(len(out.masks) % 4 != 0) + int(len(out.seg) % 4 != 0)
            yield Fire(("crd",), {}, (("sram_write_words", tail),))
            return
        else:
            raise _bad(node, f"{tok!r} on a crd stream")
# --------------------------------------------------------------------------- unrolling
def filter_(node: Node, mem: Memory) -> Behaviour:
    """Stream filter (Onyx's unrolling, IEEE Micro 2025): on a stream of the outermost fiber
    (depth 0: elements, then ``S0 D``), passes the elements dealt to copy ``copy`` of
    ``copies``, round-robin by position (element p goes to copy p mod copies), and drops the
    rest; the closing S0 and D pass. One step per input token."""
    copy, copies = int(node.attr("copy")), int(node.attr("copies"))
    p = 0
    while True:
        (tok,) = yield Peek(("in",))
        if isinstance(tok, Done):
            yield Fire(("in",), {"out": DONE})
            return
        if isinstance(tok, Stop):
            if tok.level != 0:
                raise _bad(node, f"{tok!r} on an outermost-fiber stream (only S0 closes it)")
            yield Fire(("in",), {"out": tok})
            continue
        keep = dealt_copy(p, copies) == copy
        p += 1
        yield Fire(("in",), {"out": tok} if keep else {})


def arbiter(node: Node, mem: Memory) -> Behaviour:
    """Stream arbiter (Onyx's round-robin stream arbiter, IEEE Micro 2025): merges two streams
    of the same outermost fiber, each holding some of its items, into one stream holding all
    of them: rounds of ``take_a`` items from ``a`` then ``take_b`` from ``b``, which undoes a
    round-robin deal of positions (a tree of arbiters merges N copies' streams).

    An item of a stream of ``depth`` d is one element (d = 0) or the tokens up to its closing
    stop, a stop of level d-1, or d for the input's last item (d >= 1). Tokens pass through;
    an item's closing stop is re-emitted as S_(d-1), or S_d when it is the merged stream's
    last item (the next turn's input has no item left). When the turn's input has no item
    left, every input must be at its end: for d = 0 one step pops both S0 (emits S0), then
    both inputs' D are popped in one step (emits D). One step per token otherwise.
    """
    depth = int(node.attr("depth"))
    takes = (int(node.attr("take_a")), int(node.attr("take_b")))
    ports = ("a", "b")
    ended = [False, False]     # depth >= 1: the input's last item has closed
    src, left = 0, takes[0]
    while True:
        port = ports[src]
        if depth >= 1 and ended[src]:
            ha, hb = yield Peek(ports)
            if not (ended[1 - src] and isinstance(ha, Done) and isinstance(hb, Done)):
                raise _bad(node, f"input {port} ended but the other still has items "
                                 f"(heads {ha!r}, {hb!r})")
            yield Fire(ports, {"out": DONE})
            return
        (tok,) = yield Peek((port,))
        if depth == 0 and isinstance(tok, Stop):
            (other,) = yield Peek((ports[1 - src],))
            if tok.level != 0 or not (isinstance(other, Stop) and other.level == 0):
                raise _bad(node, f"input {port} ended ({tok!r}) but the other has {other!r}")
            yield Fire(ports, {"out": tok})
            ha, hb = yield Peek(ports)
            if not (isinstance(ha, Done) and isinstance(hb, Done)):
                raise _bad(node, f"expected D on both inputs, got {ha!r}, {hb!r}")
            yield Fire(ports, {"out": DONE})
            return
        if isinstance(tok, Done):
            raise _bad(node, f"D on input {port} before its last item closed")
        closes = depth == 0 or (isinstance(tok, Stop) and tok.level >= depth - 1)
        if not closes:
            yield Fire((port,), {"out": tok})
            continue
        if isinstance(tok, Stop) and tok.level > depth:
            raise _bad(node, f"{tok!r} on a stream of depth {depth}")
        if depth >= 1 and tok.level == depth:
            ended[src] = True
        left -= 1
        if left == 0:
            src = 1 - src
            left = takes[src]
        if depth == 0:
            yield Fire((port,), {"out": tok})
        else:
            yield Fire((port,), {"out": Stop(depth if ended[src] else depth - 1)})


BEHAVIOURS: dict[Opcode, Callable[[Node, Memory], Behaviour]] = {
    Opcode.SCAN: scan,
    Opcode.REPSIG: repsig,
    Opcode.REPEAT: repeat,
    Opcode.INTERSECT: intersect,
    Opcode.UNION: union,
    Opcode.ARRAY: array,
    Opcode.ALU: alu,
    Opcode.REDUCE: reduce,
    Opcode.VREDUCE: vreduce,
    Opcode.CRDDROP: crddrop,
    Opcode.CRDHOLD: crdhold,
    Opcode.WRITE_CRD: write_crd,
    Opcode.WRITE_VAL: write_val,
    Opcode.LOCATE: locate,
    Opcode.SCAN_BV: scan_bv,
    Opcode.BV_INTERSECT: bv_intersect,
    Opcode.BV_UNION: bv_union,
    Opcode.LOCATE_BV: locate_bv,
    Opcode.WRITE_BV: write_bv,
    Opcode.FILTER: filter_,
    Opcode.ARBITER: arbiter,
}


# --------------------------------------------------------------------------- driving
def run_unit(node: Node, inputs: dict[str, list[Token]], mem: Memory | None = None,
             ) -> tuple[dict[str, list[Token]], dict[str, int], int]:
    """Run one behaviour over complete input streams (unbounded queues, no timing).

    Returns (output streams by port, action totals, steps). Raises IsaError if the
    behaviour reads past the end of an input or leaves input unread.
    """
    mem = mem or Memory({})
    gen = BEHAVIOURS[node.op](node, mem)
    heads = {p: 0 for p in inputs}
    outs: dict[str, list[Token]] = {}
    acts: dict[str, int] = {}
    steps = 0
    reply: Any = None
    while True:
        try:
            req = gen.send(reply)
        except StopIteration:
            break
        if isinstance(req, Peek):
            try:
                reply = tuple(inputs[p][heads[p]] for p in req.ports)
            except (IndexError, KeyError) as exc:
                raise _bad(node, f"stream on {req.ports} ended without D ({exc})") from None
            continue
        steps += 1
        for p in req.consume:
            heads[p] += 1
        for p, tok in req.out.items():
            outs.setdefault(p, []).append(tok)
        for name, n in req.act:
            acts[name] = acts.get(name, 0) + n
        reply = None
    for p, h in heads.items():
        if h != len(inputs[p]):
            raise _bad(node, f"port {p} has {len(inputs[p]) - h} unread tokens")
    return outs, acts, steps


@dataclass
class InterpResult:
    """Streams on every edge (by source port), written levels and actions per node."""

    streams: dict[tuple[str, str], list[Token]]
    memory: Memory
    actions: dict[str, dict[str, int]]
    steps: dict[str, int]


def run_kernel(kernel: Kernel, images: dict[str, FiberTree]) -> InterpResult:
    """Interpret a kernel: run every unit in topological order over complete streams."""
    mem = Memory(images)
    streams: dict[tuple[str, str], list[Token]] = {}
    actions: dict[str, dict[str, int]] = {}
    steps: dict[str, int] = {}
    for node in kernel.topo_order():
        inputs = {e.dst_port: streams[(e.src, e.src_port)] for e in kernel.in_edges(node.id)}
        outs, acts, n = run_unit(node, inputs, mem)
        for port, toks in outs.items():
            streams[(node.id, port)] = toks
        for port in kernel.ports_of(node)[1]:
            streams.setdefault((node.id, port), [])
        actions[node.id] = acts
        steps[node.id] = n
    return InterpResult(streams, mem, actions, steps)


def assemble_output(decl, mem: Memory, copy: int | None = None) -> FiberTree:
    """Build the output tensor ``decl`` (a TensorDecl) from what its level writers wrote.

    A level has as many fibers as its parent level has positions; writers may have closed
    extra trailing empty fibers (an empty outer fiber's bare stop), which are dropped.
    Writers dealt over copies (the output address generator) write one part each: the
    output is the union of the copies' parts (isa.copies); ``copy`` builds one part.
    """
    copies = mem.copies.get(decl.name)
    if copy is None and copies is not None:
        return union_of_copies(decl, [assemble_output(decl, mem, c) for c in range(copies)])
    name = decl.name if copy is None else f"{decl.name} (copy {copy})"

    def key(lvl: int) -> tuple[Any, ...]:
        return (decl.name, lvl) if copy is None else (decl.name, lvl, copy)

    levels = []
    n_parent = 1
    for lvl, (fmt, mode) in enumerate(zip(decl.formats, decl.mode_order)):
        dim = decl.shape[mode]
        if fmt == "dense":
            levels.append(Level("dense", dim))
            n_parent *= dim
            continue
        w = mem.written.get(key(lvl))
        if w is None:
            raise IsaError(f"output {name} level {lvl} was never written")
        seg = np.asarray(w.seg, dtype=np.int64)
        if fmt == "bitmap":     # the image is masks + counts: read the level back from it
            if len(seg) < n_parent + 1 or (seg[n_parent + 1:] != seg[n_parent]).any():
                raise IsaError(f"output {name} level {lvl}: {len(seg) - 1} fibers "
                               f"written for {n_parent} parent positions")
            words = -(-dim // BITMAP_WORD_BITS)
            masks = np.asarray(w.masks, dtype=np.int64)[: n_parent * words]
            try:
                lv = bitmap_level(dim, seg[: n_parent + 1], masks)
            except IsaError as exc:
                raise IsaError(f"output {name} level {lvl}: {exc}") from None
            levels.append(lv)
            n_parent = len(lv.crd)
            continue
        if len(seg) < n_parent + 1 or (len(seg) > n_parent + 1 and
                                       (seg[n_parent + 1:] != seg[n_parent]).any()):
            raise IsaError(f"output {name} level {lvl}: {len(seg) - 1} fibers written "
                           f"for {n_parent} parent positions")
        levels.append(Level("compressed", dim, seg[: n_parent + 1],
                            np.asarray(w.crd, dtype=np.int64)))
        n_parent = len(w.crd)
    wv = mem.written.get(key(-1))
    raw = np.asarray([] if wv is None else wv.vals)
    vals = raw if len(raw) else np.zeros(0, dtype=np.int64)
    tree = FiberTree(decl.name, tuple(decl.shape), tuple(decl.mode_order), tuple(levels), vals)
    tree.check()
    return tree


@dataclass
class StepTrace:
    """One step of a behaviour: heads peeked (port -> token index), ports popped, ports
    written. What the burst engine's firing tables must reproduce."""

    peeks: dict[str, int]
    pops: tuple[str, ...]
    emits: tuple[str, ...]


def trace_unit(node: Node, inputs: dict[str, list[Token]], mem: Memory | None = None,
               ) -> tuple[list[StepTrace], dict[str, list[Token]], dict[str, int]]:
    """Run a behaviour like ``run_unit`` and record every step's peeks, pops and emits."""
    mem = mem or Memory({})
    gen = BEHAVIOURS[node.op](node, mem)
    heads = {p: 0 for p in inputs}
    outs: dict[str, list[Token]] = {}
    acts: dict[str, int] = {}
    steps: list[StepTrace] = []
    peeks: dict[str, int] = {}
    reply: Any = None
    while True:
        try:
            req = gen.send(reply)
        except StopIteration:
            break
        if isinstance(req, Peek):
            for p in req.ports:
                peeks[p] = heads[p]
            reply = tuple(inputs[p][heads[p]] for p in req.ports)
            continue
        steps.append(StepTrace(dict(peeks), tuple(req.consume), tuple(req.out)))
        peeks = {}
        for p in req.consume:
            heads[p] += 1
        for p, tok in req.out.items():
            outs.setdefault(p, []).append(tok)
        for name, n in req.act:
            acts[name] = acts.get(name, 0) + n
        reply = None
    return steps, outs, acts
