"""Lowering: index notation -> SAM graph (Custard's algorithm, SAM paper section 5).

Per index variable in loop order and per operand tensor: a level scanner where the variable
is on the tensor's path, a repeater where it is absent, and a joiner where two or more paths
have it: an intersecter for ``*``, a unioner for ``+``. Three paths join as SAM chains
two-input joiners: the first two, then the result with the third, then one more joiner that
realigns the reference of the tensor the second joiner did not carry. Then value arrays, one
two-input ALU per operand after the first (a chain), the reducers, coordinate droppers for
output levels whose fibers may be empty, and level writers.

Reductions (contracted index variables):

- every contracted variable after every output variable (``ijk`` for SDDMM, ``ijkl`` for
  MTTKRP, every variable for a scalar output): one scalar reducer per contracted variable,
  innermost first (SAM chains them the same way); a chain of droppers removes the output
  coordinates whose contracted subspace is empty;
- one contracted variable followed by exactly one output variable, the last (Gustavson,
  ``ikj``): a vector reducer accumulates the inner output fiber.

Outputs are compressed at every level, of any rank, or a scalar (one value, no levels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.notation import Assignment
from isa.errors import CompileError, IsaError
from isa.fibertree import parse_formats
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


def _reduction(assign: Assignment, order: tuple[str, ...]) -> str:
    """How the contracted variables are reduced: "none", "scalar" (reducer chain) or "vector"
    (vector reducer); CompileError for a loop order neither kind can reduce."""
    reduced = [v for v in order if v not in assign.out.indices]
    if not reduced:
        return "none"
    tail = order[order.index(reduced[0]):]
    if all(v in reduced for v in tail):
        return "scalar"
    after = [v for v in tail if v not in reduced]
    if len(reduced) == 1 and len(after) == 1:
        return "vector"
    if len(reduced) > 1:
        raise CompileError(
            f"lower: {assign} in order {''.join(order)}: with several contracted indices "
            f"({','.join(reduced)}) every contracted index must come after every output index "
            "(scalar reducers); choose such a loop order")
    raise CompileError(f"lower: {assign} in order {''.join(order)}: a contracted index may "
                       "be followed by at most one output index")


def _check_output(assign: Assignment, order: tuple[str, ...], out: TensorDecl) -> None:
    out_vars = [v for v in order if v in assign.out.indices]
    want = tuple(assign.out.indices.index(v) for v in out_vars)
    if tuple(out.mode_order) != want:
        raise CompileError(f"lower: output {out.name} mode order {out.mode_order} does not "
                           f"follow loop order {''.join(order)} (needs {want})")
    if any(f not in ("compressed", "bitmap") for f in out.formats):
        raise CompileError(f"lower: output {out.name}: only compressed and bitmap output "
                           f"levels are supported (got {','.join(out.formats)})")


def output_formats(layer: Any, name: str, rank: int) -> tuple[str, ...]:
    """The level formats of output ``name`` (rank ``rank``) given in the layer's formats
    (``-p formats=X:sb``), compressed at every level by default. CompileError (``parse:``)
    for a wrong number of levels or a mode order (outputs follow the loop order)."""
    spec = (getattr(layer, "formats", None) or {}).get(name)
    if not spec:
        return ("compressed",) * rank
    try:
        fmts, mode = parse_formats(spec)
    except IsaError as exc:
        raise CompileError(f"parse: output {name}: {exc}") from None
    if len(fmts) != rank or mode is not None:
        raise CompileError(f"parse: output {name}: format {spec!r} must give {rank} level "
                           "letters and no mode order (an output follows the loop order)")
    return fmts


def lower_assignment(
    assign: Assignment,
    order: tuple[str, ...],
    decls: dict[str, TensorDecl],
    *,
    zero_policy: tuple[str, str] = ("skip", "skip"),
    explicit_zeros: dict[str, bool] | None = None,
    name: str = "kernel",
    locate: bool = True,
    bitvector: bool = True,
) -> Kernel:
    """Lower ``assign`` in loop ``order`` to a SAM graph.

    Pre: ``decls`` declares every operand (shape, formats, mode order) and the output.
    Post: a Kernel whose graph passes ``isa.verify.verify_kernel``; nodes are unplaced.
    ``zero_policy`` gives the ALU operand policies: ``a`` for the first operand of the
    expression and, in a chain of ALUs, for the running product or sum; ``b`` for every
    other operand. A ``skip`` operand whose stored values include zeros gets a zero-skipping
    innermost scanner. With ``locate``, an intersection that meets dense levels iterates the
    compressed levels (or the first dense one) and locates into the others (SAM's
    iterate-and-locate): one locator step per coordinate instead of a co-iterating walk.
    A bitmap level met in an intersection with one iterated level is located too (a
    filtering locator: a clear bit drops the coordinate). With ``bitvector``, two bitmap
    levels joined with each other are scanned as bitvector words and joined word-wide (SAM's
    ``BVRdScan`` and ``IntersectBV2``). Output levels are compressed or bitmap.
    Raises: CompileError (``lower: ...``) for what the lowering does not support.
    """
    explicit_zeros = explicit_zeros or {}
    b = _Builder([], [])
    ops = assign.operands
    for acc in ops:
        if not acc.indices:
            raise CompileError(f"lower: {assign}: operand {acc.tensor} is a scalar; scalar "
                               "operands are not supported")
    out = decls[assign.out.tensor]
    _check_output(assign, order, out)
    plan = _reduction(assign, order)
    ref: dict[str, Port | None] = {a.tensor: None for a in ops}
    level: dict[str, int] = {a.tensor: 0 for a in ops}
    crd_of: dict[str, Port] = {}
    join = Opcode.INTERSECT if assign.op == "*" else Opcode.UNION
    policies = {a.tensor: zero_policy[0] if k == 0 else zero_policy[1]
                for k, a in enumerate(ops)}

    for v in order:
        has = [a for a in ops if v in a.indices]
        lacks = [a for a in ops if v not in a.indices]
        for acc in has:
            _check_level(acc, decls[acc.tensor], level[acc.tensor], v, order)
        skipping = {a.tensor for a in has if policies[a.tensor] == "skip"
                    and explicit_zeros.get(a.tensor, False)
                    and level[a.tensor] == len(decls[a.tensor].formats) - 1}
        located = _located(has, decls, level, skipping) \
            if locate and join is Opcode.INTERSECT else []
        bv_located = _located_bitmap(has, decls, level, skipping, located) \
            if locate and join is Opcode.INTERSECT else []
        iterated = [a for a in has if a not in located and a not in bv_located]
        # the first two iterated levels, if both bitmap, are joined word-wide
        bv_join = bitvector and len(iterated) >= 2 and all(
            decls[a.tensor].formats[level[a.tensor]] == "bitmap" and a.tensor not in skipping
            for a in iterated[:2])
        bv_dim: int | None = None
        scans: dict[str, str] = {}
        for acc in iterated:
            t = decls[acc.tensor]
            lvl = level[acc.tensor]
            mode = t.mode_order[lvl]
            last = lvl == len(t.formats) - 1
            fmt = t.formats[lvl]
            if bv_join and acc in iterated[:2]:
                bv_dim = t.shape[mode]
                node = Node.make(f"scan_{acc.tensor}{lvl}", Opcode.SCAN_BV, tensor=acc.tensor,
                                 level=lvl, dim=t.shape[mode], root=ref[acc.tensor] is None)
                inputs = {} if ref[acc.tensor] is None else {"ref": ref[acc.tensor]}
                scans[acc.tensor] = b.add(node, **inputs)
                level[acc.tensor] = lvl + 1
                continue
            node = Node.make(
                f"scan_{acc.tensor}{lvl}", Opcode.SCAN, tensor=acc.tensor, level=lvl, fmt=fmt,
                dim=t.shape[mode] if fmt != "compressed" else 0, root=ref[acc.tensor] is None,
                skip_zeros=bool(last and policies[acc.tensor] == "skip"
                                and explicit_zeros.get(acc.tensor, False)))
            inputs = {} if ref[acc.tensor] is None else {"ref": ref[acc.tensor]}
            scans[acc.tensor] = b.add(node, **inputs)
            level[acc.tensor] = lvl + 1
        if len(iterated) >= 2:
            crd_of[v], joined = _join_all(b, join, v,
                                          [(a.tensor, scans[a.tensor]) for a in iterated],
                                          bv_dim)
            ref.update(joined)
        elif len(iterated) == 1:
            t = iterated[0].tensor
            crd_of[v] = (scans[t], "crd")
            ref[t] = (scans[t], "ref")
        for acc in bv_located:     # one, with one iterated tensor whose reference it carries
            t, lvl, it = acc.tensor, level[acc.tensor], iterated[0].tensor
            decl = decls[t]
            node = Node.make(f"locate_{t}{lvl}", Opcode.LOCATE_BV, tensor=t, level=lvl,
                             dim=decl.shape[decl.mode_order[lvl]], root=ref[t] is None)
            inputs = {"crd": crd_of[v], "carry": ref[it]}
            if ref[t] is not None:
                inputs["ref"] = ref[t]
            loc = b.add(node, **inputs)
            crd_of[v], ref[it], ref[t] = (loc, "crd"), (loc, "carry"), (loc, "ref")
            level[t] = lvl + 1
        for acc in located:
            t, lvl = acc.tensor, level[acc.tensor]
            decl = decls[t]
            node = Node.make(f"locate_{t}{lvl}", Opcode.LOCATE, tensor=t, level=lvl,
                             dim=decl.shape[decl.mode_order[lvl]], root=ref[t] is None)
            inputs = {"crd": crd_of[v]}
            if ref[t] is not None:
                inputs["ref"] = ref[t]
            ref[t] = (b.add(node, **inputs), "ref")
            level[t] = lvl + 1
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
    alu_op = "mul" if assign.op == "*" else "add"
    val: Port = (arrays[0], "val")
    for k, arr in enumerate(arrays[1:], start=1):
        alu = b.add(Node.make(f"alu_{alu_op}" + (f"_{k}" if k > 1 else ""), Opcode.ALU,
                              op=alu_op, zero_a=zero_policy[0], zero_b=zero_policy[1]),
                    a=val, b=(arr, "val"))
        val = (alu, "val")

    out_vars = [v for v in order if v in assign.out.indices]
    reduced = [v for v in order if v not in assign.out.indices]
    streams: list[Port] = [crd_of[v] for v in out_vars]
    if plan == "scalar":
        for k, r in enumerate(reversed(reduced)):
            final = k == len(reduced) - 1
            # a scalar output always has its one value (0 when nothing meets)
            val = (b.add(Node.make(f"reduce_{r}", Opcode.REDUCE,
                                   drop_empty=bool(out_vars) or not final), val=val), "val")
        if out_vars:
            streams[-1] = _drop_chain(b, [out_vars[-1]] + reduced,
                                      [streams[-1]] + [crd_of[r] for r in reduced])
    elif plan == "vector":
        r = reduced[0]
        vr = b.add(Node.make(f"vreduce_{r}", Opcode.VREDUCE), crd=crd_of[out_vars[-1]], val=val)
        streams[-1], val = (vr, "crd"), (vr, "val")
    needs_drop = assign.op == "*" or any(
        f == "dense" for a in ops for f in decls[a.tensor].formats)
    written = list(streams)
    if needs_drop:
        # innermost pair first; a dropper whose inner output is written below level 1 also
        # prunes the fibers of outer fibers left empty (the level above drops them)
        for lvl in range(len(streams) - 2, -1, -1):
            d = b.add(Node.make(f"drop_{out_vars[lvl]}{out_vars[lvl + 1]}", Opcode.CRDDROP,
                                prune=lvl >= 1),
                      outer=streams[lvl], inner=streams[lvl + 1])
            streams[lvl] = (d, "outer")
            written[lvl + 1] = (d, "inner")
        if written:
            written[0] = streams[0]
    for lvl, s in enumerate(written):
        if out.formats[lvl] == "bitmap":
            b.add(Node.make(f"write_{out.name}{lvl}", Opcode.WRITE_BV, tensor=out.name,
                            level=lvl, dim=out.shape[out.mode_order[lvl]]), crd=s)
            continue
        b.add(Node.make(f"write_{out.name}{lvl}", Opcode.WRITE_CRD, tensor=out.name,
                        level=lvl), crd=s)
    b.add(Node.make(f"write_{out.name}v", Opcode.WRITE_VAL, tensor=out.name), val=val)
    tensors = tuple(decls[a.tensor] for a in ops) + (out,)
    return Kernel(name, tuple(b.nodes), tuple(b.edges), tensors, str(assign))


def _check_level(acc, decl: TensorDecl, lvl: int, v: str, order: tuple[str, ...]) -> None:
    """CompileError unless the tensor's next storage level holds index ``v``."""
    mode = decl.mode_order[lvl] if lvl < len(decl.mode_order) else None
    if mode is None or acc.indices[mode] != v:
        want = ",".join(str(acc.indices.index(x)) for x in order if x in acc.indices)
        raise CompileError(
            f"lower: tensor {acc.tensor} is stored in mode order "
            f"{','.join(map(str, decl.mode_order))} but loop order {''.join(order)} "
            f"visits {v} at its level {lvl}; store it with mode order {want} "
            f"(e.g. format {'s' * len(acc.indices)}:{want}) or choose another loop order")


