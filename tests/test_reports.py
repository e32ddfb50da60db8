"""reports: every file of a run folder's report, read back and checked against the run's stats.

The run folders are real ``sieve.run(...)`` runs on the test-size chip, built once per module.
"""

from __future__ import annotations

import ast
import base64
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import pytest

import sieve
from reports import ReportError, load_run, render_comparison, render_run, roofline
from reports.fmt import ratio
from reports.rundata import read_config_scalars
from reports.tables import verification_text

ROOT = Path(__file__).resolve().parent.parent
CHIP = ROOT / "configs/chips/onyx-small.yaml"
IMAGES = ("roofline.png", "energy.png", "comparison.png", "pe_utilization.png")
UNIT = re.compile(r"^chip\.((?:pe|mem)_\d+_\d+)\.(\w+)\.(\w+)$")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three run folders: SpM*SpM with a CPU baseline, element-wise add without one, and an
    empty SpM*SpM (density 0: no useful ops) with a baseline."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, workload, params, baseline in (
            ("spmspm", "spmspm", {"shape": "12,12,12", "density": 0.3}, "xeon-12c"),
            ("elemadd", "elemadd", {"shape": "10,10", "density": 0.3}, None),
            ("empty", "spmspm", {"shape": "8,8,8", "density": 0.0}, "xeon-12c")):
        report = sieve.run(CHIP, workload, params=params, baseline=baseline, out=base / name,
                           check="full")
        assert report.summary["verified"]
        out[name] = base / name
    return out


@pytest.fixture(scope="module")
def rendered(runs):
    """render_run's returned paths per run (with the trace)."""
    return {name: render_run(path, trace=True) for name, path in runs.items()}


def _summary(path: Path) -> dict:
    return json.loads((path / "stats.json").read_text())["summary"]


def test_render_run_writes_every_file(runs, rendered):
    for name, paths in rendered.items():
        want = {*IMAGES, "summary.md", "report.html", "trace.json"}
        assert {p.name for p in paths} == want, name
        assert all(p.parent == runs[name] and p.is_file() and p.stat().st_size > 0
                   for p in paths)


def test_without_trace_no_trace_file(tmp_path):
    sieve.run(CHIP, "elemmul", params={"shape": "6,6", "density": 0.5}, out=tmp_path / "r")
    paths = render_run(tmp_path / "r")
    assert "trace.json" not in {p.name for p in paths}
    assert not (tmp_path / "r" / "trace.json").exists()


@pytest.mark.parametrize("image", IMAGES)
def test_pictures_are_sensible_pngs(runs, rendered, image):
    for path in runs.values():
        png = path / image
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = mpimg.imread(png)
        height, width = pixels.shape[:2]
        assert 300 <= height <= 3000 and 500 <= width <= 4000, (png, pixels.shape)
        assert pixels[..., :3].std() > 0.01, f"{png} is blank"


