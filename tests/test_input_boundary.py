"""Issue 12, each numbered failure rerun from the CLI: one clear error naming the place and
exit 2 (or a correct run), never a traceback, a hang, a NaN or a silently wrong number."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from sieve.cli import main

ROOT = Path(__file__).resolve().parent.parent
ONYX = ROOT / "configs/chips/onyx.yaml"


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def refused(argv: list[str], capsys, *needles: str) -> str:
    """Run ``argv``; assert exit 2 and one `error:` naming every needle; return stderr."""
    rc, out, err = cli(argv, capsys)
    assert rc == 2, (out, err)
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def write_files(folder: Path) -> None:
    """The bad data files of the issue."""
    np.savez(folder / "oob.npz", data=np.array([1.0, 2.0]), indices=np.array([0, 7]),
             indptr=np.array([0, 1, 2]), format=b"csr", shape=np.array([2, 2]))
    np.save(folder / "str.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(folder / "struct.npy", np.zeros((2, 2), dtype=[("a", "i4"), ("b", "f4")]))
    np.save(folder / "complex.npy", np.eye(4) * (1 + 2j))
    (folder / "huge.mtx").write_text("%%MatrixMarket matrix coordinate real general\n"
                                     "1000000000000 1000000000000 1\n1 1 1.0\n")
    (folder / "nan.mtx").write_text("%%MatrixMarket matrix coordinate real general\n"
                                    "4 4 2\n1 1 nan\n2 2 1.0\n")
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**32, 2**32],
                               "data_offsets": [0, 0]}}).encode()
    (folder / "ovf.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    deep = ('{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "x": '
            + "[" * 100_000 + "]" * 100_000 + "}").encode()
    (folder / "deep.safetensors").write_bytes(struct.pack("<Q", len(deep)) + deep
                                              + b"\0" * 16)
    (folder / "ckpt").mkdir()
    (folder / "ckpt" / "bad.npz").write_bytes(b"PK\x03\x04garbage")


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_files(tmp_path)
    return tmp_path


# ---- 1. memory corruption: the out-of-range sparse .npz ------------------------------------
def test_out_of_range_npz_index_is_refused_not_a_segfault(files, capsys):
    refused(["run", "onyx", "linear.custom", "-p", "weights=oob.npz", "-p", "tokens=4"],
            capsys, "oob.npz", "indices holds 7, outside 0..1")


@pytest.mark.parametrize("arrays, needle", [
    ({"indptr": [0, 2, 1]}, "indptr is not 3 non-decreasing offsets"),
    ({"indptr": [0, 1]}, "indptr is not 3"),
    ({"indices": [0, -1]}, "indices holds -1"),
    ({"shape": [2, -2]}, "is not two sizes >= 0"),
    ({"data": [1 + 1j, 2]}, "complex values"),
    ({"format": b"dia"}, "sparse format 'dia' is not supported"),
])
def test_every_sparse_npz_array_is_checked(tmp_path, arrays, needle):
    from workloads import WorkloadError
    from workloads.data import load_matrix

    good = {"data": [1.0, 2.0], "indices": [0, 1], "indptr": [0, 1, 2], "format": b"csr",
            "shape": [2, 2]}
    good.update(arrays)
    np.savez(tmp_path / "m.npz", **{k: np.asarray(v) for k, v in good.items()})
    with pytest.raises(WorkloadError, match="m.npz: ") as err:
        load_matrix(tmp_path / "m.npz")
    assert needle in str(err.value)


def test_a_valid_sparse_npz_still_loads(tmp_path):
    from workloads.data import load_matrix

    m = sp.random(30, 20, density=0.2, format="csr", random_state=1)
    for fmt in ("csr", "csc", "coo"):
        sp.save_npz(tmp_path / f"{fmt}.npz", m.asformat(fmt))
        assert (load_matrix(tmp_path / f"{fmt}.npz") != m).nnz == 0


# ---- 2. NaN and inf in configs ---------------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("clock.freq_mhz=.nan", "clock.freq_mhz: expected a finite number, got nan"),
    ("clock.freq_mhz=.inf", "clock.freq_mhz: expected a finite number, got inf"),
    ("dram.channel_bandwidth_gb_per_s=.inf", "dram.channel_bandwidth_gb_per_s: expected a fin"),
    ("dram.channel_bandwidth_gb_per_s=.nan", "dram.channel_bandwidth_gb_per_s: expected a fin"),
    ("dram.latency_ns=-.inf", "dram.latency_ns: expected a finite number, got -inf"),
    ("dram.latency_ns=1.0e+300", "dram.latency_ns: 1e+300 ns is"),
])
def test_non_finite_config_values_are_refused(files, capsys, override, key):
    refused(["run", "onyx", "spmspm", "-p", "shape=8,8,8", "-c", override, "--out", "r"],
            capsys, "invalid config", key)
    assert not Path("r").exists()


# ---- 3. parameters that silently wreck the workload -------------------------------------------
@pytest.mark.parametrize("value, needle", [
    ("nan", "parameter row_cv: expected a finite number, got nan"),
    ("1e9", "parameter row_cv: 1e+09 with weight_sparsity 0.5 would prune 99.9%"),
    ("-0.5", "parameter row_cv: must be -1 (as measured) or >= 0"),
])
def test_row_cv_that_would_wreck_the_sparsity_is_refused(capsys, value, needle):
    refused(["run", "onyx", "linear.bert-base.intermediate", "-p", "scale=16", "-p",
             "tokens=4", "-p", f"row_cv={value}"], capsys, needle)


def test_realized_sparsity_matches_the_generated_masks():
    """The closed form behind the row_cv check equals the masks Weight generates."""
    from workloads.layers import Weight
    from workloads.pruning import realized_sparsity

    for s, cv in ((0.5, 0.75), (0.5, 2.0), (0.7, 0.3)):
        w = Weight("w", (2048, 512), "unstructured", s, seed=1, row_cv=cv)
        got = 1.0 - np.count_nonzero(w.dense()) / w.dense().size
        assert got == pytest.approx(realized_sparsity(s, cv), abs=0.01)


def test_float_shape_in_a_spec_is_refused_not_truncated(files, capsys):
    Path("s.yaml").write_text("workload: spmspm\nshape: [8.7, 8, 8]\n")
    refused(["run", "onyx", "s.yaml"], capsys, "workload spec s.yaml: shape",
            "expected an integer, got 8.7")


def test_duplicate_yaml_keys_are_refused(files, capsys):
    text = ONYX.read_text().replace("  fifo_depth: 2\n  # VLSI24: INT16",
                                    "  fifo_depth: 0\n  fifo_depth: 2\n  # VLSI24: INT16")
    assert text != ONYX.read_text()
    Path("dup.yaml").write_text(text)
    refused(["run", "dup.yaml", "spmspm", "-p", "shape=8,8,8"], capsys, "dup.yaml",
            "duplicate key 'fifo_depth'")
    Path("s.yaml").write_text("workload: spmspm\nseed: 1\nseed: 2\n")
    refused(["run", "onyx", "s.yaml"], capsys, "workload spec s.yaml", "duplicate key 'seed'")


# ---- 4. tracebacks --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needles", [
    (["-p", "seed=-1"], ["parameter seed: must be >= 0, got -1"]),
    (["-p", "shape=99999999999999999999,8,8"], ["parameter shape", "out of range"]),
    (["-p", "shape=8,8.5,8"], ["parameter shape: expected an integer, got '8.5'"]),
    (["-p", "density=nan"], ["parameter density: expected a finite number"]),
    (["-c", "interconnect.hop_latency_cycles=2147483648"],
     ["interconnect.hop_latency_cycles: 2147483648 exceeds 16,777,216"]),
    (["-c", "pe.fifo_depth=" + "9" * 5000], ["pe.fifo_depth"]),
    # a name longer than the OS allows (the fuzz found it: is_file raised ENAMETOOLONG)
    (["-c", "dram.preset=" + "9" * 5000], ["dram.preset: unknown DRAM preset"]),
    (["-c", "pe.fifo_depth=true"], ["pe.fifo_depth: expected int, got True"]),
    (["-c", "array.rows=1e3"], ["array.rows: expected int"]),
])
def test_bad_parameters_and_overrides_name_the_key(capsys, argv, needles):
    refused(["run", "onyx", "spmspm", "-p", "shape=8,8,8"] + argv, capsys, *needles)


@pytest.mark.parametrize("spec, needles", [
    ("tokens: [1, 2]", ["s.yaml: tokens", "expected an integer, got a list"]),
    ("tokens: true", ["s.yaml: tokens", "expected an integer, got True"]),
    ("tokens: 4.0", ["s.yaml: tokens", "expected an integer, got 4.0"]),
    ("workload: spmspm\nparams: {formats: [B]}", ["s.yaml: formats", "expected text"]),
    ("params: {weights: 3}", ["s.yaml: weights", "expected text"]),
    ("workload: [moe]", ["s.yaml: needs a mapping with a 'workload' key"]),
])
def test_spec_fields_of_the_wrong_type_name_the_field(files, capsys, spec, needles):
    body = spec if spec.startswith("workload") else \
        f"workload: moe.mixtral8x7b\nshape: {{d: 64, f: 64}}\n{spec}\n"
    Path("s.yaml").write_text(body)
    refused(["run", "onyx", "s.yaml"], capsys, *needles)


@pytest.mark.parametrize("name, content, needle", [
    ("bin.yaml", bytes(range(256)) * 4, "binary data"),
    ("deep.yaml", ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested deeper than 64"),
    ("big.yaml", b"a: 1\n" * 300_000, "larger than 1,048,576 bytes"),
    ("latin.yaml", "name: caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
])
def test_unreadable_yaml_is_refused_as_config_and_as_spec(files, capsys, name, content,
                                                          needle):
    Path(name).write_bytes(content)
    refused(["run", name, "spmspm"], capsys, f"invalid config {name}", needle)
    refused(["run", "onyx", name], capsys, f"workload spec {name}", needle)


def test_devices_and_folders_are_not_configs(files, capsys):
    refused(["run", "/dev/zero", "spmspm"], capsys, "/dev/zero", "not a regular file")
    refused(["run", str(files), "spmspm"], capsys, "is a folder")


@pytest.mark.parametrize("args, needles", [
    (["-p", "weights=ovf.safetensors"], ["ovf.safetensors", "do not fit shape"]),
    (["-p", "weights=deep.safetensors", "-p", "key=w"], ["deep.safetensors",
                                                         "nested too deeply"]),
    (["-p", "weights=str.npy"], ["str.npy: dtype <U1 is not a real number type"]),
    (["-p", "weights=struct.npy"], ["struct.npy: dtype", "is not a real number type"]),
    (["-p", "weights=huge.mtx"], ["huge.mtx: a 1,000,000,000,000 x 1,000,000,000,000 "
                                  "matrix", "GiB available"]),
    (["-p", "weights=complex.npy"], ["complex.npy: complex values"]),
    (["-p", "weights=nan.mtx"], ["nan.mtx", "1 NaN or infinite values"]),
])
def test_bad_data_files_are_refused(files, capsys, args, needles):
    refused(["run", "onyx", "linear.custom", "-p", "tokens=4"] + args, capsys, *needles)


def test_a_corrupt_npz_in_a_checkpoint_folder_is_named(files, capsys):
    refused(["run", "onyx", "moe.mixtral8x7b", "-p", "weights=ckpt"], capsys,
            "bad.npz: not a readable .npz file")


def test_npy_whose_shape_exceeds_its_bytes_is_refused_before_allocating(tmp_path):
    from workloads import WorkloadError
    from workloads.data import load_matrix

    np.save(tmp_path / "a.npy", np.zeros((4, 4), dtype=np.float32))
    raw = (tmp_path / "a.npy").read_bytes().replace(b"(4, 4)", b"(4000000, 4000000)")
    (tmp_path / "a.npy").write_bytes(raw)
    with pytest.raises(WorkloadError, match="needs 64,000,000,000,000 bytes but only"):
        load_matrix(tmp_path / "a.npy")


def test_out_naming_a_file_and_compile_into_a_folder(files, capsys):
    Path("afile").write_text("x")
    refused(["run", "onyx", "spmspm", "-p", "shape=8,8,8", "--out", "afile"], capsys,
            "--out afile: is a file")
    assert Path("afile").read_text() == "x"
    refused(["compile", "onyx", "spmspm", "-p", "shape=8,8,8", "-o", "."], capsys,
            "-o .: is a folder")


# ---- 4 (end). sieve report on damaged run folders --------------------------------------------
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "good"
    assert main(["run", "onyx", "moe.mixtral8x7b", "-p", "scale=64", "-p", "tokens=4",
                 "--out", str(out), "-q"]) == 0
    assert (out / "timeline.json").is_file()
    return out


@pytest.mark.parametrize("file, damage, needle", [
    ("timeline.json", "[1, 2]", "timeline.json: expected a JSON object"),
    ("timeline.json", '{"spans": [{"track": "lane"}]}', "spans[0].start: expected int"),
    ("timeline.json", '{"spans": 3}', "timeline.json: expected an object with a 'spans'"),
    ("timeline.json", "{", "timeline.json: invalid JSON"),
    ("stats.json", None, "not a run folder (no stats.json)"),
    ("stats.json", '{"summary": {}, "stats": {}}', "stats.json: summary.chip: missing"),
    ("stats.json", '{"summary": 1, "stats": {}}', "expected 'summary' and 'stats' objects"),
    ("stats.json", '{"summary": {"chip": "c", "workload": "w", "fidelity": "f", '
                   '"cycles": NaN, "seconds": 1}, "stats": {}}', "NaN is not valid JSON"),
    ("stats.json", "\xff\xfe", "stats.json: "),
    ("workload.json", "[]", "workload.json: expected a JSON object"),
])
def test_report_on_a_damaged_folder_names_the_file(run_folder, tmp_path, capsys, file,
                                                   damage, needle):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    if damage is None:
        (folder / file).unlink()
    else:
        (folder / file).write_bytes(damage.encode("latin-1"))
    refused(["report", str(folder)], capsys, needle)


def test_report_on_the_good_folder_works(run_folder, capsys):
    rc, out, _err = cli(["report", str(run_folder)], capsys)
    assert rc == 0 and "report.html" in out


# ---- 5. no up-front size check ----------------------------------------------------------------
@pytest.mark.parametrize("argv, needles", [
    (["spmspm", "-p", "shape=20000,20000,20000", "-p", "density=0.1"],
     ["80,000,000 nonzeros", "160,000,000 bytes of global buffer", "has 4,194,304"]),
    (["spmspm", "-p", "shape=20000,20000,20000", "-p", "density=0.001"],   # fits the GLB
     ["of memory", "dense output, reference and check 59.60 GiB", "has 4.00 GiB available"]),
    (["spmv", "-p", "shape=2000000,2000000", "-p", "density=0.5"], ["global buffer"]),
    (["innerprod", "-p", "shape=2000,2000,2000"], ["global buffer"]),
    (["gemm", "-p", "shape=2000000,2000000,2000000"], ["of memory", "A generation"]),
    (["moe.mixtral8x7b", "-p", "tokens=10000000"], ["of memory", "FFN intermediates"]),
    (["spmspm", "-p", "shape=8,8,8", "-c", "array.cols=1000000000"],
     ["16x1000000000 tile array"]),
])
def test_too_large_runs_are_refused_up_front(capsys, monkeypatch, argv, needles):
    # shapes whose generation would take minutes and gigabytes: refused before building,
    # on a machine with 4 GiB available (so the test never depends on this machine's memory)
    import compiler.footprint

    monkeypatch.setattr(compiler.footprint, "available_memory_bytes", lambda: 4 * 2**30)
    refused(["run", "onyx"] + argv, capsys, *needles)


def test_check_fits_compares_with_the_memory_given(onyx_chip):
    from compiler.footprint import check_fits
    from workloads import WorkloadError, get_workload

    p = get_workload("moe.mixtral8x7b").resolve({"tokens": "100000"})
    fp = check_fits(onyx_chip, "moe.mixtral8x7b", p, available=2**50)
    assert fp is not None and fp.host_bytes > 50 * 2**30
    with pytest.raises(WorkloadError, match="needs about .* GiB of memory .* but this "
                                            "machine has 16.00 GiB available"):
        check_fits(onyx_chip, "moe.mixtral8x7b", p, available=16 * 2**30)


def test_a_memory_error_at_run_time_is_one_message(capsys, monkeypatch):
    import sieve.api

    def boom(*_a, **_k):
        raise MemoryError

    monkeypatch.setattr(sieve.api, "simulate", boom)
    refused(["run", "onyx", "spmspm", "-p", "shape=8,8,8"], capsys, "out of memory")


# ---- 6. misleading errors ----------------------------------------------------------------------
def test_watchdog_names_the_controller_step(capsys):
    refused(["run", "onyx", "spmspm", "-p", "shape=8,8,8", "-c",
             "controller.dma_setup_cycles=10000000", "-c", "sim.max_cycles=100000"], capsys,
            "watchdog", "controller: schedule step 1 (dma_in B")


def test_top_k_beyond_the_routing_profile_names_routing(capsys):
    refused(["run", "onyx", "moe.mixtral8x7b", "-p", "top_k=8", "-p", "scale=64", "-p",
             "tokens=4"], capsys, "parameter routing: gini0.10 cannot be realized with "
                                  "top_k=8 of 8 experts", "routing=uniform")
    rc, out, _ = cli(["run", "onyx", "moe.mixtral8x7b", "-p", "top_k=8", "-p", "scale=64",
                      "-p", "tokens=4", "-p", "routing=uniform", "-q"], capsys)
    assert rc == 0 and "True" in out


# ---- 3 (stats.json) and 7. strict JSON; a reused --out folder -------------------------------
def test_stats_json_is_strict_json(tmp_path, capsys):
    out = tmp_path / "r"
    assert cli(["run", "onyx", "spmspm", "-p", "shape=8,8,8", "--out", str(out), "-q"],
               capsys)[0] == 0

    def refuse(name):
        raise AssertionError(f"{name} in stats.json")
    for name in ("stats.json", "workload.json", "timing.json"):
        json.loads((out / name).read_text(), parse_constant=refuse)


def test_strict_json_names_the_non_finite_key():
    from reports.rundir import RunFolderError, strict_json

    with pytest.raises(RunFolderError, match=r"stats.json: summary.roofs\[1\] is nan"):
        strict_json({"summary": {"roofs": [1.0, float("nan")]}}, where="stats.json")


def test_reused_out_folder_is_replaced_whole(tmp_path, capsys, caplog):
    out = tmp_path / "r"
    base = ["run", "onyx", "spmspm", "-p", "shape=8,8,8", "--out", str(out), "-q"]
    assert cli(base + ["--trace"], capsys)[0] == 0
    assert (out / "trace.json").is_file() and (out / ".sieve-run").is_file()
    assert "replaced" not in caplog.text
    # the note goes to the "sieve" logger: stderr from the CLI (logging's last resort)
    assert cli(base, capsys)[0] == 0
    assert f"--out {out} held an earlier run" in caplog.text
    assert not (out / "trace.json").exists()        # nothing of the first run survives


def test_out_into_a_foreign_folder_is_refused(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    refused(["run", "onyx", "spmspm", "-p", "shape=8,8,8", "--out", str(tmp_path)], capsys,
            "not a Sieve run folder")
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["run", "onyx", "spmspm", "-p", "shape=8,8,8", "--out", str(empty), "-q"],
               capsys)[0] == 0
