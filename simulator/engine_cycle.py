"""The ``cycle`` engine: the reference timing model, one SimPy process per primitive.

Time rules (shared with the ``burst`` engine, which must reproduce them exactly):

- A unit performs at most one *step* per cycle (initiation interval 1). A step peeks at the
  head tokens of some input ports, pops some of them, and emits at most one token per output
  port (the behaviours in ``isa.interp`` define which).
- A channel has a latency L = hops x ``interconnect.hop_latency_cycles`` (>= 1) and a capacity
  ``pe.fifo_depth + (hops - 1) x interconnect.fifo_depth + buffer`` tokens (the consumer's
  input FIFO, one ready-valid FIFO per extra hop, and the compiler's balancing entries). A
  token put at cycle p can be peeked or popped from cycle p + L. A token counts against
  capacity from its put until its pop; a slot freed by a pop at cycle g can be refilled from
  cycle g + 1 (ready is registered).
- So step f of a unit happens at the earliest cycle t >= t[f-1] + 1 such that every peeked
  head has arrived and every output it writes has room. Because every effect of one unit on
  another is delayed by at least one cycle, the order in which SimPy runs processes within a
  cycle cannot change a result.

A run ends when every unit has returned (after emitting or consuming Done). If the event
queue empties first, that is a deadlock, reported with each stuck unit and what it waits for.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from isa.arch import ChipConfig
from isa.errors import IsaError, SimulationError
from isa.fibertree import FiberTree
from isa.interp import BEHAVIOURS, Fire, Memory, Peek
from isa.program import Edge, Kernel, Node
from simulator.stats import ChannelStats, UnitStats


def channel_shape(edge: Edge, chip: ChipConfig) -> tuple[int, int]:
    """(capacity, latency) of a routed stream; an unrouted edge counts as one hop.

    Capacity is the consumer's input FIFO, one ready-valid FIFO per further hop, and the
    balancing entries the compiler configured on the stream (``Edge.buffer``)."""
    hops = max(edge.hops, 1)
    latency = hops * chip.interconnect.hop_latency_cycles
    depth = chip.pe.fifo_depth + (hops - 1) * chip.interconnect.fifo_depth + edge.buffer
    return depth, latency


def tile_name(node: Node) -> str:
    """Stats prefix of a node's tile: ``pe_R_C`` / ``mem_R_C`` (node id when unplaced)."""
    from isa.ops import SIGNATURES

    if node.tile is None:
        return node.id
    return f"{SIGNATURES[node.op].tile.value}_{node.tile[0]}_{node.tile[1]}"


class Channel:
    """A bounded FIFO with latency: per-token put and pop cycles are recorded."""

    __slots__ = ("env", "edge", "depth", "latency", "items", "put_t", "get_t", "head",
                 "put_ev", "take_ev")

    def __init__(self, env: simpy.Environment, edge: Edge, depth: int, latency: int):
        self.env, self.edge, self.depth, self.latency = env, edge, depth, latency
        self.items: list[Any] = []
        self.put_t: list[int] = []
        self.get_t: list[int] = []
        self.head = 0
        self.put_ev = env.event()
        self.take_ev = env.event()


@dataclass
class UnitState:
    node: Node
    ins: dict[str, Channel]
    outs: dict[str, list[Channel]]
    stats: UnitStats = field(default_factory=UnitStats)
    waiting: str = "not started"
    done: bool = False


@dataclass
class KernelRun:
    """What a kernel execution produced, from either engine."""

    cycles: int
    memory: Memory
    units: dict[str, UnitStats]          # node id -> counters
    channels: dict[str, ChannelStats]    # edge name -> counters
    fired: Any = None                    # burst: (firings, order) of its functional pass, for
    #                                      the sampled interpreter check (not fired again)
    tile_parts: Any = None               # an unrolled tiled kernel: per tile call, output
    #                                      name -> its copies' parts (simulator.checks)


