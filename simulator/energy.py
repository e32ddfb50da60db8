"""Energy: per-action tables (configs/energy/*.yaml) and the energy of a run or a dense GEMM.

Energy = sum over actions of (count x energy per action) + leakage x time. The per-action
energies live in an energy table, a YAML file in ``configs/energy`` loaded into the frozen
:class:`EnergyTable` by the one generic loader (:mod:`isa.schema`), so a misspelled key, a wrong
type or a negative energy arrives as one :class:`~isa.errors.ConfigError` listing every problem
by key path. A chip names its table (``ChipConfig.energy_table``); tables are looked up by bare
name (``onyx-12nm``) in ``configs/energy`` under the current directory, then in this source
tree, or given as a path. ``docs/energy.md`` gives the sources, the calibration and its
arithmetic.

Counter -> action mapping (:func:`energy_breakdown`)
----------------------------------------------------
The stats dict of a run is flat: ``chip.<tile>.<opcode>.<counter>``, ``chip.noc.<stream>.*``,
``chip.memory.*`` and ``chip.controller.*`` (see :mod:`simulator.stats`). Each action below is
charged ``count x energy``; a counter not listed costs nothing (``first_cycle``,
``last_cycle``, ``tokens_in_count``, ``tokens_out_count``, ``match_count``, ``dropped_count``
and the time counters: their work is already paid for by the busy cycles, tokens and hops).

Each line: action: count -> energy per count (table key).

* ``mac``: ``alu.effectual_op_count`` of a MAC-class ALU -> ``mac_active_pj``
* ``mac_ineffectual``: ``alu.ineffectual_op_count`` (MAC-class) -> ``mac_active_pj``
* ``mac_gated``: ``alu.gated_op_count`` (MAC-class) -> ``mac_gated_pj``
* ``alu_op``: ``alu.effectual_op_count`` of other ALUs -> ``alu_op_pj``
* ``alu_op_ineffectual``: ``alu.ineffectual_op_count`` (other ALUs) -> ``alu_op_pj``
* ``alu_op_gated``: ``alu.gated_op_count`` (other ALUs) -> ``alu_op_pj`` x g (*)
* ``mac_skipped``: ``scan.skipped_zero_count`` -> ``mac_skipped_pj`` (0 in the shipped tables)
* ``zero_detect``: ``gated_op_count`` + ``skipped_zero_count`` -> ``zero_detect_pj``
* ``register_access``: 0 here (a run's register energy is inside the per-step entries); used
  by :func:`dense_gemm_energy` -> ``register_access_pj``
* ``joiner_step``: ``intersect.busy_cycles``, ``union.busy_cycles`` (one comparison per
  busy cycle) -> ``joiner_step_pj``
* ``reducer_accumulate``: ``reduce.add_count``, ``vreduce.add_count`` ->
  ``reducer_accumulate_pj``
* ``pe_control_step``: busy cycles of ``repeat``, ``repsig``, ``crddrop``, ``crdhold``; a
  reducer's busy cycles minus its adds; an ALU's busy cycles minus its ops (control tokens
  passed through) -> ``control_step_pj``
* ``mem_sram_read`` / ``mem_sram_write``: ``sram_read_words`` / ``sram_write_words`` (64-bit
  words) -> ``mem_sram_read_pj`` / ``mem_sram_write_pj``
* ``mem_control_step``: ``busy_cycles`` of ``scan``, ``array``, ``write_crd``, ``write_val``
  (one address-generator step each) -> ``control_step_pj``
* ``fifo_push``: sum of ``chip.noc.*.token_count`` (each 17-bit token is pushed once into its
  consumer's input FIFO) -> ``fifo_push_pj``
* ``interconnect_hop``: sum of ``chip.noc.*.hop_count`` (tokens x links crossed) ->
  ``interconnect_hop_pj`` x ``interconnect.track_bits`` / 16 (the entry is per 16-bit word)
* ``glb_read`` / ``glb_write``: ``chip.memory.glb_read_bytes`` / ``glb_write_bytes`` divided
  by 8 (64-bit words) -> ``glb_read_pj`` / ``glb_write_pj``
* ``dram_read`` / ``dram_write``: ``chip.memory.dram_read_bytes`` / ``dram_write_bytes`` x 8
  (bits) -> ``chip.dram.energy_pj_per_bit`` (set by the DRAM preset), or when that is None
  the table's ``dram_pj_per_bit`` of ``chip.dram.kind``
* ``config_load``: ``chip.controller.config_bits`` -> ``config_load_pj_per_bit``
* ``firmware``: ``chip.controller.firmware_cycles`` (cycles the firmware processor, Onyx's
  M3, is busy) -> the chip's ``controller.firmware_pj_per_cycle`` (not the table's: the M3
  is not part of the array; no overhead or voltage scaling)
* ``leakage_pe`` / ``leakage_mem`` / ``leakage_glb``: PE tiles / MEM tiles / GLB tiles x
  cycles (every tile of the array leaks, busy or idle) -> ``leakage.*_tile_pj_per_cycle``

(*) g = ``mac_gated_pj / mac_active_pj`` of the datatype: a gated non-MAC op saves the same
fraction as a gated MAC.

MAC-class ALUs are those whose ``op`` is ``mul`` (or the activations ``silu``/``gelu``,
assumed to cost one multiply-class step). Tile stats do not say which op a tile runs, so pass
``program=`` to classify ALUs; without it every ALU op is costed as a MAC (an upper bound: the
catalog's sparse kernels multiply in the ALU and add in a reducer). Energies use the datatype
``datatype`` (default: ``int16`` for a 16-bit datapath, ``int8`` for 8, ``fp32`` for 32).

Components (``EnergyReport.by_component``): ``pe_alu`` (mac*, alu_op*, zero_detect,
register_access), ``pe_sparse`` (joiner_step, reducer_accumulate, pe_control_step),
``mem_sram``, ``mem_ctrl`` (mem_control_step), ``fifo``, ``interconnect``, ``glb``, ``dram``,
``config``, ``firmware``, ``leakage``.

Scaling rules
-------------
* ``fabric_overhead`` (the silicon calibration factor, ``docs/energy.md``) multiplies the
  on-chip dynamic energy of the array: components ``pe_alu``, ``pe_sparse``, ``mem_sram``,
  ``mem_ctrl``, ``fifo``, ``interconnect`` and ``config``. It does not multiply ``glb``,
  ``dram`` or ``leakage``.
* Voltage: a table is stated at its ``voltage_v`` (V0). Evaluated at V, dynamic energy (every
  component but ``dram`` and ``leakage``) scales by (V/V0)^2; DRAM energy does not follow the
  core voltage; leakage power scales by V/V0 (constant leakage current, first order).
* Leakage entries are pJ per cycle at ``leakage.reference_freq_mhz``, i.e. a power; at a clock
  f the energy per cycle is ``value x reference_freq_mhz / f``.

Dense mode (:func:`systolic_actions`, :func:`dense_gemm_energy`)
-----------------------------------------------------------------
An INT16 C[M,N] = A[M,K] B[K,N] on an r x c block of MAC PEs, output stationary: each MAC PE
holds one C element in its accumulator and performs one fused MAC (2 ops) per cycle. The
block is the compiler's (compiler.dense: the CGRA's MAC block, 16 x 21 on Onyx, or a chip's
``systolic`` section). A is streamed in from the GLB through an I/O group's MEM tiles; B is
loaded once into the MEM tiles of the MAC groups and re-read for every row block of A. With
TR = ceil(M/r), TC = ceil(N/c), the same counts for a ``gemm`` kernel, a model layer's
dense-mode products and its router (:func:`systolic_actions`), and for the calibration:

* cycles = TR x TC x K (fill and drain overlapped; full utilization when r | M and c | N);
* per MAC: 1 ``mac``, 2 ``fifo_push`` and 2 ``interconnect_hop`` (each operand is broadcast
  along a row or a column and crosses one link per PE it reaches), 4 ``register_access``
  (2 operand reads, accumulator read and write);
* A: M K TC words streamed from the GLB, each written to and read from one IO-group MEM tile;
* B: K N words loaded once (GLB read, MEM write), K N TR words read from MEM tiles;
* C: M N words drained over 2 hops into MEM tiles (write, read) and into the GLB;
* one ``mem_control_step`` per MEM SRAM word access (address generation);
* DRAM: A and B read once, C written once (the GLB holds the working set); GLB writes for
  the DRAM loads and C, GLB reads for the DRAM stores of C;
* no configuration energy (steady state); leakage of every tile for the cycles.

A simulated run charges the array's actions of this list; its GLB, DRAM and configuration
energy come from the controller's counters like any other kernel's, and leakage from the
run's cycles. :func:`dense_gemm_energy` is the steady-state calibration kernel (the GLB and
DRAM lines above, leakage over TR x TC x K cycles). Ops = 2 x MACs. The model is linear in
``fabric_overhead``; :func:`fit_fabric_overhead` solves for the factor that reproduces a
target GOPS/W (how onyx-12nm's value was fitted).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from isa.arch import ChipConfig
from isa.configpath import config_search_path
from isa.ops import SIGNATURES, Opcode, TileKind
from isa.program import Program
from isa.schema import (
    apply_overrides,
    load_dataclass,
    resolve_named_file,
)
from simulator.config import read_yaml
from simulator.yaml_input import FileVersion, file_version

__all__ = [
    "ACTIONS",
    "COMPONENTS",
    "DATATYPE_BY_BITS",
    "DEFAULT_ENERGY_ROOT",
    "DatatypeEnergy",
    "Datatypes",
    "DramEnergy",
    "EnergyReport",
    "EnergyTable",
    "LeakageEnergy",
    "dense_gemm_energy",
    "actions_from_stats",
    "energy_breakdown",
    "energy_from_counts",
    "energy_search_path",
    "fit_fabric_overhead",
    "list_energy_tables",
    "load_energy_table",
    "resolve_energy_table",
    "systolic_actions",
]

DEFAULT_ENERGY_ROOT = Path("configs/energy")
"""Where bare energy-table names are looked up, relative to the current directory."""


DATATYPE_BY_BITS = {8: "int8", 16: "int16", 32: "fp32"}
"""Default datatype for a PE datapath width (``pe.datapath_bits``)."""

_MAC_CLASS_ALU_OPS = frozenset({"mul", "silu", "gelu"})
"""ALU ops costed as a MAC: multiplies, and activations assumed to need a multiply step."""

# --------------------------------------------------------------------------------------------
# The table


def _non_negative(obj: Any) -> list[tuple[str, str]]:
    """Problems for every float field of ``obj`` that is negative."""
    return [(f.name, f"must be >= 0 (got {getattr(obj, f.name)})")
            for f in dataclasses.fields(obj)
            if isinstance(getattr(obj, f.name), float) and getattr(obj, f.name) < 0]


@dataclass(frozen=True)
class DatatypeEnergy:
    """Value-datapath energies of one number format (pJ per op)."""

    mac_active_pj: float          # one multiply-accumulate performed (operands non-zero or not)
    mac_gated_pj: float           # one MAC issued on a zero operand and clock-gated
    mac_skipped_pj: float         # one MAC never issued (skipped by the metadata)
    alu_op_pj: float              # one non-MAC value op: add, sub, max, compare
    reducer_accumulate_pj: float  # one reducer accumulation: add + accumulator read and write

    def problems(self) -> list[tuple[str, str]]:
        out = _non_negative(self)
        if self.mac_gated_pj > self.mac_active_pj:
            out.append(("mac_gated_pj", f"must not exceed mac_active_pj ({self.mac_active_pj})"))
        if self.mac_skipped_pj > self.mac_active_pj:
            out.append(("mac_skipped_pj",
                        f"must not exceed mac_active_pj ({self.mac_active_pj})"))
        return out

    @property
    def gated_fraction(self) -> float:
        """Energy of a gated op relative to a performed one."""
        return self.mac_gated_pj / self.mac_active_pj if self.mac_active_pj else 0.0


@dataclass(frozen=True)
class Datatypes:
    """Per-format value energies."""

    int8: DatatypeEnergy
    int16: DatatypeEnergy
    bf16: DatatypeEnergy
    fp32: DatatypeEnergy

    def get(self, name: str) -> DatatypeEnergy:
        """The entry of datatype ``name``; ValueError naming the valid ones otherwise."""
        names = [f.name for f in dataclasses.fields(self)]
        if name not in names:
            raise ValueError(f"unknown datatype {name!r} (use one of {', '.join(names)})")
        return getattr(self, name)


@dataclass(frozen=True)
class DramEnergy:
    """DRAM access energy per bit transferred, by ``dram.kind`` preset (I/O included)."""

    lpddr4: float
    ddr4: float
    hbm2: float

    def problems(self) -> list[tuple[str, str]]:
        return _non_negative(self)


@dataclass(frozen=True)
class LeakageEnergy:
    """Static energy per tile per cycle, stated at ``reference_freq_mhz`` (it is a power)."""

    reference_freq_mhz: float
    pe_tile_pj_per_cycle: float
    mem_tile_pj_per_cycle: float
    glb_tile_pj_per_cycle: float

    def problems(self) -> list[tuple[str, str]]:
        out = _non_negative(self)
        if self.reference_freq_mhz <= 0:
            out.append(("reference_freq_mhz", "must be > 0"))
        return out


@dataclass(frozen=True)
class EnergyTable:
    """Per-action energies of one technology, in pJ, at ``voltage_v``."""

    name: str
    node_nm: float                # technology node (informational)
    voltage_v: float              # supply voltage the dynamic energies are stated at
    fabric_overhead: float        # calibration multiplier of the array's dynamic energy
    datatypes: Datatypes
    control_step_pj: float        # one 16-bit compare/increment step of a control unit
    joiner_step_pj: float         # one intersect/union comparison step
    zero_detect_pj: float         # one zero test of a 16-bit operand
    register_access_pj: float     # one 16-bit register read or write
    fifo_push_pj: float           # one 17-bit token pushed into a small FIFO
    interconnect_hop_pj: float    # one 16-bit word crossing one tile-to-tile link
    mem_sram_read_pj: float       # one 64-bit MEM-tile SRAM word read
    mem_sram_write_pj: float      # one 64-bit MEM-tile SRAM word write
    glb_read_pj: float            # one 64-bit GLB word read
    glb_write_pj: float           # one 64-bit GLB word write
    config_load_pj_per_bit: float
    dram_pj_per_bit: DramEnergy
    leakage: LeakageEnergy
    description: str = ""

    def problems(self) -> list[tuple[str, str]]:
        positive = ("node_nm", "voltage_v", "fabric_overhead")
        out = [(k, m) for k, m in _non_negative(self) if k not in positive]
        for key in positive:
            if getattr(self, key) <= 0:
                out.append((key, "must be > 0"))
        return out

    def dram_pj_per_bit_of(self, kind: str) -> float:
        """DRAM energy per bit of a ``dram.kind`` preset."""
        if kind not in ("lpddr4", "ddr4", "hbm2"):
            raise ValueError(f"unknown dram kind {kind!r} (use lpddr4, ddr4 or hbm2)")
        return float(getattr(self.dram_pj_per_bit, kind))


# --------------------------------------------------------------------------------------------
# Loading


def energy_search_path(root: str | Path = DEFAULT_ENERGY_ROOT) -> list[Path]:
    """The folders searched for bare table names, in order (duplicates removed)."""
    return config_search_path("energy", root)


def resolve_energy_table(name_or_path: str | Path,
                         root: str | Path = DEFAULT_ENERGY_ROOT) -> Path:
    """The YAML file of a table given as a path or a bare name (``onyx-12nm``); an unknown
    name gives a ConfigError listing the tables available."""
    return resolve_named_file(name_or_path, energy_search_path(root), "energy table")


def _parse_override_value(text: str) -> Any:
    """An override value parsed as YAML (``1`` -> 1); text that is not YAML stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_energy_table(name_or_path: str | Path, overrides: Sequence[str] = ()) -> EnergyTable:
    """Load an energy table from a bare name or a YAML path, with ``key.path=value`` overrides.

    Raises one ConfigError naming the file for a missing file, bad YAML, unknown keys (with
    suggestions), wrong types, missing keys and impossible values, all together. A table is
    loaded once per process and version of its file (the same frozen object is returned).
    """
    file = resolve_energy_table(name_or_path)
    key = (file_version(file), tuple(overrides))
    if key[0] is not None and key in _tables:
        return _tables[key]            # frozen all the way down: safe to share
    where = str(file)
    data = read_yaml(file, where=where)
    if overrides:
        where = f"{where} (with overrides {' '.join(overrides)})"
        data = apply_overrides(data, list(overrides), where=where, parse=_parse_override_value)
    table = load_dataclass(EnergyTable, data, where=where)
    if key[0] is not None:
        if len(_tables) >= _CACHE_TABLES:
            del _tables[next(iter(_tables))]
        _tables[key] = table
    return table


