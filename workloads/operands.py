"""Kernel operands read from files: ``-p B=path.mtx`` (also .npz, .npy, .safetensors).

Every kernel of the catalog has one string parameter per operand, named after the tensor. When
it names a file, that operand is the file's matrix (or vector, or 3-tensor) instead of random
data, and the sizes of its indices come from the file: the other operands are drawn at those
sizes. ``file.npz:key`` (or ``.safetensors:key``) picks one array of a multi-array file.
Shapes are checked against each other and against an explicit ``shape`` parameter; every
error names the workload, the operand and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workloads.base import Param, WorkloadError

_KEYED = (".npz", ".safetensors")


def operand_params(names: str | tuple[str, ...]) -> tuple[Param, ...]:
    """One ``-p NAME=file`` parameter per operand tensor."""
    return tuple(Param(t, "str", "", f"operand {t} from a file (.mtx, .npz, .npy; "
                       "file.npz:key picks one array); empty: random") for t in names)


def _split(spec: str) -> tuple[str, str | None]:
    head, sep, key = spec.rpartition(":")
    if sep and Path(head).suffix.lower() in _KEYED:
        return head, key
    return spec, None


def load_operand(workload: str, tensor: str, spec: str, rank: int) -> Any:
    """The ``rank``-mode operand ``tensor`` from the file ``spec``: a scipy CSR matrix or a
    numpy array as the file holds it (a vector may come as an n x 1 or 1 x n matrix)."""
    from workloads.data import load_matrix

    path, key = _split(spec)
    try:
        data = load_matrix(path, key)
    except WorkloadError as exc:
        raise WorkloadError(f"workload {workload}: operand {tensor}: {exc}") from None
    shape = tuple(int(n) for n in data.shape)
    if rank == 1 and len(shape) == 2 and 1 in shape:
        data = np.asarray(data.toarray() if hasattr(data, "toarray") else data).reshape(-1)
        shape = data.shape
    if len(shape) != rank:
        raise WorkloadError(f"workload {workload}: operand {tensor} from {path}: expected a "
                            f"{rank}-D {'vector' if rank == 1 else 'array'}, got shape "
                            f"{'x'.join(map(str, shape))}")
    if 0 in shape:
        raise WorkloadError(f"workload {workload}: operand {tensor} from {path}: empty shape "
                            f"{'x'.join(map(str, shape))}")
    return data


def file_operands(workload: str, p: dict[str, Any], index: str, shape_of: dict[str, str],
                  default_shape: tuple[int, ...]) -> tuple[dict[str, int], dict[str, Any]]:
    """Index sizes and the operands given as files.

    ``index`` names the variables ``p["shape"]`` sizes, in order; ``shape_of`` each
    operand's indices. Sizes start from ``p["shape"]``; each file operand sets the sizes of
    its indices. Raises WorkloadError when two files disagree on an index, or a file
    disagrees with a ``shape`` parameter other than the catalog default.
    """
    sizes = dict(zip(index, (int(n) for n in p["shape"])))
    files: dict[str, Any] = {}
    seen: dict[str, tuple[int, str]] = {}
    for t, idx in shape_of.items():
        spec = str(p.get(t) or "")
        if not spec:
            continue
        data = load_operand(workload, t, spec, len(idx))
        for v, n in zip(idx, data.shape):
            if v in seen and seen[v][0] != n:
                other, size = seen[v][1], seen[v][0]
                raise WorkloadError(
                    f"workload {workload}: operand {t} from {_split(spec)[0]} has {n} along "
                    f"index {v}, but operand {other} from {_split(str(p[other]))[0]} has "
                    f"{size}")
            seen[v] = (int(n), t)
        files[t] = data
    if tuple(p["shape"]) != tuple(default_shape):
        for v, (n, t) in seen.items():
            if sizes.get(v, n) != n:
                raise WorkloadError(
                    f"workload {workload}: parameter shape gives {sizes[v]} for index {v} but "
                    f"operand {t} from {_split(str(p[t]))[0]} has {n}; drop the shape "
                    "parameter or make it agree")
    sizes.update({v: n for v, (n, _t) in seen.items()})
    return sizes, files


def as_csr(data: Any) -> Any:
    """A file operand as a scipy CSR matrix (2-D) or a dense vector (1-D)."""
    import scipy.sparse as sp

    if getattr(data, "ndim", 2) == 1:
        return np.asarray(data)
    return sp.csr_matrix(data)


def as_dense(data: Any) -> np.ndarray:
    """A file operand as a dense numpy array."""
    return np.asarray(data.toarray() if hasattr(data, "toarray") else data)
