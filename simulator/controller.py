"""The controller: the firmware that runs any Program's schedule as SimPy events.

It is the chip's firmware (Onyx: a Cortex-M3). SimPy carries the chip-level events: one
event per DMA transfer, configuration load and kernel launch. Each launched kernel goes to
the engine of its kind and fidelity:

    SAM graph (isa.program.Kernel)      cycle: SimPy processes per primitive (engine_cycle)
                                        burst: one timed burst (engine_burst)
                                        analytic: model-layer tiles from counts (layers)
    systolic (isa.program.SystolicKernel)  the MAC block's SCALE-Sim timing (engine_systolic)

A kernel program's schedule is one command list (below). A model layer's Program has jobs
(isa.program.Job): the controller runs the router on the MAC block, top-k on the lanes, then
every products-stage job's task on the layer engine (simulator.layers: each product as tiles
of the tile kernel at the fidelity asked, and as the same product on the MAC block), then the
combine. The tasks are independent pure functions of picklable inputs, run through
``mapper`` (default the builtin ``map``; a process pool's map gives the same result, folded
in job order). Their lane jobs then run as SimPy events per lane (:func:`run_lanes`): DMA of
the job's weights DRAM -> GLB over one shared DRAM channel into the lane's free buffer (two
per lane: double buffering), then launch and wait for its tiles. Every product is priced in
both modes, sparse (the lanes) and dense (the MAC block as one lane), and the compiler's
policy in the Program (``layout.pick_product`` / ``pick_layer``: ``compiler.layer_mode``,
auto by ``compiler.objective``) picks one per product (:func:`choose_modes`).

Firmware semantics (:class:`Firmware`): commands run in order and block, except
``configure``, which streams over the separate configuration network concurrently with the
commands after it; ``launch`` waits for its configuration to finish. The firmware processor
is one resource: each DMA descriptor costs it ``controller.dma_setup_cycles`` and each kernel
call ``controller.launch_cycles`` (``firmware_cycles``). A tiled kernel's tile calls run one
at a time, or pipelined (``controller.tile_pipelining``: the tiles of a run stream through
one kernel call), their outputs assembled in the GLB.

Stats: ``chip.memory.*`` and ``chip.controller.*`` for every run; per SAM kernel its units
(``chip.<tile>.<opcode>.*``) and streams (``chip.noc.*``); per systolic kernel
``chip.systolic.*``. A systolic kernel's actions go to ``RunResult.actions`` (its counters
do not name energy actions); the one energy function turns both into joules.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import simpy

from isa.arch import ELEMENT_BYTES, ChipConfig
from isa.copies import copy_alone, tile_copies, tile_copy, union_of_copies
from isa.errors import SimulationError
from isa.fibertree import FiberTree
from isa.interp import assemble_output
from isa.program import Command, Program, SystolicKernel
from isa.tiles import Accumulator
from simulator.chip import (
    RunResult,
    config_stream_cycles,
    dram_transfer,
    link_transfer,
    transfer_time,
)
from simulator.engine_cycle import CycleKernel, drive, tile_name
from simulator.progress import progress_of
from simulator.stats import ChannelStats, ControllerStats, MemoryStats, UnitStats, flatten

SYSTOLIC = "systolic"
"""The fidelity of a run whose kernels are all systolic: one timing model, whatever asked."""


def run_fidelity(program: Program, chip: ChipConfig, fidelity: str | None) -> str:
    """The fidelity a kernel program runs at: ``systolic`` when every kernel is systolic,
    else ``fidelity`` or the chip's ``sim.fidelity`` (cycle or burst)."""
    if program.kernels and all(isinstance(k, SystolicKernel) for k in program.kernels):
        return SYSTOLIC
    fid = fidelity or chip.sim.fidelity
    if fid == "analytic":
        raise SimulationError(f"program {program.name}: fidelity analytic applies to model "
                              "layers (moe.*, ffn.*, linear.*); use burst or cycle")
    if fid not in ("cycle", "burst"):
        raise SimulationError(f"unknown fidelity {fid!r} (use cycle or burst)")
    return fid



MOVES: dict[str, tuple[bool, tuple[str, ...], str]] = {
    # command: (over DRAM (else the GLB<->array links), the byte counters it adds to, the
    # controller phase its cycles count toward)
    "dma_in": (True, ("dram_read_bytes", "glb_write_bytes"), "dma_in_cycles"),
    "load": (False, ("glb_read_bytes", "link_bytes"), "dma_in_cycles"),
    "unload": (False, ("glb_write_bytes", "link_bytes"), "dma_out_cycles"),
    "dma_out": (True, ("dram_write_bytes", "glb_read_bytes"), "dma_out_cycles"),
}
"""The data-moving firmware commands of a kernel's schedule."""

