"""Sweep specs: the YAML format, its checks, and its expansion into points.

    name: sparsity-vs-edp               # optional (default: the file's stem)
    fidelity: burst                     # required: one engine for every point
    baseline: xeon-12c                  # optional CPU preset (ratios need it)
    metrics: [cycles, energy_j, baseline.edp_ratio]   # figures the table/CSV/frame show
    store: runs/sweeps/sparsity.sqlite  # optional (default runs/sweeps/<name>.sqlite)
    chips:
      - onyx-small                      # a name in configs/chips or a YAML path
      - chip: onyx
        label: onyx-fifo                # optional: the name in tables and plots
        overrides: {pe.fifo_depth: [2, 4, 8]}      # a grid of config overrides
    workloads:
      - workload: linear.bert-base.intermediate
        params:
          scale: 8                                  # a fixed value
          weight_sparsity: {linspace: [0, 0.99, 10]}  # 10 values, both ends included
          seed: {range: [0, 3]}                     # Python's range: 0, 1, 2
        combine: product                # or zip: the swept lists advance together
        fidelity: analytic              # optional: this workload's own engine

A value is fixed (a scalar), a list of values, ``{linspace: [start, stop, num]}`` or
``{range: [start, stop(, step)]}``. A tuple-valued parameter is a string (``"64,64,64"``).
Points are every chip (x its override grid) x every workload (x its parameter grid).

Checks (all before any point runs; every problem is collected into one ConfigError): unknown
keys, types and grids here; chips and their override values through the target's chip loader;
workload parameters through its workload builder (each value of each parameter, with the
first value of the others); the baseline; the metric names.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from isa.errors import ConfigError
from sweeps.target import Point, Target

TOP_KEYS = ("name", "description", "fidelity", "baseline", "metrics", "store", "chips",
            "workloads")
CHIP_KEYS = ("chip", "label", "overrides", "combine")
WORKLOAD_KEYS = ("workload", "label", "params", "combine", "fidelity")
COMBINE = ("product", "zip")


@dataclass
class SweepSpec:
    """A checked sweep spec and its points, in order (chips, then workloads, then grids)."""

    name: str
    path: Path | None
    fidelity: str
    baseline: str | None
    metrics: tuple[str, ...]
    store: Path
    points: list[Point]
    swept: tuple[str, ...] = field(default=())   # parameter/override names that vary


class _Problems:
    """Problems collected as (where, message); raised together as one ConfigError."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, message: str) -> None:
        self.items.append((where, message.replace("\n", "\n    ")))

    def raise_any(self) -> None:
        if self.items:
            lines = "\n".join(f"  {w}: {m}" for w, m in self.items)
            raise ConfigError(f"invalid sweep spec {self.name}:\n{lines}")


