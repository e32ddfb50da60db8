"""workloads.data: every file type load_matrix reads (written here into tmp_path), BF16
conversion against known bit patterns, header-only listing, lazy single-tensor loads, and the
MoE tensor-name conventions of Hugging Face checkpoints."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from safetensors import safe_open
from safetensors.numpy import save_file

from workloads.base import WorkloadError
from workloads.data import (
    MOE_NAMING,
    find_moe_tensors,
    list_tensors,
    load_matrix,
    load_tensor,
)


def _write_safetensors(path, tensors):
    """A .safetensors file by hand: {name: (dtype code, shape, raw bytes)}."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


# ---- load_matrix -----------------------------------------------------------------------------

def test_npy_and_npz(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "one.npz", w=a)
    np.savez(tmp_path / "two.npz", w=a, b=np.ones(3))
    assert np.array_equal(load_matrix(tmp_path / "a.npy"), a)
    assert np.array_equal(load_matrix(str(tmp_path / "one.npz")), a)
    assert np.array_equal(load_matrix(tmp_path / "two.npz", "w"), a)
    with pytest.raises(WorkloadError, match=r"two.npz: holds 2 arrays, pass a key "
                                            r"\(available: w, b\)"):
        load_matrix(tmp_path / "two.npz")
    with pytest.raises(WorkloadError, match=r"two.npz: no key 'ww' \(did you mean w\?\) "
                                            r"\(available: w, b\)"):
        load_matrix(tmp_path / "two.npz", "ww")


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_scipy_sparse_npz(tmp_path, fmt):
    m = sp.random(30, 20, density=0.2, format=fmt, random_state=np.random.default_rng(0))
    sp.save_npz(tmp_path / "m.npz", m)
    got = load_matrix(tmp_path / "m.npz")
    assert isinstance(got, sp.csr_matrix)
    assert np.array_equal(got.toarray(), m.toarray())
    with pytest.raises(WorkloadError, match="m.npz: key 'data' given, but this is a scipy "
                                            "sparse"):
        load_matrix(tmp_path / "m.npz", "data")


def test_matrix_market(tmp_path):
    m = sp.random(15, 12, density=0.3, format="coo", random_state=np.random.default_rng(1))
    scipy.io.mmwrite(tmp_path / "m.mtx", m)
    got = load_matrix(tmp_path / "m.mtx")
    assert isinstance(got, sp.csr_matrix) and np.allclose(got.toarray(), m.toarray())
    sym = sp.coo_matrix(np.array([[2.0, 1.0, 0.0], [1.0, 0.0, 3.0], [0.0, 3.0, 5.0]]))
    scipy.io.mmwrite(tmp_path / "s.mtx", sym, symmetry="symmetric")
    assert np.array_equal(load_matrix(tmp_path / "s.mtx").toarray(), sym.toarray())
    dense = np.arange(6.0).reshape(2, 3)
    scipy.io.mmwrite(tmp_path / "d.mtx", dense)
    assert np.array_equal(load_matrix(tmp_path / "d.mtx"), dense)


def test_safetensors_dtypes(tmp_path):
    rng = np.random.default_rng(2)
    tensors = {"f32": rng.normal(size=(3, 5)).astype(np.float32),
               "f16": rng.normal(size=(4, 2)).astype(np.float16),
               "i8": rng.integers(-128, 128, size=(2, 3)).astype(np.int8),
               "i16": rng.integers(-9, 9, size=(7,)).astype(np.int16),
               "i32": rng.integers(-9, 9, size=(2, 2)).astype(np.int32)}
    save_file(tensors, str(tmp_path / "t.safetensors"))
    for name, value in tensors.items():
        got = load_matrix(tmp_path / "t.safetensors", name)
        assert got.shape == value.shape
        if value.dtype == np.float16:
            assert got.dtype == np.float32 and np.array_equal(got, value.astype(np.float32))
        else:
            assert got.dtype == value.dtype and np.array_equal(got, value)
    save_file({"only": tensors["f32"]}, str(tmp_path / "one.safetensors"))
    assert np.array_equal(load_matrix(tmp_path / "one.safetensors"), tensors["f32"])
    with pytest.raises(WorkloadError, match=r"t.safetensors: no key 'w' \(available: .*i16"):
        load_matrix(tmp_path / "t.safetensors", "w")


