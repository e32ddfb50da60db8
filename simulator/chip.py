"""The chip: the controller running a program's schedule over DRAM, GLB and the array.

SimPy carries the chip-level events: one event per DMA transfer, configuration load and
kernel launch. A kernel runs either as SimPy processes per primitive (``cycle``) or as one
timed burst whose cycles the ``burst`` engine computed (``burst``).

Firmware semantics: commands run in order and block, except ``configure``, which streams over
the separate configuration network concurrently with the commands after it; ``launch`` waits
for its configuration to finish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import simpy

from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.fibertree import FiberTree
from isa.interp import assemble_output
from isa.program import Program
from simulator.engine_cycle import CycleKernel, KernelRun, drive, tile_name
from simulator.progress import progress_of
from simulator.stats import ControllerStats, MemoryStats, flatten

ELEMENT_BYTES = 2   # 16-bit datapath: coordinates, segments and values are 16-bit words


@dataclass(frozen=True)
class Transfer:
    """The time of one transfer over DRAM or the GLB<->array links.

    ``cycles`` = setup + latency + ``busy_cycles``, where ``busy_cycles`` = ceil(bytes /
    bandwidth) (0 for an empty transfer) is the time the link itself is occupied.
    """

    cycles: int
    busy_cycles: int


def transfer_time(nbytes: int, bandwidth_bytes_per_cycle: float, latency_cycles: int,
                  setup_cycles: int = 0) -> Transfer:
    """Cycles of one transfer of ``nbytes``: setup + latency + ceil(nbytes / bandwidth)."""
    busy = math.ceil(nbytes / bandwidth_bytes_per_cycle) if nbytes else 0
    return Transfer(setup_cycles + latency_cycles + busy, busy)


def dram_transfer(chip: ChipConfig, nbytes: int) -> Transfer:
    """A DMA between DRAM and the GLB (one descriptor: the controller's setup is paid)."""
    return transfer_time(nbytes, chip.dram_bytes_per_cycle, chip.dram_latency_cycles,
                         chip.controller.dma_setup_cycles)


def link_transfer(chip: ChipConfig, nbytes: int) -> Transfer:
    """A transfer between the GLB and the array over all GLB<->array links."""
    return transfer_time(nbytes, chip.glb.array_bytes_per_cycle, chip.glb.latency_cycles)


@dataclass
class RunResult:
    """Everything a simulation produced."""

    chip: str
    program: str
    fidelity: str
    cycles: int
    seconds: float
    kernel_cycles: int
    outputs: dict[str, FiberTree]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    kernel_runs: dict[str, KernelRun] = field(default_factory=dict)

    def total(self, suffix: str) -> int:
        """Sum of every counter whose dotted name ends with ``.suffix``."""
        return sum(v["value"] for k, v in self.stats.items() if k.endswith("." + suffix))

    def __repr__(self) -> str:
        return (f"RunResult(chip={self.chip!r}, program={self.program!r}, "
                f"fidelity={self.fidelity!r}, cycles={self.cycles}, "
                f"seconds={self.seconds:.3e})")


def simulate(program: Program, chip: ChipConfig, *, fidelity: str | None = None,
             progress: Any = None) -> RunResult:
    """Run ``program`` on ``chip``; ``fidelity`` overrides ``chip.sim.fidelity``."""
    fidelity = fidelity or chip.sim.fidelity
    if fidelity not in ("cycle", "burst"):
        raise SimulationError(f"unknown fidelity {fidelity!r} (use cycle or burst)")
    progress = progress_of(progress)        # simulator.progress: stage, advance
    progress.stage("simulate", total=sum(c.op == "launch" for c in program.schedule),
                   unit="kernel launches")
    env = simpy.Environment()
    dram = simpy.Resource(env, capacity=1)
    links = simpy.Resource(env, capacity=1)
    mem = MemoryStats()
    ctl = ControllerStats()
    runs: dict[str, KernelRun] = {}
    live: dict[str, CycleKernel] = {}
    outputs: dict[str, FiberTree] = {}

    def transfer(res: simpy.Resource, cost: Transfer):
        with res.request() as req:
            yield req
            yield env.timeout(cost.cycles)
        return cost.busy_cycles

    def configure(kernel):
        from isa.bitstream import config_bits

        bits = config_bits(kernel)
        cycles = math.ceil(bits / chip.controller.config_bits_per_cycle)
        ctl.config_bits += bits
        ctl.config_cycles += cycles
        yield env.timeout(cycles)

    def output_bytes(name: str) -> int:
        return outputs[name].nbytes(ELEMENT_BYTES) if name in outputs else 0

    end_cycle = [0]
    current = ["controller: not started"]      # the schedule step under way, for the watchdog

    def controller():
        configs: dict[str, simpy.events.Process] = {}
        c = chip.controller
        for step, cmd in enumerate(program.schedule):
            start = env.now
            current[0] = (f"controller: schedule step {step} ({cmd.op} {cmd.arg}"
                          f"{'' if not cmd.size_bytes else f', {cmd.size_bytes} bytes'}) "
                          f"since cycle {start}")
            if cmd.op == "dma_in":
                busy = yield env.process(transfer(dram, dram_transfer(chip, cmd.size_bytes)))
                mem.dram_read_bytes += cmd.size_bytes
                mem.glb_write_bytes += cmd.size_bytes
                mem.dram_busy_cycles += busy
                ctl.dma_in_cycles += env.now - start
            elif cmd.op == "load":
                busy = yield env.process(transfer(links, link_transfer(chip, cmd.size_bytes)))
                mem.glb_read_bytes += cmd.size_bytes
                mem.link_bytes += cmd.size_bytes
                mem.link_busy_cycles += busy
                ctl.dma_in_cycles += env.now - start
            elif cmd.op == "configure":
                configs[cmd.arg] = env.process(configure(program.kernel(cmd.arg)))
            elif cmd.op == "launch":
                kernel = program.kernel(cmd.arg)
                if cmd.arg in configs:
                    yield configs[cmd.arg]
                yield env.timeout(c.launch_cycles)
                ctl.launch_count += 1
                if fidelity == "cycle":
                    ck = CycleKernel(env, kernel, program.images, chip)
                    live[cmd.arg] = ck
                    configs[cmd.arg + "#run"] = env.process(ck.run())
                else:
                    configs[cmd.arg + "#run"] = env.process(_burst(env, kernel, program,
                                                                   chip, progress))
            elif cmd.op == "wait":
                run = yield configs[cmd.arg + "#run"]
                runs[cmd.arg] = run
                progress.advance(1, cmd.arg)
                ctl.kernel_cycles += run.cycles
                kernel = program.kernel(cmd.arg)
                for decl in kernel.tensors:
                    if decl.is_output:
                        outputs[decl.name] = assemble_output(decl, run.memory)
            elif cmd.op == "unload":
                n = output_bytes(cmd.arg)
                busy = yield env.process(transfer(links, link_transfer(chip, n)))
                mem.glb_write_bytes += n
                mem.link_bytes += n
                mem.link_busy_cycles += busy
                ctl.dma_out_cycles += env.now - start
            elif cmd.op == "dma_out":
                n = output_bytes(cmd.arg)
                busy = yield env.process(transfer(dram, dram_transfer(chip, n)))
                mem.dram_write_bytes += n
                mem.glb_read_bytes += n
                mem.dram_busy_cycles += busy
                ctl.dma_out_cycles += env.now - start
            else:
                raise SimulationError(f"controller: unknown command {cmd.op!r}")
        end_cycle[0] = int(env.now)

    proc = env.process(controller())
    status = drive(env, proc, chip.sim.max_cycles, progress)
    if status != "done":
        stuck = "\n".join([current[0]] + [k.stuck() for k in live.values()])
        if status == "watchdog":
            raise SimulationError(f"watchdog: no completion after sim.max_cycles="
                                  f"{chip.sim.max_cycles} cycles; unit states:\n{stuck}")
        raise SimulationError(f"deadlock at cycle {env.now}: no unit can make progress:\n"
                              f"{stuck}\n(check FIFO depths: pe.fifo_depth="
                              f"{chip.pe.fifo_depth})")
    if not proc.ok:
        raise proc.value
    cycles = end_cycle[0]
    stats: dict[str, dict[str, Any]] = {}
    flatten("chip.memory", mem, stats)
    flatten("chip.controller", ctl, stats)
    for kname, run in runs.items():
        kernel = program.kernel(kname)
        for node in kernel.nodes:
            flatten(f"chip.{tile_name(node)}.{node.op.value}", run.units[node.id], stats)
        for e in kernel.edges:
            flatten(f"chip.noc.{e.src}.{e.src_port}__{e.dst}.{e.dst_port}",
                    run.channels[e.name], stats)
    stats = dict(sorted(stats.items()))
    return RunResult(chip.name, program.name, fidelity, cycles,
                     cycles / (chip.clock.freq_mhz * 1e6), ctl.kernel_cycles, outputs, stats,
                     runs)


def _burst(env: simpy.Environment, kernel, program: Program, chip: ChipConfig, progress):
    from simulator.engine_burst import run_burst

    run = run_burst(kernel, program.images, chip)
    yield env.timeout(run.cycles)
    return run