def simulate(program: Program, chip: ChipConfig, *, fidelity: str | None = None,
             progress: Any = None, mapper: Callable[..., Iterable[Any]] = map) -> RunResult:
    """Run ``program`` on ``chip``; ``fidelity`` overrides ``chip.sim.fidelity`` for SAM
    kernels (systolic kernels have one timing model). ``mapper`` runs a model layer's
    independent jobs (any ``map``-like callable; results are folded in job order)."""
    progress = progress_of(progress)        # simulator.progress: stage, advance
    if program.jobs:
        return _simulate_layer(program, chip, fidelity or chip.sim.fidelity, progress, mapper)
    fidelity = run_fidelity(program, chip, fidelity)
    progress.stage("simulate", total=sum(c.op == "launch" for c in program.schedule),
                   unit="kernel launches")
    env = simpy.Environment()
    fw = Firmware(env, program, chip, fidelity, progress)
    proc = env.process(fw.run())
    status = drive(env, proc, chip.sim.max_cycles, progress)
    if status != "done":
        stuck = "\n".join([fw.current] + [k.stuck() for k in fw.live.values()])
        if status == "watchdog":
            raise SimulationError(f"watchdog: no completion after sim.max_cycles="
                                  f"{chip.sim.max_cycles} cycles; unit states:\n{stuck}")
        raise SimulationError(f"deadlock at cycle {env.now}: no unit can make progress:\n"
                              f"{stuck}\n(check FIFO depths: pe.fifo_depth="
                              f"{chip.pe.fifo_depth})")
    if not proc.ok:
        raise proc.value
    cycles = fw.end_cycle
    ctl = fw.ctl
    stats: dict[str, dict[str, Any]] = {}
    flatten("chip.memory", fw.mem, stats)
    flatten("chip.controller", ctl, stats)
    actions: dict[str, float] = {}
    ops: int | None = None
    for kname, run in fw.runs.items():
        kernel = program.kernel(kname)
        if isinstance(kernel, SystolicKernel):
            flatten("chip.systolic", run.gemm, stats)
            for name, value in run.actions.items():
                actions[name] = actions.get(name, 0.0) + value
            ops = (ops or 0) + 2 * run.gemm.mac_count
            continue
        for node in kernel.nodes:
            flatten(f"chip.{tile_name(node)}.{node.op.value}", run.units[node.id], stats)
        for e in kernel.edges:
            flatten(f"chip.noc.{e.src}.{e.src_port}__{e.dst}.{e.dst_port}",
                    run.channels[e.name], stats)
    stats = dict(sorted(stats.items()))
    return RunResult(chip.name, program.name, fidelity, cycles,
                     cycles / (chip.clock.freq_mhz * 1e6), ctl.kernel_cycles, fw.outputs, stats,
                     fw.runs, actions, ops)