def test_bf16_is_the_high_half_of_float32(tmp_path):
    # bfloat16 bit patterns: 1.0 0x3F80, -2.0 0xC000, 0.5 0x3F00, pi truncated 0x4049
    # (3.140625), the largest finite 0x7F7F (3.3895314e38), inf 0x7F80, smallest normal 0x0080
    bits = np.array([0x3F80, 0xC000, 0x3F00, 0x4049, 0x7F7F, 0x7F80, 0x0080, 0x0000],
                    dtype="<u2")
    expect = np.array([1.0, -2.0, 0.5, 3.140625, 3.3895314e38, np.inf, 2.0**-126, 0.0],
                      dtype=np.float32)
    _write_safetensors(tmp_path / "bf.safetensors",
                       {"w": ("BF16", (2, 4), bits.tobytes())})
    with safe_open(str(tmp_path / "bf.safetensors"), framework="numpy") as f:
        assert list(f.keys()) == ["w"]             # the hand-written file is valid
    got = load_matrix(tmp_path / "bf.safetensors")
    assert got.dtype == np.float32 and got.shape == (2, 4)
    assert np.array_equal(got.ravel(), expect)
    # random float32 values survive a round trip through their high 16 bits
    x = np.random.default_rng(3).normal(size=100).astype(np.float32)
    hi = (x.view(np.uint32) >> 16).astype("<u2")
    _write_safetensors(tmp_path / "r.safetensors", {"x": ("BF16", (100,), hi.tobytes())})
    truncated = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
    assert np.array_equal(load_matrix(tmp_path / "r.safetensors"), truncated)
    assert list_tensors(tmp_path / "r.safetensors")["x"][:2] == ((100,), "BF16")


