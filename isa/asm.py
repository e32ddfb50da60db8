"""Text assembly for kernels and programs: a printer and a parser that round-trip exactly.

The format is line oriented. ``;`` starts a comment (outside a quoted string) and blank lines
are ignored. Names (node ids, ports, tensors, kernels) are bare identifiers
``[A-Za-z_][A-Za-z0-9_]*`` or JSON-style double-quoted strings. A kernel::

    .kernel ewise_mul
    .expr x(i)=b(i)*c(i)
    .tensor b shape=8 formats=compressed order=0
    .tensor x shape=8 formats=compressed order=0 output
    scan_b = scan tensor=b level=0 fmt=compressed dim=0 root=true skip_zeros=false @mem(0,3)
    isect_i = intersect @pe(0,2)
    scan_b.crd -> isect_i.crd_a : crd via (0,3) (0,2)
    .end

- ``.expr TEXT``: the rest of the line (printed quoted when it holds ``;``, ``"``, edge
  whitespace or control characters); omitted when the expression is empty.
- ``.tensor NAME shape=.. formats=.. order=.. [output]``: comma-separated lists, ``()`` when
  empty.
- ``ID = OPCODE [name=value ...] [@kind(row,col)]``: attribute values are integers,
  ``true``/``false`` or strings (bare when an identifier other than true/false, else quoted).
  The parser fills defaults from ``ops.ATTRS`` (as ``Node.make`` does); the printer writes
  every attribute, schema order first. The tile kind after ``@`` must be the opcode's
  (``@(row,col)`` is accepted too).
- ``SRC.PORT -> DST.PORT : KIND [via (r,c) (r,c) ...]``: the route lists the tiles visited,
  source first.

A dense-mode kernel (a GEMM on a block of MAC PEs, ``SystolicKernel``)::

    .systolic gemm_os_16x21
    .array rows=16 cols=21 dataflow=os nm=2:4
    .tensor A shape=64,40 formats=dense,dense order=0,1
    .tensor B shape=40,48 formats=dense,dense order=0,1
    .tensor X shape=64,48 formats=dense,dense order=0,1 output
    .end

- ``.array rows=R cols=C dataflow=D [nm=N:M]``: exactly once, before the tensors; ``nm`` is
  omitted for dense weights.

A program wraps kernels of either kind and the controller schedule::

    .program spmv
    .kernel ...
    .end
    .schedule
    dma_in b size_bytes=64
    launch ewise_mul
    .end

Memory images are data, not text: a parsed program has empty images.

Round trip: ``parse_kernel(print_kernel(k)) == k`` for every kernel whose nodes were built with
``Node.make`` (sorted attributes with defaults filled in) and whose attribute names are in the
schema; ``print_kernel(parse_kernel(t)) == t`` for printed text. The parser checks syntax,
opcodes, attribute names and value types, edge kinds, node references and unique ids; the
graph rules (ports, arity, acyclicity, required attributes) are the verifier's.
"""

from __future__ import annotations

import json
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

from isa.errors import IsaError
from isa.ops import ATTRS, SIGNATURES, Opcode, TileKind
from isa.program import (
    COMMANDS,
    Command,
    Edge,
    Kernel,
    Node,
    Program,
    SystolicKernel,
    TensorDecl,
)

# edge kinds; the bitstream indexes this order
STREAM_KINDS = ("crd", "ref", "val", "repsig", "bv")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<arrow>->)
      | (?P<int>-?[0-9]+)(?![A-Za-z0-9_])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[=.:@(),])
      | (?P<string>")
    )""",
    re.VERBOSE,
)
_OPCODES = {op.value: op for op in Opcode}
_TILE_KINDS = {kind.value: kind for kind in TileKind}


# --------------------------------------------------------------------------------- printer


def _name(text: str) -> str:
    """A name as a bare identifier when possible, else quoted."""
    return text if _IDENT.fullmatch(text) else json.dumps(text)


def _value(value: Any) -> str:
    """An attribute value: true/false, an integer, or a (possibly quoted) string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, str):
        if _IDENT.fullmatch(value) and value not in ("true", "false"):
            return value
        return json.dumps(value)
    raise IsaError(f"cannot print attribute value {value!r} of type {type(value).__name__}")