_CACHE_TABLES = 16
"""Most loaded energy tables kept per process (each probe of the order choice prices its run
with the chip's table: loaded and validated once, not once per probe)."""

_tables: dict[tuple[FileVersion | None, tuple[str, ...]], EnergyTable] = {}


def list_energy_tables(root: str | Path = DEFAULT_ENERGY_ROOT) -> list[tuple[str, Path, str]]:
    """(name, path, description) of every ``*.yaml`` table in ``root`` (default: the search
    path's first folder that exists), sorted by name; an unreadable file is listed with its
    problem as the description."""
    folder = Path(root)
    if not folder.is_dir():
        folders = energy_search_path(root)
        if not folders:
            return []
        folder = folders[0]
    out: list[tuple[str, Path, str]] = []
    for file in sorted(folder.glob("*.yaml"), key=lambda f: f.stem):
        try:
            text = file.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
            description = str((data or {}).get("description", "") or "")
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as exc:
            description = f"(invalid: {str(exc).splitlines()[0] if str(exc) else exc!r})"
        out.append((file.stem, file, " ".join(description.split())))
    return out


# --------------------------------------------------------------------------------------------
# Reports

ACTIONS: dict[str, str] = {
    "mac": "pe_alu",
    "mac_ineffectual": "pe_alu",
    "mac_gated": "pe_alu",
    "mac_skipped": "pe_alu",
    "alu_op": "pe_alu",
    "alu_op_ineffectual": "pe_alu",
    "alu_op_gated": "pe_alu",
    "zero_detect": "pe_alu",
    "register_access": "pe_alu",
    "joiner_step": "pe_sparse",
    "reducer_accumulate": "pe_sparse",
    "pe_control_step": "pe_sparse",
    "mem_sram_read": "mem_sram",
    "mem_sram_write": "mem_sram",
    "mem_control_step": "mem_ctrl",
    "fifo_push": "fifo",
    "interconnect_hop": "interconnect",
    "glb_read": "glb",
    "glb_write": "glb",
    "dram_read": "dram",
    "dram_write": "dram",
    "config_load": "config",
    "firmware": "firmware",
    "leakage_pe": "leakage",
    "leakage_mem": "leakage",
    "leakage_glb": "leakage",
}
"""Every action and the component it belongs to."""