class Firmware:
    """The controller's firmware running a kernel program's commands as SimPy processes.

    The firmware processor (Onyx: the Cortex-M3) is one SimPy resource: every action of it
    holds it for its cycles, which ``chip.controller.firmware_cycles`` counts (energy:
    ``controller.firmware_pj_per_cycle``). Its actions: a DMA descriptor per transfer
    (``dma_setup_cycles``: DRAM<->GLB, GLB<->MEM tiles, the configuration stream), a kernel
    call (``launch_cycles``: start pulse, taking and clearing the completion interrupt) per
    launch, and, for a tiled kernel whose tiles split a contracted index, the merge of each
    partial output tile into its block's earlier sum in the global buffer (the M3 "performs
    any operations not supported by the accelerator", MICRO25): ``merge_cycles_per_element``
    per entry read or written, the adds counted (``merge_add_count``) and the GLB traffic.

    Commands run in order and block, except ``configure``, which streams over the separate
    configuration network concurrently with the commands after it (``launch`` waits for it).
    A tiled kernel's tile commands (``tile >= 0``) run as tile calls: one after another
    (load, launch, wait, unload: the firmware's descriptors and kernel call on the critical
    path of every tile: Onyx silicon), or with ``controller.tile_pipelining`` streamed
    through depth-2 FIFOs of tiles (MICRO25): one kernel call and one chained descriptor per
    tensor for a run of up to ``pipelined_tiles_per_call`` tiles, the hardware advancing
    from tile to tile by itself (:meth:`pipelined`), so the firmware's per-tile work is gone
    but for partial-output merges; tile t+1 loads while tile t computes, and tile t unloads
    while tile t+1 computes. An unrolled kernel whose copies take whole tiles (isa.copies:
    garnet's unrolling under tile pipelining) runs each tile on its copy alone, the copies'
    pipelines at once (:meth:`pipelined`); ``kernel_cycles`` is then the time some tile
    computes (one copy: the sum of its tiles' cycles).
    """

    def __init__(self, env: simpy.Environment, program: Program, chip: ChipConfig,
                 fidelity: str, progress: Any) -> None:
        self.env, self.program, self.chip = env, program, chip
        self.fidelity, self.progress = fidelity, progress
        self.dram = simpy.Resource(env, capacity=1)
        self.links = simpy.Resource(env, capacity=1)
        # the GLB->array links (loads) and the array->GLB links (unloads) are separate wires,
        # array_links_per_direction each way (MICRO25: "16 links each way")
        self.links_out = simpy.Resource(env, capacity=1)
        self.m3 = simpy.Resource(env, capacity=1)
        self.mem = MemoryStats()
        self.ctl = ControllerStats()
        self.runs: dict[str, Any] = {}
        self.live: dict[str, CycleKernel] = {}
        self.outputs: dict[str, FiberTree] = {}
        self.configs: dict[str, simpy.events.Process] = {}
        self.end_cycle = 0
        self.current = "controller: not started"     # the step under way, for the watchdog
        self.tiling = program.tiling
        self.acc: Accumulator | None = None
        self.tile_out: dict[int, dict[str, FiberTree]] = {}
        self.tile_runs: list[tuple[int, Any]] = []
        self.tile_parts: dict[int, dict[str, list[FiberTree]]] = {}   # unrolled: per tile
        self.solo: dict[int, Any] = {}     # copies that take whole tiles: copy -> its graph

    # ------------------------------------------------------------------ firmware actions
    def firmware(self, cycles: int):
        """The firmware processor busy for ``cycles`` (waits for it if it is busy)."""
        if cycles <= 0:
            return
        with self.m3.request() as req:
            yield req
            yield self.env.timeout(cycles)
        self.ctl.firmware_cycles += cycles

    def move(self, op: str, name: str, n: int, descriptor: bool = True):
        """A data move of ``n`` bytes: its DMA descriptor on the firmware (``descriptor``;
        a pipelined tile's move is part of its run's chained descriptor, programmed once),
        then the transfer over DRAM or the GLB<->array links, one way (counters of MOVES)."""
        over_dram, byte_counters, phase = MOVES[op]
        start = self.env.now
        if descriptor:
            yield from self.firmware(self.chip.controller.dma_setup_cycles)
        # the descriptor's setup was the firmware's time just above (dram_transfer's setup)
        cost = (transfer_time(n, self.chip.dram_bytes_per_cycle, self.chip.dram_latency_cycles)
                if over_dram else link_transfer(self.chip, n))
        res = self.dram if over_dram else self.links_out if op == "unload" else self.links
        with res.request() as req:
            yield req
            yield self.env.timeout(cost.cycles)
        for counter in byte_counters:
            setattr(self.mem, counter, getattr(self.mem, counter) + n)
        busy_counter = "dram_busy_cycles" if over_dram else "link_busy_cycles"
        setattr(self.mem, busy_counter, getattr(self.mem, busy_counter) + cost.busy_cycles)
        setattr(self.ctl, phase, getattr(self.ctl, phase) + self.env.now - start)

    def configure(self, kernel: Any):
        from isa.bitstream import config_bits

        yield from self.firmware(self.chip.controller.dma_setup_cycles)
        bits = config_bits(kernel)
        cycles = config_stream_cycles(self.chip, bits)
        self.ctl.config_bits += bits
        self.ctl.config_cycles += cycles
        yield self.env.timeout(cycles)

    def launch(self, name: str, images: dict[str, FiberTree], call: bool = True,
               copy: int | None = None):
        """Wait for the kernel's configuration, make the kernel call (``call``: its firmware
        cost here; a pipelined tile's call was prepared while the tile before computed),
        start the kernel on ``images`` (``copy``: on that copy alone, of a kernel whose
        copies take whole tiles); returns its process (whose value is the engine's run)."""
        env, chip = self.env, self.chip
        kernel = self.program.kernel(name) if copy is None else self.solo_copy(name, copy)
        if name in self.configs:
            yield self.configs[name]
        if call:
            yield from self.firmware(chip.controller.launch_cycles)
            self.ctl.launch_count += 1
        if isinstance(kernel, SystolicKernel):
            from simulator.engine_systolic import run_systolic

            return env.process(_timed(env, run_systolic, kernel, images, chip))
        if self.fidelity == "cycle":
            ck = CycleKernel(env, kernel, images, chip)
            self.live[name if copy is None else f"{name} copy {copy}"] = ck
            return env.process(ck.run())
        from simulator.engine_burst import run_burst

        return env.process(_timed(env, run_burst, kernel, images, chip))

    # ------------------------------------------------------------------ the command list
    def run(self):
        """SimPy process: the program's commands (class docstring)."""
        sched = self.program.schedule
        running: dict[str, simpy.events.Process] = {}
        step = 0
        while step < len(sched):
            cmd = sched[step]
            self.current = (f"controller: schedule step {step} ({cmd.op} {cmd.arg}"
                            f"{'' if not cmd.size_bytes else f', {cmd.size_bytes} bytes'}) "
                            f"since cycle {self.env.now}")
            if cmd.tile >= 0:
                block = [c for c in sched[step:] if c.tile >= 0]
                if self.tiling is not None and self.tiling.pipelined:   # the compiler's mode
                    yield from self.pipelined(block)
                else:
                    yield from self.sequential(block)
                step += len(block)
                continue
            step += 1
            if cmd.op in MOVES:
                n = cmd.size_bytes if cmd.op in ("dma_in", "load") else self.output_bytes(cmd.arg)
                yield from self.move(cmd.op, cmd.arg, n)
            elif cmd.op == "configure":
                self.configs[cmd.arg] = self.env.process(
                    self.configure(self.program.kernel(cmd.arg)))
            elif cmd.op == "launch":
                running[cmd.arg] = yield from self.launch(cmd.arg, self.program.images)
            elif cmd.op == "wait":
                run = yield running[cmd.arg]
                self.finish(cmd.arg, run)
            else:
                raise SimulationError(f"controller: unknown command {cmd.op!r}")
        self.end_cycle = int(self.env.now)

    def output_bytes(self, name: str) -> int:
        return self.outputs[name].nbytes(ELEMENT_BYTES) if name in self.outputs else 0

    def finish(self, name: str, run: Any) -> None:
        """A whole (untiled) kernel's run ended: record it and its outputs."""
        self.runs[name] = run
        self.progress.advance(1, name)
        self.ctl.kernel_cycles += run.cycles
        kernel = self.program.kernel(name)
        if isinstance(kernel, SystolicKernel):
            self.outputs.update(run.outputs)
            return
        for decl in kernel.tensors:
            if decl.is_output:
                self.outputs[decl.name] = assemble_output(decl, run.memory)

    # ------------------------------------------------------------------ tile calls
    def tile_steps(self, block: list[Command]) -> list[tuple[list[Command], Command,
                                                             list[Command]]]:
        """The tile commands grouped per tile: (loads, launch, unloads)."""
        tiles: dict[int, tuple[list[Command], list[Command], list[Command]]] = {}
        for c in block:
            loads, launch, unloads = tiles.setdefault(c.tile, ([], [], []))
            if c.op == "load":
                loads.append(c)
            elif c.op == "launch":
                launch.append(c)
            elif c.op == "unload":
                unloads.append(c)
            elif c.op != "wait":
                raise SimulationError(f"controller: command {c.op} {c.arg} cannot belong to "
                                      f"tile {c.tile}")
        out = []
        for t in sorted(tiles):
            loads, launch, unloads = tiles[t]
            if len(launch) != 1:
                raise SimulationError(f"controller: tile {t} has {len(launch)} launches "
                                      "(one kernel call per tile)")
            out.append((loads, launch[0], unloads))
        return out

    def load_tile(self, loads: list[Command], descriptor: bool = True):
        for c in loads:
            yield from self.move("load", c.arg, c.size_bytes, descriptor)

    @functools.cached_property
    def dealt_copies(self) -> int:
        """Copies that take whole tiles of the tiled kernel (isa.copies), else 1."""
        kernel = self.program.kernels[0]
        return 1 if isinstance(kernel, SystolicKernel) else tile_copies(kernel)

    def solo_copy(self, name: str, copy: int) -> Any:
        """Copy ``copy`` of kernel ``name`` alone (isa.copies.copy_alone), made once."""
        if copy not in self.solo:
            self.solo[copy] = copy_alone(self.program.kernel(name), copy)
        return self.solo[copy]

    def compute_tile(self, t: int, launch: Command, call: bool = True):
        """Launch tile ``t`` and wait for it: returns the run. Copies that take whole tiles:
        on the copy the tile is dealt to, alone (its output the whole tile's)."""
        images = self.tiling.tiles[t].images
        copies = self.dealt_copies
        copy = (tile_copy(t, copies, self.chip.controller.pipelined_tiles_per_call)
                if copies > 1 else None)
        proc = yield from self.launch(launch.arg, images, call, copy)
        start = int(self.env.now)
        run = yield proc
        self.tile_runs.append((start, run))
        self.progress.advance(1, f"{launch.arg} tile {t}")
        kernel = self.program.kernel(launch.arg)
        outs: dict[str, FiberTree] = {}
        for d in kernel.tensors:
            if not d.is_output:
                continue
            if d.name in run.memory.copies:
                # an unrolled graph: the copies' parts (kept for simulator.checks), and the
                # tile's output their union (the output address generator, isa.copies)
                parts = [assemble_output(d, run.memory, c)
                         for c in range(run.memory.copies[d.name])]
                self.tile_parts.setdefault(t, {})[d.name] = parts
                outs[d.name] = union_of_copies(d, parts)
            else:
                outs[d.name] = assemble_output(d, run.memory)
                if copy is not None:        # its one part: checked against numpy per tile
                    self.tile_parts.setdefault(t, {})[d.name] = [outs[d.name]]
        self.tile_out[t] = outs
        if self.fidelity == "cycle":
            self.live.pop(launch.arg if copy is None else f"{launch.arg} copy {copy}", None)
        return run

    def unload_tile(self, t: int, unloads: list[Command], descriptor: bool = True):
        """Move tile ``t``'s output to the GLB; a partial tile is merged into its block's
        earlier sum by the firmware (class docstring)."""
        outs = self.tile_out.pop(t)
        tile = self.tiling.tiles[t]
        c = self.chip.controller
        for cmd in unloads:
            tree = outs[cmd.arg]
            yield from self.move("unload", cmd.arg, tree.nbytes(ELEMENT_BYTES), descriptor)
            if self.acc is None:
                self.acc = Accumulator(self.tiling, tree.vals.dtype)
            adds, read, written = self.acc.add(tile, tree)
            if read:
                entry = (len(tree.shape) + 1) * ELEMENT_BYTES      # coordinates + value
                self.mem.glb_read_bytes += read * entry
                self.mem.glb_write_bytes += written * entry
                self.ctl.merge_add_count += adds
                yield from self.firmware((read + written) * c.merge_cycles_per_element)

    def sequential(self, block: list[Command]):
        """Tile calls one after another: load, launch, wait, unload."""
        for loads, launch, unloads in self.tile_steps(block):
            yield from self.load_tile(loads)
            yield from self.compute_tile(launch.tile, launch)
            yield from self.unload_tile(launch.tile, unloads)
        self.finish_tiles()

    def pipelined(self, block: list[Command]):
        """Tile calls streamed through depth-2 FIFOs of tiles, in runs of
        ``controller.pipelined_tiles_per_call`` tiles per kernel call (class docstring).

        Per run the firmware makes one kernel call (``launch_cycles``: the start pulse, and
        the completion interrupt taken once for the run) and programs one chained load
        descriptor per input the run loads and one store descriptor per output (the GLB's
        DMAs walk the run's tiles of a tensor, concatenated: garnet concat_tiles.py; the
        store DMA counts the run's output blocks: glb_store_dma.py ``num_blocks``); no
        per-tile firmware work remains but the merges of partial output tiles. The
        hardware advances by itself: tile t+1's levels stream into the second FIFO entry
        while tile t computes; a tile starts when its levels are in, the array is free and
        an output entry is free; its output streams out while the next tile computes.
        A run's store descriptor is programmed when the previous run's store DMA is done
        (one header per DMA: garnet global_buffer_parameter.py ``queue_depth = 1``).

        Copies that take whole tiles (isa.copies.tile_copy): each copy is a pipeline of its
        own (its own depth-2 input and output FIFOs, a worker computing its tiles on its
        one-copy graph, an unloader), sharing the firmware, the GLB links and DRAM. The
        run's concatenated, ID-tagged stream per input feeds the copies' FIFOs in tile order
        (ready-valid: a copy whose FIFO is full holds the stream); the run's call and
        descriptors are the same as one copy's (one stream per input and per output)."""
        env, c = self.env, self.chip.controller
        steps = self.tile_steps(block)
        per_call = c.pipelined_tiles_per_call
        copies = self.dealt_copies
        owner = [tile_copy(launch.tile, copies, per_call) for _, launch, _ in steps]
        depth = 2
        in_slots = [simpy.Resource(env, capacity=depth) for _ in range(copies)]
        out_slots = [simpy.Resource(env, capacity=depth) for _ in range(copies)]
        loaded = [env.event() for _ in steps]
        computed = [env.event() for _ in steps]
        unloaded = [env.event() for _ in steps]
        stored = {r: env.event() for r in range(0, len(steps), per_call)}
        in_req: list[Any] = [None] * len(steps)
        out_req: list[Any] = [None] * len(steps)

        def loader():
            for i, (loads, _launch, _unloads) in enumerate(steps):
                if i % per_call == 0:
                    # the run's kernel call and its chained load descriptors, one per input
                    inputs = {cmd.arg for ld, _, _ in steps[i:i + per_call] for cmd in ld}
                    yield from self.firmware(c.launch_cycles + len(inputs) * c.dma_setup_cycles)
                    self.ctl.launch_count += 1
                in_req[i] = in_slots[owner[i]].request()
                yield in_req[i]
                yield from self.load_tile(loads, descriptor=False)
                loaded[i].succeed()

        def worker(k: int):
            for i, (_loads, launch, _unloads) in enumerate(steps):
                if owner[i] != k:
                    continue
                yield loaded[i]
                out_req[i] = out_slots[k].request()
                yield out_req[i]
                yield from self.compute_tile(launch.tile, launch, call=False)
                in_slots[k].release(in_req[i])
                computed[i].succeed()

        def unloader(k: int):
            for i, (_loads, launch, unloads) in enumerate(steps):
                run = i - i % per_call
                if owner[i] != k:
                    continue
                if i == run:
                    # the run's store descriptors, one per output, programmed by the copy
                    # taking the run's first tile once the previous run's store is done
                    pending = [e for e in unloaded[max(run - per_call, 0):run]
                               if not e.processed]
                    if pending:
                        yield env.all_of(pending)
                    outputs = {cmd.arg for _, _, ul in steps[i:i + per_call] for cmd in ul}
                    yield from self.firmware(len(outputs) * c.dma_setup_cycles)
                    stored[run].succeed()
                if not stored[run].triggered:
                    yield stored[run]
                yield computed[i]
                yield from self.unload_tile(launch.tile, unloads, descriptor=False)
                out_slots[k].release(out_req[i])
                unloaded[i].succeed()

        procs = [env.process(loader())]
        procs += [env.process(worker(k)) for k in range(copies)]
        procs += [env.process(unloader(k)) for k in range(copies)]
        yield env.all_of(procs)
        self.finish_tiles()

    def finish_tiles(self) -> None:
        """Every tile call ended: the assembled output, and the kernel's counters summed
        over its tiles (first/last cycle: kernel cycles from the first tile's start)."""
        from simulator.engine_cycle import KernelRun

        kernel = self.program.kernels[0]
        decl = next(d for d in kernel.tensors if d.is_output)
        if self.acc is None:
            dtype = np.result_type(*[t.vals.dtype for t in self.program.images.values()])
            self.acc = Accumulator(self.tiling, dtype)
        self.outputs[decl.name] = self.acc.tree(decl.name, decl.formats, decl.mode_order)
        # kernel cycles: the time some tile computes (copies that take whole tiles compute
        # at once; one copy's tiles one after another: the sum of their cycles)
        end = 0
        for start, run in sorted((s, r.cycles) for s, r in self.tile_runs):
            self.ctl.kernel_cycles += max(0, start + run - max(start, end))
            end = max(end, start + run)
        t0 = min((s for s, _ in self.tile_runs), default=0)
        units: dict[str, UnitStats] = {n.id: UnitStats() for n in kernel.nodes}
        channels = {e.name: ChannelStats() for e in kernel.edges}
        for start, run in self.tile_runs:
            for uid, st in run.units.items():
                _add_unit(units[uid], st, start - t0)
            for name, ch in run.channels.items():
                channels[name].token_count += ch.token_count
                channels[name].hop_count += ch.hop_count
        last = self.tile_runs[-1][1].memory if self.tile_runs else None
        parts = ([self.tile_parts.get(t, {}) for t in range(len(self.tiling.tiles))]
                 if self.tile_parts else None)
        self.runs[kernel.name] = KernelRun(self.ctl.kernel_cycles, last, units, channels,
                                           tile_parts=parts)
        self.ctl.tile_count = len(self.tile_runs)
        self.ctl.skipped_tile_count = self.tiling.skipped