def _unit(env: simpy.Environment, u: UnitState, gen: Generator, t0: int):
    reply: Any = None
    t_next = t0
    st = u.stats
    while True:
        try:
            req = gen.send(reply)
        except StopIteration:
            u.done, u.waiting = True, "done"
            return
        except IsaError as exc:
            raise SimulationError(f"{exc} (at kernel cycle {env.now - t0})") from None
        if env.now < t_next:
            yield env.timeout(t_next - env.now)
        if isinstance(req, Peek):
            heads = []
            for p in req.ports:
                ch = u.ins[p]
                k = ch.head
                while len(ch.put_t) <= k:
                    u.waiting = f"waiting for a token on input {p}"
                    yield ch.put_ev
                arrive = ch.put_t[k] + ch.latency
                if arrive > env.now:
                    u.waiting = f"waiting for a token on input {p}"
                    yield env.timeout(arrive - env.now)
                heads.append(ch.items[k])
            reply = tuple(heads)
            continue
        assert isinstance(req, Fire)
        for p in req.out:
            for ch in u.outs.get(p, ()):
                j = len(ch.put_t) - ch.depth
                if j >= 0:
                    while len(ch.get_t) <= j:
                        u.waiting = f"waiting for room on output {p} -> {ch.edge.dst}"
                        yield ch.take_ev
                    free = ch.get_t[j] + 1
                    if free > env.now:
                        u.waiting = f"waiting for room on output {p} -> {ch.edge.dst}"
                        yield env.timeout(free - env.now)
        now = env.now
        for p in req.consume:
            ch = u.ins[p]
            ch.head += 1
            ch.get_t.append(now)
            ev, ch.take_ev = ch.take_ev, env.event()
            ev.succeed()
        for p, tok in req.out.items():
            for ch in u.outs.get(p, ()):
                ch.items.append(tok)
                ch.put_t.append(now)
                ev, ch.put_ev = ch.put_ev, env.event()
                ev.succeed()
        if st.busy_cycles == 0:
            st.first_cycle = now - t0
        st.last_cycle = now - t0
        st.busy_cycles += 1
        st.tokens_in_count += len(req.consume)
        st.tokens_out_count += len(req.out)
        for name, n in req.act:
            setattr(st, name, getattr(st, name) + n)
        u.waiting = "ready"
        t_next = now + 1
        reply = None


class CycleKernel:
    """Builds the units and channels of one kernel inside a SimPy environment."""

    def __init__(self, env: simpy.Environment, kernel: Kernel, images: dict[str, FiberTree],
                 chip: ChipConfig):
        self.env, self.kernel, self.chip = env, kernel, chip
        self.memory = Memory(images)
        self.channels: dict[str, Channel] = {}
        ins: dict[str, dict[str, Channel]] = {n.id: {} for n in kernel.nodes}
        outs: dict[str, dict[str, list[Channel]]] = {n.id: {} for n in kernel.nodes}
        for e in kernel.edges:
            depth, latency = channel_shape(e, chip)
            ch = Channel(env, e, depth, latency)
            self.channels[e.name] = ch
            ins[e.dst][e.dst_port] = ch
            outs[e.src].setdefault(e.src_port, []).append(ch)
        self.units = {n.id: UnitState(n, ins[n.id], outs[n.id]) for n in kernel.nodes}

    def run(self):
        """SimPy process: run every unit from the current cycle; returns the KernelRun."""
        t0 = self.env.now
        procs = [self.env.process(_unit(self.env, u, BEHAVIOURS[u.node.op](u.node, self.memory),
                                        t0))
                 for u in self.units.values()]
        yield self.env.all_of(procs)
        end = max((u.stats.last_cycle for u in self.units.values() if u.stats.busy_cycles),
                  default=-1)
        # the kernel occupies cycles t0 .. t0 + end; the controller resumes after the last one
        if self.env.now < t0 + end + 1:
            yield self.env.timeout(t0 + end + 1 - self.env.now)
        channels = {}
        for name, ch in self.channels.items():
            n = len(ch.items)
            channels[name] = ChannelStats(token_count=n, hop_count=n * max(ch.edge.hops, 1))
        return KernelRun(end + 1, self.memory, {k: u.stats for k, u in self.units.items()},
                         channels)

    def stuck(self) -> str:
        """One line per unit that has not finished, with what it waits for."""
        return "\n".join(f"  {u.node.op.value} {u.node.id} ({tile_name(u.node)}): {u.waiting}"
                         for u in self.units.values() if not u.done)


