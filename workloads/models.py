"""The model-layer catalog: ``moe.<model>``, ``linear.<model>.<matrix>``, ``ffn.<model>``.

Shapes come from the released model configs (and, where named, the model papers); each
entry's ``source`` says which. ``-p scale=S`` divides d and f (not E or k) for quick runs;
``-p weights=DIR`` takes real weights from a checkpoint folder (.safetensors/.npz) instead of
synthetic ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from workloads.base import Param, Workload, WorkloadError, check_density
from workloads.layers import (
    ActivationSparsity,
    FFNLayer,
    FFNWeights,
    Gating,
    LinearLayer,
    MoELayer,
    Weight,
)


@dataclass(frozen=True)
class MoEModel:
    name: str
    d: int
    f: int
    experts: int
    k: int
    shared: int = 0            # shared experts of width shared_f
    shared_f: int = 0
    gating: Gating = Gating()
    act: str = "silu"
    gated: bool = True
    source: str = ""


MOE_MODELS = (
    MoEModel("mixtral8x7b", 4096, 14336, 8, 2, source="HF mistralai/Mixtral-8x7B-v0.1 config "
             "(config.json): softmax over the top-2 logits, SwiGLU"),
    MoEModel("mixtral8x22b", 6144, 16384, 8, 2, source="Cerebras modelzoo params_mixtral_8x22b"
             ".yaml (Cerebras/modelzoo repository)"),
    MoEModel("dbrx", 6144, 10752, 16, 4, source="HF databricks/dbrx config, "
             "moe_normalize_expert_weights=1 (as quoted in third-party repos)"),
    MoEModel("deepseek-v2-lite", 2048, 1408, 64, 6, shared=2, shared_f=1408,
             gating=Gating("softmax"), source="DeepSeek-V2-Lite config: softmax without "
             "renormalisation, 2 shared experts (a Megatron-style yaml; arXiv 2405.04434)"),
    MoEModel("deepseek-v3", 7168, 2048, 256, 8, shared=1, shared_f=2048,
             gating=Gating("sigmoid_group", n_group=8, topk_group=4, scaling=2.5),
             source="HF deepseek-ai/DeepSeek-V3 config; arXiv 2412.19437: sigmoid scores, "
             "bias-corrected group-limited routing (8 groups, top-4), scaling 2.5"),
    MoEModel("qwen3-30b-a3b", 2048, 768, 128, 8, source="Qwen3-30B-A3B (zyzshishui/slime "
             "scripts/models/qwen3-30B-A3B.sh): softmax, renormalised"),
    MoEModel("olmoe", 2048, 1024, 64, 8, gating=Gating("softmax"),
             source="OLMoE-1B-7B, arXiv 2409.02060 and HF docs: softmax, no renorm"),
    MoEModel("gpt-oss-20b", 2880, 2880, 32, 4, source="GPT-OSS-20b GptOssConfig + model card "
             "(HF transformers): softmax over the top-4; its clamped SwiGLU is modelled as "
             "plain SwiGLU"),
    MoEModel("switch-base-128", 768, 2048, 128, 1, gating=Gating("top1", capacity_factor=1.25),
             act="relu", gated=False, source="Switch Transformer, arXiv 2101.03961 Table 9: "
             "top-1, capacity factor 1.0-1.25 with token dropping; T5 ReLU FFN (wi, wo)"),
)

LINEAR_MATRICES = {
    "llama2-7b": {"q": (4096, 4096), "k": (4096, 4096), "v": (4096, 4096),
                  "o": (4096, 4096), "gate": (11008, 4096), "up": (11008, 4096),
                  "down": (4096, 11008)},
    "mixtral8x7b": {"w1": (14336, 4096), "w3": (14336, 4096), "w2": (4096, 14336)},
    "bert-base": {"intermediate": (3072, 768), "output": (768, 3072)},
}
LINEAR_SOURCES = {
    "llama2-7b": "LLaMA-2-7B config (HF meta-llama/Llama-2-7b-hf): q/k/v/o 4096x4096, gate/up "
                 "11008x4096, down 4096x11008",
    "mixtral8x7b": "Mixtral-8x7B expert (w1 gate, w3 up: 14336x4096; w2 down: 4096x14336)",
    "bert-base": "BERT-base FFN: intermediate 3072x768, output 768x3072",
}


@dataclass(frozen=True)
class FFNModel:
    name: str
    d: int
    f: int
    act: str
    gated: bool
    activation: str          # default activation sparsity
    source: str


FFN_MODELS = (
    FFNModel("llama2-7b", 4096, 11008, "silu", True, "prosparse",
             "LLaMA-2-7B FFN; ProSparse ReLU-fied, 89.3% zeros (arXiv 2402.13516)"),
    FFNModel("mistral-7b", 4096, 14336, "silu", True, "turbosparse",
             "Mistral-7B FFN; TurboSparse dReLU, ~90% zeros (arXiv 2406.05955)"),
    FFNModel("opt-6.7b", 4096, 16384, "relu", False, "relu",
             "OPT-6.7B ReLU FFN; >90% zeros (ReLU Strikes Back, arXiv 2310.04564)"),
    FFNModel("bert-base", 768, 3072, "gelu", False, "none",
             "BERT-base GELU FFN (dense activations; try -p activation=teal50)"),
)


# ------------------------------------------------------------------ parameters
def _common(tokens: int, sparsity: float, activation: str) -> tuple[Param, ...]:
    return (
        Param("scale", "int", 1, "divide d and f by this (E and k kept) for quick runs",
              low=1),
        Param("tokens", "int", tokens, "tokens in the batch (T)", low=1),
        Param("seed", "int", 0, "seed of the synthetic weights, tokens and routing", low=0),
        Param("weight_sparsity", "float", sparsity, "fraction of weights pruned, in [0, 1)"),
        Param("pattern", "str", "unstructured", "pruning pattern: unstructured, 2:4, 4:8, "
              "1:4, blockHxW (e.g. block16x16)"),
        Param("row_cv", "float", -1.0, "CV of nonzeros per row for unstructured pruning "
              "(-1: as measured in pruned models for the sparsity)"),
        Param("activation", "str", activation, "activation sparsity: none, relu, prosparse, "
              "turbosparse, teal40, teal50"),
        Param("weights", "str", "", "checkpoint folder or file with real weights "
              "(.safetensors/.npz); empty: synthetic"),
        Param("layer", "int", 0, "layer index in the checkpoint (with weights=)", low=0),
    )


def _check_common(name: str, p: dict[str, Any]) -> None:
    if p["scale"] < 1:
        raise WorkloadError(f"workload {name}: parameter scale: must be >= 1, got {p['scale']}")
    if p["tokens"] < 1:
        raise WorkloadError(f"workload {name}: parameter tokens: must be >= 1, got "
                            f"{p['tokens']}")
    check_density(name, p["weight_sparsity"], "weight_sparsity")
    if p["weight_sparsity"] >= 1.0:
        raise WorkloadError(f"workload {name}: parameter weight_sparsity: must be < 1")
    if p["pattern"] != "dense":
        from workloads.pruning import parse_pattern

        try:
            pat = parse_pattern(p["pattern"])
        except WorkloadError as exc:
            raise WorkloadError(f"workload {name}: parameter {exc}") from None
        if pat.kind == "nm":
            p["weight_sparsity"] = float(pat.fixed_sparsity)
    _check_row_cv(name, p)


ROW_CV_DRIFT = 0.05
"""Largest gap allowed between weight_sparsity and the sparsity a given row_cv realizes (the
per-row keep probabilities (1-s) x lognormal are clipped at 1, which prunes fewer weights as
the CV grows): beyond it the layer would not have the sparsity asked for."""


def _check_row_cv(name: str, p: dict[str, Any]) -> None:
    """row_cv is -1 (the measured default) or >= 0, and realizes the asked-for sparsity."""
    cv, s = p["row_cv"], p["weight_sparsity"]
    if cv == -1.0:
        return
    if cv < 0:
        raise WorkloadError(f"workload {name}: parameter row_cv: must be -1 (as measured) or "
                            f">= 0, got {cv}")
    if p["pattern"] == "unstructured" and 0 < s < 1:
        from workloads.pruning import realized_sparsity

        got = realized_sparsity(s, cv)
        if abs(got - s) > ROW_CV_DRIFT:
            raise WorkloadError(
                f"workload {name}: parameter row_cv: {cv:g} with weight_sparsity {s:g} would "
                f"prune {got:.1%} of the weights, not {s:.1%} (per-row keep probabilities "
                f"clip at 1); use a smaller row_cv")


def _scaled(name: str, n: int, scale: int, what: str) -> int:
    if n % scale:
        raise WorkloadError(f"workload {name}: parameter scale: {what}={n} is not divisible "
                            f"by {scale}")
    return n // scale


def activation_sparsity(name: str, p: dict[str, Any], in_moe: bool = False
                        ) -> ActivationSparsity:
    from workloads.activations import ACTIVATIONS

    act = ACTIVATIONS.get(p["activation"])
    if act is None:
        raise WorkloadError(f"workload {name}: parameter activation: unknown "
                            f"{p['activation']!r} (use {', '.join(ACTIVATIONS)})")
    zero = act.moe_zero_fraction if in_moe else act.zero_fraction
    return ActivationSparsity(act.name, act.kind, float(zero), p["seed"])


def _tokens(p: dict[str, Any], d: int) -> np.ndarray:
    rng = np.random.default_rng([p["seed"], 0x70C])
    return rng.standard_normal((p["tokens"], d), dtype=np.float32)


def _weight(wname: str, shape: tuple[int, int], p: dict[str, Any], *, transposed: bool = False,
            dense: bool = False, real: np.ndarray | None = None) -> Weight:
    """A synthetic weight (scale sqrt(3/in): unit-variance pre-activations for unit inputs)
    or real weights, magnitude-pruned with the layer's pattern."""
    pattern = "dense" if dense or p["weight_sparsity"] == 0 and p["pattern"] == "unstructured" \
        else p["pattern"]
    sparsity = 0.0 if dense else p["weight_sparsity"]
    if real is not None:
        from workloads.pruning import prune

        if tuple(real.shape) != shape:
            raise WorkloadError(f"weights {p['weights']}: tensor for {wname} has shape "
                                f"{tuple(real.shape)}, expected {shape}")
        data = _finite(p, wname, real)
        if pattern != "dense":
            data = prune(data, pattern, None if pattern[0].isdigit() else sparsity)
        return Weight(wname, shape, pattern, sparsity, p["seed"], transposed=transposed,
                      data=data)
    return Weight(wname, shape, pattern, sparsity, p["seed"], float(np.sqrt(3.0 / shape[1])),
                  transposed, None if p["row_cv"] < 0 else p["row_cv"])


