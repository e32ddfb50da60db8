"""The command line: the README's commands work and bad input gives one clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isa.asm import parse_program
from isa.bitstream import decode
from sieve.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = str(ROOT / "configs/chips/onyx-small.yaml")


def test_run_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "a"
    rc = main(["run", SMALL, "spmspm", "-p", "shape=16,16,16", "-p", "density=0.1",
               "-p", "seed=0", "--fidelity", "cycle", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "output verified" in text and "True" in text and "total cycles" in text
    summary = json.loads((out / "stats.json").read_text())["summary"]
    assert summary["verified"] is True


def test_compile_emits_asm_dot_and_bitstream(tmp_path, capsys):
    base = ["compile", SMALL, "spmspm", "-p", "shape=8,8,8"]
    assert main(base + ["--emit", "asm"]) == 0
    program = parse_program(capsys.readouterr().out)
    assert program.kernels[0].name == "spmspm_ikj"
    assert main(base + ["--emit", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    assert main(base + ["--emit", "bitstream", "-o", str(tmp_path / "k.bin")]) == 0
    words = np.frombuffer((tmp_path / "k.bin").read_bytes(), dtype=np.uint32)
    assert decode(words) == program.kernels[0]


def test_list_shows_chips_and_workload_parameters(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for word in ("onyx", "onyx-small", "spmv", "spmspm", "elemadd", "elemmul",
                 "-p density=", "-p order=", "-p B=", "source:"):
        assert word in text


@pytest.mark.parametrize("args,message", [
    (["run", SMALL, "spmspm", "-c", "pe.fifo_dept=4"], "did you mean fifo_depth"),
    (["run", SMALL, "spmspm", "-c", "pe.fifo_depth=0"], "pe.fifo_depth: must be >= 1"),
    (["run", SMALL, "spmspm", "-p", "densty=0.1"], "did you mean density"),
    (["run", SMALL, "spmspm", "-p", "density=1.5"], "must be in [0, 1]"),
    (["run", SMALL, "spmspm", "-p", "shape=8,8"], "expected 3 positive sizes"),
    (["run", SMALL, "spmsmp"], "did you mean spmspm"),
    (["run", "nochip", "spmspm"], "unknown chip"),
    (["run", SMALL, "spmspm", "-p", "order=kij"], "parameter order"),
    (["run", SMALL, "spmspm", "-p", "formats=B:sx"], "bad format"),
    # Too large for onyx-small's global buffer: an impossible size.
    (["run", SMALL, "spmspm", "-p", "shape=2000,2000,2000", "-p", "density=0.05"],
     "global buffer"),
])
def test_bad_input_is_one_clear_error(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_console_script_has_no_traceback_on_error():
    exe = Path(sys.executable).with_name("sieve")
    proc = subprocess.run([str(exe), "run", SMALL, "spmspm", "-c", "pe.fifo_dept=4"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "invalid config" in proc.stderr and "pe.fifo_dept" in proc.stderr


def test_run_with_a_cpu_baseline_prints_the_ratios(capsys):
    assert main(["run", SMALL, "spmv", "-p", "shape=32,32", "--baseline", "xeon-1c"]) == 0
    out = capsys.readouterr().out
    for label in ("speedup", "energy ratio", "EDP ratio", "energy (J)"):
        assert label in out


def test_unknown_baseline_is_one_clear_error(capsys):
    assert main(["run", SMALL, "spmv", "--baseline", "xeon-13c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_run_renders_a_report_and_trace(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", SMALL, "spmv", "-p", "shape=24,24", "--baseline", "xeon-12c",
                 "--out", str(out), "--trace"]) == 0
    for name in ("report.html", "roofline.png", "energy.png", "comparison.png",
                 "pe_utilization.png", "summary.md", "trace.json"):
        assert (out / name).stat().st_size > 0
    (out / "roofline.png").unlink()
    assert main(["report", str(out)]) == 0          # re-render without simulating
    assert (out / "roofline.png").exists()


def test_compare_writes_one_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--chips", SMALL, "--workloads", "spmv", "elemmul",
                 "-p", "shape=16,16", "--baseline", "xeon-1c", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "speedup" in text and "spmv" in text and "elemmul" in text
    csv = (out / "comparison.csv").read_text().strip().splitlines()
    assert len(csv) == 3   # header + one row per run


def test_report_on_a_non_run_folder_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["report", "x" * 5000],
                                  ["run", SMALL, "spmv", "-p", "shape=16,16", "--out", "x" * 5000],
                                  ["sweep", "x" * 5000 + ".yaml"]])
def test_a_path_the_os_refuses_is_one_error_line(argv, capsys):
    # ENAMETOOLONG used to escape as an OSError traceback from pathlib (found by the fuzz suite)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "(5" in err[0]
    assert "File name too long" in err[0] or "cannot" in err[0]