def _add_unit(total: UnitStats, st: UnitStats, offset: int) -> None:
    """Add one tile's unit counters to the kernel's (first/last cycle shifted by the tile's
    start, ``offset`` cycles after the first tile's)."""
    had = total.busy_cycles > 0
    for f in dataclasses.fields(UnitStats):
        if f.name not in ("first_cycle", "last_cycle"):
            setattr(total, f.name, getattr(total, f.name) + getattr(st, f.name))
    if st.busy_cycles:
        first, last = st.first_cycle + offset, st.last_cycle + offset
        total.first_cycle = min(total.first_cycle, first) if had else first
        total.last_cycle = max(total.last_cycle, last)


def _timed(env: simpy.Environment, engine: Any, kernel: Any, images: dict[str, Any],
           chip: ChipConfig):
    """A kernel timed whole by ``engine`` (burst or systolic): one SimPy event for its run."""
    run = engine(kernel, images, chip)
    yield env.timeout(run.cycles)
    return run


# ------------------------------------------------------------------------------ model layers
def _simulate_layer(program: Program, chip: ChipConfig, fidelity: str, progress: Any,
                    mapper: Callable[..., Iterable[Any]]) -> RunResult:
    from simulator.layers import LayerEngine, finish_layer, layer_result, run_tile_sample

    _check_job_order(program)
    layout = program.layout
    plan = layout.plan
    eng = LayerEngine(plan, chip, fidelity)
    out = np.zeros((layout.tokens, layout.d_out))
    ref = np.zeros_like(out)
    experts = [{"tokens": t, "lane": lane, "effectual_mac_count": 0}
               for t, lane in layout.experts]
    tasks = [job for job in program.jobs if job.task is not None]
    for job in program.jobs:
        if job.stage == "router":
            eng.router(*job.dims)
        elif job.stage == "topk":
            eng.topk(*job.dims)
    if tasks:
        progress.stage(tasks[0].stage, total=sum(j.task.items for j in tasks),
                       unit=tasks[0].task.unit)
    # in this process the tasks report each chunk; from other processes, each job
    local = mapper is map
    run = functools.partial(run_job, progress=progress) if local else run_job
    for job, (part, sub) in zip(tasks, mapper(run, [(plan, chip, fidelity, job)
                                                    for job in tasks])):
        if not local:
            progress.advance(job.task.items, job.name)
        eng.merge(sub)
        if job.expert >= 0:
            experts[job.expert]["effectual_mac_count"] = sub.work.products
        cols = slice(part.col0, part.col0 + part.values.shape[1])
        rows = slice(None) if part.rows is None else part.rows
        out[rows, cols] += part.values
        ref[rows, cols] += part.reference
    if fidelity == "analytic":
        progress.stage("tile sample on burst")
    sample = run_tile_sample(eng) if fidelity == "analytic" else []
    progress.stage("schedule")
    for job in program.jobs:
        if job.stage == "combine":
            eng.combine(*job.dims)
    io = (layout.tokens, layout.d_in, layout.d_out)
    modes, chosen, candidates = choose_modes(eng, layout, chip, io)
    run = finish_layer(eng, out, ref, experts, layout.routing or {}, modes, chosen, candidates)
    run.token_gini = (layout.routing or {}).get("token_gini")
    run.sample = sample
    return layer_result(run, plan, chip)


