"""Progress: the simulator's interface (simulator.progress) and the display (reports.progress).
Every stage with a total must be advanced exactly to it, so percent and ETA are honest."""

from __future__ import annotations

import io
from typing import Any

import pytest

import sieve
from reports.progress import ProgressDisplay
from simulator.progress import NoProgress, Progress, progress_of


class Recorder:
    """A Progress that keeps every call."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int | None, str]] = []
        self.done: dict[str, int] = {}
        self.calls: list[Any] = []

    def stage(self, name: str, total: int | None = None, unit: str = "") -> None:
        self.stages.append((name, total, unit))
        self.done[name] = 0

    def advance(self, n: int = 1, label: str = "") -> None:
        self.done[self.stages[-1][0]] += n

    def __call__(self, where: int | str) -> None:
        self.calls.append(where)


def test_progress_of_accepts_none_callables_and_progress_objects() -> None:
    assert isinstance(progress_of(None), NoProgress)
    rec = Recorder()
    assert progress_of(rec) is rec and isinstance(rec, Progress)
    seen: list[Any] = []
    p = progress_of(seen.append)
    p.stage("experts", total=3, unit="FFN chunks")
    p.advance(1, "expert0[0:512]")
    p.advance(1)
    p(1200)
    assert seen == ["experts (3 FFN chunks)", "expert0[0:512]", 1200]
    with pytest.raises(TypeError):
        progress_of(42)


@pytest.mark.parametrize("workload, params, stage, unit", [
    ("moe.switch-base-128", {"tokens": "8"}, "experts", "FFN chunks"),
    ("ffn.bert-base", {"tokens": "4"}, "FFN", "chunks"),
    ("linear.bert-base.output", {"tokens": "4"}, "linear", "row blocks"),
    ("spmspm", {"shape": "16,16,16", "density": "0.2"}, "simulate", "kernel launches"),
])
def test_stage_totals_are_known_up_front_and_reached(workload: str, params: dict[str, str],
                                                     stage: str, unit: str) -> None:
    rec = Recorder()
    sieve.run("onyx-small", workload, params=params, progress=rec)
    totals = {name: (total, u) for name, total, u in rec.stages}
    assert totals[stage][1] == unit
    assert totals[stage][0] is not None and totals[stage][0] > 0
    assert rec.done[stage] == totals[stage][0]
    for name, total, _unit in rec.stages:       # no stage overshoots or stops short
        if total is not None:
            assert rec.done[name] == total, name


def test_pipe_shows_one_line_per_stage_after_the_delay() -> None:
    out = io.StringIO()
    with ProgressDisplay(out, delay_s=0.0, tty=False) as p:
        p.stage("compile")
        p._show()                      # the delay timer's call, made here deterministically
        p.stage("experts", total=12, unit="FFN chunks")
        for _ in range(12):
            p.advance(1, "expert")
        p.stage("schedule")
    lines = out.getvalue().splitlines()
    assert [ln.split("] ", 1)[1] for ln in lines] == ["compile", "experts: 12 FFN chunks",
                                                      "schedule", "done"]


def test_short_run_shows_nothing() -> None:
    out = io.StringIO()
    with ProgressDisplay(out, delay_s=60.0, tty=False) as p:
        p.stage("compile")
        p.advance()
    assert out.getvalue() == ""


def test_terminal_bar_has_total_percent_and_eta() -> None:
    out = io.StringIO()
    with ProgressDisplay(out, delay_s=60.0, tty=True) as p:
        p.stage("experts", total=8, unit="FFN chunks")
        p._show()
        for i in range(4):
            p.advance(1, f"expert{i}")
        p._bar.refresh()
    text = out.getvalue()
    assert "experts (FFN chunks)" in text and "4/8" in text and "50%" in text
    assert "ETA" in text and "expert3" in text


def test_a_closed_display_never_starts() -> None:
    out = io.StringIO()
    p = ProgressDisplay(out, delay_s=60.0, tty=False)
    p.stage("experts", total=3)
    p.close()
    p._show()                          # a timer that fired just as the run ended
    assert out.getvalue() == "" and not p.live
