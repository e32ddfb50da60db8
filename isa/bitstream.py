"""The bitstream: configuration words of a placed and routed kernel.

``encode(kernel)`` gives 32-bit words, ``decode(words)`` gives the kernel back exactly (node
ids and order, attributes, tiles, tensor declarations, edges with routes, name, expression).
It is a simulator bitstream, so it also carries names in a string table.

Layout (every field one uint32 word unless noted; ``S`` = index into the string table)::

    header    MAGIC, VERSION, total words, #strings, #tensors, #nodes, #edges,
              S(kernel name), S(expr)
    strings   per string: byte length, then the UTF-8 bytes packed 4 per word
              (little endian, zero padded)
    tensors   per tensor: S(name), is_output, ndim, shape[ndim] (signed),
              #levels, S(format)[#levels], #order, mode_order[#order] (signed)
    tiles     per node: S(node id)                                     -- metadata
              TILE  = row << 16 | col                                  -- tile address
              OP    = opcode index << 8 | #attributes                  -- configuration
              per attribute: TAG = schema index << 8 | type tag        -- configuration
                             VALUE (int: signed; bool: 0/1; str: S)    -- configuration
    edges     per edge: src node index, dst node index,
              PORTS = src port << 24 | dst port << 16 | kind << 8 | buffer  -- buffer:
                      extra FIFO entries (0..255) configured on the stream
              route length, then per route tile: row << 16 | col       -- switch settings

Port indices count in the opcode's full ``SIGNATURES`` port order (outputs for the source,
inputs for the destination); kinds index ``STREAM_KINDS``; opcodes index ``Opcode`` in
declaration order; attribute indices count in ``ATTRS[op]`` order.

A dense-mode kernel (``SystolicKernel``) has its own, shorter form, told apart by its magic::

    header    SYSTOLIC_MAGIC, VERSION, total words, #strings, #tensors, S(kernel name)
    strings   as above
    tensors   as above
    array     ROWS, COLS, DATAFLOW (index into SYSTOLIC_DATAFLOWS),
              NM = n << 16 | m (0: dense weights)                      -- configuration

``config_bits`` counts what the configuration network would load into the array: per tile
the OP word and the TAG and VALUE words of each attribute, and per edge one switch word per
hop (a route of n tiles sets n - 1 switch boxes), plus one FIFO-configuration word for an edge
with balancing buffer entries. The header, string table, tensor table,
node-id words, tile addresses (the network's addressing, not payload), edge endpoint and port
words are simulator metadata and do not count. For a systolic kernel it counts the four
array words (block size, dataflow, N:M pattern): the MAC PEs of a dense block run one fixed
mode, so no per-PE configuration is modelled (ASSUMPTION: Onyx's dense-mode configuration
cost is not published).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from isa.arch import SYSTOLIC_DATAFLOWS
from isa.asm import STREAM_KINDS
from isa.errors import IsaError
from isa.ops import ATTRS, SIGNATURES, Opcode
from isa.program import Edge, Kernel, Node, SystolicKernel, TensorDecl

MAGIC = 0x53564542        # "SVEB": Sieve bitstream
SYSTOLIC_MAGIC = 0x53564553   # "SVES": Sieve bitstream of a systolic (dense-mode) kernel
SYSTOLIC_ARRAY_WORDS = 4
VERSION = 1
WORD_BITS = 32
HEADER_WORDS = 9
OPCODES = tuple(Opcode)

_TAG_INT, _TAG_BOOL, _TAG_STR = 0, 1, 2
_MAX_COORD = 0xFFFF


def _signed(value: int, what: str) -> int:
    """A signed 32-bit integer as an unsigned word."""
    if not -(2**31) <= value < 2**31:
        raise IsaError(f"bitstream: {what} {value} does not fit in 32 bits")
    return value & 0xFFFFFFFF


def _unsigned_to_signed(word: int) -> int:
    return word - 2**32 if word >= 2**31 else word


def _coord(tile: tuple[int, int], what: str) -> int:
    row, col = tile
    if not (0 <= row <= _MAX_COORD and 0 <= col <= _MAX_COORD):
        raise IsaError(f"bitstream: {what} tile {tile} outside 0..{_MAX_COORD}")
    return row << 16 | col


class _Strings:
    """The string table, interning in first-use order."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self.index:
            self.index[text] = len(self.index)
        return self.index[text]

    def words(self) -> list[int]:
        out: list[int] = []
        for text in self.index:
            raw = text.encode("utf-8")
            out.append(len(raw))
            padded = raw + b"\0" * (-len(raw) % 4)
            out += np.frombuffer(padded, dtype="<u4").tolist()
        return out