def choose_modes(eng: Any, layout: Any, chip: ChipConfig, io: tuple[int, int, int]
                 ) -> tuple[list[str], Any, dict[str, dict[str, Any]]]:
    """Each product's mode, its schedule, and the whole-layer alternatives priced.

    Every product (and ALU pass) is priced in both modes: time alone (sparse: its tiles'
    cycles over the lanes that share the work, or its DRAM transfer if longer; dense: the MAC
    block's cycles or its DRAM transfer) and energy (its actions and traffic at the chip's
    energy table, plus the chip's leakage over that time). The compiler's policy
    (``layout.pick_product``, ``compiler.objective``) picks one per product; the chosen
    jobs are scheduled (sparse ones on the lanes, then dense ones on the MAC block: the two
    share the array), and with ``compiler.layer_mode: auto`` that layer is compared with
    all-sparse and all-dense (``layout.pick_layer``). Returns (modes, the chosen layer
    priced: simulator.layers.PricedLayer, candidates: name -> cycles, stage_cycles, energy_j,
    edp_js, dense_products, config_cycles).

    Each alternative loads the configurations its modes need (simulator.layers.
    config_loads): their time is in its cycles (the router's before the router, the
    products' in their schedule, overlapping the phase's first weight DMAs) and their bits
    and descriptors in its energy, so the whole-layer choice sees them; a product's own
    price does not (a load is shared by every product of its phase)."""
    from simulator.energy import (
        action_prices,
        energy_from_counts,
        load_energy_table,
        memory_actions,
    )
    from simulator.layers import (
        PricedLayer,
        config_loads,
        firmware_cycles_of,
        layer_counts,
        layer_memory,
    )

    table = load_energy_table(chip.energy_table)
    price, leak = action_prices(chip, table)
    plan = layout.plan

    def dyn(counts: dict[str, float], memory: dict[str, int]) -> float:
        mem = memory_actions(memory)
        return (sum(v * price[k] for k, v in counts.items())
                + sum(v * price[k] for k, v in mem.items()))

    def dram(nbytes: int) -> int:
        return dram_transfer(chip, nbytes).cycles if nbytes else 0

    modes: list[str] = []
    for c in eng.costs:
        ts = max(c.sparse_cycles / eng.lanes, dram(c.sparse_memory.get("dram_read_bytes", 0)))
        td = max(c.dense_cycles, dram(c.dense_memory.get("dram_read_bytes", 0)))
        es = dyn(c.sparse_counts, c.sparse_memory) + leak * ts
        ed = dyn(c.dense_counts, c.dense_memory) + leak * td
        c.priced = {"sparse": (ts, es * 1e-12), "dense": (td, ed * 1e-12)}
        modes.append(layout.pick_product((ts, es), (td, ed)))
    stages = eng.router_cycles + eng.topk_cycles + eng.combine_cycles
    router = eng.router_cycles > 0        # an MoE layer: its router runs on the MAC block

    def price_layer(choice: list[str]) -> tuple[PricedLayer, dict[str, Any]]:
        loads = config_loads(plan, chip, choice, router)
        setup = sum(ld.wait for ld in loads if ld.user == "router")
        layer = PricedLayer(schedule_modes(eng, choice, chip, plan.buffers, loads),
                            layer_memory(eng, choice, io), layer_counts(eng, choice),
                            loads, setup)
        cycles = setup + stages + layer.schedule[0]
        counts = dict(layer.counts)
        for k, v in memory_actions(layer.memory).items():
            counts[k] = counts.get(k, 0.0) + v
        counts["config_load"] = counts.get("config_load", 0.0) + sum(ld.bits for ld in loads)
        jobs = ([j for j in eng.jobs if choice[j.product] == "sparse"]
                + [j for j in eng.dense_jobs if choice[j.product] == "dense"])
        counts["firmware"] = firmware_cycles_of(
            sum(c.tiles for c, m in zip(eng.costs, choice) if m == "sparse"),
            sum(1 for j in jobs if j.dram_bytes), chip, len(loads))
        energy = energy_from_counts(counts, cycles, chip, table, ops=0).total_pj * 1e-12
        seconds = cycles / (chip.clock.freq_mhz * 1e6)
        return layer, {"cycles": cycles, "stage_cycles": layer.schedule[0], "energy_j": energy,
                       "edp_js": energy * seconds,
                       "dense_products": sum(m == "dense" for m in choice),
                       "config_cycles": sum(ld.cycles for ld in loads)}

    n = len(eng.costs)
    options = {"per product": modes, "sparse": ["sparse"] * n, "dense": ["dense"] * n}
    # a choice equal to another (per product = all dense, say) is scheduled and priced once
    by_choice: dict[tuple[str, ...], tuple[PricedLayer, dict[str, Any]]] = {}
    for choice in options.values():
        if tuple(choice) not in by_choice:
            by_choice[tuple(choice)] = price_layer(choice)
    priced = {name: by_choice[tuple(choice)] for name, choice in options.items()}
    candidates = {name: dict(p[1]) for name, p in priced.items()}
    if layout.mode == "auto":
        pick = layout.pick_layer({name: (c["cycles"], c["energy_j"])
                                  for name, c in candidates.items()})
    else:
        pick = layout.mode
    candidates[pick]["chosen"] = True
    return options[pick], priced[pick][0], candidates


