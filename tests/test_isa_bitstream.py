"""Bitstream: exact decode(encode(k)) round trip, config_bits accounting, corrupt streams."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from isa.bitstream import MAGIC, VERSION, WORD_BITS, config_bits, decode, encode
from isa.errors import IsaError
from isa.ops import Opcode
from isa.program import Edge, Kernel, Node, TensorDecl
from tests.test_isa_verify import ewise_mul


def _odd_kernel() -> Kernel:
    """Unicode names, an empty expression, negative ints, a scalar tensor, unsorted attrs."""
    nodes = (
        Node.make("scän", Opcode.SCAN, tile=(0, 3), tensor="B", level=0, fmt="dense", dim=-7),
        Node("red", Opcode.REDUCE, (), (0, 2)),
        Node("alu", Opcode.ALU, (("zero_b", "gate"), ("op", "relu")), (1, 2)),
        Node.make("w", Opcode.WRITE_VAL, tile=(1, 3), tensor="s"),
    )
    edges = (
        Edge("scän", "ref", "red", "val", "val", ((0, 3), (0, 2))),
        Edge("red", "val", "alu", "a", "val", ((0, 2), (1, 2))),
        Edge("alu", "val", "w", "val", "val", ((1, 2), (1, 3))),
        Edge("alu", "val", "w", "val", "repsig", ((1, 2), (1, 3))),
    )
    tensors = (
        TensorDecl("B", (65535, 3), ("dense", "compressed"), (1, 0)),
        TensorDecl("s", (), (), (), is_output=True),
    )
    return Kernel("ödd", nodes, edges, tensors, "")


@pytest.mark.parametrize("kernel", [ewise_mul(), _odd_kernel()], ids=["ewise_mul", "odd"])
def test_round_trip(kernel: Kernel) -> None:
    words = encode(kernel)
    assert words.dtype == np.uint32 and words.ndim == 1
    assert decode(words) == kernel
    assert np.array_equal(encode(decode(words)), words)


def test_header() -> None:
    words = encode(ewise_mul())
    assert words[0] == MAGIC and words[1] == VERSION and words[2] == len(words)


def test_decode_accepts_other_integer_arrays() -> None:
    words = encode(ewise_mul())
    assert decode(words.astype(np.int64)) == ewise_mul()
    assert decode(list(words)) == ewise_mul()


def test_config_bits_counts_tile_and_switch_words() -> None:
    # Tile words: one OP word per node + TAG and VALUE per attribute. Attributes: 2 scans x 6,
    # 2 arrays x 1, alu 3, write_crd 2, write_val 1, intersect 0 = 20 -> 8 + 2 * 20 = 48.
    # Switch words: the hops 1+1+2+2+5+3+4+1+2+6 = 27. Total 75 words of 32 bits.
    assert config_bits(ewise_mul()) == 75 * WORD_BITS
    assert config_bits(ewise_mul()) < WORD_BITS * len(encode(ewise_mul()))


def test_config_bits_grows_with_hops() -> None:
    k = ewise_mul()
    detour = ((2, 3), (1, 3), (1, 2), (2, 2))   # 3 hops instead of 1
    longer = k.with_edges(tuple(
        replace(e, route=detour) if e.name == "arr_b.val->mul.a" else e for e in k.edges
    ))
    assert config_bits(longer) == config_bits(k) + 2 * WORD_BITS
    assert config_bits(ewise_mul(placed=False)) < config_bits(k)
    assert config_bits(ewise_mul(placed=False)) > 0


def test_bad_magic() -> None:
    words = encode(ewise_mul())
    words[0] ^= 1
    with pytest.raises(IsaError, match="bad magic"):
        decode(words)


def test_bad_version() -> None:
    words = encode(ewise_mul())
    words[1] = VERSION + 1
    with pytest.raises(IsaError, match="unsupported version"):
        decode(words)


@pytest.mark.parametrize("kernel", [ewise_mul(), _odd_kernel()], ids=["ewise_mul", "odd"])
def test_every_truncation_is_detected(kernel: Kernel) -> None:
    words = encode(kernel)
    for n in range(len(words)):
        with pytest.raises(IsaError, match="truncated"):
            decode(words[:n])


def test_truncation_despite_a_patched_length() -> None:
    words = encode(ewise_mul())[:-3].copy()
    words[2] = len(words)
    with pytest.raises(IsaError, match="truncated"):
        decode(words)


def test_trailing_words() -> None:
    words = np.append(encode(ewise_mul()), np.uint32(0))
    with pytest.raises(IsaError, match="header says"):
        decode(words)
    words[2] = len(words)
    with pytest.raises(IsaError, match="1 trailing words"):
        decode(words)


def test_out_of_range_opcode() -> None:
    k = ewise_mul()
    words = encode(k)
    # The first node record is [S(scan_b), TILE (0,3), OP scan with 6 attributes, TAG dim, ...]
    # (opcode index 0; dim is schema index 3 with type tag int 0).
    record = [0 << 16 | 3, list(Opcode).index(Opcode.SCAN) << 8 | 6, 3 << 8 | 0]
    starts = [i for i in range(len(words) - 2) if list(words[i:i + 3]) == record]
    assert len(starts) == 1
    op_at = starts[0] + 1
    words[op_at] = 200 << 8 | (words[op_at] & 0xFF)
    with pytest.raises(IsaError, match="opcode index 200 out of range"):
        decode(words)


def test_not_an_array_of_words() -> None:
    with pytest.raises(IsaError, match="uint32 words"):
        decode(np.array([-1, 2]))
    with pytest.raises(IsaError, match="uint32 words"):
        decode(np.zeros((2, 2), dtype=np.uint32))


def test_encode_needs_placement_and_routes() -> None:
    with pytest.raises(IsaError, match="node scan_b is not placed"):
        encode(ewise_mul(placed=False))
    k = ewise_mul()
    unrouted = k.with_edges((replace(k.edges[0], route=()),) + k.edges[1:])
    with pytest.raises(IsaError, match=r"edge scan_b\.crd->isect_i\.crd_a is not routed"):
        encode(unrouted)


def test_encode_rejects_what_it_cannot_represent() -> None:
    k = ewise_mul()
    bad_port = k.with_edges((replace(k.edges[0], src_port="coord"),) + k.edges[1:])
    with pytest.raises(IsaError, match="no output port 'coord'"):
        encode(bad_port)
    bad_attr = k.with_nodes((Node.make("scan_b", Opcode.SCAN, tile=(0, 3), color=1),)
                            + k.nodes[1:])
    with pytest.raises(IsaError, match="unknown attribute 'color'"):
        encode(bad_attr)
    huge = k.with_nodes((Node.make("scan_b", Opcode.SCAN, tile=(0, 3), dim=2**40),)
                        + k.nodes[1:])
    with pytest.raises(IsaError, match="does not fit in 32 bits"):
        encode(huge)


def test_systolic_kernel_bitstream_round_trips():
    from isa.program import SystolicKernel, TensorDecl

    dense = ("dense", "dense")
    k = SystolicKernel("gemm_os_16x21_2of4", 16, 21, "os", (2, 4),
                       (TensorDecl("A", (64, 40), dense, (0, 1)),
                        TensorDecl("B", (40, 48), dense, (0, 1)),
                        TensorDecl("X", (64, 48), dense, (0, 1), True)))
    words = encode(k)
    assert decode(words) == k
    assert decode(encode(SystolicKernel("t", 4, 4, "is"))) == SystolicKernel("t", 4, 4, "is")
    assert config_bits(k) == 4 * 32               # block size, dataflow, N:M
    with pytest.raises(IsaError, match="truncated"):
        decode(words[:-1])
