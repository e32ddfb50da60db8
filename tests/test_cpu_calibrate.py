"""Host calibration (``sieve calibrate-cpu``): the vendor named on the host decides the
comments, an implausible last-level cache is ignored with a warning, the bounded fit keeps
every cost term non-negative and at least its floor, and each kernel's fit error is reported."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.optimize import nnls

import baselines.calibrate as calibrate
from baselines import load_cpu_preset
from baselines.calibrate import (
    MAX_LLC_BYTES_PER_CPU,
    MIN_CYCLES_PER_EVENT,
    calibrate_host,
    cpu_vendor,
    fit_bounded,
    fit_error_summary,
    implausible_llc,
)


def test_vendor_from_proc_cpuinfo() -> None:
    assert cpu_vendor("GenuineIntel") == "Intel"
    assert cpu_vendor(" AuthenticAMD ") == "AMD"
    assert cpu_vendor("") == cpu_vendor("HygonGenuine") == "unknown"


def test_implausible_llc() -> None:
    assert implausible_llc(480 << 20, 2) is not None          # a VM's made-up "LLC"
    assert "480 MiB shared by 2 CPU(s)" in implausible_llc(480 << 20, 2)
    assert implausible_llc(32 << 20, 2) is None               # a real 32 MiB L3
    assert implausible_llc(1152 << 20, 96) is None            # EPYC V-Cache: 12 MiB per core
    assert implausible_llc(MAX_LLC_BYTES_PER_CPU + 1, None) is not None
    assert implausible_llc(None, 2) is None


def test_bounded_fit_recovers_exact_coefficients() -> None:
    rng = np.random.default_rng(0)
    columns = np.column_stack([np.ones(12), rng.uniform(1e3, 1e6, 12), rng.uniform(10, 1e4, 12)])
    truth = np.array([2e-6, 3.0e-9, 40e-9])
    coef, res = fit_bounded(columns.tolist(), (columns @ truth).tolist(), [0.0, 0.0, 0.0])
    assert coef == pytest.approx(truth, rel=1e-6)
    assert max(abs(r) for r in res) < 1e-9
    assert fit_error_summary(res)["max_abs"] < 1e-9


def test_bounded_fit_keeps_a_term_the_data_cannot_separate_at_its_floor() -> None:
    """Two perfectly collinear event counts: least squares alone may put all the cost on one
    and zero the other; the bounded fit keeps both at or above the floor."""
    rng = np.random.default_rng(1)
    events = rng.uniform(1e3, 1e5, 10)
    columns = np.column_stack([np.ones(10), events, 2 * events])
    seconds = 1e-6 + 5e-9 * events * 3
    a = columns / seconds[:, None]
    plain, _ = nnls(a / np.linalg.norm(a, axis=0), np.ones(10))
    assert np.min(plain[1:]) == 0                        # the unconstrained answer zeroes one
    floors = [0.0, 1e-10, 1e-10]
    coef, res = fit_bounded(columns.tolist(), seconds.tolist(), floors)
    assert np.all(coef >= np.asarray(floors)) and np.all(coef[1:] > 0)
    assert fit_error_summary(res)["median_abs"] < 1e-3


def test_bounded_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one non-negative floor per column"):
        fit_bounded([[1.0, 2.0]], [1.0], [0.0])
    with pytest.raises(ValueError, match="positive time"):
        fit_bounded([[1.0]], [0.0], [0.0])


def test_calibrate_on_an_intel_vm_with_a_made_up_llc(tmp_path: Path, monkeypatch,
                                                     caplog) -> None:
    real = calibrate._machine

    def intel_vm() -> dict:
        machine = real()
        machine.update(vendor="Intel", model_name="Intel(R) Xeon(R) Processor",
                       llc_bytes=480 << 20, llc_shared_cpus=2)
        return machine

    monkeypatch.setattr(calibrate, "_machine", intel_vm)
    out = tmp_path / "host.yaml"
    with caplog.at_level(logging.INFO, logger="baselines.calibrate"):
        measured = calibrate_host(out, quick=True, repeats=2)
    text = out.read_text()
    assert not re.search(r"AMD|EPYC|Zen", text), "AMD comments on an Intel host"
    assert "Vendor Intel" in text and "Xeon Silver 4214" in text
    preset = load_cpu_preset(out)
    assert preset.llc_bytes < 480 << 20 and "not a real cache" in text
    assert any("480 MiB" in w for w in measured["warnings"])
    assert any(r.levelno == logging.WARNING and "480 MiB" in r.getMessage()
               for r in caplog.records)
    # every kernel's fit error is returned, logged and written into the preset
    assert set(measured["fit_error"]) == {"spmv", "spmm", "spgemm", "merge"}
    for kernel, err in measured["fit_error"].items():
        assert 0 <= err["median_abs"] <= err["max_abs"]
        assert any(r.getMessage().startswith(f"fit {kernel}: median |error|")
                   for r in caplog.records)
    assert text.count("fit error: median") == 4
    # every fitted per-event term is at least the floor; overheads are non-negative
    data = yaml.safe_load(text)
    for lib in ("sparse", "taco"):
        for kernel in ("spmv", "spmm", "spgemm", "merge"):
            for term, value in data[lib][kernel].items():
                if term == "call_overhead_us":
                    assert value >= 0
                else:
                    assert value >= MIN_CYCLES_PER_EVENT * (1 - 1e-3), (lib, kernel, term)
    assert preset.taco.spgemm == preset.sparse.spgemm       # scipy's rates stand for TACO's