@pytest.mark.parametrize("content,message", [
    (b"\x01\x02", "shorter than 8 bytes"),
    (struct.pack("<Q", 10**6) + b"{}", "header length"),
    (struct.pack("<Q", 4) + b"nope", "bad safetensors header"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
])
def test_corrupt_safetensors(tmp_path, content, message):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(WorkloadError, match=f"bad.safetensors: .*{message}"):
        load_matrix(tmp_path / "bad.safetensors")


def test_safetensors_entry_checks(tmp_path):
    _write_safetensors(tmp_path / "short.safetensors", {"w": ("F32", (4, 4), b"\0" * 32)})
    with pytest.raises(WorkloadError, match=r"tensor 'w': data_offsets 0..32 do not fit "
                                            r"shape \[4, 4\] F32"):
        load_matrix(tmp_path / "short.safetensors")
    (tmp_path / "odd.safetensors").write_bytes(
        struct.pack("<Q", 58) + b'{"w":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}')
    with pytest.raises(WorkloadError, match="odd.safetensors: tensor 'w': bad header entry"):
        load_matrix(tmp_path / "odd.safetensors")
    _write_safetensors(tmp_path / "f8.safetensors", {"w": ("F8_E4M3", (2,), b"\0\0")})
    with pytest.raises(WorkloadError, match="tensor 'w': unsupported dtype F8_E4M3"):
        load_matrix(tmp_path / "f8.safetensors")


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(WorkloadError, match="nothere.npz: file not found"):
        load_matrix(tmp_path / "nothere.npz")
    # a name the OS cannot look up is not a file either (found by the fuzz suite: -p B=<5,000
    # digits> raised OSError ENAMETOOLONG); the message shortens it
    with pytest.raises(WorkloadError, match=r"\.\.\. \(5000 chars\): file not found"):
        load_matrix("1" * 5000)
    with pytest.raises(WorkloadError, match="file not found"):
        load_matrix("a\0b.npz")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(WorkloadError, match=r"x.csv: unsupported file type '.csv' \(use "
                                            r"\.npz, \.npy, \.safetensors, \.mtx\)"):
        load_matrix(tmp_path / "x.csv")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(WorkloadError, match="bad.npz: not a readable .npz"):
        load_matrix(tmp_path / "bad.npz")
    (tmp_path / "bad.mtx").write_text("garbage\n")
    with pytest.raises(WorkloadError, match="bad.mtx: not a readable Matrix Market"):
        load_matrix(tmp_path / "bad.mtx")
    np.save(tmp_path / "a.npy", np.ones(2))
    with pytest.raises(WorkloadError, match="a.npy: key 'w' given"):
        load_matrix(tmp_path / "a.npy", "w")


# ---- checkpoints -----------------------------------------------------------------------------

@pytest.fixture
def checkpoint(tmp_path):
    """A two-shard safetensors checkpoint plus an .npz, as a model folder holds them."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    rng = np.random.default_rng(4)
    a = {"model.embed.weight": rng.normal(size=(10, 4)).astype(np.float32),
         "model.layers.0.w": rng.normal(size=(4, 6)).astype(np.float16)}
    b = {"model.layers.1.w": rng.normal(size=(6, 4)).astype(np.float32)}
    save_file(a, str(folder / "model-00001-of-00002.safetensors"))
    save_file(b, str(folder / "model-00002-of-00002.safetensors"))
    np.savez(folder / "extra.npz", bias=np.arange(3, dtype=np.int64))
    (folder / "config.json").write_text("{}")
    return folder, {**a, **b}


def test_list_tensors_reads_headers_only(checkpoint, monkeypatch):
    folder, tensors = checkpoint

    def no_data(*args, **kwargs):
        raise AssertionError("list_tensors read tensor data")
    monkeypatch.setattr(np, "fromfile", no_data)
    index = list_tensors(folder)
    assert set(index) == set(tensors) | {"bias"}
    assert index["model.layers.0.w"][:2] == ((4, 6), "F16")
    assert index["model.layers.1.w"][2].name == "model-00002-of-00002.safetensors"
    assert index["bias"] == ((3,), "I64", folder / "extra.npz")
    single = list_tensors(folder / "model-00002-of-00002.safetensors")
    assert list(single) == ["model.layers.1.w"]


def test_load_tensor_reads_only_that_tensor(checkpoint, monkeypatch):
    folder, tensors = checkpoint
    counts = []
    real = np.fromfile

    def spy(fh, dtype, count):
        counts.append(count)
        return real(fh, dtype=dtype, count=count)
    monkeypatch.setattr(np, "fromfile", spy)
    got = load_tensor(folder, "model.layers.1.w")
    assert np.array_equal(got, tensors["model.layers.1.w"]) and counts == [24]
    half = load_tensor(folder, "model.layers.0.w")
    assert half.dtype == np.float32
    assert np.array_equal(half, tensors["model.layers.0.w"].astype(np.float32))
    assert np.array_equal(load_tensor(folder, "bias"), [0, 1, 2])
    with pytest.raises(WorkloadError, match=r"ckpt: no tensor 'model.layers.1.v' \(did you "
                                            r"mean model.layers.1.w"):
        load_tensor(folder, "model.layers.1.v")


def test_sparse_npz_in_a_folder_is_one_tensor(tmp_path):
    m = sp.random(8, 5, density=0.5, format="csr", random_state=np.random.default_rng(5))
    sp.save_npz(tmp_path / "adj.npz", m)
    assert list_tensors(tmp_path) == {"adj": ((8, 5), "F64", tmp_path / "adj.npz")}
    assert np.array_equal(load_tensor(tmp_path, "adj").toarray(), m.toarray())


def test_duplicate_names_and_empty_folders(tmp_path):
    save_file({"w": np.ones(2, dtype=np.float32)}, str(tmp_path / "a.safetensors"))
    np.savez(tmp_path / "b.npz", w=np.ones(2))
    with pytest.raises(WorkloadError, match="tensor 'w' is in both a.safetensors and b.npz"):
        list_tensors(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkloadError, match="empty: no .safetensors or .npz files"):
        list_tensors(empty)


# ---- MoE naming ------------------------------------------------------------------------------

def _moe_checkpoint(folder, convention, layers, E, dense_layers=()):
    spec = MOE_NAMING[convention]
    d, f = 4, 6
    out = {}
    for L in layers:
        out[spec["router"].format(L=L)] = np.zeros((E, d), np.float32)
        for e in range(E):
            g, u, dn = (t.format(L=L, e=e) for t in spec["expert"])
            out[g] = out[u] = np.zeros((f, d), np.float32)
            out[dn] = np.zeros((d, f), np.float32)
        for g, u, dn in spec["shared"]:
            out[g.format(L=L)] = out[u.format(L=L)] = np.zeros((2 * f, d), np.float32)
            out[dn.format(L=L)] = np.zeros((d, 2 * f), np.float32)
        for template in spec["extra"].values():
            out[template.format(L=L)] = np.zeros(E, np.float32)
    for L in dense_layers:
        out[f"model.layers.{L}.mlp.gate_proj.weight"] = np.zeros((f, d), np.float32)
    folder.mkdir()
    save_file({k: v.copy() for k, v in out.items()}, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize("convention", list(MOE_NAMING))
def test_find_moe_tensors(tmp_path, convention):
    folder = _moe_checkpoint(tmp_path / convention, convention, layers=[0, 1], E=5)
    found = find_moe_tensors(folder, 1)
    spec = MOE_NAMING[convention]
    assert found["convention"] == convention
    assert found["router"] == spec["router"].format(L=1)
    assert len(found["experts"]) == 5
    assert found["experts"][3] == tuple(t.format(L=1, e=3) for t in spec["expert"])
    assert len(found["shared"]) == len(spec["shared"])
    assert (found["router_bias"] is not None) == ("router_bias" in spec["extra"])
    assert (found["shared_gate"] is not None) == ("shared_gate" in spec["extra"])
    index = list_tensors(folder)
    gate, up, down = found["experts"][0]
    assert index[gate][0] == index[up][0] == (6, 4) and index[down][0] == (4, 6)


def test_mixtral_names():
    spec = MOE_NAMING["mixtral"]
    assert spec["router"].format(L=3) == "model.layers.3.block_sparse_moe.gate.weight"
    assert [t.format(L=3, e=7).rsplit(".", 2)[1] for t in spec["expert"]] == ["w1", "w3", "w2"]
    assert MOE_NAMING["deepseek"]["expert"][0].format(L=2, e=9) == \
        "model.layers.2.mlp.experts.9.gate_proj.weight"


def test_dense_layer_error_lists_the_moe_layers(tmp_path):
    folder = _moe_checkpoint(tmp_path / "dsv3", "deepseek", layers=[3, 4, 5, 7], E=2,
                             dense_layers=[0, 1, 2])
    with pytest.raises(WorkloadError, match=r"layer 0: no MoE router/expert tensors \(layers "
                                            r"with MoE tensors: 3..5, 7\)"):
        find_moe_tensors(folder, 0)
    with pytest.raises(WorkloadError, match="^layer: "):
        find_moe_tensors(folder, -1)


def test_incomplete_experts_are_named(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    spec = MOE_NAMING["mixtral"]
    t = {spec["router"].format(L=0): np.zeros((3, 4), np.float32)}
    for e in (0, 2):
        for template in spec["expert"]:
            t[template.format(L=0, e=e)] = np.zeros((2, 2), np.float32)
    save_file(t, str(folder / "model.safetensors"))
    with pytest.raises(WorkloadError, match=r"layer 0: experts 1 missing \(have 0, 2\)"):
        find_moe_tensors(folder, 0)
    del t[spec["expert"][2].format(L=0, e=2)]
    t.update({template.format(L=0, e=1): np.zeros((2, 2), np.float32)
              for template in spec["expert"]})
    save_file(t, str(folder / "model.safetensors"))
    with pytest.raises(WorkloadError, match=r"expert 2: tensor "
                                            r"'model.layers.0.block_sparse_moe.experts.2.w2"):
        find_moe_tensors(folder, 0)