def _check_dense_fits(p: dict[str, Any], name: str, shape: tuple[int, ...],
                      tokens: int) -> None:
    """The weights of ``linear.custom`` are used dense: refuse, with the figures, a matrix
    whose dense copies (the file's dtype up to float64, float32 for the layer, a float64
    row chunk of the reference) and the layer's activations and outputs cannot fit this
    machine's memory, before densifying it."""
    from workloads.footprint import available_memory_bytes

    rows, cols = (int(v) for v in shape)
    need = rows * cols * (8 + 4 + 8) + tokens * (rows + cols) * 8 * 3
    have = available_memory_bytes()
    if need > have:
        raise WorkloadError(f"workload {name}: the {rows:,} x {cols:,} weights of "
                            f"{p['weights']} need about {need / 2**30:,.2f} GiB dense, this "
                            f"machine has {have / 2**30:,.2f} GiB available")


def _finite(p: dict[str, Any], wname: str, real: Any) -> np.ndarray:
    """Real weights as float32, refused when not real numbers or not finite (a NaN would
    otherwise surface as a failed output check, blaming the simulator)."""
    arr = real.toarray() if hasattr(real, "toarray") else np.asarray(real)
    if arr.dtype.kind not in "biuf":
        what = "complex" if arr.dtype.kind == "c" else f"non-numeric ({arr.dtype})"
        raise WorkloadError(f"weights {p['weights']}: tensor for {wname} has {what} values; "
                            "real numbers are needed")
    data = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise WorkloadError(f"weights {p['weights']}: tensor for {wname} has {bad} NaN or "
                            "infinite values (or values beyond float32's range)")
    return data


