"""The ``sieve`` command line: run, compile, list.

Every user error (config, workload, compile, simulation) is printed as one message without
a traceback, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from isa.errors import SieveError
from workloads import CATALOG, WorkloadError


def _params(pairs: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WorkloadError(f"{what} {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _progress(quiet: bool) -> Any:
    """The progress display (reports.progress; nothing shown for runs under 2 s)."""
    import contextlib

    from reports.progress import ProgressDisplay
    return contextlib.nullcontext() if quiet else ProgressDisplay()


def cmd_run(args: argparse.Namespace) -> int:
    from reports.rundir import check_run_dir
    from reports.summary import summary_rows
    from sieve.api import run
    from sweeps.executors import parallel_map

    if args.out is not None:
        check_run_dir(args.out)
    with _progress(args.quiet) as progress, parallel_map(args.scheduler, args.workers) as mapper:
        report = run(args.chip, args.workload, params=_params(args.param, "parameter"),
                     overrides=args.config, fidelity=args.fidelity, out=args.out,
                     baseline=args.baseline, progress=progress, check=args.check,
                     mapper=mapper)
    s = report.summary
    print(f"{s['workload']} ({s['kernel']}) on {s['chip']}, fidelity {s['fidelity']}")
    rows = summary_rows(s) + [("wall time (s)", f"{report.wall_seconds:.2f}")]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>16}")
    ex = s.get("experts")
    if ex:
        tok = ex["tokens"]
        print(f"  experts: tokens min/mean/max {min(tok)}/{sum(tok) / len(tok):.1f}/{max(tok)}"
              f" (Gini {ex['token_gini']:.2f}); compute cycles max/mean "
              f"{ex['cycles_max_over_mean']:.2f}; "
              + (f"straggler {ex['straggler_product']} ends at cycle "
                 f"{ex['straggler_finish_cycle']:,}" if ex.get("straggler_product")
                 else "no straggler (experts one after another on the MAC block)")
              + (f"; {ex['dropped_pairs']} token-expert pairs dropped" if ex['dropped_pairs']
                 else ""))
    if "fidelity" in s.get("notes", {}) and s["notes"]["fidelity"] != "as requested":
        print(f"  note: fidelity {s['fidelity']}: {s['notes']['fidelity']}")
    for name, value in s["checks"].items():
        if isinstance(value, str):
            print(f"  note: the {name} check was {value}")
    if report.out_dir is not None and args.report != "none":
        from reports import render_run

        render_run(report.out_dir, trace=args.trace, kind=args.report)
        print(f"run folder: {report.out_dir} (" + ("summary.md" if args.report == "md" else
                                                  "report.html, roofline.png, energy.png, ...")
              + ")")
    elif report.out_dir is not None:
        print(f"run folder: {report.out_dir} (stats.json, summary.json; --report none)")
    if not s["verified"]:
        print(f"error: output check failed: {s['checks']}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from reports import render_run
    from reports.compare import is_compare_folder, render_compare_folder

    for folder in args.run_dirs:
        render = render_compare_folder if is_compare_folder(folder) else render_run
        for path in render(Path(folder), trace=args.trace):
            print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from reports.compare import compare_plan, render_compare_folder, write_manifest
    from sieve.api import run

    out = Path(args.out)
    plan = compare_plan(args.chips, args.workloads, args.param)   # reports/compare.py
    for p in plan:
        with _progress(False) as progress:
            s = run(p.chip, p.workload, params=p.params, overrides=args.config,
                    fidelity=args.fidelity, out=out / p.folder, baseline=args.baseline,
                    progress=progress).summary
        print(f"  {p.folder:<40} {s['cycles']:>14,} cycles  verified={s['verified']}",
              file=sys.stderr)
    write_manifest(out, plan)
    paths = render_compare_folder(out)
    print((out / "comparison.md").read_text())
    print(f"wrote {out / 'compare.html'} and {len(paths) - 1} more files")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import logging

    from baselines import calibrate_host

    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    print(f"measuring this machine (medians of {args.repeats} runs)...", file=sys.stderr)
    calibrate_host(args.out, repeats=args.repeats, quick=args.quick)
    print(f"wrote {args.out}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from isa.asm import print_program
    from isa.bitstream import config_bits, encode
    from isa.dot import to_dot
    from sieve.api import build_layer, choose_layer_order, compile_workload, resolve_chip

    cfg = resolve_chip(args.chip, args.config)
    layer = build_layer(args.workload, _params(args.param, "parameter"), cfg)
    layer, choice = choose_layer_order(layer, cfg, explain=args.explain)
    program = (choice.program if choice else None) or compile_workload(layer, cfg)
    if args.explain:
        print("\n".join(choice.lines()) if choice is not None else
              f"{layer.name}: no loop order to choose (a model layer or a dense GEMM)")
        if program.unroll is not None:
            deal = f", {program.unroll.deal} dealt" if program.unroll.deal else ""
            print(f"unroll: {program.unroll.copies}{deal} (compiler.unroll="
                  f"{program.unroll.requested}): {program.unroll.why}")
        if not args.output:
            return 0
    kernel = program.kernels[0]
    if args.emit == "asm":
        text: str | bytes = print_program(program)
        if program.jobs:
            from compiler.layers import summarize_jobs

            text += summarize_jobs(program)
        if program.tiling is not None:
            from compiler.tiling import summarize_schedule

            text = summarize_schedule(text, program.tiling)
    elif args.emit == "dot":
        if not hasattr(kernel, "nodes"):
            raise WorkloadError(f"workload {layer.name}: kernel {kernel.name} is a systolic "
                                "kernel: it has no dataflow graph to draw (use --emit asm)")
        text = to_dot(kernel)
    else:
        words = encode(kernel)
        if args.output:
            _write_output(Path(args.output), words.tobytes())
            print(f"wrote {len(words)} words ({config_bits(kernel)} configuration bits) "
                  f"to {args.output}")
            return 0
        text = "\n".join(f"{w:08x}" for w in words) + "\n"
    if args.output:
        _write_output(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def _write_output(path: Path, data: str | bytes) -> None:
    """``compile -o``: refuse a folder or an unwritable path with one clear error."""
    if path.is_dir():
        raise WorkloadError(f"-o {path}: is a folder; name a file to write")
    try:
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    except OSError as exc:
        raise WorkloadError(f"-o {path}: cannot write ({exc.strerror or exc})") from None


def cmd_list(args: argparse.Namespace) -> int:
    from simulator.config import list_chips

    if args.what in ("chips", "all"):
        print("chips (SIEVE_CONFIG_PATH, ./configs/chips, then the shipped configs):")
        for name, path, desc in list_chips():
            print(f"  {name:<14} {path}  {desc}")
    if args.what in ("cpus", "all"):
        from baselines.presets import list_cpu_presets

        print("CPU baselines (SIEVE_CONFIG_PATH, ./configs/cpus, then the shipped configs):")
        for name, path in list_cpu_presets():
            print(f"  {name:<14} {path}")
    if args.what in ("dram", "all"):
        from isa.configpath import config_search_path, list_named_files

        print("DRAM presets (dram: {preset: NAME}; docs/configs.md):")
        for name, path in list_named_files(config_search_path("dram", "configs/dram")):
            print(f"  {name:<14} {path}")
    if args.what in ("workloads", "all"):
        print("workloads:")
        for w in CATALOG.values():
            print(f"  {w.name:<28} {w.summary}")
            print(f"  {'':<28} source: {w.source}")
            for p in w.params:
                default = ",".join(map(str, p.default)) if isinstance(p.default, tuple) \
                    else p.default
                print(f"  {'':<30} -p {p.name}={default!s:<12} {p.help}")
    return 0


def _version() -> str:
    """The installed distribution's version (package metadata: no heavy import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sieve-sim")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sieve", description="Simulate sparse kernels on a "
                                 "sparsity-aware dataflow chip (Onyx-like CGRA).")
    ap.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("chip", help="chip config: a YAML path or a name in configs/chips")
        p.add_argument("workload", help="workload name (see `sieve list workloads`) or a "
                       "YAML workload spec (docs/workloads.md)")
        p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="workload parameter, e.g. -p shape=64,64,64 -p density=0.1")
        p.add_argument("-c", "--config", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="chip config override, e.g. -c pe.fifo_depth=4")

    r = sub.add_parser("run", help="compile, simulate and verify a workload")
    common(r)
    r.add_argument("--fidelity", choices=("cycle", "burst", "analytic"), default=None,
                   help="timing engine (default: the chip config's sim.fidelity; model "
                   "layers too large for burst run analytic)")
    r.add_argument("--out", default=None, help="run folder to write (stats.json, ...)")
    r.add_argument("--baseline", default=None, metavar="CPU",
                   help="CPU preset to compare with: a YAML path or a name in configs/cpus "
                        "(xeon-12c, xeon-1c, epyc-9654, host)")
    r.add_argument("--trace", action="store_true",
                   help="also write trace.json (Chrome/Perfetto timeline, one track per tile)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    r.add_argument("--workers", type=int, default=None, metavar="N", help="run a layer's "
                   "independent jobs on N local processes (same stats.json as serial)")
    r.add_argument("--scheduler", default=None, help="... or on Dask: tcp://HOST:PORT, local-dask")
    r.add_argument("--report", choices=("none", "md", "html"), default="html",
                   help="with --out: which reports to render (html: report.html and pictures)")
    r.add_argument("--check", choices=("sample", "full"), default="sample",
                   help="the ISA interpreter check: every unit's first steps (sample) or the "
                        "whole kernel (full: about a microsecond per token)")
    r.set_defaults(fn=cmd_run)

    rep = sub.add_parser("report", help="re-render reports of saved run folders")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--trace", action="store_true", help="also write trace.json")
    rep.set_defaults(fn=cmd_report)

    cmp_ = sub.add_parser("compare", help="run several chips x workloads; one table")
    cmp_.add_argument("--chips", nargs="+", required=True, metavar="CHIP")
    cmp_.add_argument("--workloads", nargs="+", required=True, metavar="WORKLOAD")
    cmp_.add_argument("-p", "--param", action="append", default=[], metavar="[WORKLOAD:]KEY=VALUE",
                      help="parameter for every workload, or WORKLOAD:KEY=VALUE for one; a key "
                      "given again adds a grid point")
    cmp_.add_argument("-c", "--config", action="append", default=[], metavar="KEY.PATH=VALUE")
    cmp_.add_argument("--fidelity", choices=("cycle", "burst", "analytic"), default=None)
    cmp_.add_argument("--baseline", default=None, metavar="CPU")
    cmp_.add_argument("--out", default="runs/compare", help="folder for the runs and table")
    cmp_.set_defaults(fn=cmd_compare)

    cal = sub.add_parser("calibrate-cpu", help="measure this machine and write a host preset")
    cal.add_argument("--out", default="configs/cpus/host.yaml")
    cal.add_argument("--repeats", type=int, default=5)
    cal.add_argument("--quick", action="store_true", help="fewer, smaller measurements")
    cal.set_defaults(fn=cmd_calibrate)

    c = sub.add_parser("compile", help="compile a workload and print assembly, DOT or bits")
    common(c)
    c.add_argument("--emit", choices=("asm", "dot", "bitstream"), default="asm")
    c.add_argument("-o", "--output", default=None, help="write to a file instead of stdout")
    c.add_argument("--explain", action="store_true", help="print the loop orders with their "
                   "estimates (burst probes) and the choice; with -o also write the program")
    c.set_defaults(fn=cmd_compile)

    ls = sub.add_parser("list", help="list chips and workloads")
    ls.add_argument("what", nargs="?", choices=("chips", "workloads", "cpus", "dram", "all"),
                    default="all")
    ls.set_defaults(fn=cmd_list)

    from sweeps.cli import add_sweep_parser

    add_sweep_parser(sub, lambda: __import__("sieve.sweeper").sweeper.TARGET)
    return ap


def main(argv: list[str] | None = None) -> int:
    import warnings  # deprecations (e.g. spmspm shape_order=mkn) as one note line
    warnings.formatwarning = lambda message, *_a, **_k: f"note: {message}\n"
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (SieveError, WorkloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory: the run needs more memory than this machine has; use a "
              "smaller shape, density, tokens or array (the up-front estimate, compiler."
              "footprint, did not foresee it)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:        # e.g. `sieve list | head`: the reader left; exit quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # after BrokenPipeError, a subclass: a path the OS refuses
        name = str(exc.filename or "")  # (too long, no permission, disk full) is one line
        shown = name if len(name) <= 120 else f"{name[:120]}... ({len(name)} chars)"
        print(f"error: {shown + ': ' if shown else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
