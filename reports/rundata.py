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
    """Read a run folder. Raises ReportError when it has no readable stats.json."""
    path = Path(run_dir)
    stats_path = path / "stats.json"
    if not stats_path.is_file():
        raise ReportError(f"{path}: not a run folder (no stats.json)")
    try:
        doc = json.loads(stats_path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{stats_path}: invalid JSON: {exc}") from None
    if "summary" not in doc or "stats" not in doc:
        raise ReportError(f"{stats_path}: expected 'summary' and 'stats' objects")
    config_path = path / "config.yaml"
    config = read_config_scalars(config_path.read_text()) if config_path.is_file() else {}
    workload_path = path / "workload.json"
    workload = json.loads(workload_path.read_text()) if workload_path.is_file() else {}
    program_path = path / "program.s"
    nodes = _placed_nodes(program_path.read_text()) if program_path.is_file() else {}
    timeline_path = path / "timeline.json"
    timeline = json.loads(timeline_path.read_text())["spans"] if timeline_path.is_file() \
        else []
    return RunData(path, doc["summary"], doc["stats"], doc.get("energy") or {}, config,
                   workload, nodes, timeline)


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
