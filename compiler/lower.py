"""Lowering: index notation -> SAM graph (Custard's algorithm, SAM paper section 5).

Per index variable in loop order and per operand tensor: a level scanner where the variable
is on the tensor's path, a repeater where it is absent, an intersecter (``*``) or unioner
(``+``) where both paths have it. Then value arrays, the ALU, a reducer for a contracted
variable (scalar when it is innermost, vector when an output variable follows it),
coordinate droppers for output levels whose inner fibers may be empty, and level writers.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.notation import Assignment
from isa.errors import CompileError
from isa.ops import Opcode, signature
from isa.program import Edge, Kernel, Node, TensorDecl

Port = tuple[str, str]   # (node id, output port)


@dataclass
class _Builder:
    nodes: list[Node]
    edges: list[Edge]

    def add(self, node: Node, **inputs: Port) -> str:
        self.nodes.append(node)
        ports = signature(node.op, node.a).inputs
        for port, (src, src_port) in inputs.items():
            self.edges.append(Edge(src, src_port, node.id, port, ports[port]))
        return node.id


def lower_assignment(
    assign: Assignment,
    order: tuple[str, ...],
    decls: dict[str, TensorDecl],
    *,
    zero_policy: tuple[str, str] = ("skip", "skip"),
    explicit_zeros: dict[str, bool] | None = None,
    name: str = "kernel",
) -> Kernel:
    """Lower ``assign`` in loop ``order`` to a SAM graph.

    Pre: ``decls`` declares every operand (shape, formats, mode order) and the output.
    Post: a Kernel whose graph passes ``isa.verify.verify_kernel``; nodes are unplaced.
    ``zero_policy`` gives the ALU operand policies (a = first operand); a ``skip`` operand
    whose stored values include zeros gets a zero-skipping innermost scanner.
    """
    explicit_zeros = explicit_zeros or {}
    b = _Builder([], [])
    ops = assign.operands
    out = decls[assign.out.tensor]
    ref: dict[str, Port | None] = {a.tensor: None for a in ops}
    level: dict[str, int] = {a.tensor: 0 for a in ops}
    crd_of: dict[str, Port] = {}
    join = Opcode.INTERSECT if assign.op == "*" else Opcode.UNION
    policies = dict(zip((a.tensor for a in ops), zero_policy))

    for v in order:
        has = [a for a in ops if v in a.indices]
        lacks = [a for a in ops if v not in a.indices]
        scans: dict[str, str] = {}
        for acc in has:
            t = decls[acc.tensor]
            lvl = level[acc.tensor]
            mode = t.mode_order[lvl] if lvl < len(t.mode_order) else None
            if mode is None or acc.indices[mode] != v:
                want = ",".join(str(acc.indices.index(x)) for x in order if x in acc.indices)
                raise CompileError(
                    f"lower: tensor {acc.tensor} is stored in mode order "
                    f"{','.join(map(str, t.mode_order))} but loop order {''.join(order)} "
                    f"visits {v} at its level {lvl}; store it with mode order {want} "
                    f"(e.g. format ss:{want}) or choose another loop order")
            last = lvl == len(t.formats) - 1
            fmt = t.formats[lvl]
            node = Node.make(
                f"scan_{acc.tensor}{lvl}", Opcode.SCAN, tensor=acc.tensor, level=lvl, fmt=fmt,
                dim=t.shape[mode] if fmt == "dense" else 0, root=ref[acc.tensor] is None,
                skip_zeros=bool(last and policies[acc.tensor] == "skip"
                                and explicit_zeros.get(acc.tensor, False)))
            inputs = {} if ref[acc.tensor] is None else {"ref": ref[acc.tensor]}
            scans[acc.tensor] = b.add(node, **inputs)
            level[acc.tensor] = lvl + 1
        if len(has) == 2:
            (ta, tb) = (has[0].tensor, has[1].tensor)
            jid = b.add(Node.make(f"{'isect' if join is Opcode.INTERSECT else 'union'}_{v}",
                                  join),
                        crd_a=(scans[ta], "crd"), ref_a=(scans[ta], "ref"),
                        crd_b=(scans[tb], "crd"), ref_b=(scans[tb], "ref"))
            crd_of[v] = (jid, "crd")
            ref[ta], ref[tb] = (jid, "ref_a"), (jid, "ref_b")
        elif len(has) == 1:
            t = has[0].tensor
            crd_of[v] = (scans[t], "crd")
            ref[t] = (scans[t], "ref")
        if lacks:
            sig = b.add(Node.make(f"repsig_{v}", Opcode.REPSIG), crd=crd_of[v])
            for acc in lacks:
                t = acc.tensor
                node = Node.make(f"repeat_{t}{v}", Opcode.REPEAT, root=ref[t] is None)
                inputs = {"repsig": (sig, "repsig")}
                if ref[t] is not None:
                    inputs["ref"] = ref[t]
                ref[t] = (b.add(node, **inputs), "ref")

    arrays = [b.add(Node.make(f"arr_{a.tensor}", Opcode.ARRAY, tensor=a.tensor),
                    ref=ref[a.tensor]) for a in ops]
    alu = b.add(Node.make(f"alu_{'mul' if assign.op == '*' else 'add'}", Opcode.ALU,
                          op="mul" if assign.op == "*" else "add",
                          zero_a=zero_policy[0], zero_b=zero_policy[1]),
                a=(arrays[0], "val"), b=(arrays[1], "val"))
    val: Port = (alu, "val")

    out_vars = [v for v in order if v in assign.out.indices]
    want = tuple(assign.out.indices.index(v) for v in out_vars)
    if tuple(out.mode_order) != want:
        raise CompileError(f"lower: output {out.name} mode order {out.mode_order} does not "
                           f"follow loop order {''.join(order)} (needs {want})")
    if any(f != "compressed" for f in out.formats):
        raise CompileError(f"lower: output {out.name}: only compressed output levels are "
                           f"supported (got {','.join(out.formats)})")
    reduced = [v for v in order if v not in assign.out.indices]
    if len(reduced) > 1:
        raise CompileError(f"lower: {assign}: more than one contracted index "
                           f"({','.join(reduced)}) is not supported")
    if not out_vars:
        raise CompileError(f"lower: {assign}: scalar outputs are not supported")
    streams: list[Port] = [crd_of[v] for v in out_vars]
    needs_drop = assign.op == "*" or any(
        f == "dense" for a in ops for f in decls[a.tensor].formats)
    if reduced:
        r = reduced[0]
        after = [v for v in order[order.index(r) + 1:] if v in out_vars]
        if not after:   # contracted innermost: one sum per output coordinate
            val = (b.add(Node.make(f"reduce_{r}", Opcode.REDUCE, drop_empty=True), val=val),
                   "val")
            d = b.add(Node.make(f"drop_{out_vars[-1]}{r}", Opcode.CRDDROP),
                      outer=streams[-1], inner=crd_of[r])
            streams[-1] = (d, "outer")
        elif len(after) == 1:   # Gustavson-style: accumulate the inner output fiber
            vr = b.add(Node.make(f"vreduce_{r}", Opcode.VREDUCE), crd=crd_of[after[0]], val=val)
            streams[-1], val = (vr, "crd"), (vr, "val")
        else:
            raise CompileError(f"lower: {assign} in order {''.join(order)}: a contracted index "
                               "may be followed by at most one output index")
    if len(streams) > 2:
        raise CompileError(f"lower: {assign}: outputs of rank > 2 are not supported")
    if len(streams) == 2 and needs_drop:
        d = b.add(Node.make(f"drop_{out_vars[0]}{out_vars[1]}", Opcode.CRDDROP),
                  outer=streams[0], inner=streams[1])
        streams = [(d, "outer"), (d, "inner")]
    for lvl, s in enumerate(streams):
        b.add(Node.make(f"write_{out.name}{lvl}", Opcode.WRITE_CRD, tensor=out.name,
                        level=lvl), crd=s)
    b.add(Node.make(f"write_{out.name}v", Opcode.WRITE_VAL, tensor=out.name), val=val)
    tensors = tuple(decls[a.tensor] for a in ops) + (out,)
    return Kernel(name, tuple(b.nodes), tuple(b.edges), tensors, str(assign))
