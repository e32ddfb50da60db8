"""Parallel single runs: a model layer's independent jobs (experts, FFN chunks) on worker
processes give a stats.json byte-identical to the serial run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sieve.cli import main

ROOT = Path(__file__).resolve().parent.parent
ONYX = str(ROOT / "configs/chips/onyx.yaml")


@pytest.mark.parametrize("workload,params", [
    ("linear.bert-base.intermediate", ["scale=8", "weight_sparsity=0.9"]),
    ("moe.mixtral8x7b", ["scale=128", "tokens=8", "weight_sparsity=0.9"]),
])
def test_workers_give_a_byte_identical_stats_json(tmp_path, workload, params):
    base = ["run", ONYX, workload, "--fidelity", "burst", "-c", "compiler.layer_mode=sparse",
            "-q"] + [a for p in params for a in ("-p", p)]
    assert main(base + ["--out", str(tmp_path / "serial")]) == 0
    assert main(base + ["--out", str(tmp_path / "pool"), "--workers", "2"]) == 0
    serial = (tmp_path / "serial" / "stats.json").read_bytes()
    assert serial == (tmp_path / "pool" / "stats.json").read_bytes()
    assert json.loads(serial)["summary"]["tiles"] >= 2          # several tiles to share


def test_a_dask_scheduler_gives_the_same_stats_json(tmp_path):
    from distributed import LocalCluster

    base = ["run", ONYX, "linear.bert-base.intermediate", "-p", "scale=8", "-p",
            "weight_sparsity=0.9", "--fidelity", "burst", "-c", "compiler.layer_mode=sparse",
            "-q", "--report", "none"]
    assert main(base + ["--out", str(tmp_path / "serial")]) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        assert main(base + ["--out", str(tmp_path / "dask"),
                            "--scheduler", cluster.scheduler_address]) == 0
    assert ((tmp_path / "serial" / "stats.json").read_bytes()
            == (tmp_path / "dask" / "stats.json").read_bytes())


def test_workers_must_be_positive(capsys):
    assert main(["run", ONYX, "linear.bert-base.intermediate", "-p", "scale=8",
                 "--workers", "0"]) == 2
    assert "--workers: must be >= 1" in capsys.readouterr().err
