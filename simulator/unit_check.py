"""The sampled interpreter check: every unit's first steps, re-run by the ISA's definition.

The whole-kernel interpreter check (``isa.interp.run_kernel``) is pure Python at about a
microsecond per token, 15-40 times the burst engine's cost per step. This check costs a
fraction of that and still reads every unit: the burst engine's functional pass gives each
unit's input streams, and the unit's behaviour from ``isa.interp`` (the ISA's definition) is
driven over them for its first ``max(SAMPLE_MIN_STEPS, steps // SAMPLE_FRACTION)`` steps. The
tokens it emits, the tokens it pops and its step count must equal the firing table's for those
steps. A wrong firing function shows up in the first steps of the first fiber that exercises
it; one that goes wrong only late in a long stream is caught by the numpy output check or by
``--check full``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from isa.errors import IsaError
from isa.fibertree import FiberTree
from isa.interp import BEHAVIOURS, Memory, Peek
from isa.program import Kernel, Node
from isa.tokens import Stop, Token
from simulator.burst_fire import Firing, Stream, fire_kernel

SAMPLE_FRACTION = 64      # the share of each unit's steps the sample re-runs (1/64)
SAMPLE_MIN_STEPS = 64     # every unit's first 64 steps at least (all of a tiny kernel)


@dataclass
class SampleResult:
    """Units and steps re-run, and the first disagreement (None when they all agree)."""

    units: int
    steps: int
    of_steps: int
    mismatch: str | None


def sample_steps(n: int) -> int:
    """How many of a unit's ``n`` steps the sample re-runs."""
    return min(n, max(SAMPLE_MIN_STEPS, n // SAMPLE_FRACTION))


def check_units_sampled(kernel: Kernel, images: dict[str, FiberTree], fired: Any = None
                        ) -> SampleResult:
    """Re-run every unit's first steps with the ISA interpreter on the streams the burst
    engine's functional pass computed, and compare them with its firing table. ``fired``:
    that pass's (firings, order) when the run already made it (``KernelRun.fired``)."""
    if fired is None:
        firings, _mem, order = fire_kernel(kernel, images)
    else:
        firings, order = fired
    streams: dict[tuple[str, str], Stream] = {}
    for node in order:
        for port, s in firings[node.id].outs.items():
            streams[(node.id, port)] = s
    mem = Memory(images)
    steps = total = 0
    for node in order:
        f = firings[node.id]
        ins = {e.dst_port: streams[(e.src, e.src_port)] for e in kernel.in_edges(node.id)}
        s = sample_steps(f.n)
        steps += s
        total += f.n
        bad = _check_unit(node, f, ins, mem, s)
        if bad is not None:
            return SampleResult(len(order), steps, total, f"{node.op.value} {node.id}: {bad}")
    return SampleResult(len(order), steps, total, None)


def sampled_check(kernel: Kernel, images: dict[str, FiberTree], fired: Any = None
                  ) -> dict[str, Any]:
    """The checks entries of a sampled run: ``interpreter_sample`` passed (True) or failed
    (False, and ``interpreter_sample_mismatch`` says where), and the whole ``interpreter``
    check recorded as skipped, with the sample's size."""
    r = check_units_sampled(kernel, images, fired)
    out: dict[str, Any] = {
        "interpreter": f"skipped: sampled instead ({r.steps:,} of {r.of_steps:,} steps of "
                       f"{r.units} units re-run; --check full runs the whole kernel)",
        "interpreter_sample": r.mismatch is None}
    if r.mismatch is not None:
        out["interpreter_sample_mismatch"] = r.mismatch
    return out


def _prefix(stream: Stream, n: int) -> list[Token]:
    return Stream(stream.kind[:n], stream.data[:n]).decode()


def _check_unit(node: Node, f: Firing, ins: dict[str, Stream], mem: Memory, s: int
                ) -> str | None:
    """Drive the behaviour for ``s`` steps; the first difference from the firing table."""
    inputs: dict[str, list[Token]] = {}
    for port, stream in ins.items():
        ps, pt = f.peeks.get(port, (None, None))
        if ps is None:
            inputs[port] = _prefix(stream, min(len(stream), s + 1))
            continue
        k = int((ps < s).sum())
        need = int(pt[:k].max()) + 2 if k else 1
        inputs[port] = _prefix(stream, min(len(stream), need))
    gen = BEHAVIOURS[node.op](node, mem)
    heads = {p: 0 for p in inputs}
    outs: dict[str, list[Token]] = {}
    reply: Any = None
    done = 0
    while done < s:
        try:
            req = gen.send(reply)
        except StopIteration:
            break
        except IsaError as exc:
            return f"the interpreter stopped at step {done}: {exc}"
        if isinstance(req, Peek):
            try:
                reply = tuple(inputs[p][heads[p]] for p in req.ports)
            except (IndexError, KeyError):
                return f"step {done} peeks past the tokens the firing table says it reads"
            continue
        done += 1
        for p in req.consume:
            heads[p] += 1
        for p, tok in req.out.items():
            outs.setdefault(p, []).append(tok)
        reply = None
    gen.close()
    if done != s:
        return f"the interpreter took {done} steps, the firing table {f.n}"
    for port, pops in f.pops.items():
        want = int((pops < s).sum())
        if heads.get(port, 0) != want:
            return f"port {port}: {heads.get(port, 0)} tokens popped in {s} steps, not {want}"
    for port, emits in f.emits.items():
        m = int((emits < s).sum())
        got = outs.get(port, [])
        ref = _prefix(f.outs[port], m)
        if len(got) != m or not all(_same_token(a, b) for a, b in zip(got, ref)):
            return f"port {port}: the first {m} tokens differ"
    return None


def _same_token(a: Token, b: Token) -> bool:
    """Equal tokens; numbers equal to float rounding (reducers may associate differently)."""
    if isinstance(a, Stop) or isinstance(b, Stop) or not isinstance(a, (int, float)) \
            or not isinstance(b, (int, float)):
        return a == b
    return a == b or math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


__all__ = ["SampleResult", "check_units_sampled", "sample_steps", "sampled_check"]