class _Tags(HTMLParser):
    """Collects titles, image sources and checks that elements nest and close."""

    VOID = {"meta", "img", "br", "link", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def test_report_html_is_self_contained(runs, rendered):
    path = runs["spmspm"]
    text = (path / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    tags = _Tags()
    tags.feed(text)
    tags.close()
    assert not tags.errors and not tags.stack, (tags.errors, tags.stack)
    assert "spmspm" in tags.title and "onyx-small" in tags.title
    assert len(tags.images) == len(IMAGES)
    for src in tags.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert "src=\"http" not in text and "href=" not in text      # nothing fetched from outside
    s = _summary(path)
    assert f"{s['cycles']:,}" in text and f"{s['kernel_cycles']:,}" in text
    assert ratio(s["baseline"]["speedup"]) in text and ratio(s["baseline"]["edp_ratio"]) in text
    assert "interpreter ok" in text and "numpy ok" in text and "onyx-12nm" in text


def test_summary_md_has_ratios_and_energy_breakdown(runs, rendered):
    path = runs["spmspm"]
    text = (path / "summary.md").read_text()
    s = _summary(path)
    energy = json.loads((path / "stats.json").read_text())["energy"]
    for key in ("speedup", "energy_ratio", "edp_ratio"):
        assert ratio(s["baseline"][key]) in text
    assert "speedup (CPU time / chip time)" in text and "EDP ratio (CPU / chip)" in text
    assert "## Energy by component" in text
    for component in energy["by_component"]:
        assert f"| {component} |" in text
    assert f"{s['cycles']:,}" in text and "xeon-12c" in text


def test_trace_has_one_track_per_used_tile_and_times_from_stats(runs, rendered):
    path = runs["spmspm"]
    doc = json.loads((path / "trace.json").read_text())
    stats = json.loads((path / "stats.json").read_text())["stats"]
    s = _summary(path)
    freq = read_config_scalars((path / "config.yaml").read_text())["clock.freq_mhz"]
    events = doc["traceEvents"]
    assert all(e["ph"] in ("M", "X") and {"pid", "tid", "name"} <= e.keys() for e in events)
    units: dict[tuple[str, str], dict[str, int]] = {}
    for name, entry in stats.items():
        m = UNIT.match(name)
        if m:
            units.setdefault((m.group(1), m.group(2)), {})[m.group(3)] = entry["value"]
    used = {tile for (tile, _), c in units.items() if c["busy_cycles"] > 0}
    tile_events = [e for e in events if e["ph"] == "X" and e.get("cat") in ("pe", "mem")]
    names = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == 1}
    assert len(names) == len(set(names.values())) == len(used)
    assert {n.split()[0] for n in names.values()} == used
    assert {e["tid"] for e in tile_events} == set(names)
    kernel_us = s["kernel_cycles"] / freq
    for e in tile_events:
        tile = names[e["tid"]].split()[0]
        counters = units[(tile, e["name"])]
        assert e["name"] in names[e["tid"]]
        assert e["args"]["busy_cycles"] == counters["busy_cycles"]
        assert e["ts"] * freq == pytest.approx(counters["first_cycle"])
        assert (e["ts"] + e["dur"]) * freq == pytest.approx(counters["last_cycle"] + 1)
        assert counters["busy_cycles"] <= round(e["dur"] * freq)
        assert e["ts"] + e["dur"] <= kernel_us + 1e-9
    assert any(e["ph"] == "M" and e["name"] == "process_name" for e in events)
    kernel = [e for e in events if e["ph"] == "X" and e["name"] == "kernel"]
    assert len(kernel) == 1 and kernel[0]["dur"] == pytest.approx(kernel_us)


def test_roofline_points_sit_under_their_roofs(runs):
    s = _summary(runs["spmspm"])
    model = roofline(s)
    useful, dense, glb, cpu = (model.point(k) for k in ("useful", "dense", "glb", "cpu"))
    assert useful.intensity == pytest.approx(s["ops"] / s["dram_bytes"])
    assert useful.performance == pytest.approx(s["ops"] / s["seconds"])
    assert dense.performance == pytest.approx(s["dense_equivalent_ops"] / s["seconds"])
    assert glb.intensity == pytest.approx(s["ops"] / s["glb_link_bytes"])
    b = s["baseline"]
    assert cpu.performance == pytest.approx(b["flops"] / b["seconds"])
    assert cpu.intensity == pytest.approx(b["flops"] / b["dram_bytes"])
    # the whole-run time is bounded by both roofs, so the useful points lie under them
    assert useful.performance <= model.chip.attainable(useful.intensity, "DRAM")
    assert glb.performance <= model.chip.attainable(glb.intensity, "GLB")
    assert cpu.performance <= model.cpu.attainable(cpu.intensity, "DRAM")
    assert model.chip.ridge("DRAM") == pytest.approx(
        s["roofs"]["compute_ops_per_s"] / s["roofs"]["dram_bytes_per_s"])
    assert not model.notes


def test_empty_kernel_points_are_left_out_and_named(runs, rendered):
    s = _summary(runs["empty"])
    assert s["ops"] == 0
    model = roofline(s)
    assert not model.point("useful").placeable and not model.point("glb").placeable
    assert model.point("dense").placeable
    assert any("useful ops / DRAM bytes" in n for n in model.notes)
    assert "summary.md" in {p.name for p in rendered["empty"]}


def test_run_without_baseline(runs, rendered):
    path = runs["elemadd"]
    s = _summary(path)
    assert "baseline" not in s
    assert roofline(s).cpu is None
    assert any("no CPU baseline" in n for n in roofline(s).notes)
    md = (path / "summary.md").read_text()
    assert "| CPU baseline | none" in md and "speedup" not in md
    assert (path / "comparison.png").is_file()


def test_render_comparison_one_row_per_run(runs, tmp_path):
    order = ["spmspm", "elemadd", "empty"]
    paths = render_comparison([runs[n] for n in order], tmp_path / "cmp")
    assert {p.name for p in paths} == {"comparison.md", "comparison.csv", "comparison.png"}
    with (tmp_path / "cmp" / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == order
    for row, name in zip(rows, order):
        s = _summary(runs[name])
        assert int(row["cycles"]) == s["cycles"]
        assert float(row["seconds"]) == pytest.approx(s["seconds"])
        assert float(row["energy_j"]) == pytest.approx(s["energy_j"])
        assert row["verified"] == "True"
        if "baseline" in s:
            assert float(row["speedup"]) == pytest.approx(s["baseline"]["speedup"])
            assert float(row["edp_ratio"]) == pytest.approx(s["baseline"]["edp_ratio"])
        else:
            assert row["cpu"] == row["speedup"] == row["cpu_seconds"] == ""
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(body) == 1 + len(order)
    assert mpimg.imread(tmp_path / "cmp" / "comparison.png").shape[0] >= 300


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ReportError, match="not a run folder"):
        render_run(tmp_path)
    with pytest.raises(ReportError, match="nothing to compare"):
        render_comparison([], tmp_path)


def test_config_scalars_and_tile_units(runs):
    run = load_run(runs["spmspm"])
    assert run.config["array.rows"] == 8 and run.config["array.cols"] == 8
    assert run.config["clock.freq_mhz"] == 850.0 and run.config["pe.zero_policy.a"] == "skip"
    assert run.freq_mhz == pytest.approx(run.summary["cycles"] / run.summary["seconds"] / 1e6)
    units = run.tile_units()
    assert units and all(u.node for u in units)        # program.s names every placed node
    assert all(0 <= u.busy_cycles <= run.summary["kernel_cycles"] for u in units)


def test_reports_never_imports_compiler_simulator_or_sieve():
    for path in sorted((ROOT / "reports").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            for name in names:
                assert name.split(".")[0] not in ("compiler", "simulator", "sieve"), path


def test_verification_text_never_calls_a_skipped_check_ok():
    text = verification_text({"verified": True,
                              "checks": {"numpy": True, "interpreter": "skipped (too large)"}})
    assert text == "yes (interpreter skipped (too large), numpy ok)"
    assert verification_text({"verified": False, "checks": {"numpy": False}}) == \
        "NO (numpy FAILED)"


def test_terminal_and_summary_md_name_every_figure_alike(runs):
    """One source of labels (reports.labels): each figure the terminal table shows carries
    the label summary.md gives it, plus at most a unit."""
    from reports.labels import BASELINE_LABELS, FIGURE_LABELS
    from reports.summary import summary_rows as terminal_rows
    from reports.tables import summary_rows as markdown_rows

    run = load_run(runs["spmspm"])
    md = {label for label, _ in markdown_rows(run)}
    shown = [label for label, _ in terminal_rows(run.summary)]
    names = set(FIGURE_LABELS.values()) | set(BASELINE_LABELS.values())
    for label in shown:
        name = next((n for n in sorted(names, key=len, reverse=True) if label.startswith(n)),
                    None)
        if name is None:        # the layer-only mode rows have no summary.md twin
            continue
        assert name in md or name in ("loop order chosen by",), label
    assert "total cycles (launch, config, DMA, kernel)" in shown