def _list(items: tuple[Any, ...], fmt: Any) -> str:
    return ",".join(fmt(x) for x in items) if items else "()"


def _expr(expr: str) -> str:
    plain = (
        expr == expr.strip()
        and not any(c in expr for c in ';"')
        and expr.isprintable()
        and expr.isascii()
    )
    return expr if plain else json.dumps(expr)


def _tile(tile: tuple[int, int]) -> str:
    return f"({tile[0]},{tile[1]})"


def _node_line(node: Node) -> str:
    schema = list(ATTRS.get(node.op, {}))
    attrs = node.a
    ordered = [k for k in schema if k in attrs] + sorted(k for k in attrs if k not in schema)
    parts = [f"{_name(node.id)} = {node.op.value}"]
    parts += [f"{_name(k)}={_value(attrs[k])}" for k in ordered]
    if node.tile is not None:
        parts.append(f"@{SIGNATURES[node.op].tile.value}{_tile(node.tile)}")
    return " ".join(parts)


def _edge_line(edge: Edge) -> str:
    line = (
        f"{_name(edge.src)}.{_name(edge.src_port)} -> "
        f"{_name(edge.dst)}.{_name(edge.dst_port)} : {_name(edge.kind)}"
    )
    if edge.route:
        line += " via " + " ".join(_tile(t) for t in edge.route)
    if edge.buffer:
        line += f" buffer={edge.buffer}"
    return line


def _tensor_line(t: TensorDecl) -> str:
    line = (
        f".tensor {_name(t.name)} shape={_list(t.shape, str)} "
        f"formats={_list(t.formats, _name)} order={_list(t.mode_order, str)}"
    )
    return line + (" output" if t.is_output else "")


def _kernel_lines(kernel: Kernel) -> list[str]:
    lines = [f".kernel {_name(kernel.name)}"]
    if kernel.expr:
        lines.append(f".expr {_expr(kernel.expr)}")
    lines += [_tensor_line(t) for t in kernel.tensors]
    lines += [_node_line(n) for n in kernel.nodes]
    lines += [_edge_line(e) for e in kernel.edges]
    lines.append(".end")
    return lines


def _systolic_lines(kernel: SystolicKernel) -> list[str]:
    array = f".array rows={kernel.rows} cols={kernel.cols} dataflow={_name(kernel.dataflow)}"
    if kernel.nm is not None:
        array += f" nm={kernel.nm[0]}:{kernel.nm[1]}"
    return ([f".systolic {_name(kernel.name)}", array]
            + [_tensor_line(t) for t in kernel.tensors] + [".end"])


def _any_kernel_lines(kernel: Kernel | SystolicKernel) -> list[str]:
    if isinstance(kernel, SystolicKernel):
        return _systolic_lines(kernel)
    return _kernel_lines(kernel)


def print_kernel(kernel: Kernel | SystolicKernel) -> str:
    """The assembly text of one kernel of either kind (ends with a newline)."""
    return "\n".join(_any_kernel_lines(kernel)) + "\n"


def print_program(program: Program) -> str:
    """The assembly text of a program: name, kernels and schedule (not the memory images)."""
    lines = [f".program {_name(program.name)}"]
    for kernel in program.kernels:
        lines.append("")
        lines += _any_kernel_lines(kernel)
    if program.schedule:
        lines += ["", ".schedule"]
        for cmd in program.schedule:
            line = f"{_name(cmd.op)} {_name(cmd.arg)}"
            if cmd.size_bytes:
                line += f" size_bytes={cmd.size_bytes}"
            if cmd.tile >= 0:
                line += f" tile={cmd.tile}"
            lines.append(line)
        lines.append(".end")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: str       # arrow | int | name | punct | string
    text: str       # the source text (decoded for strings)


def _strip_comment(line: str) -> str:
    """The line without its ``;`` comment (a ``;`` inside a quoted string does not count)."""
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            return line[:i]
        i += 1
    return line