def _source(tokens: list[Any]):
    for tok in tokens:
        yield Fire((), {"out": tok})


def _sink(log: list[tuple[int, Any]], env: simpy.Environment, t0: int):
    while True:
        (tok,) = yield Peek(("in",))
        log.append((env.now - t0, tok))
        yield Fire(("in",))
        if repr(tok) == "D":
            return


def run_streams(node: Node, inputs: dict[str, list[Any]], chip: ChipConfig,
                images: dict[str, FiberTree] | None = None, *, hops: int = 1,
                ) -> tuple[dict[str, list[tuple[int, Any]]], UnitStats]:
    """Run one unit between stream sources and sinks under the cycle engine's rules.

    Each input port is fed by a source emitting its tokens one per cycle from cycle 0 (subject
    to back-pressure); each output port drains into a sink that pops one token per cycle.
    Every channel has ``hops`` hops. Returns each output's (pop cycle, token) log and the
    unit's counters. This is the shared harness of the unit timing tests.
    """
    from isa.ops import signature

    env = simpy.Environment()
    route = tuple((0, i) for i in range(hops + 1))
    mem = Memory(images or {})
    sig = signature(node.op, node.a)
    ins: dict[str, Channel] = {}
    outs: dict[str, list[Channel]] = {}
    procs = []
    logs: dict[str, list[tuple[int, Any]]] = {}
    for port in sig.inputs:
        e = Edge("src_" + port, "out", node.id, port, sig.inputs[port], route)
        ch = Channel(env, e, *channel_shape(e, chip))
        ins[port] = ch
        src = UnitState(Node.make("src_" + port, node.op), {}, {"out": [ch]})
        procs.append(env.process(_unit(env, src, _source(inputs[port]), 0)))
    for port in sig.outputs:
        e = Edge(node.id, port, "sink_" + port, "in", sig.outputs[port], route)
        ch = Channel(env, e, *channel_shape(e, chip))
        outs[port] = [ch]
        logs[port] = []
        sink = UnitState(Node.make("sink_" + port, node.op), {"in": ch}, {})
        procs.append(env.process(_unit(env, sink, _sink(logs[port], env, 0), 0)))
    unit = UnitState(node, ins, outs)
    procs.append(env.process(_unit(env, unit, BEHAVIOURS[node.op](node, mem), 0)))
    env.run()
    if not all(p.triggered for p in procs):
        raise SimulationError(f"run_streams: {node.id} did not finish: {unit.waiting}")
    return logs, unit.stats


def run_kernel_cycle(kernel: Kernel, images: dict[str, FiberTree], chip: ChipConfig,
                     ) -> KernelRun:
    """Run one kernel alone from cycle 0 (no DMA or configuration), detecting deadlock."""
    env = simpy.Environment()
    ck = CycleKernel(env, kernel, images, chip)
    proc = env.process(ck.run())
    status = drive(env, proc, chip.sim.max_cycles)
    if status == "watchdog":
        raise SimulationError(f"watchdog: kernel {kernel.name} not done after "
                              f"sim.max_cycles={chip.sim.max_cycles}:\n{ck.stuck()}")
    if status == "deadlock":
        raise SimulationError(f"deadlock at kernel cycle {env.now} in {kernel.name}: no unit "
                              f"can make progress:\n{ck.stuck()}")
    if not proc.ok:
        raise proc.value
    return proc.value


def drive(env: simpy.Environment, proc: Any, deadline: int, progress: Any = None,
          chunk: int = 20000) -> str:
    """Run ``env`` until ``proc`` ends: returns "done", "deadlock" (no event left while
    ``proc`` waits) or "watchdog" (``deadline`` reached). Calls ``progress(cycle)`` between
    chunks of ``chunk`` cycles."""
    step, peek = env.step, env.peek
    next_report = chunk
    while not proc.triggered:
        t = peek()
        if t == float("inf"):
            return "deadlock"
        if t >= deadline:
            return "watchdog"
        step()
        if progress is not None and t >= next_report:
            progress(int(t))
            next_report = t + chunk
    return "done"
