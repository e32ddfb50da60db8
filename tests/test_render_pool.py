"""Pictures drawn by the fork pool (reports.render.draw_pictures) are the files drawn one after
another."""

from __future__ import annotations

import multiprocessing

import pytest

from reports.render import IMAGES, draw_pictures, render_run
from sieve.api import run


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_pool_draws_the_same_files_as_one_after_another(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run("onyx-small", "spmv", out=out)
    import reports.render as render

    drawn = {}
    for workers in (1, 2):
        monkeypatch.setattr(render, "draw_pictures",
                            lambda p, workers=workers: draw_pictures(p, workers=workers))
        paths = render_run(out)
        drawn[workers] = {p.name: p.read_bytes() for p in paths if p.name in IMAGES}
    assert set(drawn[1]) == set(drawn[2]) and len(drawn[1]) >= 3
    assert drawn[1] == drawn[2]


def test_a_failing_picture_raises_in_the_caller(tmp_path):
    def bad(path):
        raise KeyError("stats.json has no such key")

    with pytest.raises(KeyError, match="no such key"):
        draw_pictures([(bad, (tmp_path / "a.png",)), (bad, (tmp_path / "b.png",))], workers=2)