class _Line:
    """The tokens of one source line with a cursor; errors name the line."""

    def __init__(self, lineno: int, text: str):
        self.lineno = lineno
        self.toks: list[_Tok] = []
        self.pos = 0
        i, n = 0, len(text)
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                break
            m = _TOKEN.match(text, i)
            if m is None:
                raise self.error(f"unexpected character {text[i]!r}")
            kind = m.lastgroup or ""
            if kind == "string":
                try:
                    s, i = json.decoder.scanstring(text, m.end())
                except json.JSONDecodeError as exc:
                    raise self.error(f"bad quoted string ({exc.msg})") from None
                self.toks.append(_Tok("string", s))
            else:
                self.toks.append(_Tok(kind, m.group(kind)))
                i = m.end()

    def error(self, message: str) -> IsaError:
        return IsaError(f"line {self.lineno}: {message}")

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def next(self, what: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise self.error(f"expected {what}, got end of line")
        self.pos += 1
        return tok

    def punct(self, text: str) -> None:
        tok = self.next(repr(text))
        if tok.kind not in ("punct", "arrow") or tok.text != text:
            raise self.error(f"expected {text!r}, got {tok.text!r}")

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind in ("punct", "arrow") and tok.text == text:
            self.pos += 1
            return True
        return False

    def name(self, what: str) -> str:
        tok = self.next(what)
        if tok.kind not in ("name", "string"):
            raise self.error(f"expected {what}, got {tok.text!r}")
        return tok.text

    def integer(self, what: str) -> int:
        tok = self.next(what)
        if tok.kind != "int":
            raise self.error(f"expected {what} (an integer), got {tok.text!r}")
        return int(tok.text)

    def tile(self) -> tuple[int, int]:
        self.punct("(")
        row = self.integer("a tile row")
        self.punct(",")
        col = self.integer("a tile column")
        self.punct(")")
        return (row, col)

    def end(self) -> None:
        tok = self.peek()
        if tok is not None:
            raise self.error(f"unexpected {tok.text!r} at end of line")


def _directive(text: str) -> tuple[str, str]:
    """Split ``.word rest`` into (word, rest); ('', text) for a non-directive line."""
    stripped = text.strip()
    if not stripped.startswith("."):
        return "", text
    parts = stripped.split(None, 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


# --------------------------------------------------------------------------------- parser


@dataclass
class _KernelBuilder:
    name: str
    lineno: int
    expr: str = ""
    expr_seen: bool = False
    tensors: list[TensorDecl] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    node_lines: dict[str, int] = field(default_factory=dict)
    edges: list[tuple[_Line, Edge]] = field(default_factory=list)

    def build(self) -> Kernel:
        for line, edge in self.edges:
            for end in (edge.src, edge.dst):
                if end not in self.node_lines:
                    raise line.error(f"kernel {self.name}: edge names unknown node {end!r}")
        return Kernel(
            self.name,
            tuple(self.nodes),
            tuple(e for _, e in self.edges),
            tuple(self.tensors),
            self.expr,
        )


def _parse_expr(line_no: int, rest: str) -> str:
    rest = rest.strip()
    if rest.startswith('"'):
        line = _Line(line_no, rest)
        tok = line.next("an expression")
        line.end()
        return tok.text
    if '"' in rest:
        raise IsaError(f"line {line_no}: quote the whole expression or none of it")
    return rest


def _parse_list(line: _Line, item: str) -> tuple[Any, ...]:
    """A comma-separated list of names or integers, or ``()``."""
    if line.accept("("):
        line.punct(")")
        return ()
    items: list[Any] = []
    while True:
        items.append(line.integer(item) if item == "int" else line.name(item))
        if not line.accept(","):
            return tuple(items)


def _parse_tensor(line: _Line) -> TensorDecl:
    name = line.name("a tensor name")
    fields: dict[str, tuple[Any, ...]] = {}
    is_output = False
    while line.peek() is not None:
        key = line.name("shape=, formats=, order= or output")
        if key == "output":
            if is_output:
                raise line.error("'output' given twice")
            is_output = True
            continue
        if key not in ("shape", "formats", "order"):
            raise line.error(f"unknown tensor field {key!r} (expected shape, formats, order)")
        if key in fields:
            raise line.error(f"tensor field {key!r} given twice")
        line.punct("=")
        fields[key] = _parse_list(line, "format name" if key == "formats" else "int")
    missing = [k for k in ("shape", "formats", "order") if k not in fields]
    if missing:
        raise line.error(f"tensor {name}: missing {', '.join(missing)}")
    return TensorDecl(name, fields["shape"], fields["formats"], fields["order"], is_output)


def _parse_value(line: _Line, op: Opcode, key: str) -> Any:
    typ = ATTRS[op][key][0]
    tok = line.next(f"a value for {key}")
    if typ is bool and tok.kind == "name" and tok.text in ("true", "false"):
        return tok.text == "true"
    if typ is int and tok.kind == "int":
        return int(tok.text)
    if typ is str and (tok.kind == "string" or (
        tok.kind == "name" and tok.text not in ("true", "false")
    )):
        return tok.text
    shown = json.dumps(tok.text) if tok.kind == "string" else tok.text
    raise line.error(
        f"attribute {key} of {op.value}: expected {typ.__name__}, got {shown}"
    )


def _parse_node(line: _Line, kb: _KernelBuilder) -> None:
    node_id = line.name("a node id")
    line.punct("=")
    mnemonic = line.name("an opcode")
    op = _OPCODES.get(mnemonic)
    if op is None:
        raise line.error(f"unknown opcode {mnemonic!r}")
    attrs: dict[str, Any] = {}
    tile: tuple[int, int] | None = None
    while line.peek() is not None:
        if line.accept("@"):
            tok = line.peek()
            if tok is not None and tok.kind == "name":
                line.pos += 1
                kind = _TILE_KINDS.get(tok.text)
                if kind is None:
                    raise line.error(f"unknown tile kind {tok.text!r}")
                if kind is not SIGNATURES[op].tile:
                    raise line.error(
                        f"{op.value} goes on a {SIGNATURES[op].tile.value} tile, not {kind.value}"
                    )
            tile = line.tile()
            line.end()
            break
        key = line.name("an attribute name or @tile")
        if key not in ATTRS[op]:
            raise line.error(f"unknown attribute {key!r} for {op.value}")
        if key in attrs:
            raise line.error(f"attribute {key!r} given twice")
        line.punct("=")
        attrs[key] = _parse_value(line, op, key)
    if node_id in kb.node_lines:
        raise line.error(
            f"duplicate node id {node_id!r} (first defined on line {kb.node_lines[node_id]})"
        )
    kb.node_lines[node_id] = line.lineno
    kb.nodes.append(Node.make(node_id, op, tile=tile, **attrs))


def _parse_edge(line: _Line, kb: _KernelBuilder) -> None:
    src = line.name("a source node")
    line.punct(".")
    src_port = line.name("a source port")
    line.punct("->")
    dst = line.name("a destination node")
    line.punct(".")
    dst_port = line.name("a destination port")
    line.punct(":")
    kind = line.name("a stream kind")
    if kind not in STREAM_KINDS:
        raise line.error(f"unknown stream kind {kind!r} (expected {', '.join(STREAM_KINDS)})")
    route: list[tuple[int, int]] = []
    buffer = 0
    tok = line.peek()
    if tok is not None and tok.kind == "name" and tok.text == "via":
        line.pos += 1
        route.append(line.tile())
        while line.peek() is not None and line.peek().text != "buffer":
            route.append(line.tile())
        tok = line.peek()
    if tok is not None:
        if tok.kind != "name" or tok.text != "buffer":
            raise line.error(f"expected 'via', 'buffer=' or end of line, got {tok.text!r}")
        line.pos += 1
        line.punct("=")
        text = line.peek().text if line.peek() is not None else ""
        if not text.isdigit():
            raise line.error(f"buffer= needs a non-negative integer, got {text!r}")
        line.pos += 1
        buffer = int(text)
        if line.peek() is not None:
            raise line.error(f"unexpected {line.peek().text!r} after buffer=")
    kb.edges.append((line, Edge(src, src_port, dst, dst_port, kind, tuple(route), buffer)))


def _is_edge(line: _Line) -> bool:
    return any(t.kind == "arrow" for t in line.toks)


def _source_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text without comment) for every non-blank line."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        body = _strip_comment(raw)
        if body.strip():
            out.append((lineno, body))
    return out


def _parse_kernel_body(lines: list[tuple[int, str]], start: int) -> tuple[Kernel, int]:
    """Parse from the ``.kernel`` line at ``lines[start]``; returns the kernel and next index."""
    lineno, text = lines[start]
    _, rest = _directive(text)
    head = _Line(lineno, rest)
    kb = _KernelBuilder(head.name("a kernel name"), lineno)
    head.end()
    i = start + 1
    while i < len(lines):
        lineno, text = lines[i]
        word, rest = _directive(text)
        i += 1
        if word == ".end":
            _Line(lineno, rest).end()
            return kb.build(), i
        if word == ".expr":
            if kb.expr_seen:
                raise IsaError(f"line {lineno}: second .expr in kernel {kb.name}")
            kb.expr_seen = True
            kb.expr = _parse_expr(lineno, rest)
        elif word == ".tensor":
            kb.tensors.append(_parse_tensor(line := _Line(lineno, rest)))
            line.end()
        elif word:
            raise IsaError(f"line {lineno}: unexpected {word} inside kernel {kb.name}")
        else:
            line = _Line(lineno, text)
            if _is_edge(line):
                _parse_edge(line, kb)
            else:
                _parse_node(line, kb)
    raise IsaError(f"line {kb.lineno}: kernel {kb.name} has no .end")


def _parse_array(line: _Line) -> dict[str, Any]:
    """The fields of an ``.array`` line: rows, cols, dataflow and the optional nm."""
    out: dict[str, Any] = {}
    while line.peek() is not None:
        key = line.name("rows=, cols=, dataflow= or nm=")
        if key not in ("rows", "cols", "dataflow", "nm"):
            raise line.error(f"unknown array field {key!r} (expected rows, cols, dataflow, nm)")
        if key in out:
            raise line.error(f"array field {key!r} given twice")
        line.punct("=")
        if key == "dataflow":
            out[key] = line.name("a dataflow")
        elif key == "nm":
            n = line.integer("N of N:M")
            line.punct(":")
            out[key] = (n, line.integer("M of N:M"))
        else:
            out[key] = line.integer(key)
    missing = [k for k in ("rows", "cols", "dataflow") if k not in out]
    if missing:
        raise line.error(f".array: missing {', '.join(missing)}")
    return out


def _parse_systolic_body(lines: list[tuple[int, str]], start: int
                         ) -> tuple[SystolicKernel, int]:
    """Parse from the ``.systolic`` line at ``lines[start]``; returns the kernel and the next
    index."""
    lineno, text = lines[start]
    head = _Line(lineno, _directive(text)[1])
    name = head.name("a kernel name")
    head.end()
    array: dict[str, Any] | None = None
    tensors: list[TensorDecl] = []
    i = start + 1
    while i < len(lines):
        lineno, text = lines[i]
        word, rest = _directive(text)
        i += 1
        if word == ".end":
            _Line(lineno, rest).end()
            if array is None:
                raise IsaError(f"line {lineno}: systolic kernel {name} has no .array")
            return SystolicKernel(name, array["rows"], array["cols"], array["dataflow"],
                                  array.get("nm"), tuple(tensors)), i
        if word == ".array":
            if array is not None or tensors:
                raise IsaError(f"line {lineno}: .array must come once, before the tensors, "
                               f"in systolic kernel {name}")
            array = _parse_array(line := _Line(lineno, rest))
        elif word == ".tensor":
            tensors.append(_parse_tensor(line := _Line(lineno, rest)))
            line.end()
        else:
            raise IsaError(f"line {lineno}: unexpected {text.strip()!r} inside systolic "
                           f"kernel {name} (expected .array, .tensor or .end)")
    raise IsaError(f"line {lines[start][0]}: systolic kernel {name} has no .end")


def _opening(text: str, directive: str) -> tuple[list[tuple[int, str]], int, str]:
    """The source lines of ``text``, which must open with ``directive``: (lines, its line
    number, the rest of that line)."""
    lines = _source_lines(text)
    if not lines:
        raise IsaError(f"line 1: expected {directive}, got an empty text")
    lineno, first = lines[0]
    word, rest = _directive(first)
    if word != directive:
        raise IsaError(f"line {lineno}: expected {directive}, got {first.strip()!r}")
    return lines, lineno, rest


def parse_kernel(text: str) -> Kernel | SystolicKernel:
    """Parse the text of exactly one kernel (``.kernel`` or ``.systolic`` ... ``.end``)."""
    src = _source_lines(text)
    systolic = bool(src) and _directive(src[0][1])[0] == ".systolic"
    lines, _, _ = _opening(text, ".systolic" if systolic else ".kernel")
    kernel, i = (_parse_systolic_body(lines, 0) if systolic
                 else _parse_kernel_body(lines, 0))
    if i < len(lines):
        raise IsaError(f"line {lines[i][0]}: text after the kernel's .end")
    return kernel


def _parse_schedule(lines: list[tuple[int, str]], start: int) -> tuple[list[Command], int]:
    commands: list[Command] = []
    i = start + 1
    while i < len(lines):
        lineno, text = lines[i]
        word, rest = _directive(text)
        i += 1
        if word == ".end":
            _Line(lineno, rest).end()
            return commands, i
        if word:
            raise IsaError(f"line {lineno}: unexpected {word} inside .schedule")
        line = _Line(lineno, text)
        op = line.name("a command")
        if op not in COMMANDS:
            raise line.error(f"unknown command {op!r} (expected one of {', '.join(COMMANDS)})")
        arg = line.name(f"the argument of {op}")
        fields = {"size_bytes": 0, "tile": -1}
        seen: set[str] = set()
        while line.peek() is not None:
            key = line.name("size_bytes= or tile=")
            if key not in fields or key in seen:
                raise line.error(f"unknown or repeated command field {key!r} (expected "
                                 "size_bytes, then tile)")
            seen.add(key)
            line.punct("=")
            fields[key] = line.integer(key)
        line.end()
        commands.append(Command(op, arg, fields["size_bytes"], fields["tile"]))
    raise IsaError(f"line {lines[start][0]}: .schedule has no .end")


def parse_program(text: str) -> Program:
    """Parse a program: ``.program NAME``, kernels and an optional ``.schedule`` block."""
    lines, lineno, rest = _opening(text, ".program")
    head = _Line(lineno, rest)
    name = head.name("a program name")
    head.end()
    kernels: list[Kernel | SystolicKernel] = []
    kernel_lines: dict[str, int] = {}
    schedule: list[Command] | None = None
    i = 1
    while i < len(lines):
        lineno, text = lines[i]
        word, _ = _directive(text)
        if word in (".kernel", ".systolic"):
            kernel, i = (_parse_kernel_body(lines, i) if word == ".kernel"
                         else _parse_systolic_body(lines, i))
            if kernel.name in kernel_lines:
                raise IsaError(
                    f"line {lineno}: duplicate kernel {kernel.name!r} "
                    f"(first on line {kernel_lines[kernel.name]})"
                )
            kernel_lines[kernel.name] = lineno
            kernels.append(kernel)
        elif word == ".schedule":
            if schedule is not None:
                raise IsaError(f"line {lineno}: second .schedule in program {name}")
            schedule, i = _parse_schedule(lines, i)
        else:
            raise IsaError(f"line {lineno}: expected .kernel, .systolic or .schedule, got "
                           f"{text.strip()!r}")
    return Program(name, tuple(kernels), {}, tuple(schedule or ()))
