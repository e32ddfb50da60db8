"""The instruction set: one opcode enum, port signatures and attribute schemas.

Every instruction is a SAM primitive configured into one tile. The enum values are the
assembly mnemonics. ``SIGNATURES`` gives each opcode's typed input and output ports and
``ATTRS`` its attributes (name -> type, with defaults), which the verifier, the assembler
and the bitstream encoder all read from here.

Stream kinds: ``crd`` coordinates, ``ref`` references, ``val`` values, ``repsig`` repeat
signals, ``bv`` bitvector words (a bitmap fiber's 16-bit mask words, SAM's bv streams).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Opcode(enum.Enum):
    """Sparse dataflow instructions (SAM Defs 3.1-3.9 plus SAM's helper blocks)."""

    SCAN = "scan"            # level scanner (fiberlookup), compressed or dense level
    REPSIG = "repsig"        # repeat-signal generator
    REPEAT = "repeat"        # repeater
    INTERSECT = "intersect"  # two-way coordinate intersection
    UNION = "union"          # two-way coordinate union
    ARRAY = "array"          # value load (arrayvals)
    ALU = "alu"              # binary or unary value operation
    REDUCE = "reduce"        # scalar reducer (order 0)
    VREDUCE = "vreduce"      # vector reducer / sparse accumulator (order 1)
    CRDDROP = "crddrop"      # coordinate dropper
    CRDHOLD = "crdhold"      # coordinate hold
    WRITE_CRD = "write_crd"  # level writer for a coordinate level
    WRITE_VAL = "write_val"  # level writer for the value array
    LOCATE = "locate"        # locator: random access into a dense level by coordinate
    # bitmap levels (SAM's bitvector primitives, sam/sim/src/rd_scanner.py BVRdScan,
    # joiner.py IntersectBV2, wr_scanner.py; SAM23 section 4)
    SCAN_BV = "scan_bv"              # bitmap level scanner emitting mask words (bv stream)
    BV_INTERSECT = "bv_intersect"    # word-wide intersection: AND of masks, set bits expanded
    BV_UNION = "bv_union"            # word-wide union: OR of masks, set bits expanded
    LOCATE_BV = "locate_bv"          # locator into a bitmap level (filters clear bits)
    WRITE_BV = "write_bv"            # bitmap level writer: masks and per-fiber counts
    # unrolling (IEEE Micro 2025): deal the outer loop to N copies of a graph, merge outputs
    FILTER = "filter"        # stream filter: passes the outer positions dealt to one copy
    ARBITER = "arbiter"      # stream arbiter: merges two inputs' outer items round-robin
    # (the output address generator is the writers' ``copy``/``copies`` attributes)


WRITERS = (Opcode.WRITE_CRD, Opcode.WRITE_VAL, Opcode.WRITE_BV)
"""The level writers: units that fill the output's memory levels (an effect besides their
streams)."""


class TileKind(enum.Enum):
    """Which kind of tile an opcode is configured into."""

    PE = "pe"
    MEM = "mem"


@dataclass(frozen=True)
class Signature:
    """Typed ports of an opcode: port name -> stream kind."""

    inputs: dict[str, str]
    outputs: dict[str, str]
    tile: TileKind


_SIG = Signature
SIGNATURES: dict[Opcode, Signature] = {
    Opcode.SCAN: _SIG({"ref": "ref"}, {"crd": "crd", "ref": "ref"}, TileKind.MEM),
    Opcode.REPSIG: _SIG({"crd": "crd"}, {"repsig": "repsig"}, TileKind.PE),
    Opcode.REPEAT: _SIG({"ref": "ref", "repsig": "repsig"}, {"ref": "ref"}, TileKind.PE),
    Opcode.INTERSECT: _SIG(
        {"crd_a": "crd", "ref_a": "ref", "crd_b": "crd", "ref_b": "ref"},
        {"crd": "crd", "ref_a": "ref", "ref_b": "ref"},
        TileKind.PE,
    ),
    Opcode.UNION: _SIG(
        {"crd_a": "crd", "ref_a": "ref", "crd_b": "crd", "ref_b": "ref"},
        {"crd": "crd", "ref_a": "ref", "ref_b": "ref"},
        TileKind.PE,
    ),
    Opcode.ARRAY: _SIG({"ref": "ref"}, {"val": "val"}, TileKind.MEM),
    Opcode.ALU: _SIG({"a": "val", "b": "val"}, {"val": "val"}, TileKind.PE),
    Opcode.REDUCE: _SIG({"val": "val"}, {"val": "val"}, TileKind.PE),
    Opcode.VREDUCE: _SIG({"crd": "crd", "val": "val"}, {"crd": "crd", "val": "val"}, TileKind.PE),
    Opcode.CRDDROP: _SIG(
        {"outer": "crd", "inner": "crd"}, {"outer": "crd", "inner": "crd"}, TileKind.PE
    ),
    Opcode.CRDHOLD: _SIG(
        {"outer": "crd", "inner": "crd"}, {"outer": "crd", "inner": "crd"}, TileKind.PE
    ),
    Opcode.WRITE_CRD: _SIG({"crd": "crd"}, {}, TileKind.MEM),
    Opcode.WRITE_VAL: _SIG({"val": "val"}, {}, TileKind.MEM),
    # Onyx configures its Locator in a PE tile (garnet cgra/util_onyx.py); a dense level's
    # position is address arithmetic, no SRAM access
    Opcode.LOCATE: _SIG({"crd": "crd", "ref": "ref"}, {"ref": "ref"}, TileKind.PE),
    # bitmap levels: the scanner, the locator and the writer hold the level in their MEM tile
    Opcode.SCAN_BV: _SIG({"ref": "ref"}, {"bv": "bv", "ref": "ref"}, TileKind.MEM),
    Opcode.BV_INTERSECT: _SIG(
        {"bv_a": "bv", "ref_a": "ref", "bv_b": "bv", "ref_b": "ref"},
        {"crd": "crd", "ref_a": "ref", "ref_b": "ref"},
        TileKind.PE,
    ),
    Opcode.BV_UNION: _SIG(
        {"bv_a": "bv", "ref_a": "ref", "bv_b": "bv", "ref_b": "ref"},
        {"crd": "crd", "ref_a": "ref", "ref_b": "ref"},
        TileKind.PE,
    ),
    Opcode.LOCATE_BV: _SIG({"crd": "crd", "ref": "ref", "carry": "ref"},
                           {"crd": "crd", "ref": "ref", "carry": "ref"}, TileKind.MEM),
    Opcode.WRITE_BV: _SIG({"crd": "crd"}, {}, TileKind.MEM),
    # Onyx's PE tile has a StreamArbiter controller (garnet cgra/util_onyx.py); the stream
    # filter is a PE-tile mode here too. Their stream kind is an attribute (``kind``).
    Opcode.FILTER: _SIG({"in": "crd"}, {"out": "crd"}, TileKind.PE),
    Opcode.ARBITER: _SIG({"a": "crd", "b": "crd"}, {"out": "crd"}, TileKind.PE),
}

ALU_BINARY = ("add", "sub", "mul", "max")
ALU_UNARY = ("relu", "silu", "gelu")
ZERO_POLICIES = ("skip", "gate", "none")


class _Optional:
    """The default of an optional attribute: absent from a node unless given."""

    def __repr__(self) -> str:
        return "OPTIONAL"


OPTIONAL: object = _Optional()

# The output address generator (IEEE Micro 2025): the writers of copy ``copy`` of an
# unrolled graph's ``copies`` write that copy's output fibers (the outer positions dealt to
# it); the output is assembled from all copies' writers of the tensor, by outer coordinate
# (isa.copies). Absent on the writers of a graph that is not unrolled.
_COPY_ATTRS: dict[str, tuple[type, object]] = {"copy": (int, OPTIONAL),
                                               "copies": (int, OPTIONAL)}

# Attribute schema: name -> (type, default). A default of None means required, OPTIONAL
# means absent unless given.
ATTRS: dict[Opcode, dict[str, tuple[type, object]]] = {
    Opcode.SCAN: {
        "tensor": (str, None),
        "level": (int, None),
        "fmt": (str, None),          # "compressed" | "dense" | "bitmap"
        "dim": (int, 0),             # size of a dense or bitmap level
        "root": (bool, False),       # fed "0 D" by the tile itself
        "skip_zeros": (bool, False), # zero policy "skip": drop coordinates whose value is 0
    },
    Opcode.REPSIG: {},
    Opcode.REPEAT: {"root": (bool, False)},
    Opcode.INTERSECT: {},
    Opcode.UNION: {},
    Opcode.ARRAY: {"tensor": (str, None)},
    Opcode.ALU: {
        "op": (str, None),
        "zero_a": (str, "skip"),     # zero policy of operand a
        "zero_b": (str, "skip"),     # zero policy of operand b
    },
    Opcode.REDUCE: {"drop_empty": (bool, False)},
    Opcode.VREDUCE: {},
    Opcode.CRDDROP: {
        "prune": (bool, False),      # inner output also omits the fibers of outer fibers left
                                     # with no kept coordinate (their stops merge; see interp)
    },
    Opcode.CRDHOLD: {},
    Opcode.WRITE_CRD: {"tensor": (str, None), "level": (int, None), **_COPY_ATTRS},
    Opcode.WRITE_VAL: {"tensor": (str, None), **_COPY_ATTRS},
    Opcode.LOCATE: {
        "tensor": (str, None),       # the located tensor
        "level": (int, None),        # its located level (dense)
        "dim": (int, None),          # size of that level
        "root": (bool, False),       # the outer reference is "0 D", fed by the tile itself
    },
    Opcode.SCAN_BV: {
        "tensor": (str, None),
        "level": (int, None),        # a bitmap level
        "dim": (int, None),          # its size (mask bits per fiber)
        "root": (bool, False),
    },
    Opcode.BV_INTERSECT: {"dim": (int, None)},   # size of the joined level (bits per fiber)
    Opcode.BV_UNION: {"dim": (int, None)},
    Opcode.LOCATE_BV: {
        "tensor": (str, None),       # the located tensor
        "level": (int, None),        # its located level (bitmap)
        "dim": (int, None),          # size of that level
        "root": (bool, False),       # the outer reference is "0 D", fed by the tile itself
    },
    Opcode.WRITE_BV: {"tensor": (str, None), "level": (int, None), "dim": (int, None),
                      **_COPY_ATTRS},
    Opcode.FILTER: {
        "kind": (str, "crd"),        # stream kind filtered (crd, ref, val or repsig)
        "copy": (int, None),         # this copy's index, 0 <= copy < copies
        "copies": (int, None),       # copies the outer positions are dealt over
    },
    Opcode.ARBITER: {
        "kind": (str, "crd"),        # stream kind merged
        "depth": (int, 0),           # levels of the stream below the outermost fiber
        "take_a": (int, 1),          # items taken from input a per round
        "take_b": (int, 1),          # then items taken from input b per round
    },
}


def signature(op: Opcode, attrs: dict[str, object] | None = None) -> Signature:
    """Ports of an instruction; a unary ALU has no ``b`` input and a root unit no ref input."""
    sig = SIGNATURES[op]
    attrs = attrs or {}
    inputs = dict(sig.inputs)
    if op is Opcode.ALU and attrs.get("op") in ALU_UNARY:
        inputs.pop("b")
    if op in (Opcode.SCAN, Opcode.REPEAT, Opcode.LOCATE, Opcode.SCAN_BV,
              Opcode.LOCATE_BV) and attrs.get("root"):
        inputs.pop("ref")
    outputs = dict(sig.outputs)
    if op in (Opcode.FILTER, Opcode.ARBITER):
        kind = str(attrs.get("kind", "crd"))
        inputs = dict.fromkeys(inputs, kind)
        outputs = dict.fromkeys(outputs, kind)
    return Signature(inputs, outputs, sig.tile)
