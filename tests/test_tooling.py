"""The tool around the simulator: `sieve --version`, Report.to_dict/to_frame and the notebook
views, the summary's DRAM bandwidth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sieve
from sieve.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> sieve.Report:
    out = tmp_path_factory.mktemp("run") / "r"
    return sieve.run("onyx-small", "spmspm", params={"shape": "16,16,16", "density": "0.2"},
                     baseline="xeon-12c", out=out)


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"sieve {version('sieve-sim')}"


def test_to_dict_is_the_stats_json_document(report: sieve.Report) -> None:
    assert report.out_dir is not None
    on_disk = json.loads((report.out_dir / "stats.json").read_text())
    assert json.loads(json.dumps(report.to_dict(), sort_keys=True)) == on_disk
    assert set(on_disk) == {"summary", "stats", "energy", "baseline"}


def test_to_frame_has_a_row_per_stat_and_a_summary_row(report: sieve.Report) -> None:
    pytest.importorskip("pandas")
    stats = report.to_frame()
    assert len(stats) == len(report.result.stats)
    assert list(stats.columns[:1]) == ["value"] and "unit" in stats.columns
    assert stats.loc["chip.memory.dram_read_bytes", "value"] == \
        report.result.stats["chip.memory.dram_read_bytes"]["value"]
    row = report.to_frame("summary")
    assert len(row) == 1 and row.loc[0, "cycles"] == report.summary["cycles"]
    assert row.loc[0, "baseline.speedup"] == report.summary["baseline"]["speedup"]


def test_notebook_views_show_summary_md_tables(report: sieve.Report) -> None:
    assert report.out_dir is not None
    md = report._repr_markdown_()
    written = (Path(report.out_dir) / "summary.md").read_text()
    assert md.splitlines()[:4] == written.splitlines()[:4]
    assert "| DRAM bandwidth | 17.1 GB/s |" in md and "## Energy by component" in md
    html = report._repr_html_()
    assert "<table>" in html and "DRAM bandwidth" in html and "speedup" in html
    assert f"{report.summary['cycles']:,}" in html


def test_cli_summary_shows_the_dram_bandwidth(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    chip = tmp_path / "onyx-hbm2.yaml"
    chip.write_text("base: onyx-small\n"
                    "name: onyx-small-hbm2\n"
                    "description: onyx-small with one HBM2 stack\n"
                    "dram: {preset: hbm2}\n"
                    "glb: {tiles: 4}\n")
    assert main(["run", str(chip), "spmspm", "-p", "shape=16,16,16", "-q"]) == 0
    out = capsys.readouterr().out
    assert "on onyx-small-hbm2" in out
    assert any(ln.split()[:3] == ["DRAM", "bandwidth", "(GB/s)"] and ln.split()[-1] == "256.0"
               for ln in out.splitlines())


# --- pictures of a model-layer run --------------------------------------------------------------


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moe") / "run"
    sieve.run("onyx-small", "moe.switch-base-128", params={"tokens": "8"}, out=out)
    return out


def test_layer_roofline_glb_point_is_measured_against_the_link_roof(moe_run: Path) -> None:
    from reports import load_run, roofline

    s = load_run(moe_run).summary
    model = roofline(s)
    glb = model.point("glb")
    assert glb is not None and glb.nbytes == s["glb_link_bytes"]
    # the link bytes exclude the DRAM <-> GLB DMA, which never crosses the array links
    assert 0 < s["glb_link_bytes"] < s["glb_bytes"]
    assert glb.performance <= model.chip.attainable(glb.intensity, "GLB")


def test_layer_trace_has_no_empty_tiles_process(moe_run: Path) -> None:
    from reports import load_run, trace_events
    from reports.trace import LANES_PID, TILES_PID

    events = trace_events(load_run(moe_run))["traceEvents"]
    pids = {e["pid"] for e in events if e["name"] == "process_name"}
    assert TILES_PID not in pids and LANES_PID in pids
    assert all(any(e["ph"] == "X" and e["pid"] == pid for e in events) for pid in pids)


def test_experts_picture_title_fits_and_legend_covers_no_bar(
        moe_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.plots as plots
    from reports import load_run

    captured = {}
    real = plots.Figure.savefig

    def keep(fig, path, *a, **k):          # render as saved, then inspect the layout
        real(fig, path, *a, **k)
        captured["fig"] = fig
    monkeypatch.setattr(plots.Figure, "savefig", keep)
    plots.plot_experts(load_run(moe_run), moe_run / "experts.png")
    fig = captured["fig"]
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    title = fig._suptitle.get_window_extent(renderer)
    assert page.x0 <= title.x0 and title.x1 <= page.x1          # no line cut at the edges
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer))
        assert not ax.get_legend()


# --- one shape convention for matrix products ---------------------------------------------------


def test_spmspm_and_gemm_read_shape_as_m_n_k() -> None:
    from workloads import get_workload

    sp = get_workload("spmspm").make({"shape": "12,10,14", "density": "0.3"})
    ge = get_workload("gemm").make({"shape": "12,10,14"})
    assert sp.tensors["B"].shape == (12, 14) and sp.tensors["C"].shape == (14, 10)
    assert ge.tensors["A"].shape == (12, 14) and ge.tensors["B"].shape == (14, 10)
    assert sp.reference().shape == ge.reference().shape == (12, 10)


def test_old_spmspm_order_is_accepted_with_a_deprecation_note() -> None:
    from workloads import WorkloadError, get_workload

    with pytest.warns(FutureWarning, match="shape_order=mkn .* deprecated"):
        old = get_workload("spmspm").make({"shape": "12,10,14", "shape_order": "mkn"})
    assert old.tensors["B"].shape == (12, 10) and old.tensors["C"].shape == (10, 14)
    with pytest.raises(WorkloadError, match="shape_order"):
        get_workload("spmspm").make({"shape": "12,10,14", "shape_order": "nkm"})
    with pytest.warns(FutureWarning):       # the CLI prints it as one "note:" line
        assert main(["run", "onyx-small", "spmspm", "-p", "shape=6,5,7",
                     "-p", "shape_order=mkn", "-q"]) == 0
