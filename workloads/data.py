"""Real data that users bring: checkpoint tensors (.safetensors, .npz, .npy) and SuiteSparse
matrices (.mtx). Nothing is downloaded: runs work offline.

Safetensors files are read through their JSON header: listing a checkpoint reads headers only,
and loading one tensor reads only its bytes. BF16 (which numpy lacks) and F16 become float32.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from workloads.base import WorkloadError

SUFFIXES = (".npz", ".npy", ".safetensors", ".mtx")
"""File types ``load_matrix`` reads."""

# safetensors dtype code -> numpy dtype of the stored bytes (little-endian)
_ST_DTYPES: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_NP_CODES = {np.dtype(v): k for k, v in _ST_DTYPES.items() if k != "BF16"}
_HEADER_MAX = 100 * 2**20        # the safetensors format caps its header at 100 MB
_SPARSE_NPZ_KEYS = {"format", "shape", "data"}   # what scipy.sparse.save_npz always stores


def load_matrix(path: str | Path, key: str | None = None) -> np.ndarray | sp.csr_matrix:
    """One matrix or tensor from a file, chosen by suffix.

    .npz: the array ``key`` (or the only one); a scipy.sparse.save_npz file gives a CSR matrix.
    .npy: the array. .safetensors: the tensor ``key`` (or the only one); F16/BF16 -> float32,
    integers stay integers. .mtx (Matrix Market): a CSR matrix (a dense "array" file: ndarray).

    Raises: WorkloadError naming the file (and the key, with the available keys).
    """
    p = _existing(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise WorkloadError(f"{p}: unsupported file type {p.suffix!r} (use "
                            f"{', '.join(SUFFIXES)})")
    if not p.is_file():
        raise WorkloadError(f"{p}: not a regular file")
    try:
        return _load_matrix(p, suffix, key)
    except WorkloadError:
        raise
    except _READ_ERRORS as exc:
        kind = "Matrix Market file" if suffix == ".mtx" else f"{suffix} file"
        raise WorkloadError(f"{p}: not a readable {kind} ({_why(exc)})") from None


_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, IndexError,
                TypeError, OverflowError, RecursionError, UnicodeDecodeError, struct.error,
                MemoryError)
"""What a reader of a malformed file may raise; each becomes one WorkloadError naming it."""


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large for this machine's memory"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _load_matrix(p: Path, suffix: str, key: str | None) -> np.ndarray | sp.csr_matrix:
    if suffix == ".npy":
        if key is not None:
            raise WorkloadError(f"{p}: key {key!r} given, but a .npy file holds one array")
        return _np_load(p)
    if suffix == ".npz":
        names = _npz_names(p)
        if _SPARSE_NPZ_KEYS <= set(names):
            if key is not None:
                raise WorkloadError(f"{p}: key {key!r} given, but this is a scipy sparse "
                                    ".npz holding one matrix")
            return _sparse_npz(p)
        return _npz_member(p, _pick(p, key, names))
    if suffix == ".safetensors":
        header = _st_header(p)
        name = _pick(p, key, list(header))
        return _st_read(p, name, header[name])
    if key is not None:
        raise WorkloadError(f"{p}: key {key!r} given, but a .mtx file holds one matrix")
    return _mtx(p)


def list_tensors(path_or_folder: str | Path) -> dict[str, tuple[tuple[int, ...], str, Path]]:
    """name -> (shape, dtype, file) for every tensor of a .safetensors or .npz file, or of all
    *.safetensors and *.npz files of a checkpoint folder, without reading tensor data.

    dtype is the safetensors code (F32, BF16, I8, ...; numpy's name for types it lacks). A
    scipy sparse .npz counts as one tensor named after the file's stem.

    Raises: WorkloadError naming the file or folder (nothing found, a name in two files).
    """
    p = _existing(path_or_folder)
    if p.is_dir():
        files = sorted(f for f in p.iterdir()
                       if f.is_file() and f.suffix.lower() in (".safetensors", ".npz"))
        if not files:
            raise WorkloadError(f"{p}: no .safetensors or .npz files in this folder")
    elif p.suffix.lower() in (".safetensors", ".npz"):
        files = [p]
    else:
        raise WorkloadError(f"{p}: list_tensors reads .safetensors and .npz files or a "
                            "folder of them")
    out: dict[str, tuple[tuple[int, ...], str, Path]] = {}
    for f in files:
        try:
            entries = _st_entries(f) if f.suffix.lower() == ".safetensors" else _npz_entries(f)
        except WorkloadError:
            raise
        except _READ_ERRORS as exc:
            raise WorkloadError(f"{f}: not a readable {f.suffix} file ({_why(exc)})") from None
        for name, (shape, dtype) in entries.items():
            if name in out:
                raise WorkloadError(f"{p}: tensor {name!r} is in both {out[name][2].name} "
                                    f"and {f.name}")
            out[name] = (shape, dtype, f)
    return out


def load_tensor(folder_or_file: str | Path, name: str) -> np.ndarray | sp.csr_matrix:
    """The tensor ``name`` of a checkpoint folder or file; only that tensor's bytes are read.

    Raises: WorkloadError naming the folder and the tensor (with close names when missing).
    """
    index = list_tensors(folder_or_file)
    if name not in index:
        raise WorkloadError(f"{folder_or_file}: no tensor {name!r}{_hint(name, index)}")
    f = index[name][2]
    if f.suffix.lower() == ".safetensors" or _SPARSE_NPZ_KEYS <= set(_npz_names(f)):
        return load_matrix(f, name if f.suffix.lower() == ".safetensors" else None)
    return load_matrix(f, name)


# ------------------------------------------------------------------ MoE tensor names
MOE_NAMING: dict[str, dict[str, Any]] = {
    "mixtral": {
        "router": "model.layers.{L}.block_sparse_moe.gate.weight",
        "expert": ("model.layers.{L}.block_sparse_moe.experts.{e}.w1.weight",
                   "model.layers.{L}.block_sparse_moe.experts.{e}.w3.weight",
                   "model.layers.{L}.block_sparse_moe.experts.{e}.w2.weight"),
        "shared": (),
        "extra": {},
        "models": "Mixtral 8x7B / 8x22B (HF): w1 gate [f x d], w3 up [f x d], w2 down [d x f]",
    },
    "deepseek": {
        "router": "model.layers.{L}.mlp.gate.weight",
        "expert": ("model.layers.{L}.mlp.experts.{e}.gate_proj.weight",
                   "model.layers.{L}.mlp.experts.{e}.up_proj.weight",
                   "model.layers.{L}.mlp.experts.{e}.down_proj.weight"),
        "shared": (("model.layers.{L}.mlp.shared_experts.gate_proj.weight",
                    "model.layers.{L}.mlp.shared_experts.up_proj.weight",
                    "model.layers.{L}.mlp.shared_experts.down_proj.weight"),),
        "extra": {"router_bias": "model.layers.{L}.mlp.gate.e_score_correction_bias"},
        "models": "DeepSeek-V2 / V2-Lite / V3 / R1 (shared experts fused into one FFN; V3 "
                  "has the aux-loss-free router bias)",
    },
    "qwen2_moe": {
        "router": "model.layers.{L}.mlp.gate.weight",
        "expert": ("model.layers.{L}.mlp.experts.{e}.gate_proj.weight",
                   "model.layers.{L}.mlp.experts.{e}.up_proj.weight",
                   "model.layers.{L}.mlp.experts.{e}.down_proj.weight"),
        "shared": (("model.layers.{L}.mlp.shared_expert.gate_proj.weight",
                    "model.layers.{L}.mlp.shared_expert.up_proj.weight",
                    "model.layers.{L}.mlp.shared_expert.down_proj.weight"),),
        "extra": {"shared_gate": "model.layers.{L}.mlp.shared_expert_gate.weight"},
        "models": "Qwen1.5-MoE, Qwen2-57B-A14B (one wide shared expert with a sigmoid gate)",
    },
    "olmoe": {
        "router": "model.layers.{L}.mlp.gate.weight",
        "expert": ("model.layers.{L}.mlp.experts.{e}.gate_proj.weight",
                   "model.layers.{L}.mlp.experts.{e}.up_proj.weight",
                   "model.layers.{L}.mlp.experts.{e}.down_proj.weight"),
        "shared": (),
        "extra": {},
        "models": "OLMoE, Qwen3-MoE (same names, no shared expert)",
    },
}
"""Naming conventions of one MoE layer's tensors in Hugging Face checkpoints: ``{L}`` is the
layer, ``{e}`` the expert; ``expert`` and ``shared`` are (gate, up, down) triples. Detection
tries them in this order, so a convention with shared experts wins over "olmoe"."""


def find_moe_tensors(folder: str | Path, layer: int) -> dict[str, Any]:
    """The tensor names of MoE layer ``layer`` in a checkpoint folder (or file).

    Returns {"convention", "router", "experts": [(gate, up, down) per expert], "shared":
    [(gate, up, down)], "router_bias": name | None, "shared_gate": name | None}.

    Raises: WorkloadError naming the folder and layer, listing the layers that have MoE
    tensors when this one has none (e.g. DeepSeek's dense first layers), or the missing
    tensor when an expert is incomplete.
    """
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer < 0:
        raise WorkloadError(f"layer: expected an integer >= 0, got {layer!r}")
    names = set(list_tensors(folder))
    for convention, spec in MOE_NAMING.items():
        router = spec["router"].format(L=layer)
        if router not in names:
            continue
        shared = [tuple(t.format(L=layer) for t in triple) for triple in spec["shared"]]
        if any(n not in names for triple in shared for n in triple):
            continue
        experts = _expert_triples(folder, names, spec["expert"], layer)
        if not experts:
            continue
        optional = {}
        for key in ("router_bias", "shared_gate"):
            template = spec["extra"].get(key)
            found = template.format(L=layer) if template else None
            optional[key] = found if found in names else None
        return {"convention": convention, "router": router, "experts": experts,
                "shared": shared, **optional}
    layers = sorted({int(m.group(1)) for n in names
                     for m in [re.match(r"^model\.layers\.(\d+)\.(?:block_sparse_moe|mlp)"
                                        r"\.gate\.weight$", n)] if m})
    where = (f"layers with MoE tensors: {_ranges(layers)}" if layers else
             f"no MoE layer found in any known convention ({', '.join(MOE_NAMING)})")
    raise WorkloadError(f"{folder}: layer {layer}: no MoE router/expert tensors ({where})")


def _expert_triples(folder: str | Path, names: set[str], templates: tuple[str, str, str],
                    layer: int) -> list[tuple[str, str, str]]:
    before, after = templates[0].format(L=layer, e="{e}").split("{e}")
    gate_re = re.compile("^" + re.escape(before) + r"(\d+)" + re.escape(after) + "$")
    ids = sorted(int(m.group(1)) for n in names for m in [gate_re.match(n)] if m)
    if ids and ids != list(range(len(ids))):
        missing = sorted(set(range(ids[-1] + 1)) - set(ids))
        raise WorkloadError(f"{folder}: layer {layer}: experts {_ranges(missing)} missing "
                            f"(have {_ranges(ids)})")
    out = []
    for e in ids:
        triple = tuple(t.format(L=layer, e=e) for t in templates)
        for n in triple:
            if n not in names:
                raise WorkloadError(f"{folder}: layer {layer}: expert {e}: tensor {n!r} "
                                    "missing")
        out.append(triple)
    return out


def _ranges(values: list[int]) -> str:
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}..{values[j]}")
        i = j + 1
    return ", ".join(parts)


# ------------------------------------------------------------------ file formats
def _existing(path: str | Path) -> Path:
    p = Path(path)
    try:
        found = p.exists()
    except (OSError, ValueError):    # a name the OS cannot look up (too long, NUL): not a file
        found = False
    if not found:
        shown = str(p) if len(str(p)) <= 200 else f"{str(p)[:200]}... ({len(str(p))} chars)"
        raise WorkloadError(f"{shown}: file not found")
    return p


def _np_load(p: Path) -> np.ndarray:
    with open(p, "rb") as fh:
        shape, dtype = _npy_header(p, "", fh)
        start = fh.tell()
    _check_array(p, "", shape, dtype, p.stat().st_size - start)
    return np.load(p, allow_pickle=False)


def _npz_member(p: Path, name: str) -> np.ndarray:
    with zipfile.ZipFile(p) as z:
        info = z.getinfo(name + ".npy")
        with z.open(info) as fh:
            shape, dtype = _npy_header(p, info.filename, fh)
            start = fh.tell()
        _check_array(p, f"member {name}: ", shape, dtype, info.file_size - start)
    with np.load(p, allow_pickle=False) as archive:
        return archive[name]


def _check_array(p: Path, where: str, shape: tuple[int, ...], dtype: np.dtype,
                 stored_bytes: int) -> None:
    """Refuse an array whose dtype is not real numbers or whose declared shape does not fit
    the bytes stored (checked before numpy allocates the declared size)."""
    _check_dtype(p, where, dtype)
    count = math.prod(shape)
    if count * dtype.itemsize > stored_bytes:
        raise WorkloadError(f"{p}: {where}shape {tuple(shape)} of {dtype} needs "
                            f"{count * dtype.itemsize:,} bytes but only {stored_bytes:,} are "
                            "stored")


def _check_dtype(p: Path, where: str, dtype: np.dtype) -> None:
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise WorkloadError(f"{p}: {where}complex values ({dtype}); Sieve simulates real "
                            "numbers (store the real part, or real and imaginary as two "
                            "matrices)")
    if kind not in "biuf":
        raise WorkloadError(f"{p}: {where}dtype {dtype} is not a real number type (use a "
                            "float, int or bool array)")


def _sparse_npz(p: Path) -> sp.csr_matrix:
    """A scipy.sparse.save_npz matrix (csr, csc or coo), every array bounds-checked before the
    matrix is built (scipy itself does not check indices when loading)."""
    with zipfile.ZipFile(p) as z:
        for info in z.infolist():
            if info.filename.endswith(".npy"):
                with z.open(info) as fh:
                    shape, dtype = _npy_header(p, info.filename, fh)
                    start = fh.tell()
                member = f"member {info.filename[:-4]}: "
                if info.filename[:-4] == "format":
                    if dtype.kind not in "SU":
                        raise WorkloadError(f"{p}: {member}expected a string")
                else:
                    _check_array(p, member, shape, dtype, info.file_size - start)
    with np.load(p, allow_pickle=False) as z:
        raw = np.asarray(z["format"]).item()
        fmt = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        arrays = {k: np.asarray(z[k]) for k in z.files if k != "format"}
    dims = arrays["shape"]
    if dims.shape != (2,) or dims.dtype.kind not in "iu" or (dims < 0).any():
        raise WorkloadError(f"{p}: shape {dims.tolist()} is not two sizes >= 0")
    m, n = (int(v) for v in dims)
    data = arrays["data"]
    if data.ndim != 1:
        raise WorkloadError(f"{p}: data must be 1-D, got shape {data.shape}")
    if fmt in ("csr", "csc"):
        major, minor = (m, n) if fmt == "csr" else (n, m)
        indices, indptr = _int_member(p, arrays, "indices"), _int_member(p, arrays, "indptr")
        if len(indptr) != major + 1 or indptr[0] != 0 or (np.diff(indptr) < 0).any() \
                or indptr[-1] != len(indices) or len(indices) != len(data):
            raise WorkloadError(f"{p}: indptr is not {major + 1} non-decreasing offsets from "
                                f"0 to nnz = {len(data)} (len(indices) {len(indices)})")
        _in_range(p, "indices", indices, minor)
        cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
        return sp.csr_matrix(cls((data, indices, indptr), shape=(m, n)))
    if fmt == "coo":
        row, col = _int_member(p, arrays, "row"), _int_member(p, arrays, "col")
        if not len(row) == len(col) == len(data):
            raise WorkloadError(f"{p}: row, col and data differ in length")
        _in_range(p, "row", row, m)
        _in_range(p, "col", col, n)
        return sp.csr_matrix(sp.coo_matrix((data, (row, col)), shape=(m, n)))
    raise WorkloadError(f"{p}: sparse format {fmt!r} is not supported (csr, csc or coo)")


def _int_member(p: Path, arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in arrays:
        raise WorkloadError(f"{p}: member {name} missing")
    arr = arrays[name]
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise WorkloadError(f"{p}: {name} must be a 1-D integer array, got {arr.dtype} "
                            f"shape {arr.shape}")
    return arr


def _in_range(p: Path, name: str, arr: np.ndarray, size: int) -> None:
    if len(arr) and (int(arr.min()) < 0 or int(arr.max()) >= size):
        bad = arr[(arr < 0) | (arr >= size)][0]
        raise WorkloadError(f"{p}: {name} holds {int(bad)}, outside 0..{size - 1}")


def _mtx(p: Path) -> np.ndarray | sp.csr_matrix:
    """A Matrix Market file: its header is checked (real values, sizes this machine can hold)
    before the entries are read."""
    from workloads.footprint import available_memory_bytes

    rows, cols, entries, fmt, field, _sym = scipy.io.mminfo(p)
    if field == "complex":
        raise WorkloadError(f"{p}: complex values; Sieve simulates real numbers")
    dense = fmt == "array"
    need = 8 * rows * cols if dense else 24 * entries + 8 * (rows + 1)
    have = available_memory_bytes()
    if need > have:
        raise WorkloadError(f"{p}: a {rows:,} x {cols:,} matrix with {entries:,} entries needs "
                            f"about {need / 2**30:,.2f} GiB to read; {have / 2**30:,.2f} GiB "
                            "available")
    out = scipy.io.mmread(p)
    return sp.csr_matrix(out) if sp.issparse(out) else np.asarray(out)


def _pick(p: Path, key: str | None, names: list[str]) -> str:
    if key is None:
        if len(names) == 1:
            return names[0]
        raise WorkloadError(f"{p}: holds {len(names)} arrays, pass a key (available: "
                            f"{_listing(names)})")
    if key not in names:
        raise WorkloadError(f"{p}: no key {key!r}{_hint(key, names)} (available: "
                            f"{_listing(names)})")
    return key


def _listing(names: list[str], most: int = 20) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "") or "none"


def _hint(name: str, names: Any) -> str:
    close = difflib.get_close_matches(name, list(names), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _npz_names(p: Path) -> list[str]:
    try:
        with zipfile.ZipFile(p) as z:
            return [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise WorkloadError(f"{p}: not a readable .npz archive ({exc})") from None


def _npz_entries(p: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    with zipfile.ZipFile(p) as z:
        headers = {}
        for member in z.namelist():
            if member.endswith(".npy"):
                with z.open(member) as fh:
                    headers[member[:-4]] = _npy_header(p, member, fh)
        if _SPARSE_NPZ_KEYS <= set(headers):
            if headers["shape"][0] != (2,) or headers["shape"][1].kind not in "iu":
                raise WorkloadError(f"{p}: member shape: expected two integer sizes")
            with z.open("shape.npy") as fh:
                shape = tuple(int(v) for v in np.lib.format.read_array(fh))
            return {p.stem: (shape, _code(headers["data"][1]))}
    for name, (shape, dtype) in headers.items():
        out[name] = (shape, _code(dtype))
    return out


def _npy_header(p: Path, member: str, fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _, dtype = reader(fh)
    except ValueError as exc:
        where = f"member {member}: " if member else ""
        raise WorkloadError(f"{p}: {where}bad .npy header ({exc})") from None
    return tuple(shape), np.dtype(dtype)


def _code(dtype: np.dtype) -> str:
    """The safetensors code of a numpy dtype (either byte order), else numpy's name."""
    dt = np.dtype(dtype)
    return _NP_CODES.get(dt.newbyteorder("<"), str(dt))


def _st_header(p: Path) -> dict[str, dict[str, Any]]:
    """The tensor entries of a safetensors header (``__metadata__`` dropped), each with an
    absolute ``start`` byte offset added."""
    size = p.stat().st_size
    with open(p, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise WorkloadError(f"{p}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > _HEADER_MAX or 8 + n > size:
            raise WorkloadError(f"{p}: not a safetensors file (header length {n})")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WorkloadError(f"{p}: bad safetensors header ({exc})") from None
        except RecursionError:
            raise WorkloadError(f"{p}: bad safetensors header (JSON nested too deeply)") \
                from None
    if not isinstance(header, dict):
        raise WorkloadError(f"{p}: bad safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            if not isinstance(shape, list) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0
                    for v in (*shape, begin, end)):
                raise ValueError
            count = math.prod(shape)      # Python ints: no overflow
        except (KeyError, TypeError, ValueError):
            shown = repr(entry) if len(repr(entry)) < 200 else repr(entry)[:197] + "..."
            raise WorkloadError(f"{p}: tensor {name!r}: bad header entry {shown}") from None
        if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
            raise WorkloadError(f"{p}: tensor {name!r}: unsupported dtype {dtype} (supported: "
                                f"{', '.join(_ST_DTYPES)})")
        if end - begin != count * np.dtype(_ST_DTYPES[dtype]).itemsize or \
                not 0 <= begin <= end <= size - 8 - n:
            raise WorkloadError(f"{p}: tensor {name!r}: data_offsets {begin}..{end} do not "
                                f"fit shape {shape} {dtype} in a {size}-byte file")
        entry["start"] = 8 + n + begin
    return header


def _st_entries(p: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    return {name: (tuple(e["shape"]), e["dtype"]) for name, e in _st_header(p).items()}


def _st_read(p: Path, name: str, entry: dict[str, Any]) -> np.ndarray:
    dtype, shape = entry["dtype"], tuple(entry["shape"])
    stored = np.dtype(_ST_DTYPES[dtype])
    count = math.prod(shape)
    with open(p, "rb") as fh:
        fh.seek(entry["start"])
        data = np.fromfile(fh, dtype=stored, count=count)
    if data.size != count:
        raise WorkloadError(f"{p}: tensor {name!r}: file ends inside the tensor")
    if dtype == "BF16":                         # bfloat16 = the high 16 bits of a float32
        data = (data.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "F16":
        data = data.astype(np.float32)
    return data.reshape(shape).astype(data.dtype.newbyteorder("="), copy=False)
