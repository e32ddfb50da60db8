"""Reading a run folder (what ``sieve run --out DIR`` writes) into plain Python objects.

A run folder holds stats.json (``summary``, ``stats``, ``energy`` and, with a CPU baseline,
``baseline``), config.yaml (the resolved chip config), workload.json and program.s. Nothing
here runs a simulation: it only reads those files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isa.arch import ArrayConfig
from isa.asm import parse_program
from isa.errors import SieveError
from isa.ops import TileKind


class ReportError(SieveError):
    """A folder cannot be reported on (not a run folder, or a file in it is malformed)."""


# chip.<tile>.<opcode>.<counter>, tile pe_R_C or mem_R_C
_UNIT_STAT = re.compile(r"^chip\.((pe|mem)_(\d+)_(\d+))\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)$")


@dataclass(frozen=True)
class TileUnit:
    """One configured unit of the array: its tile, opcode and activity counters.

    ``first_cycle`` and ``last_cycle`` are kernel-relative cycles (0 = kernel launch).
    """

    tile: str                      # "pe_6_14"
    kind: TileKind
    row: int
    col: int
    opcode: str                    # "intersect"
    busy_cycles: int
    first_cycle: int
    last_cycle: int
    node: str = ""                 # the program's node id on this tile, when program.s names it
    counters: dict[str, float] = field(default_factory=dict)


@dataclass
class RunData:
    """The contents of one run folder.

    ``summary``, ``stats`` and ``energy`` are the objects of stats.json (``energy`` is empty
    when the run had no energy table); ``config`` is config.yaml flattened to dotted scalar
    keys (``"clock.freq_mhz"``); ``baseline`` is ``summary["baseline"]`` or None;
    ``timeline`` the job and DMA spans of a model-layer run (timeline.json), else empty.
    """

    path: Path
    summary: dict[str, Any]
    stats: dict[str, dict[str, Any]]
    energy: dict[str, Any]
    config: dict[str, Any]
    workload: dict[str, Any]
    nodes: dict[tuple[int, int], list[str]]
    timeline: list[dict[str, Any]] = field(default_factory=list)   # model layers' job spans

    @property
    def name(self) -> str:
        """The folder's name, used to label the run in comparisons."""
        return self.path.name

    @property
    def baseline(self) -> dict[str, Any] | None:
        return self.summary.get("baseline") or None

    @property
    def freq_mhz(self) -> float:
        """The chip clock: config.yaml's ``clock.freq_mhz``, else cycles / seconds."""
        freq = self.config.get("clock.freq_mhz")
        if isinstance(freq, (int, float)) and freq > 0:
            return float(freq)
        s = self.summary
        if s.get("seconds", 0) > 0:
            return s["cycles"] / s["seconds"] / 1e6
        raise ReportError(f"{self.path}: no clock frequency (config.yaml clock.freq_mhz)")

    @property
    def array(self) -> ArrayConfig:
        """The tile grid from config.yaml (``array.rows/cols/mem_column_period``)."""
        try:
            return ArrayConfig(int(self.config["array.rows"]), int(self.config["array.cols"]),
                               int(self.config["array.mem_column_period"]))
        except KeyError as exc:
            raise ReportError(f"{self.path / 'config.yaml'}: missing {exc.args[0]}") from None

    def stat(self, name: str, default: float = 0) -> float:
        """The value of one stat by its dotted name."""
        entry = self.stats.get(name)
        return default if entry is None else entry["value"]

    def tile_units(self) -> list[TileUnit]:
        """Every configured unit of the array, ordered by (row, col, opcode)."""
        found: dict[tuple[str, str], dict[str, float]] = {}
        for name, entry in self.stats.items():
            m = _UNIT_STAT.match(name)
            if m:
                found.setdefault((m.group(1), m.group(5)), {})[m.group(6)] = entry["value"]
        units = []
        for (tile, opcode), counters in found.items():
            kind, row, col = tile.split("_")
            r, c = int(row), int(col)
            units.append(TileUnit(
                tile=tile, kind=TileKind(kind), row=r, col=c, opcode=opcode,
                busy_cycles=int(counters.get("busy_cycles", 0)),
                first_cycle=int(counters.get("first_cycle", 0)),
                last_cycle=int(counters.get("last_cycle", 0)),
                node="/".join(self.nodes.get((r, c), [])), counters=counters))
        return sorted(units, key=lambda u: (u.row, u.col, u.opcode))


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder. Raises ReportError naming the damaged file and how it is damaged:
    no or unreadable stats.json, a file that is not (strict) JSON, an object without the
    fields the reports read or with fields of the wrong type, an unparsable program.s."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"{path}: not a run folder (not a folder)")
    stats_path = path / "stats.json"
    if not stats_path.is_file():
        raise ReportError(f"{path}: not a run folder (no stats.json)")
    doc = _json_object(stats_path)
    for key in ("summary", "stats"):
        if not isinstance(doc.get(key), dict):
            raise ReportError(f"{stats_path}: expected 'summary' and 'stats' objects "
                              f"({key!r} is {_kind(doc.get(key))})")
    _check_summary(stats_path, doc["summary"])
    for name, entry in doc["stats"].items():
        if not isinstance(entry, dict) or not _is_number(entry.get("value")):
            raise ReportError(f"{stats_path}: stats.{name}: expected an object with a "
                              f"numeric 'value', got {_kind(entry)}")
    if not isinstance(doc.get("energy") or {}, dict):
        raise ReportError(f"{stats_path}: energy: expected an object")
    config_path = path / "config.yaml"
    config = read_config_scalars(_text(config_path)) if config_path.is_file() else {}
    workload_path = path / "workload.json"
    workload = _json_object(workload_path) if workload_path.is_file() else {}
    program_path = path / "program.s"
    nodes: dict[tuple[int, int], list[str]] = {}
    if program_path.is_file():
        try:
            nodes = _placed_nodes(_text(program_path))
        except SieveError as exc:
            raise ReportError(f"{program_path}: not a valid program: {exc}") from None
    timeline_path = path / "timeline.json"
    timeline = _timeline(timeline_path) if timeline_path.is_file() else []
    return RunData(path, doc["summary"], doc["stats"], doc.get("energy") or {}, config,
                   workload, nodes, timeline)


_SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "chip": (str,), "workload": (str,), "fidelity": (str,), "cycles": (int,),
    "seconds": (int, float)}
"""Fields every run's summary has, with their types (what ``sieve run`` writes)."""

_SUMMARY_OPTIONAL: dict[str, tuple[type, ...]] = {
    "kernel": (str,), "kernel_cycles": (int,), "energy_j": (int, float),
    "ops": (int, float), "verified": (bool,), "checks": (dict,), "baseline": (dict,),
    "experts": (dict,), "roofs": (dict,), "mode": (str,), "energy_table": (str,)}

_SPAN_FIELDS: dict[str, tuple[type, ...]] = {
    "track": (str,), "start": (int, float), "end": (int, float)}


def _check_summary(where: Path, summary: dict[str, Any]) -> None:
    for key in _SUMMARY_FIELDS:
        if key not in summary:
            raise ReportError(f"{where}: summary.{key}: missing")
    for key, types in {**_SUMMARY_FIELDS, **_SUMMARY_OPTIONAL}.items():
        value = summary.get(key)
        if key in summary and value is not None and (
                not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise ReportError(f"{where}: summary.{key}: expected "
                              f"{' or '.join(t.__name__ for t in types)}, got {_kind(value)}")


def _timeline(where: Path) -> list[dict[str, Any]]:
    doc = _json_object(where)
    spans = doc.get("spans")
    if not isinstance(spans, list):
        raise ReportError(f"{where}: expected an object with a 'spans' list")
    for i, span in enumerate(spans):
        if not isinstance(span, dict):
            raise ReportError(f"{where}: spans[{i}]: expected an object, got {_kind(span)}")
        for key, types in _SPAN_FIELDS.items():
            if not isinstance(span.get(key), types) or isinstance(span.get(key), bool):
                raise ReportError(f"{where}: spans[{i}].{key}: expected "
                                  f"{' or '.join(t.__name__ for t in types)}, got "
                                  f"{_kind(span.get(key))}")
        if span["track"] == "lane" and not isinstance(span.get("lane"), int):
            raise ReportError(f"{where}: spans[{i}].lane: expected an int on a lane span")
    return spans


def _text(where: Path) -> str:
    try:
        return where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{where}: unreadable ({exc})") from None


def _json_object(where: Path) -> dict[str, Any]:
    """A strict-JSON object file (NaN and Infinity are refused, as run folders never hold
    them)."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")
    try:
        doc = json.loads(_text(where), parse_constant=refuse)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ReportError(f"{where}: invalid JSON: {exc}") from None
    except RecursionError:
        raise ReportError(f"{where}: invalid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{where}: expected a JSON object, got {_kind(doc)}")
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null or missing)"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _placed_nodes(text: str) -> dict[tuple[int, int], list[str]]:
    """Node ids of the program's first kernel by tile (none for a systolic kernel)."""
    program = parse_program(text)
    out: dict[tuple[int, int], list[str]] = {}
    if program.kernels:
        for node in getattr(program.kernels[0], "nodes", ()):
            if node.tile is not None:
                out.setdefault(tuple(node.tile), []).append(node.id)
    return out


def read_config_scalars(text: str) -> dict[str, Any]:
    """The scalars of a block-style YAML mapping (as ``dump_chip`` writes config.yaml),
    flattened to dotted keys: ``{"clock.freq_mhz": 850.0, "array.rows": 16, ...}``.

    Only what the reports need: nested mappings of plain or quoted scalars. Lists, flow
    collections and multi-line scalars are skipped.
    """
    out: dict[str, Any] = {}
    stack: list[tuple[int, str]] = []   # (indent, key) of the enclosing mappings
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", "-")):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, sep, value = stripped.partition(":")
        if not sep:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key.strip()])
        value = value.strip()
        if not value:
            stack.append((indent, key.strip()))
        elif not value.startswith(("[", "{", "|", ">")):
            out[dotted] = _scalar(value)
    return out


def _scalar(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    text = text.split(" #", 1)[0].strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
