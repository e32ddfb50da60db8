"""YAML workload specs: a catalog entry with its parameters, accepted wherever a name is.

    # my_moe.yaml
    workload: moe.mixtral8x7b        # required: a catalog entry (sieve list workloads)
    tokens: 32                       # shortcuts for the common parameters ...
    seed: 3
    routing: gini0.25
    sparsity: {weight: 0.5, pattern: "2:4", activation: relu}
    shape: {d: 1024, f: 2048}        # ... shape overrides (MoE: d, f, experts, top_k, shared;
                                     #     kernels: shape: [M, N, K])
    params: {scale: 2}               # any other -p parameter of the entry

``-p`` options on the command line override the spec. Every key is checked: an unknown one is
an error naming it (``my_moe.yaml: sparsity.wieght: unknown key``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workloads import WorkloadError, get_workload

SHORTCUTS = ("tokens", "seed", "routing", "scale", "capacity_factor", "weights", "layer")
SPARSITY_KEYS = {"weight": "weight_sparsity", "pattern": "pattern", "activation": "activation",
                 "row_cv": "row_cv", "density": "density"}


def is_spec(text: str | Path) -> bool:
    return str(text).endswith((".yaml", ".yml"))


def load_spec(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(catalog name, checked parameters) of a workload spec file; one WorkloadError naming
    the file and the key for any problem (unreadable file, bad YAML, unknown key, bad value)."""
    from simulator.yaml_input import UnreadableText, load_yaml_text, read_text_file

    try:
        doc = load_yaml_text(read_text_file(path))
    except UnreadableText as exc:
        raise WorkloadError(f"workload spec {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise WorkloadError(f"workload spec {path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("workload"), str):
        raise WorkloadError(f"workload spec {path}: needs a mapping with a 'workload' key "
                            "naming a catalog entry (see `sieve list workloads`)")
    name = doc["workload"]
    entry = get_workload(name)
    params: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("workload", "name", "description"):
            continue
        if key in SHORTCUTS:
            params[key] = value
        elif key == "sparsity":
            if not isinstance(value, dict):
                raise WorkloadError(f"workload spec {path}: sparsity: expected a mapping "
                                    f"with keys {', '.join(SPARSITY_KEYS)}")
            for k, v in value.items():
                if k not in SPARSITY_KEYS:
                    raise WorkloadError(f"workload spec {path}: sparsity.{k}: unknown key "
                                        f"(use {', '.join(SPARSITY_KEYS)})")
                params[SPARSITY_KEYS[k]] = v
        elif key == "shape":
            if isinstance(value, dict):
                params.update(value)
            elif isinstance(value, list):
                params["shape"] = value
            else:
                raise WorkloadError(f"workload spec {path}: shape: expected a mapping (d, f, "
                                    "...) or a list of sizes")
        elif key == "params":
            if not isinstance(value, dict):
                raise WorkloadError(f"workload spec {path}: params: expected a mapping")
            params.update(value)
        else:
            raise WorkloadError(f"workload spec {path}: {key}: unknown key (use workload, "
                                f"name, {', '.join(SHORTCUTS)}, sparsity, shape, params)")
    known = {q.name: q for q in entry.params}
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in known:
            raise WorkloadError(f"workload spec {path}: {key}: not a parameter of {name} "
                                f"(its parameters: {', '.join(sorted(map(str, known)))})")
        try:
            out[key] = known[key].parse(name, value)
        except WorkloadError as exc:
            raise WorkloadError(f"workload spec {path}: {key}: {exc}") from None
    return name, out