def _located(has: list, decls: dict[str, TensorDecl], level: dict[str, int],
             skipping: set[str]) -> list:
    """The operands of an intersection over one index that are located rather than
    iterated: those whose level is dense, except the first dense one when no level is
    compressed (something must be iterated). A dense level whose scanner skips stored zeros
    (zero policy ``skip``, the innermost level of a tensor with explicit zeros) is iterated:
    its zeros make it sparse, and a locator, which reads no values, could not skip them."""
    dense = [a for a in has if decls[a.tensor].formats[level[a.tensor]] == "dense"
             and a.tensor not in skipping]
    if len(has) < 2 or not dense:
        return []
    return dense if len(dense) < len(has) else dense[1:]


def _located_bitmap(has: list, decls: dict[str, TensorDecl], level: dict[str, int],
                    skipping: set[str], located: list) -> list:
    """The bitmap level of an intersection that is located rather than iterated: when
    exactly one bitmap level meets exactly one other iterated level (compressed, or the
    dense one left iterated), the bitmap is located by a filtering locator that carries the
    iterated side's reference. Its cost follows the iterated side's coordinates and the
    64-bit mask words (four 16-bit words) they reach, where co-iterating takes a step per
    coordinate of either side and per all-zero mask word. Skipping levels are iterated, as
    for ``_located``."""
    bitmaps = [a for a in has if decls[a.tensor].formats[level[a.tensor]] == "bitmap"
               and a.tensor not in skipping]
    others = [a for a in has if a not in located and a not in bitmaps]
    return bitmaps if len(bitmaps) == 1 and len(others) == 1 else []