def _tensor_words(t: TensorDecl, s: _Strings) -> list[int]:
    out = [s(t.name), int(t.is_output), len(t.shape)]
    out += [_signed(int(d), f"tensor {t.name} shape") for d in t.shape]
    out += [len(t.formats)] + [s(f) for f in t.formats]
    out += [len(t.mode_order)]
    out += [_signed(int(m), f"tensor {t.name} mode order") for m in t.mode_order]
    return out


def _attr_words(node: Node, s: _Strings) -> list[int]:
    schema = list(ATTRS[node.op])
    out: list[int] = []
    for key, value in node.attrs:
        if key not in schema:
            raise IsaError(f"bitstream: node {node.id}: unknown attribute {key!r}")
        index = schema.index(key)
        if isinstance(value, bool):
            out += [index << 8 | _TAG_BOOL, int(value)]
        elif isinstance(value, numbers.Integral):
            out += [index << 8 | _TAG_INT, _signed(int(value), f"node {node.id} {key}")]
        elif isinstance(value, str):
            out += [index << 8 | _TAG_STR, s(value)]
        else:
            raise IsaError(
                f"bitstream: node {node.id}: attribute {key} has type {type(value).__name__}"
            )
    return out


def _tile_words(node: Node, s: _Strings) -> list[int]:
    if node.tile is None:
        raise IsaError(f"bitstream: node {node.id} is not placed")
    if len(node.attrs) > 0xFF:
        raise IsaError(f"bitstream: node {node.id} has more than 255 attributes")
    return [s(node.id), _coord(node.tile, f"node {node.id}"),
            OPCODES.index(node.op) << 8 | len(node.attrs)] + _attr_words(node, s)


def _edge_words(edge: Edge, nodes: dict[str, Node], order: dict[str, int]) -> list[int]:
    for end in (edge.src, edge.dst):
        if end not in nodes:
            raise IsaError(f"bitstream: edge {edge.name}: unknown node {end!r}")
    outputs = list(SIGNATURES[nodes[edge.src].op].outputs)
    inputs = list(SIGNATURES[nodes[edge.dst].op].inputs)
    if edge.src_port not in outputs:
        raise IsaError(f"bitstream: edge {edge.name}: no output port {edge.src_port!r}")
    if edge.dst_port not in inputs:
        raise IsaError(f"bitstream: edge {edge.name}: no input port {edge.dst_port!r}")
    if edge.kind not in STREAM_KINDS:
        raise IsaError(f"bitstream: edge {edge.name}: unknown stream kind {edge.kind!r}")
    if not edge.route:
        raise IsaError(f"bitstream: edge {edge.name} is not routed")
    if not 0 <= edge.buffer <= 0xFF:
        raise IsaError(f"bitstream: edge {edge.name}: buffer {edge.buffer} outside 0..255")
    ports = (outputs.index(edge.src_port) << 24 | inputs.index(edge.dst_port) << 16
             | STREAM_KINDS.index(edge.kind) << 8 | edge.buffer)
    out = [order[edge.src], order[edge.dst], ports, len(edge.route)]
    return out + [_coord(t, f"edge {edge.name} route") for t in edge.route]


def _encode_systolic(kernel: SystolicKernel) -> np.ndarray:
    if kernel.dataflow not in SYSTOLIC_DATAFLOWS:
        raise IsaError(f"bitstream: kernel {kernel.name}: unknown dataflow {kernel.dataflow!r}")
    for what, value in (("rows", kernel.rows), ("cols", kernel.cols)):
        if not 0 <= value <= 0xFFFFFFFF:
            raise IsaError(f"bitstream: kernel {kernel.name}: {what} {value} out of range")
    nm = 0
    if kernel.nm is not None:
        n, m = kernel.nm
        if not (0 < n <= 0xFFFF and 0 < m <= 0xFFFF):
            raise IsaError(f"bitstream: kernel {kernel.name}: N:M {n}:{m} out of range")
        nm = n << 16 | m
    s = _Strings()
    name_s = s(kernel.name)
    body: list[int] = []
    for t in kernel.tensors:
        body += _tensor_words(t, s)
    body += [kernel.rows, kernel.cols, SYSTOLIC_DATAFLOWS.index(kernel.dataflow), nm]
    strings = s.words()
    header = [SYSTOLIC_MAGIC, VERSION, 6 + len(strings) + len(body), len(s.index),
              len(kernel.tensors), name_s]
    return np.array(header + strings + body, dtype=np.uint32)


