"""Kernels and programs: immutable graphs of instructions, memory images and a schedule.

Two kernel kinds. A ``Kernel`` (sparse mode) is a DAG of ``Node`` (one SAM instruction each)
joined by typed ``Edge`` streams; after placement every node names its tile (row, col) and
every edge its route over the mesh (``Edge.hops``: the route length in links, >= 1 once
routed). A ``SystolicKernel`` (dense mode) is a GEMM ``C = A @ B`` mapped onto a rows x cols
block of MAC PEs in one of SCALE-Sim's dataflows, optionally with N:M-compressed weights.
A ``Program`` is kernels of either kind plus the input memory images plus the controller
schedule (the firmware). A model layer's Program also holds its ``jobs``: the units of
controller work (router, top-k, the products stage, combine) with their dependencies and
lanes, whose operands are referenced lazily (``Job.task``: a layer has millions of tiles, so
no tile image is made before the engine runs the job). Jobs and images are data, not text:
the assembly prints kernels and commands.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from typing import Any

from isa.ops import ATTRS, OPTIONAL, Opcode, signature


@dataclass(frozen=True)
class Node:
    """One instruction instance. ``attrs`` is a sorted tuple of (name, value) pairs."""

    id: str
    op: Opcode
    attrs: tuple[tuple[str, Any], ...] = ()
    tile: tuple[int, int] | None = None   # (row, col) after placement

    @staticmethod
    def make(id: str, opcode: Opcode, /, *, tile: tuple[int, int] | None = None,
             **attrs: Any) -> Node:
        """Build a node, filling attribute defaults from the opcode's schema (an OPTIONAL
        attribute stays absent)."""
        full: dict[str, Any] = {}
        for name, (_typ, default) in ATTRS[opcode].items():
            if name in attrs:
                full[name] = attrs.pop(name)
            elif default is not None and default is not OPTIONAL:
                full[name] = default
        full.update(attrs)  # unknown names are kept so the verifier can report them
        return Node(id, opcode, tuple(sorted(full.items())), tile)

    @property
    def a(self) -> dict[str, Any]:
        """Attributes as a dict."""
        return dict(self.attrs)

    def attr(self, name: str) -> Any:
        for k, v in self.attrs:
            if k == name:
                return v
        raise KeyError(f"{self.id}: no attribute {name!r}")


@dataclass(frozen=True)
class Edge:
    """A stream from ``src.src_port`` to ``dst.dst_port`` carrying ``kind`` tokens."""

    src: str
    src_port: str
    dst: str
    dst_port: str
    kind: str
    route: tuple[tuple[int, int], ...] = ()   # tiles visited, source first, after routing
    buffer: int = 0                           # extra FIFO entries set by the balance pass

    @property
    def hops(self) -> int:
        """Links crossed by the route (0 before routing)."""
        return max(len(self.route) - 1, 0)

    @property
    def name(self) -> str:
        return f"{self.src}.{self.src_port}->{self.dst}.{self.dst_port}"


@dataclass(frozen=True)
class TensorDecl:
    """A tensor a kernel reads or writes: storage formats per level, in mode order."""

    name: str
    shape: tuple[int, ...]
    formats: tuple[str, ...]        # per storage level: "compressed" | "dense"
    mode_order: tuple[int, ...]     # storage level l holds mode mode_order[l]
    is_output: bool = False


@dataclass(frozen=True)
class Kernel:
    """A dataflow graph of instructions."""

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    tensors: tuple[TensorDecl, ...] = ()
    expr: str = ""

    def node(self, id: str) -> Node:
        for n in self.nodes:
            if n.id == id:
                return n
        raise KeyError(f"kernel {self.name}: no node {id!r}")

    def tensor(self, name: str) -> TensorDecl:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"kernel {self.name}: no tensor {name!r}")

    def in_edges(self, id: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == id]

    def out_edges(self, id: str) -> list[Edge]:
        return [e for e in self.edges if e.src == id]

    def topo_order(self) -> list[Node]:
        """Nodes in a deterministic topological order (Kahn's algorithm, ties by position)."""
        index = {n.id: i for i, n in enumerate(self.nodes)}
        indeg = {n.id: 0 for n in self.nodes}
        succ: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            indeg[e.dst] += 1
            succ[e.src].append(e.dst)
        ready = [index[i] for i, d in indeg.items() if d == 0]    # a heap of positions
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            nid = self.nodes[heapq.heappop(ready)].id
            order.append(nid)
            for s in succ[nid]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    heapq.heappush(ready, index[s])
        if len(order) != len(self.nodes):
            from isa.errors import IsaError

            stuck = sorted(set(indeg) - set(order))
            raise IsaError(f"kernel {self.name}: graph has a cycle through {stuck}")
        by_id = {n.id: n for n in self.nodes}
        return [by_id[i] for i in order]

    def ports_of(self, node: Node) -> tuple[dict[str, str], dict[str, str]]:
        sig = signature(node.op, node.a)
        return sig.inputs, sig.outputs

    @property
    def kind(self) -> str:
        return "sam"

    def with_nodes(self, nodes: tuple[Node, ...]) -> Kernel:
        return replace(self, nodes=nodes)

    def with_edges(self, edges: tuple[Edge, ...]) -> Kernel:
        return replace(self, edges=edges)


@dataclass(frozen=True)
class SystolicKernel:
    """A dense GEMM on a rows x cols block of MAC PEs (dense mode).

    ``tensors`` declares the operands in the order A (m x k), B (k x n) and the output
    (m x n), all dense; ``nm = (n, m)`` keeps n weights of every m consecutive ones along K
    (N:M sparsity of B, compressed in the array), None for dense weights. A template kernel
    (a model layer's MAC block, whose products differ in shape) declares no tensors: each
    job gives its own shapes.
    """

    name: str
    rows: int
    cols: int
    dataflow: str                          # os | ws | is (SCALE-Sim's)
    nm: tuple[int, int] | None = None
    tensors: tuple[TensorDecl, ...] = ()

    @property
    def kind(self) -> str:
        return "systolic"

    @property
    def mnk(self) -> tuple[int, int, int]:
        """(M, N, K) from the declared operands; (0, 0, 0) for a template."""
        if len(self.tensors) < 2:
            return (0, 0, 0)
        a, b = self.tensors[0].shape, self.tensors[1].shape
        return (int(a[0]), int(b[1]), int(a[1]))


AnyKernel = Kernel | SystolicKernel
"""A kernel of either kind."""


@dataclass(frozen=True)
class Command:
    """One controller (firmware) step. ``op`` is one of COMMANDS; ``arg`` names its object;
    ``tile`` >= 0: the step belongs to that tile call of ``Program.tiling`` (isa.tiles)."""

    op: str
    arg: str
    size_bytes: int = 0
    tile: int = -1


COMMANDS = ("dma_in", "load", "configure", "launch", "wait", "unload", "dma_out")


@dataclass(frozen=True)
class Job:
    """One job of a model layer's schedule.

    ``stage`` orders the jobs (router, topk, then the products stage, then combine; a job
    starts when every job in ``deps`` has ended). A products-stage job runs its products on
    ``lanes`` (copies of the tile kernel; the MAC block in dense mode): per product the
    controller DMAs the weights into the lane's free GLB buffer, launches ``kernel`` and
    waits. ``task`` computes the job's operands and values lazily: a picklable callable
    ``task(engine) -> (output contribution, reference contribution)`` that hands every
    product and ALU pass to ``engine``. ``dims`` sizes a stage job without a task: the
    router GEMM (M, N, K), top-k (tokens, k, experts), the combine (pairs, d).
    """

    name: str
    stage: str
    kernel: str = ""
    lanes: tuple[int, ...] = ()
    expert: int = -1
    deps: tuple[str, ...] = ()
    dims: tuple[int, ...] = ()
    task: Any = None


@dataclass(frozen=True)
class Program:
    """Kernels + input memory images + the controller schedule."""

    name: str
    kernels: tuple[Kernel | SystolicKernel, ...]
    images: dict[str, Any] = field(default_factory=dict)   # tensor name -> FiberTree
    schedule: tuple[Command, ...] = ()
    jobs: tuple[Job, ...] = ()                 # a model layer's jobs (data, not text)
    layout: Any = None                         # a model layer's lanes and tile bound
    tiling: Any = None                         # a tiled kernel's tiles (isa.tiles.Tiling)
    unroll: Any = None                         # a kernel's unroll choice (compiler.unroll)

    def kernel(self, name: str) -> Kernel | SystolicKernel:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(f"program {self.name}: no kernel {name!r}")