def _unknown(key: Any, allowed: tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(str(key), allowed, n=1)
    return (f"unknown key{' (did you mean ' + hint[0] + '?)' if hint else ''}; "
            f"use {', '.join(allowed)}")


def grid_values(value: Any) -> list[Any] | str:
    """The values of one grid entry, or a message saying why it is not one."""
    if isinstance(value, list):
        return value if value else "empty list"
    if not isinstance(value, dict):
        return [value]
    if len(value) != 1 or next(iter(value)) not in ("linspace", "range"):
        return "a mapping must be {linspace: [start, stop, num]} or {range: [start, stop, step]}"
    kind, args = next(iter(value.items()))
    if not (isinstance(args, list) and all(isinstance(a, (int, float))
                                           and not isinstance(a, bool) for a in args)):
        return f"{kind}: expected a list of numbers"
    if kind == "linspace":
        if len(args) != 3 or not isinstance(args[2], int) or args[2] < 1:
            return "linspace: expected [start, stop, num] with an integer num >= 1"
        start, stop, num = args
        if num == 1:
            return [start]
        return [round(start + (stop - start) * i / (num - 1), 12) for i in range(num)]
    if len(args) not in (2, 3) or (len(args) == 3 and args[2] == 0):
        return "range: expected [start, stop] or [start, stop, step] with step != 0"
    start, stop = args[0], args[1]
    step = args[2] if len(args) == 3 else 1
    if all(isinstance(a, int) for a in args):
        out = list(range(start, stop, step))
    else:
        n = max(0, math.ceil((stop - start) / step))
        out = [round(start + i * step, 12) for i in range(n)]
    return out if out else f"range: {args} is empty"


def _grid(where: str, table: Any, combine: str, problems: _Problems
          ) -> list[dict[str, Any]] | None:
    """The combinations of a mapping of grid entries (product or zip), or None on a problem."""
    if table is None:
        return [{}]
    if not isinstance(table, dict):
        problems.add(where, f"expected a mapping, got {type(table).__name__}")
        return None
    axes: dict[str, list[Any]] = {}
    for key, value in table.items():
        vals = grid_values(value)
        if isinstance(vals, str):
            problems.add(f"{where}.{key}", vals)
        else:
            axes[str(key)] = vals
    if len(axes) != len(table):
        return None
    names = list(axes)
    if combine == "zip":
        swept = {k: len(v) for k, v in axes.items() if len(v) > 1}
        if len(set(swept.values())) > 1:
            problems.add(where, "combine: zip needs the swept lists to have one length, got "
                         + ", ".join(f"{k}: {n}" for k, n in swept.items()))
            return None
        n = max(swept.values(), default=1)
        return [{k: v[i] if len(v) > 1 else v[0] for k, v in axes.items()} for i in range(n)]
    return [dict(zip(names, combo)) for combo in itertools.product(*axes.values())]


def override_args(overrides: dict[str, Any]) -> list[str]:
    """A point's chip overrides as ``key.path=value`` strings (values as JSON, which the
    config loader's YAML reads back exactly), as ``-c`` gives them."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def point_key(point: Point) -> str:
    """A point's identity in the store: a hash of what it runs (not of its labels)."""
    ident = {k: point[k] for k in ("chip", "overrides", "workload", "params", "fidelity",
                                   "baseline")}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _entries(doc: dict[str, Any], key: str, head: str, keys: tuple[str, ...],
             problems: _Problems) -> list[tuple[str, dict[str, Any]]]:
    """(where, mapping) of each entry of the ``chips`` or ``workloads`` list."""
    items = doc.get(key)
    if not isinstance(items, list) or not items:
        problems.add(key, f"required: a non-empty list (each a name or a mapping with {head})")
        return []
    out = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            item = {head: item}
        if not isinstance(item, dict) or not isinstance(item.get(head), str):
            problems.add(where, f"expected a name or a mapping with a '{head}' string")
            continue
        for k in item:
            if k not in keys:
                problems.add(f"{where}.{k}", _unknown(k, keys))
        combine = item.get("combine", "product")
        if combine not in COMBINE:
            problems.add(f"{where}.combine", f"use {' or '.join(COMBINE)}, got {combine!r}")
        out.append((where, item))
    return out


def _check_grid(where: str, key_where: str, subject: str, grid_table: dict[str, Any],
                check: Any, problems: _Problems) -> None:
    """Through ``check``: the subject alone; each grid key alone with its values (the first
    failing value is named); then the keys' first values together."""
    msg = check(subject, {})
    if msg is not None:
        problems.add(where, msg)
        return
    firsts: dict[str, Any] = {}
    before = len(problems.items)
    for key, value in grid_table.items():
        vals = grid_values(value)
        if isinstance(vals, str):
            return
        for v in dict.fromkeys(map(_hashable, vals)):
            msg = check(subject, {key: _unhash(v)})
            if msg is not None:
                problems.add(f"{key_where}.{key}" + (f"={_unhash(v)!r}" if len(vals) > 1
                                                      else ""), msg)
                break
        firsts[key] = vals[0]
    if len(problems.items) == before and len(grid_table) > 1:
        msg = check(subject, firsts)
        if msg is not None:
            problems.add(key_where, msg)


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True)


def _unhash(v: Any) -> Any:
    return json.loads(v)