def _ffn(prefix: str, d: int, f: int, act: str, gated: bool, p: dict[str, Any],
         real: tuple[Any, Any, Any] | None = None) -> FFNWeights:
    g, u, dn = real if real is not None else (None, None, None)
    return FFNWeights(
        up=_weight(f"{prefix}.up", (f, d), p, real=u),
        down=_weight(f"{prefix}.down", (d, f), p, transposed=True, real=dn),
        gate=_weight(f"{prefix}.gate", (f, d), p, real=g) if gated else None,
        act=act)


# ------------------------------------------------------------------ builders
def _moe_builder(model: MoEModel):
    m = model
    name = f"moe.{m.name}"

    def build(p: dict[str, Any]) -> MoELayer:
        _check_common(name, p)
        from workloads.routing import parse_routing, router_bias

        try:
            p["routing"] = parse_routing(p["routing"])
        except WorkloadError as exc:
            raise WorkloadError(f"workload {name}: parameter {exc}") from None
        m_ = _override(name, model, p)
        d, f = _scaled(name, m_.d, p["scale"], "d"), _scaled(name, m_.f, p["scale"], "f")
        sf = _scaled(name, m_.shared_f, p["scale"], "shared f") if m_.shared else 0
        real = _real_moe(name, m_, p, d, f) if p["weights"] else None
        x = _tokens(p, d)
        experts = tuple(_ffn(f"{name}.expert{e}", d, f, m_.act, m_.gated, p,
                             real["experts"][e] if real else None) for e in range(m_.experts))
        shared = tuple(_ffn(f"{name}.shared{s}", d, sf, m_.act, m_.gated, p,
                            real["shared"][s] if real and real["shared"] else None)
                       for s in range(m_.shared))
        router = _weight(f"{name}.router", (m_.experts, d), p, dense=True,
                         real=real["router"] if real else None)
        rng = np.random.default_rng([p["seed"], 0xB1A5])
        try:
            bias = router_bias(m_.experts, m_.k, p["routing"], rng, noise="gauss",
                               noise_std=1.0, hot_factor=min(6.0, m_.experts / m_.k))
        except WorkloadError as exc:
            raise WorkloadError(f"workload {name}: parameter routing: {p['routing']} cannot "
                                f"be realized with top_k={m_.k} of {m_.experts} experts "
                                f"({exc}); use routing=uniform or a smaller top_k") from None
        gating = m_.gating
        if m_.gating.capacity_factor is not None:
            if not p["capacity_factor"] > 0:
                raise WorkloadError(f"workload {name}: parameter capacity_factor: must be > 0, "
                                    f"got {p['capacity_factor']}")
            gating = Gating(m_.gating.kind, m_.gating.n_group, m_.gating.topk_group,
                            m_.gating.scaling, p["capacity_factor"])
        return MoELayer(name, m_.name, x, router, bias, experts, shared, m_.k, gating,
                        activation_sparsity(name, p, in_moe=True), dict(p), m_.source)

    params = _common(64, 0.0, "none") + (
        Param("routing", "str", "gini0.10", "routing profile: uniform, gini0.10, gini0.25, "
              "gini0.35, hot (one expert ~6x the mean), or gini:X for any Gini in [0, 1)"),
        Param("d", "int", 0, f"override d_model (0: the model's {m.d})", low=0),
        Param("f", "int", 0, f"override the expert FFN width (0: the model's {m.f})",
              low=0),
        Param("experts", "int", 0, f"override the routed experts (0: the model's {m.experts})",
              low=0),
        Param("top_k", "int", 0, f"override top-k (0: the model's {m.k})", low=0),
        Param("shared", "int", -1, f"override the shared experts (-1: the model's {m.shared})",
              low=-1))
    if m.gating.capacity_factor is not None:
        params += (Param("capacity_factor", "float", m.gating.capacity_factor,
                         "expert capacity factor (tokens beyond capacity are dropped)"),)
    summary = (f"MoE layer d={m.d} f={m.f} E={m.experts} top-{m.k}"
               + (f" + {m.shared} shared" if m.shared else "") + f", {m.gating.kind} gating")
    return Workload(name, summary, m.source, params, build)


