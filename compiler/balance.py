"""FIFO balancing: give the short branch of reconvergent streams room to wait.

When a unit joins two streams that left a common ancestor along paths of different latency
(e.g. a vector reducer whose coordinates come straight from a scanner while the values go
through a repeater, an array and the ALU), the short branch's tokens wait at the join. With
two-entry FIFOs that branch fills up and throttles its producer to the pace of the long path:
SpM*SpM runs about 2x slower. CGRA compilers balance such paths with buffering (on Onyx,
pass-through tiles and the per-hop FIFOs of longer routes). This pass computes each stream's
static slack, the cycles its tokens wait at the consumer in a steady stream, from an
as-soon-as-possible schedule (one cycle per unit, the channel latency per stream), and
configures that many extra FIFO entries on the stream (``Edge.buffer``), capped by
``compiler.max_buffer_entries``.
"""

from __future__ import annotations

import dataclasses

from isa.arch import ChipConfig
from isa.ops import Opcode
from isa.program import Kernel


def balance_kernel(kernel: Kernel, chip: ChipConfig) -> Kernel:
    """Set ``Edge.buffer`` to each stream's static slack.

    Pre: the kernel is routed (edge latencies known). Post: the same kernel with buffers;
    with ``compiler.balance_fifos`` false, every buffer is 0.
    """
    cfg = chip.compiler
    hop = chip.interconnect.hop_latency_cycles
    if not cfg.balance_fifos:
        return kernel.with_edges(tuple(dataclasses.replace(e, buffer=0)
                                       for e in kernel.edges))
    ready: dict[str, int] = {}
    for node in kernel.topo_order():
        ready[node.id] = max((ready[e.src] + 1 + max(e.hops, 1) * hop
                              for e in kernel.in_edges(node.id)), default=0)
    arbiters = {n.id for n in kernel.nodes if n.op is Opcode.ARBITER}
    edges = []
    for e in kernel.edges:
        slack = ready[e.dst] - (ready[e.src] + 1 + max(e.hops, 1) * hop)
        if e.dst in arbiters:
            # an unrolled copy's output waits for its turn at the arbiter (compiler/unroll.py):
            # the deepest buffer lets the copies run apart instead of in lockstep
            slack = cfg.max_buffer_entries
        edges.append(dataclasses.replace(e, buffer=min(slack, cfg.max_buffer_entries)))
    return kernel.with_edges(tuple(edges))