def encode(kernel: Kernel | SystolicKernel) -> np.ndarray:
    """The bitstream of a placed and routed kernel, or of a systolic kernel (uint32 words).

    Raises IsaError for an unplaced node, an unrouted edge, a duplicate node id, or a port,
    kind, attribute or value the encoding cannot represent.
    """
    if isinstance(kernel, SystolicKernel):
        return _encode_systolic(kernel)
    nodes: dict[str, Node] = {}
    for n in kernel.nodes:
        if n.id in nodes:
            raise IsaError(f"bitstream: kernel {kernel.name}: duplicate node id {n.id!r}")
        nodes[n.id] = n
    order = {n.id: i for i, n in enumerate(kernel.nodes)}
    s = _Strings()
    name_s, expr_s = s(kernel.name), s(kernel.expr)
    body: list[int] = []
    for t in kernel.tensors:
        body += _tensor_words(t, s)
    for n in kernel.nodes:
        body += _tile_words(n, s)
    for e in kernel.edges:
        body += _edge_words(e, nodes, order)
    strings = s.words()
    total = HEADER_WORDS + len(strings) + len(body)
    header = [MAGIC, VERSION, total, len(s.index), len(kernel.tensors), len(kernel.nodes),
              len(kernel.edges), name_s, expr_s]
    return np.array(header + strings + body, dtype=np.uint32)


def config_bits(kernel: Kernel | SystolicKernel) -> int:
    """Bits the configuration network loads into the array for this kernel.

    Per node: the OP word plus a TAG and a VALUE word per attribute; per edge: one switch
    word per hop. Strings, tensor table, addresses and edge metadata do not count (see the
    module docstring). Needs no placement. A systolic kernel: its four array words.
    """
    if isinstance(kernel, SystolicKernel):
        return WORD_BITS * SYSTOLIC_ARRAY_WORDS
    tile_words = sum(1 + 2 * len(n.attrs) for n in kernel.nodes)
    switch_words = sum(e.hops + (1 if e.buffer else 0) for e in kernel.edges)
    return WORD_BITS * (tile_words + switch_words)


class _Reader:
    """A cursor over the words; every read checks for truncation."""

    def __init__(self, words: list[int]):
        self.words = words
        self.pos = 0
        self.strings: list[str] = []

    def word(self, what: str) -> int:
        if self.pos >= len(self.words):
            raise IsaError(f"bitstream truncated at word {self.pos}: expected {what}")
        w = self.words[self.pos]
        self.pos += 1
        return w

    def take(self, n: int, what: str) -> list[int]:
        if self.pos + n > len(self.words):
            raise IsaError(f"bitstream truncated at word {self.pos}: expected {n} words of {what}")
        out = self.words[self.pos:self.pos + n]
        self.pos += n
        return out

    def string(self, what: str) -> str:
        index = self.word(what)
        if index >= len(self.strings):
            raise IsaError(f"bitstream word {self.pos - 1}: {what}: string {index} out of range")
        return self.strings[index]

    def index(self, table: tuple[Any, ...] | list[Any], value: int, what: str) -> Any:
        if value >= len(table):
            raise IsaError(f"bitstream word {self.pos - 1}: {what} index {value} out of range")
        return table[value]