def schedule_modes(eng: Any, modes: list[str], chip: ChipConfig, buffers: int,
                   loads: tuple[Any, ...] = ()
                   ) -> tuple[int, dict[int, int], list[int], list[dict[str, Any]]]:
    """The chosen jobs as the lanes' firmware runs them: sparse-mode jobs on the lanes,
    then dense-mode jobs on the MAC block (one lane; the MAC block and the lanes share the
    array, so the two phases do not overlap). ``loads`` (simulator.layers.ConfigLoad): a
    phase whose configuration is loaded starts with it (:func:`run_lanes`'s ``config``).
    Same shape as :func:`run_lanes`."""
    wait = {ld.user: ld.wait for ld in loads}
    sparse = run_lanes([j for j in eng.jobs if modes[j.product] == "sparse"], eng.lanes,
                       chip, buffers, wait.get("sparse", 0))
    dense = run_lanes([j for j in eng.dense_jobs if modes[j.product] == "dense"], 1, chip,
                      buffers, wait.get("dense", 0))
    off = sparse[0]
    finish = dict(sparse[1])
    finish.update({e: off + c for e, c in dense[1].items()})
    lane_end = sparse[2] if "sparse" in modes else dense[2]
    spans = sparse[3] + [{**sp, "start": sp["start"] + off, "end": sp["end"] + off,
                          "track": "mac block" if sp["track"] == "lane" else sp["track"]}
                         for sp in dense[3]]
    for ld in loads:                  # the phases' configuration loads, from their start
        if ld.user in ("sparse", "dense"):
            spans.append(ld.span(0 if ld.user == "sparse" else off))
    return off + dense[0], finish, lane_end, spans