COMPONENTS = tuple(dict.fromkeys(ACTIONS.values()))
"""Components in report order."""

_FABRIC = frozenset({"pe_alu", "pe_sparse", "mem_sram", "mem_ctrl", "fifo", "interconnect",
                     "config"})
"""Components multiplied by ``fabric_overhead``."""


@dataclass(frozen=True)
class EnergyReport:
    """The energy of one run (or one modelled kernel), in pJ.

    ``by_action[a] = counts[a] x (energy per count of a, after scaling)``; ``by_component``
    sums the actions of each component; ``total_pj`` is the sum of either.
    """

    total_pj: float
    by_component: dict[str, float]
    by_action: dict[str, float]
    counts: dict[str, float]
    cycles: int
    seconds: float
    ops: int                      # useful arithmetic ops (see the producing function)
    table: str
    datatype: str
    voltage_v: float
    freq_mhz: float
    per_count_pj: dict[str, float] = field(default_factory=dict)

    @property
    def on_chip_pj(self) -> float:
        """Energy without DRAM (what a chip power measurement sees)."""
        return self.total_pj - self.by_component.get("dram", 0.0)

    @property
    def average_power_w(self) -> float:
        """Average power over the run, DRAM included."""
        return self.total_pj * 1e-12 / self.seconds if self.seconds > 0 else 0.0

    def gops_per_watt(self, *, include_dram: bool = False) -> float:
        """Ops per joule / 1e9 (= GOPS per watt), on chip unless ``include_dram``."""
        energy_pj = self.total_pj if include_dram else self.on_chip_pj
        return self.ops / (energy_pj * 1e-12) / 1e9 if energy_pj > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable)."""
        return dataclasses.asdict(self)


def _resolve_datatype(chip: ChipConfig, datatype: str | None) -> str:
    if datatype is not None:
        return datatype
    bits = chip.pe.datapath_bits
    if bits not in DATATYPE_BY_BITS:
        raise ValueError(f"no default datatype for a {bits}-bit datapath; pass datatype=")
    return DATATYPE_BY_BITS[bits]


def _per_count(table: EnergyTable, chip: ChipConfig, datatype: str, voltage_v: float,
               freq_mhz: float) -> dict[str, float]:
    """Energy (pJ) per count of every action after overhead, voltage and clock scaling."""
    dt = table.datatypes.get(datatype)
    v2 = (voltage_v / table.voltage_v) ** 2
    leak = table.leakage
    leak_scale = (voltage_v / table.voltage_v) * leak.reference_freq_mhz / freq_mhz
    track = chip.interconnect.track_bits / 16
    base = {
        "mac": dt.mac_active_pj,
        "mac_ineffectual": dt.mac_active_pj,
        "mac_gated": dt.mac_gated_pj,
        "mac_skipped": dt.mac_skipped_pj,
        "alu_op": dt.alu_op_pj,
        "alu_op_ineffectual": dt.alu_op_pj,
        "alu_op_gated": dt.alu_op_pj * dt.gated_fraction,
        "zero_detect": table.zero_detect_pj,
        "register_access": table.register_access_pj,
        "joiner_step": table.joiner_step_pj,
        "reducer_accumulate": dt.reducer_accumulate_pj,
        "pe_control_step": table.control_step_pj,
        "mem_sram_read": table.mem_sram_read_pj,
        "mem_sram_write": table.mem_sram_write_pj,
        "mem_control_step": table.control_step_pj,
        "fifo_push": table.fifo_push_pj,
        "interconnect_hop": table.interconnect_hop_pj * track,
        "glb_read": table.glb_read_pj,
        "glb_write": table.glb_write_pj,
        "config_load": table.config_load_pj_per_bit,
    }
    out: dict[str, float] = {}
    for action, pj in base.items():
        scale = v2 * (table.fabric_overhead if ACTIONS[action] in _FABRIC else 1.0)
        out[action] = pj * scale
    dram = chip.dram.energy_pj_per_bit
    if dram is None:                    # no per-bit energy with the DRAM: the table's
        dram = table.dram_pj_per_bit_of(chip.dram.kind)
    out["dram_read"] = out["dram_write"] = dram
    # the firmware processor: its own per-cycle energy at its own operating point (chip YAML)
    out["firmware"] = chip.controller.firmware_pj_per_cycle
    out["leakage_pe"] = leak.pe_tile_pj_per_cycle * leak_scale
    out["leakage_mem"] = leak.mem_tile_pj_per_cycle * leak_scale
    out["leakage_glb"] = leak.glb_tile_pj_per_cycle * leak_scale
    return out


def _report(counts: dict[str, float], per_count: dict[str, float], *, cycles: int,
            freq_mhz: float, ops: int, table: EnergyTable, datatype: str,
            voltage_v: float) -> EnergyReport:
    full = {a: float(counts.get(a, 0.0)) for a in ACTIONS}
    by_action = {a: full[a] * per_count[a] for a in ACTIONS}
    by_component = {c: 0.0 for c in COMPONENTS}
    for action, pj in by_action.items():
        by_component[ACTIONS[action]] += pj
    return EnergyReport(
        total_pj=math.fsum(by_action.values()), by_component=by_component,
        by_action=by_action, counts=full, cycles=int(cycles),
        seconds=cycles / (freq_mhz * 1e6), ops=int(ops), table=table.name, datatype=datatype,
        voltage_v=voltage_v, freq_mhz=freq_mhz, per_count_pj=dict(per_count))


def _alu_kinds(program: Program | None) -> dict[str, str]:
    """Tile prefix (``pe_R_C``, or node id when unplaced) -> ALU op, from the program."""
    if program is None:
        return {}
    out: dict[str, str] = {}
    for kernel in program.kernels:
        for node in getattr(kernel, "nodes", ()):     # a systolic kernel has no ALU nodes
            if node.op is not Opcode.ALU:
                continue
            tile = (node.id if node.tile is None else
                    f"{SIGNATURES[node.op].tile.value}_{node.tile[0]}_{node.tile[1]}")
            out[tile] = str(node.attr("op"))
    return out


def _value(entry: Any) -> float:
    return float(entry["value"] if isinstance(entry, Mapping) else entry)


def energy_breakdown(stats: Mapping[str, Any], cycles: int, chip: ChipConfig,
                     table: EnergyTable, *, datatype: str | None = None,
                     voltage_v: float | None = None, program: Program | None = None,
                     actions: Mapping[str, float] | None = None, ops: int | None = None
                     ) -> EnergyReport:
    """Energy of a simulated run from its stats dict (mapping in the module docstring), plus
    the action counts its engines reported directly (``actions``: systolic kernels, model
    layers' tiles), through :func:`energy_from_counts`.

    ``stats`` maps counter names to ``{"value": ...}`` entries (or plain numbers); ``cycles``
    is the run's total cycles (leakage time) at ``chip.clock.freq_mhz``. ``voltage_v``
    defaults to the table's. ``program`` (optional) tells MAC-class ALUs from others.
    ``ops`` of the report defaults to effectual ALU ops + reducer accumulations.
    """
    counts, unit_ops = actions_from_stats(stats, program)
    for name, value in (actions or {}).items():
        counts[name] = counts.get(name, 0.0) + float(value)
    return energy_from_counts(counts, cycles, chip, table,
                              ops=unit_ops if ops is None else ops, datatype=datatype,
                              voltage_v=voltage_v)


def actions_from_stats(stats: Mapping[str, Any], program: Program | None = None
                       ) -> tuple[dict[str, float], int]:
    """(action counts, ops) of a run's counters: SAM units, streams, memory and controller
    (the mapping of the module docstring); leakage is not an action here."""
    alu_kinds = _alu_kinds(program)
    counts: dict[str, float] = dict.fromkeys(ACTIONS, 0.0)
    units: dict[tuple[str, str], dict[str, float]] = {}
    memory: dict[str, float] = {}
    controller: dict[str, float] = {}
    for name, entry in stats.items():
        parts = name.split(".")
        if len(parts) < 3 or parts[0] != "chip":
            continue
        if parts[1] == "noc":
            if parts[-1] == "token_count":
                counts["fifo_push"] += _value(entry)
            elif parts[-1] == "hop_count":
                counts["interconnect_hop"] += _value(entry)
        elif parts[1] == "memory" and len(parts) == 3:
            memory[parts[2]] = _value(entry)
        elif parts[1] == "controller" and len(parts) == 3:
            controller[parts[2]] = _value(entry)
        elif len(parts) == 4:
            units.setdefault((parts[1], parts[2]), {})[parts[3]] = _value(entry)
    for (tile, opname), c in units.items():
        try:
            op = Opcode(opname)
        except ValueError:
            continue
        busy = c.get("busy_cycles", 0.0)
        if op is Opcode.ALU:
            eff = c.get("effectual_op_count", 0.0)
            ineff = c.get("ineffectual_op_count", 0.0)
            gated = c.get("gated_op_count", 0.0)
            mac_class = alu_kinds.get(tile, "mul") in _MAC_CLASS_ALU_OPS
            prefix = "mac" if mac_class else "alu_op"
            counts[prefix] += eff
            counts[f"{prefix}_ineffectual"] += ineff
            counts[f"{prefix}_gated"] += gated
            counts["zero_detect"] += gated
            counts["pe_control_step"] += max(busy - eff - ineff - gated, 0.0)
        elif op in (Opcode.INTERSECT, Opcode.UNION, Opcode.BV_INTERSECT, Opcode.BV_UNION):
            counts["joiner_step"] += busy
        elif op in (Opcode.REDUCE, Opcode.VREDUCE):
            adds = c.get("add_count", 0.0)
            counts["reducer_accumulate"] += adds
            counts["pe_control_step"] += max(busy - adds, 0.0)
        elif SIGNATURES[op].tile is TileKind.PE:      # repeat, repsig, crddrop, crdhold
            counts["pe_control_step"] += busy
        else:                                         # MEM tile: scan, array, writers
            counts["mem_sram_read"] += c.get("sram_read_words", 0.0)
            counts["mem_sram_write"] += c.get("sram_write_words", 0.0)
            counts["mem_control_step"] += busy
            skipped = c.get("skipped_zero_count", 0.0)
            counts["mac_skipped"] += skipped
            counts["zero_detect"] += skipped
        if SIGNATURES[op].tile is TileKind.PE:
            # A PE unit's own SRAM counters are zero; counted anyway if a future unit has them.
            counts["mem_sram_read"] += c.get("sram_read_words", 0.0)
            counts["mem_sram_write"] += c.get("sram_write_words", 0.0)
    counts.update(memory_actions(memory))
    counts["config_load"] = controller.get("config_bits", 0.0)
    counts["firmware"] = controller.get("firmware_cycles", 0.0)
    ops = sum(c.get("effectual_op_count", 0.0) + c.get("add_count", 0.0)
              for c in units.values())
    return {k: v for k, v in counts.items() if not k.startswith("leakage")}, int(ops)


def energy_from_counts(counts: Mapping[str, float], cycles: int, chip: ChipConfig,
                       table: EnergyTable, *, ops: int, datatype: str | None = None,
                       voltage_v: float | None = None, freq_mhz: float | None = None
                       ) -> EnergyReport:
    """THE energy function: action counts (names of ``ACTIONS``) x energy per action, plus
    leakage of every tile over ``cycles``. Every path reaches it: a sparse kernel's unit
    counters (:func:`actions_from_stats`), a systolic kernel's (:func:`systolic_actions`), a
    model layer's tiles and products, and the dense calibration kernel. Unknown action names
    raise KeyError."""
    dtype = _resolve_datatype(chip, datatype)
    volts = table.voltage_v if voltage_v is None else float(voltage_v)
    freq = chip.clock.freq_mhz if freq_mhz is None else float(freq_mhz)
    full: dict[str, float] = dict.fromkeys(ACTIONS, 0.0)
    for name, value in counts.items():
        if name not in full:
            raise KeyError(f"unknown energy action {name!r}")
        full[name] = float(value)
    full["leakage_pe"] = len(chip.array.tiles(TileKind.PE)) * cycles
    full["leakage_mem"] = len(chip.array.tiles(TileKind.MEM)) * cycles
    full["leakage_glb"] = chip.glb.tiles * cycles
    per_count = _per_count(table, chip, dtype, volts, freq)
    return _report(full, per_count, cycles=cycles, freq_mhz=freq, ops=int(ops),
                   table=table, datatype=dtype, voltage_v=volts)


def action_prices(chip: ChipConfig, table: EnergyTable, *, datatype: str | None = None
                  ) -> tuple[dict[str, float], float]:
    """(pJ per count of every action, leakage pJ per chip cycle) at the table's voltage and
    the chip's clock: the prices :func:`energy_from_counts` applies, for choosing between
    alternatives before a run's totals exist (a model layer's mode per product)."""
    per = _per_count(table, chip, _resolve_datatype(chip, datatype), table.voltage_v,
                     chip.clock.freq_mhz)
    leak = (len(chip.array.tiles(TileKind.PE)) * per["leakage_pe"]
            + len(chip.array.tiles(TileKind.MEM)) * per["leakage_mem"]
            + chip.glb.tiles * per["leakage_glb"])
    return per, leak


def memory_actions(memory: Mapping[str, float]) -> dict[str, float]:
    """GLB and DRAM actions of byte counters named as ``chip.memory.*``'s (64-bit GLB
    words, DRAM bits), as :func:`actions_from_stats` counts them."""
    return {"glb_read": memory.get("glb_read_bytes", 0.0) / 8,
            "glb_write": memory.get("glb_write_bytes", 0.0) / 8,
            "dram_read": memory.get("dram_read_bytes", 0.0) * 8,
            "dram_write": memory.get("dram_write_bytes", 0.0) * 8}


# --------------------------------------------------------------------------------------------
# Dense mode: the actions of a GEMM on a block of MAC PEs


def systolic_actions(M: int, N: int, K: int, rows: int, cols: int, chip: ChipConfig, *,
                     effectual: int | None = None, k_array: int | None = None
                     ) -> dict[str, float]:
    """The array's action counts of an M x K by K x N GEMM on a rows x cols output-stationary
    block (the per-MAC model of the module docstring), GLB and DRAM traffic excluded.

    ``k_array`` is the reduction length the array runs (K' under N:M; default K): the block
    issues M N K' MACs, ``effectual`` of them with both operands nonzero (default all), the
    rest at full energy (``mac_ineffectual``: the array neither skips nor gates).
    """
    kk = K if k_array is None else k_array
    tr, tc = math.ceil(M / rows), math.ceil(N / cols)
    macs = M * N * kk
    eff = macs if effectual is None else effectual
    words_per_sram = chip.mem_tile.word_bits // 16
    a_stream = M * K * tc              # A words streamed GLB -> IO MEM tiles -> rows
    b_load = kk * N                    # B words loaded once into the MAC groups' MEM tiles
    b_reads = kk * N * tr              # B words read from MEM tiles (once per row block)
    c_words = M * N
    sram_reads = (a_stream + b_reads + c_words) / words_per_sram
    sram_writes = (a_stream + b_load + c_words) / words_per_sram
    return {
        "mac": float(eff),
        "mac_ineffectual": float(macs - eff),
        "register_access": 4.0 * macs,
        "fifo_push": 2.0 * macs + c_words,
        "interconnect_hop": 2.0 * macs + 2 * c_words,
        "mem_sram_read": sram_reads,
        "mem_sram_write": sram_writes,
        "mem_control_step": sram_reads + sram_writes,
    }


def dense_gemm_energy(M: int, N: int, K: int, chip: ChipConfig, table: EnergyTable, *,
                      rows: int, cols: int, freq_mhz: float | None = None,
                      voltage_v: float | None = None, datatype: str = "int16") -> EnergyReport:
    """Energy of a dense GEMM (M x K times K x N) on a rows x cols MAC block at steady state:
    the calibration kernel (docs/energy.md).

    The array's actions are :func:`systolic_actions`; A and B are read from DRAM once and C
    written once, GLB writes for the loads and C, GLB reads for the streams of A, the load of
    B and the store of C; leakage over TR x TC x K cycles (fill and drain overlapped).
    ``freq_mhz`` (default the chip clock) sets time and leakage per cycle; ``voltage_v``
    (default the table's) scales dynamic energy by (V/V0)^2. ``ops`` = 2 x M N K.
    """
    if min(M, N, K) < 1:
        raise ValueError(f"GEMM sizes must be >= 1 (got M={M}, N={N}, K={K})")
    freq = chip.clock.freq_mhz if freq_mhz is None else float(freq_mhz)
    volts = table.voltage_v if voltage_v is None else float(voltage_v)
    tr, tc = math.ceil(M / rows), math.ceil(N / cols)
    cycles = tr * tc * K
    words_per_glb = chip.glb.bank_width_bits // 16
    c_words = M * N
    counts = systolic_actions(M, N, K, rows, cols, chip)
    counts.update({
        "glb_read": (M * K * tc + K * N + c_words) / words_per_glb,
        "glb_write": (M * K + K * N + c_words) / words_per_glb,
        "dram_read": (M * K + K * N) * 16,
        "dram_write": c_words * 16,
    })
    return energy_from_counts(counts, cycles, chip, table, ops=2 * M * N * K,
                              datatype=datatype, voltage_v=volts, freq_mhz=freq)


def fit_fabric_overhead(target_gops_per_w: float, M: int, N: int, K: int, chip: ChipConfig,
                        table: EnergyTable, *, rows: int, cols: int, freq_mhz: float,
                        voltage_v: float) -> tuple[float, float, float]:
    """Solve for the ``fabric_overhead`` that makes the dense GEMM reach a target on-chip GOPS/W.

    On-chip energy is linear in the factor, E(f) = f x A + B, with A the fabric energy at
    f = 1 and B the rest (GLB, leakage). Returns (f, A, B) in pJ; f = (E_target - B) / A
    with E_target = ops / (target x 1e9) J.
    """
    def on_chip(f: float) -> float:
        t = dataclasses.replace(table, fabric_overhead=f)
        return dense_gemm_energy(M, N, K, chip, t, rows=rows, cols=cols, freq_mhz=freq_mhz,
                                 voltage_v=voltage_v).on_chip_pj

    rest = on_chip(0.0)               # B (replace() does not run the table's problems())
    fabric = on_chip(1.0) - rest      # A
    target_pj = 2 * M * N * K / (target_gops_per_w * 1e9) * 1e12
    return (target_pj - rest) / fabric, fabric, rest