def _read_strings(r: _Reader, count: int) -> None:
    for i in range(count):
        length = r.word(f"length of string {i}")
        packed = r.take((length + 3) // 4, f"string {i}")
        raw = np.array(packed, dtype="<u4").tobytes()[:length]
        try:
            r.strings.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise IsaError(f"bitstream: string {i} is not UTF-8") from None


def _read_tensor(r: _Reader) -> TensorDecl:
    name = r.string("tensor name")
    is_output = r.word(f"tensor {name} output flag")
    if is_output > 1:
        raise IsaError(f"bitstream word {r.pos - 1}: tensor {name}: output flag {is_output}")
    shape = r.take(r.word(f"tensor {name} ndim"), f"tensor {name} shape")
    n_formats = r.word(f"tensor {name} level count")
    formats = [r.string(f"tensor {name} format") for _ in range(n_formats)]
    order = r.take(r.word(f"tensor {name} order length"), f"tensor {name} mode order")
    return TensorDecl(
        name,
        tuple(_unsigned_to_signed(d) for d in shape),
        tuple(formats),
        tuple(_unsigned_to_signed(m) for m in order),
        bool(is_output),
    )


def _read_node(r: _Reader) -> Node:
    node_id = r.string("node id")
    tile = r.word(f"node {node_id} tile")
    op_word = r.word(f"node {node_id} opcode")
    op: Opcode = r.index(OPCODES, op_word >> 8, f"node {node_id} opcode")
    schema = list(ATTRS[op])
    attrs: list[tuple[str, Any]] = []
    for _ in range(op_word & 0xFF):
        tag = r.word(f"node {node_id} attribute tag")
        key: str = r.index(schema, tag >> 8, f"node {node_id} attribute")
        typ = tag & 0xFF
        if typ == _TAG_INT:
            attrs.append((key, _unsigned_to_signed(r.word(f"node {node_id} {key}"))))
        elif typ == _TAG_BOOL:
            value = r.word(f"node {node_id} {key}")
            if value > 1:
                raise IsaError(f"bitstream word {r.pos - 1}: node {node_id} {key}: bool {value}")
            attrs.append((key, bool(value)))
        elif typ == _TAG_STR:
            attrs.append((key, r.string(f"node {node_id} {key}")))
        else:
            raise IsaError(f"bitstream word {r.pos - 1}: node {node_id}: value type tag {typ}")
    return Node(node_id, op, tuple(attrs), (tile >> 16, tile & 0xFFFF))


def _read_edge(r: _Reader, nodes: list[Node]) -> Edge:
    src: Node = r.index(nodes, r.word("edge source"), "edge source node")
    dst: Node = r.index(nodes, r.word("edge destination"), "edge destination node")
    ports = r.word("edge ports")
    src_port: str = r.index(list(SIGNATURES[src.op].outputs), ports >> 24, "source port")
    dst_port: str = r.index(list(SIGNATURES[dst.op].inputs), ports >> 16 & 0xFF, "input port")
    kind: str = r.index(STREAM_KINDS, ports >> 8 & 0xFF, "stream kind")
    route = r.take(r.word("route length"), "route")
    tiles = tuple((w >> 16, w & 0xFFFF) for w in route)
    return Edge(src.id, src_port, dst.id, dst_port, kind, tiles, ports & 0xFF)


def _decode_systolic(r: _Reader) -> SystolicKernel:
    n_strings, n_tensors, name_index = r.take(3, "header counts")
    _read_strings(r, n_strings)
    if name_index >= len(r.strings):
        raise IsaError(f"bitstream: kernel name: string {name_index} out of range")
    tensors = tuple(_read_tensor(r) for _ in range(n_tensors))
    rows, cols, dataflow, nm = r.take(SYSTOLIC_ARRAY_WORDS, "array words")
    flow: str = r.index(SYSTOLIC_DATAFLOWS, dataflow, "dataflow")
    if r.pos != len(r.words):
        raise IsaError(f"bitstream: {len(r.words) - r.pos} trailing words after the array")
    return SystolicKernel(r.strings[name_index], rows, cols, flow,
                          (nm >> 16, nm & 0xFFFF) if nm else None, tensors)


def decode(words: np.ndarray) -> Kernel | SystolicKernel:
    """The kernel a bitstream configures; IsaError on a bad magic, version or truncation."""
    array = np.asarray(words)
    if array.ndim != 1 or not (
        np.issubdtype(array.dtype, np.integer)
        and (array.size == 0 or (array.min() >= 0 and array.max() <= 0xFFFFFFFF))
    ):
        raise IsaError("bitstream: expected a 1-D array of uint32 words")
    r = _Reader([int(w) for w in array.tolist()])
    magic = r.word("the magic number")
    if magic not in (MAGIC, SYSTOLIC_MAGIC):
        raise IsaError(f"bitstream: bad magic {magic:#010x} (expected {MAGIC:#010x} or "
                       f"{SYSTOLIC_MAGIC:#010x})")
    version = r.word("the version")
    if version != VERSION:
        raise IsaError(f"bitstream: unsupported version {version} (expected {VERSION})")
    total = r.word("the length")
    if total != len(r.words):
        raise IsaError(f"bitstream: header says {total} words, got {len(r.words)}"
                       + (" (truncated)" if total > len(r.words) else ""))
    if magic == SYSTOLIC_MAGIC:
        return _decode_systolic(r)
    n_strings, n_tensors, n_nodes, n_edges = r.take(4, "header counts")
    name_index, expr_index = r.take(2, "header names")
    _read_strings(r, n_strings)
    for index, what in ((name_index, "kernel name"), (expr_index, "expression")):
        if index >= len(r.strings):
            raise IsaError(f"bitstream: {what}: string {index} out of range")
    tensors = tuple(_read_tensor(r) for _ in range(n_tensors))
    nodes = [_read_node(r) for _ in range(n_nodes)]
    edges = tuple(_read_edge(r, nodes) for _ in range(n_edges))
    if r.pos != len(r.words):
        raise IsaError(f"bitstream: {len(r.words) - r.pos} trailing words after the last edge")
    return Kernel(r.strings[name_index], tuple(nodes), edges, tensors, r.strings[expr_index])
