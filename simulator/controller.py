"""The controller: one firmware loop that runs any Program's schedule as SimPy events.

It is the chip's firmware (Onyx: a Cortex-M3). SimPy carries the chip-level events: one
event per DMA transfer, configuration load and kernel launch. Each launched kernel goes to
the engine of its kind and fidelity:

    SAM graph (isa.program.Kernel)      cycle: SimPy processes per primitive (engine_cycle)
                                        burst: one timed burst (engine_burst)
    systolic (isa.program.SystolicKernel)  the MAC block's SCALE-Sim timing (engine_systolic)

Firmware semantics: commands run in order and block, except ``configure``, which streams over
the separate configuration network concurrently with the commands after it; ``launch`` waits
for its configuration to finish and then pays ``controller.launch_cycles``.

Stats: ``chip.memory.*`` and ``chip.controller.*`` for every run; per SAM kernel its units
(``chip.<tile>.<opcode>.*``) and streams (``chip.noc.*``); per systolic kernel
``chip.systolic.*``. A systolic kernel's actions go to ``RunResult.actions`` (its counters
do not name energy actions); the one energy function turns both into joules.
"""

from __future__ import annotations

import math
from typing import Any

import simpy

from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.fibertree import FiberTree
from isa.interp import assemble_output
from isa.program import Program, SystolicKernel
from simulator.chip import ELEMENT_BYTES, RunResult, Transfer, dram_transfer, link_transfer
from simulator.engine_cycle import CycleKernel, drive, tile_name
from simulator.stats import ControllerStats, MemoryStats, flatten

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


def simulate(program: Program, chip: ChipConfig, *, fidelity: str | None = None,
             progress: Any = None) -> RunResult:
    """Run ``program`` on ``chip``; ``fidelity`` overrides ``chip.sim.fidelity`` for SAM
    kernels (systolic kernels have one timing model)."""
    fidelity = run_fidelity(program, chip, fidelity)
    env = simpy.Environment()
    dram = simpy.Resource(env, capacity=1)
    links = simpy.Resource(env, capacity=1)
    mem = MemoryStats()
    ctl = ControllerStats()
    runs: dict[str, Any] = {}
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

    def controller():
        configs: dict[str, simpy.events.Process] = {}
        c = chip.controller
        for cmd in program.schedule:
            start = env.now
            if cmd.op == "dma_in":
                busy = yield env.process(transfer(dram, dram_transfer(chip, cmd.size_bytes)))
                mem.dram_read_bytes += cmd.size_bytes
                mem.glb_write_bytes += cmd.size_bytes
                mem.dram_busy_cycles += busy
                ctl.dma_in_cycles += env.now - start
            elif cmd.op == "load":
                busy = yield env.process(transfer(links, link_transfer(chip, cmd.size_bytes)))
                mem.glb_read_bytes += cmd.size_bytes
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
                if isinstance(kernel, SystolicKernel):
                    configs[cmd.arg + "#run"] = env.process(_systolic(env, kernel, program,
                                                                      chip))
                elif fidelity == "cycle":
                    ck = CycleKernel(env, kernel, program.images, chip)
                    live[cmd.arg] = ck
                    configs[cmd.arg + "#run"] = env.process(ck.run())
                else:
                    configs[cmd.arg + "#run"] = env.process(_burst(env, kernel, program,
                                                                   chip, progress))
            elif cmd.op == "wait":
                run = yield configs[cmd.arg + "#run"]
                runs[cmd.arg] = run
                ctl.kernel_cycles += run.cycles
                kernel = program.kernel(cmd.arg)
                if isinstance(kernel, SystolicKernel):
                    outputs.update(run.outputs)
                    continue
                for decl in kernel.tensors:
                    if decl.is_output:
                        outputs[decl.name] = assemble_output(decl, run.memory)
            elif cmd.op == "unload":
                n = output_bytes(cmd.arg)
                busy = yield env.process(transfer(links, link_transfer(chip, n)))
                mem.glb_write_bytes += n
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
        stuck = "\n".join(k.stuck() for k in live.values())
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
    actions: dict[str, float] = {}
    ops: int | None = None
    for kname, run in runs.items():
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
                     cycles / (chip.clock.freq_mhz * 1e6), ctl.kernel_cycles, outputs, stats,
                     runs, actions, ops)


def _burst(env: simpy.Environment, kernel, program: Program, chip: ChipConfig, progress):
    from simulator.engine_burst import run_burst

    run = run_burst(kernel, program.images, chip)
    yield env.timeout(run.cycles)
    return run


def _systolic(env: simpy.Environment, kernel: SystolicKernel, program: Program,
              chip: ChipConfig):
    from simulator.engine_systolic import run_systolic

    run = run_systolic(kernel, program.images, chip)
    yield env.timeout(run.cycles)
    return run
