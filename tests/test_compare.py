"""`sieve compare`: the plan (grids per workload, safe folder names), the run folders with
pictures, the one-page compare.html, and `sieve report` on a comparison folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from reports.compare import compare_plan, is_compare_folder, short_name
from reports.rundata import ReportError
from sieve.cli import main


def test_short_names_are_safe_file_names() -> None:
    assert short_name("specs/olmoe.yaml") == "olmoe"
    assert short_name("configs/chips/onyx.yaml") == "onyx"
    assert short_name("moe.olmoe") == "moe.olmoe"
    assert "/" not in short_name("a/b c") and " " not in short_name("a b")


def test_plan_grids_per_workload_and_unique_names() -> None:
    plan = compare_plan(["onyx", "x/onyx.yaml"], ["specs/olmoe.yaml", "spmv"],
                        ["seed=1", "density=0.1", "density=0.2", "spmv:shape=32,32",
                         "olmoe:tokens=8"])
    names = [p.folder for p in plan]
    assert len(names) == len(set(names)) == 8
    assert all("/" not in n for n in names)
    assert names[:4] == ["onyx__olmoe__density=0.1", "onyx__olmoe__density=0.2",
                         "onyx__spmv__density=0.1", "onyx__spmv__density=0.2"]
    assert names[4] == "onyx__olmoe__density=0.1__2"      # x/onyx.yaml: same short name
    olmoe, spmv = plan[0], plan[2]
    assert olmoe.params == {"seed": "1", "density": "0.1", "tokens": "8"}
    assert spmv.params == {"seed": "1", "density": "0.1", "shape": "32,32"}
    with pytest.raises(ReportError, match="KEY=VALUE"):
        compare_plan(["onyx"], ["spmv"], ["density"])


def test_compare_with_a_spec_and_a_grid_then_report(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text("workload: spmspm\nshape: [12, 12, 12]\n")
    out = tmp_path / "cmp"
    assert main(["compare", "--chips", "onyx-small", "--workloads", str(spec), "spmv",
                 "-p", "density=0.1", "-p", "density=0.3", "-p", "spmv:shape=24,24",
                 "--out", str(out)]) == 0
    assert is_compare_folder(out)
    runs = json.loads((out / "compare.json").read_text())["runs"]
    folders = [r["folder"] for r in runs]
    assert folders == ["onyx-small__tiny__density=0.1", "onyx-small__tiny__density=0.3",
                       "onyx-small__spmv__density=0.1", "onyx-small__spmv__density=0.3"]
    for f in folders:                                   # run folders with their pictures
        assert {"roofline.png", "energy.png", "report.html"} <= {p.name for p in
                                                                (out / f).iterdir()}
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["workload"] for r in rows] == [str(spec)] * 2 + ["spmv"] * 2
    page = (out / "compare.html").read_text()
    assert page.count("<figure>") >= 1 + 2 * len(folders)
    assert all(f'href="{f}/report.html"' in page for f in folders)
    # the table is built from the comparison's rows: a header and one row per run, cells
    # as comparison.md shows them
    assert page.count("<tr>") == 1 + len(folders) and f"<td>{spec}</td>" in page
    (out / "compare.html").unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0                 # a comparison folder renders
    assert (out / "compare.html").is_file()
    assert str(out / "compare.html") in capsys.readouterr().out