def layer_dims(name: str, p: dict[str, Any]) -> tuple[int, int, int] | None:
    """(d, f, FFNs per token) of model layer ``name`` under parameters ``p`` (scale and shape
    overrides applied), for the up-front size estimate (workloads.footprint); None when the
    parameters are malformed (the builder then reports them)."""
    try:
        scale = max(int(p["scale"]), 1)
        if name.startswith("moe."):
            m = next(m for m in MOE_MODELS if f"moe.{m.name}" == name)
            shared = m.shared if p["shared"] < 0 else p["shared"]
            return ((p["d"] or m.d) // scale, (p["f"] or m.f) // scale,
                    (p["top_k"] or m.k) + shared)
        if name.startswith("ffn."):
            fm = next(m for m in FFN_MODELS if f"ffn.{m.name}" == name)
            return fm.d // scale, fm.f // scale, 1
        _, model, matrix = name.split(".")
        out, inp = LINEAR_MATRICES[model][matrix]
        return inp // scale, out // scale, 1
    except (KeyError, StopIteration, ValueError, TypeError):
        return None


def _override(name: str, m: MoEModel, p: dict[str, Any]) -> MoEModel:
    """The model with the shape overrides of ``p`` (d, f, experts, top_k, shared)."""
    d = p["d"] or m.d
    f = p["f"] or m.f
    e = p["experts"] or m.experts
    k = p["top_k"] or m.k
    sh = m.shared if p["shared"] < 0 else p["shared"]
    for key, v in (("d", d), ("f", f), ("experts", e), ("top_k", k)):
        if v < 1:
            raise WorkloadError(f"workload {name}: parameter {key}: must be >= 1, got {v}")
    if k > e:
        raise WorkloadError(f"workload {name}: parameter top_k: {k} exceeds the {e} experts")
    g = m.gating
    if g.kind == "sigmoid_group" and (e % g.n_group or g.topk_group * (e // g.n_group) < k):
        raise WorkloadError(f"workload {name}: parameter experts: {e} experts do not split "
                            f"into {g.n_group} groups whose top {g.topk_group} hold top-{k}")
    return dataclasses.replace(m, d=d, f=f, experts=e, k=k, shared=sh,
                               shared_f=m.shared_f or f)


def _real_moe(name: str, m: MoEModel, p: dict[str, Any], d: int, f: int) -> dict[str, Any]:
    if p["scale"] != 1:
        raise WorkloadError(f"workload {name}: parameter scale: must be 1 with weights=")
    from workloads.data import find_moe_tensors, load_tensor

    names = find_moe_tensors(p["weights"], p["layer"])
    if len(names["experts"]) != m.experts:
        raise WorkloadError(f"weights {p['weights']}: layer {p['layer']} has "
                            f"{len(names['experts'])} experts, {name} has {m.experts}")

    def load(n):
        return None if n is None else load_tensor(p["weights"], n)
    return {"router": load(names["router"]),
            "experts": [tuple(load(n) for n in trio) for trio in names["experts"]],
            "shared": [tuple(load(n) for n in trio) for trio in names.get("shared", [])]}


def _linear_builder(model: str, matrix: str, shape: tuple[int, int]):
    name = f"linear.{model}.{matrix}"

    def build(p: dict[str, Any]) -> LinearLayer:
        _check_common(name, p)
        out, inp = (_scaled(name, shape[0], p["scale"], "out"),
                    _scaled(name, shape[1], p["scale"], "in"))
        real = None
        if p["weights"]:
            from workloads.data import load_matrix

            real = load_matrix(p["weights"], p["key"] or None)
            real = real.toarray() if hasattr(real, "toarray") else real
        w = _weight(name, (out, inp), p, real=real)
        return LinearLayer(name, model, _tokens(p, inp), w, activation_sparsity(name, p),
                           dict(p), LINEAR_SOURCES[model])

    params = _common(16, 0.5, "none") + (
        Param("key", "str", "", "tensor name in the weights file (with weights=)"),)
    return Workload(name, f"pruned linear layer {shape[0]}x{shape[1]} (out x in)",
                    LINEAR_SOURCES[model], params, build)


def _custom_linear(p: dict[str, Any]) -> LinearLayer:
    """``linear.custom``: the weight matrix from a file (shape from the file)."""
    name = "linear.custom"
    if not p["weights"]:
        raise WorkloadError(f"workload {name}: parameter weights: give a .mtx, .npz, .npy or "
                            ".safetensors file")
    _check_common(name, p)
    from workloads.data import load_matrix

    real = load_matrix(p["weights"], p["key"] or None)
    if real.ndim != 2:
        raise WorkloadError(f"weights {p['weights']}: expected a matrix, got shape {real.shape}")
    _check_dense_fits(p, name, real.shape, p["tokens"])
    real = real.toarray() if hasattr(real, "toarray") else np.asarray(real)
    shape = (int(real.shape[0]), int(real.shape[1]))
    sparsity = p["weight_sparsity"]
    w = _weight(name, shape, p, real=real) if sparsity > 0 else Weight(
        name, shape, "dense", 0.0, p["seed"], data=_finite(p, name, real))
    return LinearLayer(name, "custom", _tokens(p, shape[1]), w, activation_sparsity(name, p),
                       dict(p), f"weights from {p['weights']}")


def _ffn_builder(m: FFNModel):
    name = f"ffn.{m.name}"

    def build(p: dict[str, Any]) -> FFNLayer:
        _check_common(name, p)
        d, f = _scaled(name, m.d, p["scale"], "d"), _scaled(name, m.f, p["scale"], "f")
        return FFNLayer(name, m.name, _tokens(p, d), _ffn(name, d, f, m.act, m.gated, p),
                        activation_sparsity(name, p), dict(p), m.source)

    return Workload(name, f"FFN d={m.d} f={m.f} {m.act}{' gated' if m.gated else ''}, "
                    f"activation-sparse ({m.activation})", m.source,
                    _common(16, 0.0, m.activation), build)


CUSTOM_LINEAR = Workload(
    "linear.custom", "linear layer y = x W^T with W from a file (.mtx SuiteSparse, .npz, .npy, "
    ".safetensors); zeros of W are skipped, -p weight_sparsity prunes further",
    "the user's file", _common(16, 0.0, "none") + (
        Param("key", "str", "", "tensor name in the file (.npz/.safetensors)"),),
    _custom_linear)

LAYERS = (tuple(_moe_builder(m) for m in MOE_MODELS)
          + tuple(_linear_builder(model, mat, shape)
                  for model, mats in LINEAR_MATRICES.items() for mat, shape in mats.items())
          + (CUSTOM_LINEAR,)
          + tuple(_ffn_builder(m) for m in FFN_MODELS))