def _check_job_order(program: Program) -> None:
    """The stages run in the order the jobs are listed (router, top-k, the products stage,
    combine: each stage's time adds to the last), so every job's dependencies must come
    before it."""
    seen: set[str] = set()
    for job in program.jobs:
        missing = [d for d in job.deps if d not in seen]
        if missing:
            raise SimulationError(f"controller: program {program.name}: job {job.name} "
                                  f"depends on {', '.join(missing)}, not run before it")
        seen.add(job.name)


def run_job(args: tuple[Any, ChipConfig, str, Any], progress: Any = None
            ) -> tuple[Any, Any]:
    """One products-stage job: its task on a fresh layer engine. A pure function of
    picklable inputs (plan, chip, fidelity, job), so any process may run it; returns the
    task's output contribution and the engine holding the job's work. ``progress`` (in this
    process only) hears of every chunk the task finishes."""
    from simulator.layers import LayerEngine

    plan, chip, fidelity, job = args
    eng = LayerEngine(plan, chip, fidelity, progress)
    return job.task(eng), eng


def run_lanes(jobs: list[Any], lanes: int, chip: ChipConfig, buffers: int = 2,
              config: int = 0) -> tuple[int, dict[int, int], list[int], list[dict[str, Any]]]:
    """The firmware of the lanes as SimPy events: (end cycle, expert -> finish cycle, lane
    end cycles, job and DMA spans). Per lane, a loader DMAs each job's weights over the one
    shared DRAM channel into a free GLB buffer while the worker computes an earlier job (a
    store of ``buffers - 1`` loaded jobs + the job computing: ``buffers`` buffers).
    ``config``: cycles the array's configuration takes from the start (its descriptor and
    stream, simulator.layers.ConfigLoad.wait); as :meth:`Firmware.launch` waits for
    :meth:`Firmware.configure`, no lane computes before it ends, while the weight DMAs
    (over DRAM, not the configuration network) run from the start."""
    if buffers < 2:
        raise SimulationError(f"controller: {buffers} GLB buffer(s) per lane; the lane "
                              "firmware needs 2 or more (one computing, one loading)")
    env = simpy.Environment()
    dram = simpy.Resource(env, capacity=1)
    finish: dict[int, int] = {}
    lane_end = [0] * lanes
    per_lane: list[list[Any]] = [[] for _ in range(lanes)]
    for j in jobs:
        per_lane[j.lane].append(j)
    spans: list[dict[str, Any]] = []

    def loader(lane: int, mine: list[Any], store: simpy.Store):
        for job in mine:
            if job.dram_bytes:
                with dram.request() as req:
                    yield req
                    start = int(env.now)
                    yield env.timeout(dram_transfer(chip, job.dram_bytes).cycles)
                    spans.append({"track": "dram", "lane": lane, "name": job.label,
                                  "start": start, "end": int(env.now),
                                  "bytes": job.dram_bytes})
            yield store.put(job)

    configured = env.timeout(config) if config else None

    def worker(lane: int, mine: list[Any], store: simpy.Store):
        if mine and configured is not None:
            yield configured
        for _ in mine:
            job = yield store.get()
            start = int(env.now)
            yield env.timeout(job.cycles)
            spans.append({"track": "lane", "lane": lane, "name": job.label,
                          "start": start, "end": int(env.now), "expert": job.expert})
            if job.expert >= 0:
                finish[job.expert] = int(env.now)
        lane_end[lane] = int(env.now)

    for lane, mine in enumerate(per_lane):
        store = simpy.Store(env, capacity=buffers - 1)
        env.process(loader(lane, mine, store))
        env.process(worker(lane, mine, store))
    env.run()
    return int(env.now), finish, lane_end, spans
