"""The chip description: frozen dataclasses the compiler targets and the simulator builds.

They live in ``isa`` because they are part of the contract between the compiler (which may
not import the simulator) and the simulator. ``simulator.config`` loads them from YAML with
one generic loader; units are in the field names. Each class may define ``problems()``
returning semantic problems as (relative key path, message) pairs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from isa.ops import TileKind


@dataclass(frozen=True)
class ClockConfig:
    freq_mhz: float                      # operating frequency used to convert cycles to seconds
    max_freq_mhz: float                  # silicon maximum (informational, checked >= freq_mhz)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.freq_mhz <= 0:
            out.append(("freq_mhz", "must be > 0"))
        if self.freq_mhz > self.max_freq_mhz:
            out.append(("freq_mhz", f"{self.freq_mhz} exceeds max_freq_mhz {self.max_freq_mhz}"))
        return out


@dataclass(frozen=True)
class ArrayConfig:
    rows: int
    cols: int
    mem_column_period: int               # every k-th column (k-1, 2k-1, ...) is a MEM column

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for key in ("rows", "cols", "mem_column_period"):
            if getattr(self, key) < 1:
                out.append((key, "must be >= 1"))
        if self.mem_column_period >= 1 and self.cols < self.mem_column_period:
            out.append(("cols", f"must be >= mem_column_period ({self.mem_column_period}) "
                                "to hold a MEM column"))
        return out

    def kind(self, row: int, col: int) -> TileKind:
        """Tile kind at (row, col)."""
        return TileKind.MEM if (col + 1) % self.mem_column_period == 0 else TileKind.PE

    def tiles(self, kind: TileKind) -> list[tuple[int, int]]:
        """All tiles of one kind, row-major."""
        return [(r, c) for r in range(self.rows) for c in range(self.cols)
                if self.kind(r, c) is kind]


@dataclass(frozen=True)
class ZeroPolicyConfig:
    a: str = "skip"                      # policy for operand a of a PE's ALU: skip|gate|none
    b: str = "skip"

    def problems(self) -> list[tuple[str, str]]:
        return [(k, f"must be one of skip, gate, none (got {getattr(self, k)!r})")
                for k in ("a", "b") if getattr(self, k) not in ("skip", "gate", "none")]


@dataclass(frozen=True)
class PeConfig:
    fifo_depth: int                      # input FIFO entries per port (ready-valid)
    datapath_bits: int
    zero_policy: ZeroPolicyConfig = field(default_factory=ZeroPolicyConfig)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.fifo_depth < 1:
            out.append(("fifo_depth", "must be >= 1"))
        if self.datapath_bits not in (8, 16, 32):
            out.append(("datapath_bits", "must be 8, 16 or 32"))
        return out


@dataclass(frozen=True)
class MemTileConfig:
    size_bytes: int
    word_bits: int
    ports: int

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.size_bytes < 1:
            out.append(("size_bytes", "must be >= 1"))
        if self.word_bits % 16 or self.word_bits < 16:
            out.append(("word_bits", "must be a positive multiple of 16"))
        elif self.size_bytes % (self.word_bits // 8):
            out.append(("size_bytes", f"must be a multiple of the word ({self.word_bits} bits)"))
        if self.ports != 1:
            out.append(("ports", "only single-port memory tiles are modelled (1)"))
        return out


@dataclass(frozen=True)
class InterconnectConfig:
    tracks_per_direction: int            # routing tracks per link and direction
    track_bits: int
    hop_latency_cycles: int              # cycles per switch-box hop
    fifo_depth: int                      # ready-valid FIFO entries per hop

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for key in ("tracks_per_direction", "hop_latency_cycles", "fifo_depth"):
            if getattr(self, key) < 1:
                out.append((key, "must be >= 1"))
        if self.track_bits < 17:
            out.append(("track_bits", "must be >= 17 (16 data bits + 1 control bit)"))
        return out


@dataclass(frozen=True)
class GlbConfig:
    tiles: int
    tile_size_bytes: int
    banks_per_tile: int
    bank_width_bits: int
    array_links_per_direction: int       # GLB<->array links each way
    link_bits: int
    latency_cycles: int

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for key in ("tiles", "tile_size_bytes", "banks_per_tile", "bank_width_bits",
                    "array_links_per_direction", "link_bits"):
            if getattr(self, key) < 1:
                out.append((key, "must be >= 1"))
        if self.latency_cycles < 0:
            out.append(("latency_cycles", "must be >= 0"))
        if self.banks_per_tile >= 1 and self.tile_size_bytes % self.banks_per_tile:
            out.append(("banks_per_tile", f"must divide tile_size_bytes ({self.tile_size_bytes})"))
        return out

    @property
    def size_bytes(self) -> int:
        return self.tiles * self.tile_size_bytes

    @property
    def array_bytes_per_cycle(self) -> float:
        """GLB->array (or array->GLB) bandwidth over all links."""
        return self.array_links_per_direction * self.link_bits / 8


DRAM_KINDS = ("lpddr4", "ddr4", "hbm2", "hbm3")
"""DRAM families; the energy tables give a per-bit energy for all but ``hbm3``."""


@dataclass(frozen=True)
class DramConfig:
    """Off-chip memory, described in its own clock domain: a rate in GB/s (1 GB = 1e9 bytes)
    and a latency in ns. The chip converts both to its own cycles with its clock
    (:attr:`ChipConfig.dram_bytes_per_cycle`, :attr:`ChipConfig.dram_latency_cycles`), so a
    slower chip clock does not slow the memory down. The ``channels`` are interleaved: one DMA
    is striped over all of them, so they act as one channel of the summed bandwidth.

    A chip file usually names a preset (``dram: {preset: hbm2}``, configs/dram/*.yaml), which
    sets every field together; ``preset`` records which one (informational).
    """

    kind: str                            # lpddr4 | ddr4 | hbm2 | hbm3
    channels: int
    channel_bandwidth_gb_per_s: float    # peak data rate of one channel
    latency_ns: float                    # load-to-use latency, memory controller included
    energy_pj_per_bit: float | None = None   # None: the energy table's value for ``kind``
    preset: str = ""                     # the preset these values came from ("" if none)

    @property
    def bandwidth_gb_per_s(self) -> float:
        """Peak bandwidth over all channels, GB/s."""
        return self.channels * self.channel_bandwidth_gb_per_s

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.kind not in DRAM_KINDS:
            out.append(("kind", f"must be one of {', '.join(DRAM_KINDS)} (got {self.kind!r})"))
        if self.channels < 1:
            out.append(("channels", "must be >= 1"))
        if self.channel_bandwidth_gb_per_s <= 0:
            out.append(("channel_bandwidth_gb_per_s", "must be > 0"))
        if self.latency_ns < 0:
            out.append(("latency_ns", "must be >= 0"))
        if self.energy_pj_per_bit is not None and self.energy_pj_per_bit < 0:
            out.append(("energy_pj_per_bit", "must be >= 0"))
        if self.energy_pj_per_bit is None and self.kind == "hbm3":
            out.append(("energy_pj_per_bit", "required for kind hbm3 (the energy tables give "
                        "lpddr4, ddr4 and hbm2 only); or use `preset: hbm3`"))
        return out


@dataclass(frozen=True)
class ControllerConfig:
    config_bits_per_cycle: int           # configuration network bandwidth
    launch_cycles: int                   # firmware overhead per kernel launch
    dma_setup_cycles: int                # firmware overhead per DMA descriptor
    # issue 14 item 4: the firmware's energy and tile pipelining (docs/architecture.md)
    firmware_pj_per_cycle: float = 0.0   # energy of the firmware processor per busy cycle
    tile_pipelining: bool | str = False  # level buffers as depth-2 FIFOs of tiles: true |
    #                                      false | auto (the compiler picks per kernel)
    merge_cycles_per_element: int = 0    # firmware cycles per entry of a partial-output merge
    # issue 14 (i14-pipe): with tile_pipelining, the tiles that stream through one kernel call
    pipelined_tiles_per_call: int = 32

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.config_bits_per_cycle < 1:
            out.append(("config_bits_per_cycle", "must be >= 1"))
        if self.pipelined_tiles_per_call < 1:
            out.append(("pipelined_tiles_per_call", "must be >= 1"))
        if not (isinstance(self.tile_pipelining, bool) or self.tile_pipelining == "auto"):
            out.append(("tile_pipelining", f"must be true, false or auto (got "
                        f"{self.tile_pipelining!r})"))
        if not self.firmware_pj_per_cycle >= 0:
            out.append(("firmware_pj_per_cycle", "must be >= 0"))
        for key in ("launch_cycles", "dma_setup_cycles", "merge_cycles_per_element"):
            if getattr(self, key) < 0:
                out.append((key, "must be >= 0"))
        return out


OBJECTIVES = ("cycles", "energy", "edp")
"""Figures of merit the compiler's dataflow-order choice can minimise (compiler.objective)."""


@dataclass(frozen=True)
class CompilerConfig:
    balance_fifos: bool = True           # size stream FIFOs to absorb reconvergent imbalance
    max_buffer_entries: int = 64         # cap of extra FIFO entries on one stream
    layer_mode: str = "auto"             # model layers: sparse (SAM tiles) | dense (MAC
    #                                      block, systolic) | auto (per product, by objective)
    locate: bool = True                  # a dense level met in an intersection is located
    #                                      (locator) instead of co-iterated (scanner+joiner)
    bitvector: bool = True               # two bitmap levels joined with each other are
    #                                      joined word-wide (bitvector scanners + joiner)
    objective: str = "edp"               # what the compiler's choices minimise: cycles |
    #                                      energy | edp: the dataflow order (compiler/order.py)
    #                                      and a model layer's mode per product
    unroll: int | str = 1                # copies of a kernel's graph: auto | N >= 1
    #                                      (compiler/unroll.py)
    # issue 14 (i14-tiledeal): what unrolled copies take: auto | positions (stream filters
    # deal each call's outer positions) | tiles (whole tiles of a pipelined tiled kernel)
    unroll_deal: str = "auto"

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not (self.unroll == "auto" or (isinstance(self.unroll, int)
                                          and not isinstance(self.unroll, bool)
                                          and self.unroll >= 1)):
            out.append(("unroll", f"must be auto or an integer >= 1 (got {self.unroll!r})"))
        if self.unroll_deal not in ("auto", "positions", "tiles"):
            out.append(("unroll_deal", "must be auto, positions or tiles (got "
                        f"{self.unroll_deal!r})"))
        if not 0 <= self.max_buffer_entries <= 255:
            out.append(("max_buffer_entries", "must be in 0..255"))
        if self.layer_mode not in ("auto", "sparse", "dense"):
            out.append(("layer_mode", f"must be auto, sparse or dense (got {self.layer_mode!r})"))
        if self.objective not in OBJECTIVES:
            out.append(("objective", f"must be one of {', '.join(OBJECTIVES)} (got "
                        f"{self.objective!r})"))
        return out


@dataclass(frozen=True)
class SimConfig:
    fidelity: str = "burst"              # burst (default, fast) | cycle (the reference)
    max_cycles: int = 1_000_000_000      # watchdog

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.fidelity not in ("cycle", "burst"):
            out.append(("fidelity", f"must be cycle or burst (got {self.fidelity!r})"))
        if self.max_cycles < 1:
            out.append(("max_cycles", "must be >= 1"))
        return out


SYSTOLIC_DATAFLOWS = ("os", "ws", "is")
"""SCALE-Sim's dataflows: output-, weight- and input-stationary (simulator.systolic)."""


@dataclass(frozen=True)
class SystolicConfig:
    """A dense rows x cols MAC array for GEMMs, timed with SCALE-Sim v3's conventions.

    A chip with this section runs dense GEMMs on it; a chip without one runs them on the
    CGRA's dense MAC block (compiler.dense.dense_mapping).
    """

    rows: int
    cols: int
    dataflow: str = "os"                 # default dataflow: os | ws | is

    def problems(self) -> list[tuple[str, str]]:
        out = [(key, "must be >= 1") for key in ("rows", "cols") if getattr(self, key) < 1]
        if self.dataflow not in SYSTOLIC_DATAFLOWS:
            out.append(("dataflow", f"must be one of {', '.join(SYSTOLIC_DATAFLOWS)} "
                                    f"(got {self.dataflow!r})"))
        return out


@dataclass(frozen=True)
class ChipConfig:
    name: str
    clock: ClockConfig
    array: ArrayConfig
    pe: PeConfig
    mem_tile: MemTileConfig
    interconnect: InterconnectConfig
    glb: GlbConfig
    dram: DramConfig
    controller: ControllerConfig
    compiler: CompilerConfig = field(default_factory=CompilerConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    energy_table: str = "onyx-12nm"      # a name in configs/energy (or a YAML path)
    description: str = ""
    systolic: SystolicConfig | None = None  # dense GEMM array; None: the CGRA's MAC block

    @property
    def dram_bytes_per_cycle(self) -> float:
        """DRAM bandwidth in bytes per chip cycle: the memory's GB/s over the chip's clock."""
        return self.dram.bandwidth_gb_per_s * 1e3 / self.clock.freq_mhz

    @property
    def dram_latency_cycles(self) -> int:
        """DRAM latency in chip cycles, rounded up (a partial cycle is a whole one)."""
        return math.ceil(self.dram.latency_ns * self.clock.freq_mhz / 1e3 - 1e-9)

    def problems(self) -> list[tuple[str, str]]:
        """Limits that hold for every section: each per-event cycle count (a field named
        ``*_cycles``, sim.max_cycles excepted) is at most MAX_EVENT_CYCLES."""
        out = []
        for path, value in _fields(self):
            if path.endswith("_cycles") and path != "sim.max_cycles" \
                    and isinstance(value, int) and value > MAX_EVENT_CYCLES:
                out.append((path, f"{value} exceeds {MAX_EVENT_CYCLES:,} cycles (2**24, the "
                                  "margin the burst engine keeps below its int32 times)"))
        latency = self.dram.latency_ns * self.clock.freq_mhz / 1e3   # in chip cycles
        if latency > MAX_EVENT_CYCLES:
            out.append(("dram.latency_ns", f"{self.dram.latency_ns} ns is {latency:,.0f} "
                                           f"cycles at {self.clock.freq_mhz} MHz, over "
                                           f"{MAX_EVENT_CYCLES:,} (2**24)"))
        return out


MAX_EVENT_CYCLES = 2**24
"""Largest latency or overhead of one event, in cycles. The burst engine keeps times in int32
when sim.max_cycles < 2**31 - 2**24 and adds one event's cycles to a time below max_cycles, so
this bound keeps every sum in range (simulator.engine_burst)."""

ELEMENT_BYTES = 2
"""Bytes of one stored element (segment, coordinate or value) and of one word the GLB, the
links and DRAM move: the 16-bit datapath. The one definition the compiler and the simulator
share."""


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers (tiles, chunks, words), exact for any size."""
    return -(-a // b)


def _fields(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted path, value) of every leaf field of a config dataclass, nested sections too."""
    out: list[tuple[str, object]] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += _fields(value, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", value))
    return out
