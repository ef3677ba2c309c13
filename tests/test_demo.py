"""``make demo`` (``python -m kgem.demo``): trains, answers its questions and ends by writing the run's plots."""

from __future__ import annotations

import pytest

from kgem.demo import main

image = pytest.importorskip("matplotlib.image")


def test_the_demo_trains_answers_and_writes_its_plots(tmp_path, capsys) -> None:
    main(["--dataset", "nations", "--epochs", "5", "--output", str(tmp_path / "demo")])
    printed = capsys.readouterr().out
    assert "top 5 answers to (usa, intergovorgs, ?)" in printed and "nearest neighbours of usa" in printed
    plots = sorted((tmp_path / "demo" / "plots").iterdir())
    assert [p.name for p in plots] == ["embeddings.png", "losses.png", "validation.png"]
    assert "plots of the run: " in printed
    for path in plots:
        assert image.imread(path).var() > 0