def load_sweep(path: str | Path | dict[str, Any], target: Target, *,
               store: str | Path | None = None) -> SweepSpec:
    """Read, check and expand a sweep spec (a YAML path or an already parsed mapping).

    Raises: ConfigError listing every problem, each with its place (``chips[1].overrides.x``).
    """
    if isinstance(path, dict):
        doc, where_file, name0 = path, None, "sweep"
    else:
        where_file = Path(path)
        name0 = where_file.stem
        try:
            doc = yaml.safe_load(where_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"sweep spec {path}: no such file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"sweep spec {path}: not valid YAML: {exc}") from None
    problems = _Problems(str(where_file) if where_file else "(mapping)")
    if not isinstance(doc, dict):
        problems.add("(top level)", "expected a mapping with chips, workloads, fidelity, ...")
        problems.raise_any()
    for k in doc:
        if k not in TOP_KEYS:
            problems.add(str(k), _unknown(k, TOP_KEYS))
    name = str(doc.get("name", name0))
    fidelity = doc.get("fidelity")
    if fidelity not in target.fidelities:
        problems.add("fidelity", f"required, one of {', '.join(target.fidelities)} (a sweep "
                     f"runs one engine throughout), got {fidelity!r}")
    baseline = doc.get("baseline")
    if baseline is not None:
        msg = target.check_baseline(str(baseline)) if isinstance(baseline, str) else \
            "expected a CPU preset name or path"
        if msg is not None:
            problems.add("baseline", msg)
    metrics = doc.get("metrics", list(target.default_metrics))
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        problems.add("metrics", "expected a list of figure names")
        metrics = []
    for i, m in enumerate(metrics):
        if m not in target.metrics:
            hint = difflib.get_close_matches(m, target.metrics, n=1)
            problems.add(f"metrics[{i}]", f"unknown figure {m!r}"
                         + (f" (did you mean {hint[0]}?)" if hint else "")
                         + f"; figures: {', '.join(target.metrics)}")
    chips = _entries(doc, "chips", "chip", CHIP_KEYS, problems)
    works = _entries(doc, "workloads", "workload", WORKLOAD_KEYS, problems)
    chip_grids = []
    for where, item in chips:
        table = item.get("overrides") or {}
        grid = _grid(f"{where}.overrides", table, item.get("combine", "product"), problems)
        if grid is not None and isinstance(table, dict):
            _check_grid(where, f"{where}.overrides", item["chip"], table, target.check_chip,
                        problems)
        chip_grids.append((item, grid or []))
    work_grids = []
    for where, item in works:
        table = item.get("params") or {}
        grid = _grid(f"{where}.params", table, item.get("combine", "product"), problems)
        if grid is not None and isinstance(table, dict):
            _check_grid(where, f"{where}.params", item["workload"], table,
                        target.check_workload, problems)
        fid = item.get("fidelity", fidelity)
        if "fidelity" in item and fid not in target.fidelities:
            problems.add(f"{where}.fidelity", f"one of {', '.join(target.fidelities)}, "
                         f"got {fid!r}")
        work_grids.append((item, grid or [], fid))
    store_path = store or doc.get("store") or Path("runs/sweeps") / f"{name}.sqlite"
    problems.raise_any()
    points: list[Point] = []
    for chip, cgrid in chip_grids:
        for over in cgrid:
            for work, wgrid, fid in work_grids:
                for params in wgrid:
                    p: Point = {
                        "seq": len(points), "chip": chip["chip"],
                        "chip_label": str(chip.get("label", Path(chip["chip"]).stem)),
                        "overrides": over, "workload": work["workload"],
                        "workload_label": str(work.get("label", work["workload"])),
                        "params": params, "fidelity": fid, "baseline": baseline}
                    p["key"] = point_key(p)
                    points.append(p)
    names = [k for p in points for k in p["overrides"]] + [k for p in points
                                                            for k in p["params"]]
    swept = tuple(k for k in dict.fromkeys(names)
                  if len({json.dumps(q["overrides"].get(k, q["params"].get(k)))
                          for q in points}) > 1)
    dup = len(points) - len({p["key"] for p in points})
    if dup:
        raise ConfigError(f"invalid sweep spec {problems.name}: {dup} points repeat another "
                          "(the same chip, overrides, workload and parameters)")
    return SweepSpec(name, where_file, str(fidelity), baseline, tuple(metrics),
                     Path(store_path), points, swept)
