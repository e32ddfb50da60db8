"""Fuzzing every input with hypothesis (issue 12): chip configs, ``-c`` overrides, whole YAML
documents, workload parameters, workload specs and data files.

Each input must end in exactly one of two ways: a clean error (ConfigError, WorkloadError or
another SieveError; exit 2 from the CLI entry ``sieve.cli.main``), or an accepted input whose
values are exactly what was given (no silent coercion) and whose run verifies with strict-JSON
(finite) figures. Any other exception fails the test, and so does an example that runs longer
than ``EXAMPLE_SECONDS`` (a hang).

``make test`` runs a bounded profile (about a minute in all); the ``slow`` variants run ten
times as many examples. ``FUZZ_REPORT=1`` prints the outcomes by class at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import struct
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isa.arch import ChipConfig
from isa.errors import ConfigError, SieveError
from isa.schema import to_dict
from reports.rundir import strict_json
from sieve.cli import main
from simulator.config import chip_from_dict, load_chip
from workloads import WorkloadError, get_workload
from workloads.data import load_matrix

ROOT = Path(__file__).resolve().parent.parent
ONYX = ROOT / "configs/chips/onyx.yaml"
ONYX_DATA = yaml.safe_load(ONYX.read_text())
EXAMPLE_SECONDS = 30
"""A generous per-example limit (the machine may be loaded); every example is tiny."""

OUTCOMES: Counter[tuple[str, str]] = Counter()
last_error = [""]          # stderr of the last run_cli


class Hang(BaseException):
    """An example ran past EXAMPLE_SECONDS (a BaseException, so no `except Exception` in the
    code under test can swallow it)."""


@contextlib.contextmanager
def no_hang(seconds: int = EXAMPLE_SECONDS) -> Iterator[None]:
    def fire(_signum: int, _frame: Any) -> None:
        raise Hang(f"example still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def fuzz(strategy: st.SearchStrategy[Any], body: Callable[[Any], None], examples: int) -> None:
    """Run ``body`` on ``examples`` draws of ``strategy``, each under ``no_hang``."""
    # CI draws the same examples every run (a landing never hangs on a new random draw);
    # a developer's run explores new ones each time, as it found the dram.preset name bug
    @settings(max_examples=examples, deadline=None, database=None,
              derandomize=bool(os.environ.get("CI")),
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        with no_hang():
            body(value)
    run()


SCALES = [pytest.param(1, id="quick"), pytest.param(10, marks=pytest.mark.slow, id="large")]


@pytest.fixture(scope="module", autouse=True)
def report_outcomes() -> Iterator[None]:
    yield
    if os.environ.get("FUZZ_REPORT"):
        for (cls, outcome), n in sorted(OUTCOMES.items()):
            print(f"fuzz {cls:<18} {outcome:<9} {n:>6}")


# ---- hostile values ------------------------------------------------------------------------
HOSTILE_NUMBERS = [0, 1, 2, 3, -1, -2**31, 2**31, 2**31 - 1, 2**53, 2**53 + 1, 2**63, 10**30,
                   10**400, 0.5, 8.7, -0.0, 1e-300, 1e308, math.inf, -math.inf, math.nan]
PLAUSIBLE_TEXT = ["1", "2", "3", "4", "8", "16", "64", "0", "0.5", "0.25", "0.9", "100",
                  "burst", "cycle", "gate", "none", "skip", "ddr4", "hbm2", "os", "ws", "is"]
"""Values that are often valid, so that accepted inputs (and their runs) are fuzzed too."""

HOSTILE_TEXT = ["", " ", "nan", "NaN", ".nan", "inf", "-inf", ".inf", "1e400", "1e-400",
                "0x10", "1_000", "true", "false", "null", "~", "[1, 2]", "{a: 1}", "8.7",
                "99999999999999999999", "9" * 5000, "-1", "0", "1", "2", "a: b", "\x00",
                "é", "1,2", "1,,2", "4,4,4", "8,8,8", "2:4", "block4x4", "relu", "teal50",
                "uniform", "hot", "gini0.25", "float", "int", "ikj", "ijk", "B:ss C:ss"]


def sizes() -> st.SearchStrategy[int]:
    """Small or huge integers. Small ones run fast; huge ones must be refused up front (the
    footprint check). Moderately large ones (1e4..1e9) would be legitimately long runs, not
    hangs, so the fuzz leaves them out: it would only measure the machine."""
    return st.one_of(st.integers(-64, 64), st.integers(2**40, 2**80),
                     st.integers(max_value=-65))


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.sampled_from(HOSTILE_TEXT),
                     st.booleans(), st.none(), sizes(), st.floats(), st.text(max_size=12))


def yaml_values() -> st.SearchStrategy[Any]:
    return st.recursive(scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=6)


def leaf_paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += leaf_paths(value, prefix + (key,))
        else:
            out.append(prefix + (key,))
    return out


CHIP_PATHS = leaf_paths(ONYX_DATA)


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return out
    node[path[-1]] = value
    return out


# ---- the one oracle for a run from the CLI -------------------------------------------------
def run_cli(argv: list[str], cls: str) -> int:
    """``sieve.cli.main(argv)`` must return 0 with a verified, finite report, or 2."""
    import sieve.api

    reports: list[Any] = []
    real = sieve.api.run

    def keep(*args: Any, **kwargs: Any) -> Any:
        reports.append(real(*args, **kwargs))
        return reports[-1]

    err = io.StringIO()
    with mock.patch.object(sieve.api, "run", keep), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:          # argparse's usage error (e.g. `-c -:`): exit 2
            rc = exc.code if isinstance(exc.code, int) else 1
    assert rc in (0, 2), (argv, rc, err.getvalue())
    assert "Traceback" not in err.getvalue()
    last_error[0] = err.getvalue()
    if rc == 0 and reports:
        report = reports[-1]
        assert report.summary["verified"] is True, (argv, report.summary["checks"])
        strict_json({"summary": report.summary, "stats": report.result.stats}, where="fuzz")
    OUTCOMES[(cls, "accepted" if rc == 0 else "refused")] += 1
    return rc


# ---- 1. chip configs: one key set to a hostile value, removed, or added ---------------------
@st.composite
def chip_mutations(draw: st.DrawFn) -> tuple[str, tuple[str, ...], Any]:
    action = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
    path = draw(st.sampled_from(CHIP_PATHS))
    if action == "add":
        path = path[:-1] + (draw(st.text(min_size=1, max_size=8)),)
    return action, path, draw(yaml_values()) if action != "delete" else None


def check_chip_mutation(m: tuple[str, tuple[str, ...], Any]) -> None:
    action, path, value = m
    if action == "delete":
        data = json.loads(json.dumps(ONYX_DATA))
        node = data
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1])
    else:
        data = set_path(ONYX_DATA, path, value)
    try:
        cfg = chip_from_dict(data, where="fuzz")
    except ConfigError as exc:
        assert "invalid config fuzz" in str(exc)
        OUTCOMES[("chip config", "refused")] += 1
        return
    assert isinstance(cfg, ChipConfig)
    if action == "set":          # accepted: the value is exactly the one given
        got: Any = to_dict(cfg)
        for key in path:
            got = got[key]
        assert got == value and type(got) in (type(value), float), (path, value, got)
    OUTCOMES[("chip config", "accepted")] += 1


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_chip_configs(scale):
    fuzz(chip_mutations(), check_chip_mutation, 400 * scale)


# ---- 2. -c overrides through the CLI, with a tiny run when accepted -------------------------
@st.composite
def overrides(draw: st.DrawFn) -> str:
    path = ".".join(draw(st.sampled_from(CHIP_PATHS)))
    if draw(st.integers(0, 5)) == 0:
        path = draw(st.sampled_from([path + ".x", "x." + path, "", ".", path + "."]))
    value = draw(st.one_of(st.sampled_from(PLAUSIBLE_TEXT), st.sampled_from(PLAUSIBLE_TEXT),
                           st.sampled_from(HOSTILE_TEXT), st.text(max_size=10),
                           sizes().map(str), st.floats().map(repr)))
    sep = draw(st.sampled_from(["=", "=", "=", "", "=="]))
    return f"{path}{sep}{value}"


def check_override(text: str) -> None:
    rc = run_cli(["run", "onyx", "spmspm", "-p", "shape=4,4,4", "-p", "density=0.5", "-q",
                  "-c", text], "override")
    err = last_error[0]
    if rc == 2 and err.startswith("error: invalid config"):
        # the error names the key at fault (or the malformed override itself)
        key = text.partition("=")[0].strip()
        assert key in err or f"override {text!r}" in err, (text, err)


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_overrides(scale):
    fuzz(overrides(), check_override, 120 * scale)


# ---- 3. whole YAML documents as chip configs --------------------------------------------------
@st.composite
def yaml_documents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["value", "mutated text", "bytes"]))
    if kind == "value":
        return yaml.safe_dump(draw(yaml_values()), allow_unicode=True).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    text = ONYX.read_text()
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 20))
    insert = draw(st.sampled_from(["", ":", "- ", "  ", "\t", "{", "[", "]", "&a ", "*a",
                                   "!!python/object:os.system ", "\n", "'", '"', "\x00",
                                   "<<: *a\n", "9" * 60]))
    return (text[:at] + insert + text[at + cut:]).encode()


def check_yaml_document(content: bytes) -> None:
    with tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as fh:
        fh.write(content)
    try:
        load_chip(fh.name)
        OUTCOMES[("YAML document", "accepted")] += 1
    except ConfigError as exc:
        assert fh.name in str(exc)
        OUTCOMES[("YAML document", "refused")] += 1
    finally:
        os.unlink(fh.name)


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_yaml_documents(scale):
    fuzz(yaml_documents(), check_yaml_document, 200 * scale)


# ---- 4. workload parameters through the CLI ------------------------------------------------------
SMALL = {"spmspm": ["shape=4,4,4"], "spmv": ["shape=6,5"], "elemmul": ["shape=4,5"],
         "gemm": ["shape=8,8,8"], "sddmm": ["shape=4,4,3"], "ttv": ["shape=3,3,3"],
         "moe.mixtral8x7b": ["scale=128", "tokens=4"], "moe.deepseek-v3": ["scale=128",
                                                                             "tokens=4"],
         "linear.bert-base.output": ["scale=64", "tokens=4"],
         "ffn.opt-6.7b": ["scale=256", "tokens=4"]}


@st.composite
def parameters(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(SMALL)))
    names = [p.name for p in get_workload(name).params] + ["shapes", ""]
    given = {draw(st.sampled_from(names)): draw(st.one_of(
        st.sampled_from(PLAUSIBLE_TEXT), st.sampled_from(PLAUSIBLE_TEXT),
        st.sampled_from(HOSTILE_TEXT), st.text(max_size=8),
        st.integers(-10, 10).map(str), st.floats(0, 1).map(repr)))
        for _ in range(draw(st.integers(1, 2)))}
    return name, [f"{k}={v}" for k, v in given.items()]


def check_parameters(case: tuple[str, list[str]]) -> None:
    name, given = case
    argv = ["run", "onyx", name, "-q"]
    # the small sizes come last and win: a fuzzed scale=1 would be a legitimately long
    # full-size run, not a hang
    for item in given + SMALL[name]:
        argv += ["-p", item]
    if run_cli(argv, "parameter") == 0:
        # accepted: every parameter holds exactly the value given (no silent coercion)
        entry = get_workload(name)
        kinds = {p.name: p.kind for p in entry.params}
        fixed = {item.split("=", 1)[0] for item in SMALL[name]}
        resolved = entry.resolve(dict(item.split("=", 1) for item in given + SMALL[name]))
        for item in given:
            key, value = item.split("=", 1)
            if key in fixed:
                continue
            if kinds[key] == "int":
                assert resolved[key] == int(value.strip())
            elif kinds[key] == "float":
                assert resolved[key] == float(value) and math.isfinite(resolved[key])
            elif kinds[key] == "ints":
                assert resolved[key] == tuple(int(v) for v in value.split(","))


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_workload_parameters(scale):
    fuzz(parameters(), check_parameters, 100 * scale)


# ---- 5. workload specs --------------------------------------------------------------------------
@st.composite
def specs(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(["spmspm", "gemm", "moe.olmoe", "ffn.bert-base"]))
    doc: dict[str, Any] = {"workload": draw(st.one_of(st.just(name), st.just(name),
                                                      st.just(name), yaml_values()))}
    if name.startswith(("moe", "ffn")):
        doc["params"] = {"scale": 64}
        doc["tokens"] = 4
    else:
        doc["shape"] = [4, 4, 4]
    for _ in range(draw(st.integers(1, 3))):
        # (scale is left out: scale=1 is a legitimately long full-size run)
        key = draw(st.sampled_from(["tokens", "seed", "routing", "shape", "sparsity", "params",
                                    "weights", "layer", "name", "junk"]))
        if key == "sparsity":
            doc[key] = draw(st.one_of(yaml_values(), st.dictionaries(
                st.sampled_from(["weight", "pattern", "activation", "row_cv", "x"]),
                scalars(), max_size=2)))
        elif key == "shape":
            doc[key] = draw(st.one_of(yaml_values(), st.lists(scalars(), max_size=4)))
        elif key == "params" and "params" in doc:
            extra = draw(yaml_values())
            doc[key] = {**extra, "scale": 64} if isinstance(extra, dict) else extra
        else:
            doc[key] = draw(st.one_of(yaml_values(), st.sampled_from(PLAUSIBLE_TEXT),
                                      st.integers(0, 8)))
    return yaml.safe_dump(doc, allow_unicode=True).encode()


def check_spec(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_bytes(content)
        run_cli(["run", "onyx", str(path), "-q"], "spec")


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_specs(scale):
    fuzz(specs(), check_spec, 80 * scale)


# ---- 6. data files ---------------------------------------------------------------------------
DTYPES = ["<f8", "<f4", "<f2", "<i8", "<i4", "u1", "?", "<c16", "<U2", "S3", "O",
          "V4", [("a", "<i4"), ("b", "<f4")]]


@st.composite
def data_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from([".npy", ".npz sparse", ".npz dense", ".mtx",
                                 ".safetensors"]))
    with tempfile.TemporaryDirectory() as folder:
        p = Path(folder) / "f"
        if kind == ".npy":
            dt = draw(st.sampled_from(DTYPES))
            shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
            arr = np.zeros(shape, dtype=object if dt == "O" else dt)
            np.save(p.with_suffix(".npy"), arr, allow_pickle=True)
            raw = p.with_suffix(".npy").read_bytes()
            if draw(st.booleans()):   # lie about the shape in the header
                raw = raw.replace(repr(shape).encode(),
                                  repr(tuple(draw(st.lists(st.integers(0, 2**40), min_size=1,
                                                           max_size=2)))).encode(), 1)
            return ".npy", raw
        if kind == ".npz sparse":
            n = draw(st.integers(0, 4))
            ints = st.lists(st.integers(-3, 6), min_size=0, max_size=6)
            values = draw(st.lists(st.floats(), max_size=6))
            with np.errstate(over="ignore"):
                as_float = np.asarray(values, dtype="<f8").astype(draw(st.sampled_from(
                    ["<f8", "<c16", "<f4"])))
            data = as_float if draw(st.booleans()) else \
                np.asarray([int(v) % 7 if math.isfinite(v) else 0 for v in values],
                           dtype="<i4")
            arrays = {"data": data,
                      "indices": np.asarray(draw(ints), dtype=np.int64),
                      "indptr": np.asarray(draw(ints), dtype=np.int64),
                      "row": np.asarray(draw(ints), dtype=np.int64),
                      "col": np.asarray(draw(ints), dtype=np.int64),
                      "format": np.asarray(draw(st.sampled_from(
                          [b"csr", b"csc", b"coo", b"bsr", b"dia", b"x"]))),
                      "shape": np.asarray(draw(st.lists(st.integers(-1, 2**40), min_size=0,
                                                        max_size=3)) or [n, n])}
            np.savez(p.with_suffix(".npz"), **arrays)
            return ".npz", p.with_suffix(".npz").read_bytes()
        if kind == ".npz dense":
            arr = np.zeros(tuple(draw(st.lists(st.integers(0, 4), max_size=3))),
                           dtype=draw(st.sampled_from(["<f4", "<c8", "<U1", "?", "<i2"])))
            np.savez(p.with_suffix(".npz"), w=arr)
            raw = p.with_suffix(".npz").read_bytes()
            cut = draw(st.integers(0, len(raw)))
            return ".npz", raw if draw(st.booleans()) else raw[:cut]
        if kind == ".mtx":
            field = draw(st.sampled_from(["real", "integer", "complex", "pattern", "x"]))
            rows, cols = draw(st.integers(-1, 10**13)), draw(st.integers(0, 6))
            entries = draw(st.lists(st.tuples(st.integers(-1, 8), st.integers(-1, 8),
                                              st.sampled_from(["1", "nan", "inf", "2.5",
                                                               "x", "1e400"])), max_size=4))
            body = "".join(f"{i} {j} {v}\n" for i, j, v in entries)
            text = (f"%%MatrixMarket matrix coordinate {field} general\n"
                    f"{rows} {cols} {len(entries)}\n{body}")
            return ".mtx", text.encode()
        header = {"w": {"dtype": draw(st.sampled_from(["F32", "F16", "BF16", "I8", "C64",
                                                       "X"])),
                        "shape": draw(st.one_of(
                            st.lists(st.integers(-1, 2**40), max_size=3),
                            yaml_values())),
                        "data_offsets": draw(st.one_of(
                            st.lists(st.integers(-1, 64), min_size=2, max_size=2),
                            yaml_values()))}}
        if draw(st.booleans()):       # a consistent header, so that valid files are fuzzed
            shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
            header["w"] = {"dtype": "F32", "shape": shape,
                           "data_offsets": [0, 4 * math.prod(shape)]}
        raw = json.dumps(header, default=str).encode()
        nbytes = draw(st.integers(0, 64))
        return ".safetensors", struct.pack("<Q", len(raw)) + raw + b"\0" * nbytes


def check_data_file(case: tuple[str, bytes]) -> None:
    suffix, raw = case
    with tempfile.TemporaryDirectory() as folder:
        p = Path(folder) / f"w{suffix}"
        p.write_bytes(raw)
        try:
            m = load_matrix(p)
        except WorkloadError as exc:
            assert str(p) in str(exc) or "w" in str(exc)
            OUTCOMES[(f"data {suffix}", "refused")] += 1
            return
        assert m.dtype.kind in "biuf", m.dtype          # never complex, text or objects
        if m.ndim == 2 and 0 < m.shape[0] * m.shape[1] <= 64:
            run_cli(["run", "onyx", "linear.custom", "-p", f"weights={p}", "-p", "tokens=2",
                     "-q"], f"data {suffix} run")
        OUTCOMES[(f"data {suffix}", "accepted")] += 1


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_data_files(scale):
    fuzz(data_files(), check_data_file, 250 * scale)


def test_the_oracle_catches_a_traceback():
    """The CLI oracle is not vacuous: an exception that is not a SieveError escapes it."""
    with mock.patch("sieve.api.simulate", side_effect=KeyError("boom")), \
            pytest.raises(KeyError):
        run_cli(["run", "onyx", "spmspm", "-p", "shape=4,4,4", "-q"], "oracle")
    assert issubclass(ConfigError, SieveError)