def _join_all(b: _Builder, join: Opcode, v: str, scans: list[tuple[str, str]],
              bv_dim: int | None = None) -> tuple[Port, dict[str, Port]]:
    """Join the (tensor, scanner) coordinate streams of index ``v``; returns the joined
    coordinates and each tensor's reference stream aligned with them.

    Two-input joiners chained: the first two inputs, then the result (carrying the first
    tensor's reference) with each further input; after each further join, one realigning
    joiner per reference left behind (joined coordinates against the coordinates that
    reference follows: a subset for ``*``, a superset for ``+``). With ``bv_dim`` the first
    two scanners are bitvector scanners of a level of that size and their join is word-wide
    (the joiner emits coordinates, so the chain goes on as usual).
    """
    kind = "isect" if join is Opcode.INTERSECT else "union"
    (t0, s0), (t1, s1) = scans[0], scans[1]
    if bv_dim is None:
        jid = b.add(Node.make(f"{kind}_{v}", join), crd_a=(s0, "crd"), ref_a=(s0, "ref"),
                    crd_b=(s1, "crd"), ref_b=(s1, "ref"))
    else:
        op = Opcode.BV_INTERSECT if join is Opcode.INTERSECT else Opcode.BV_UNION
        jid = b.add(Node.make(f"{kind}_{v}", op, dim=bv_dim), bv_a=(s0, "bv"),
                    ref_a=(s0, "ref"), bv_b=(s1, "bv"), ref_b=(s1, "ref"))
    crd: Port = (jid, "crd")
    refs: dict[str, Port] = {t0: (jid, "ref_a"), t1: (jid, "ref_b")}
    for k, (t, s) in enumerate(scans[2:], start=2):
        before = crd
        jid = b.add(Node.make(f"{kind}_{v}_{k}", join), crd_a=crd, ref_a=refs[t0],
                    crd_b=(s, "crd"), ref_b=(s, "ref"))
        crd = (jid, "crd")
        moved = {t0: (jid, "ref_a"), t: (jid, "ref_b")}
        for u in [u for u in refs if u != t0]:
            fid = b.add(Node.make(f"{kind}_{v}_{u}", join), crd_a=crd, ref_a=moved[t0],
                        crd_b=before, ref_b=refs[u])
            crd = (fid, "crd")
            moved[t0], moved[u] = (fid, "ref_a"), (fid, "ref_b")
        refs = moved
    return crd, refs


def _drop_chain(b: _Builder, names: list[str], crds: list[Port]) -> Port:
    """Droppers from the innermost coordinate stream outwards: each outer coordinate is kept
    only if its inner fiber (already dropped) is non-empty. Returns the outermost stream."""
    inner = crds[-1]
    for k in range(len(crds) - 2, -1, -1):
        d = b.add(Node.make(f"drop_{names[k]}{names[k + 1]}", Opcode.CRDDROP),
                  outer=crds[k], inner=inner)
        inner = (d, "outer")
    return inner
