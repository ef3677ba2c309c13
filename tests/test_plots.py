"""Plots (``kgem.plots``, ``kgem plot``): PNGs decoded and checked for size and content, the data drawn read back
from the figures, PCA against numpy's SVD, and the errors of bad label files and missing packages."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kgem import load_dataset, load_model, pipeline
from kgem.cli import main
from kgem.errors import ConfigError, DataError, KgemError
from kgem.plots import (
    MAX_GROUPS,
    PLOTS,
    RunInputs,
    best_validated_epoch,
    embedding_coordinates,
    most_frequent_relation,
    plot_embeddings,
    plot_losses,
    plot_model_embeddings,
    plot_relation_mrr,
    plot_run,
    plot_validation,
    read_entity_groups,
)

image = pytest.importorskip("matplotlib.image")

TRAIN = ["train", "--dataset", "nations", "--dim", "8", "--epochs", "3", "--batch-size", "256", "-q",
         "--set", "training.frequency=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny nations run with a validation every epoch."""
    out = tmp_path_factory.mktemp("plots") / "run"
    assert main([*TRAIN, "--output", str(out)]) == 0
    return out


def assert_drawn(path: Path, height: int, width: int) -> None:
    """A PNG of that size (decoded) with something on it: varying pixels, several distinct RGBA colours."""
    decoded = image.imread(path)
    assert decoded.shape == (height, width, 4), path.name
    assert decoded.var() > 0
    colours = np.ascontiguousarray((decoded * 255).round().astype(np.uint8)).view(np.uint32)  # a pixel, one int
    assert len(np.unique(colours)) >= 5, path.name


def rows_high(rows: int) -> int:
    """Pixel height of a figure with a bar or heat-map row per relation (``plots._bar_height`` at 100 dpi)."""
    return round(max(3.0, 0.25 * rows + 1.5) * 100)


def test_kgem_plot_writes_every_png(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plots"
    assert main(["plot", str(run_dir), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"{name}.png") for name in PLOTS]
    nations = load_dataset("nations")
    assert_drawn(out / "losses.png", 450, 700)
    assert_drawn(out / "validation.png", 450, 700)
    assert_drawn(out / "embeddings.png", 600, 800)
    assert_drawn(out / "relations.png", rows_high(len(nations.test.hrt[:, 1].unique())), 800)
    assert_drawn(out / "patterns.png", rows_high(nations.num_relations), 900)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.png" for name in PLOTS)  # no temporary file


def test_which_chooses_and_the_default_folder_is_inside_the_run(run_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["plot", str(run), "--which", "validation", "losses"]) == 0
    plots = run / "plots"
    assert capsys.readouterr().out.split() == [str(plots / "validation.png"), str(plots / "losses.png")]
    assert sorted(p.name for p in plots.iterdir()) == ["losses.png", "validation.png"]


def test_the_rerun_ranking_is_the_runs_test_evaluation(run_dir: Path) -> None:
    """The per-relation table drawn comes from ranking the test split as the run did: its count-weighted MRR is the
    run's test MRR."""
    table = RunInputs(run_dir, None, "pca", 0).per_relation()
    metrics = pd.read_csv(run_dir / "metrics.csv", index_col=0)
    assert table["count"].sum() == metrics.loc["both", "count"]
    assert np.average(table["mrr"], weights=table["count"]) == pytest.approx(metrics.loc["both", "mrr"], abs=1e-9)
    figure = plot_relation_mrr(table)
    widths = [bar.get_width() for bar in figure.axes[0].patches]
    assert widths == pytest.approx(sorted(table["mrr"]))  # the worst at the bottom, the best at the top


def test_a_plot_without_its_input_is_skipped_and_said(run_dir: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    losses = pd.read_csv(run / "losses.csv", index_col="epoch")
    losses["valid_mrr"] = np.nan  # as a run without validation writes it
    losses.to_csv(run / "losses.csv")
    with caplog.at_level(logging.WARNING, logger="kgem.plots"):
        written = plot_run(run, tmp_path / "out", which=["losses", "validation"])
    assert written == [tmp_path / "out" / "losses.png"]
    assert "validation not drawn: losses.csv has no validated epoch" in caplog.text
    shutil.rmtree(run / "model")
    with caplog.at_level(logging.WARNING, logger="kgem.plots"):
        assert plot_run(run, tmp_path / "out", which=["embeddings"]) == []
    assert "embeddings not drawn: no saved model" in caplog.text


def test_a_folder_that_is_no_run_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kgem: error: ") and "is not a run folder" in err and err.count("\n") == 1
    with pytest.raises(ConfigError, match="unknown plot 'loss'"):
        plot_run(tmp_path, which=["loss"])


def test_without_matplotlib_one_line_names_the_extra(run_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(run_dir), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "kgem: error: plotting needs matplotlib: pip install 'kgem[plot]'\n"
    assert not (tmp_path / "out").exists()
    with pytest.raises(KgemError, match=r"pip install 'kgem\[plot\]'"):
        plot_losses(pd.DataFrame({"loss": [1.0]}, index=pd.Index([1], name="epoch")))


def test_the_loss_and_validation_curves_hold_the_data() -> None:
    losses = pd.DataFrame({"epoch": [1, 2, 3, 4], "loss": [4.0, 3.0, 2.5, 2.4],
                           "valid_mrr": [np.nan, 0.30, np.nan, 0.28]})
    line = plot_losses(losses).axes[0].lines[0]
    assert line.get_xdata().tolist() == [1, 2, 3, 4] and line.get_ydata().tolist() == [4.0, 3.0, 2.5, 2.4]
    figure = plot_validation(losses)
    curve, marker = figure.axes[0].lines[0], figure.axes[0].lines[1]
    assert curve.get_xdata().tolist() == [2, 4] and curve.get_ydata().tolist() == [0.30, 0.28]
    assert list(marker.get_xdata()) == [2, 2]  # the vertical line at the best epoch
    assert list(plot_validation(losses, best_epoch=4).axes[0].lines[1].get_xdata()) == [4, 4]
    with pytest.raises(DataError, match="best_epoch 3 was not validated"):
        plot_validation(losses, best_epoch=3)
    with pytest.raises(DataError, match="no validated epoch"):
        plot_validation(losses.assign(valid_mrr=np.nan))
    with pytest.raises(DataError, match="no 'loss' column"):
        plot_losses(losses.drop(columns="loss"))


def test_the_best_epoch_follows_the_early_stopping_rule() -> None:
    valid = pd.Series({1: 0.50, 2: 0.54, 3: np.nan, 4: 0.53, 5: 0.545})
    assert best_validated_epoch(valid) == 5
    assert best_validated_epoch(valid, min_delta=0.05) == 1  # nothing beats 0.50 by more than 0.05
    assert best_validated_epoch(valid, min_delta=0.03) == 2  # 0.54 does; 0.545 beats it by less than 0.03


def svd_reference(rows: np.ndarray) -> np.ndarray:
    """PCA by numpy's SVD, each axis signed so that its largest-magnitude loading is positive."""
    centred = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(axis=1)])[:, None]
    return centred @ axes.T


def test_pca_coordinates_are_numpys_svd() -> None:
    rows = np.random.default_rng(0).normal(size=(9, 5)) * [5, 3, 1, 0.5, 0.1]
    np.testing.assert_allclose(embedding_coordinates(rows), svd_reference(rows), atol=1e-10)
    complex_rows = rows[:, :2] + 1j * rows[:, 2:4]
    np.testing.assert_allclose(embedding_coordinates(torch.from_numpy(complex_rows)),
                               svd_reference(np.concatenate([rows[:, :2], rows[:, 2:4]], axis=1)), atol=1e-10)
    assert embedding_coordinates(np.arange(4.0)[:, None])[:, 1].tolist() == [0, 0, 0, 0]  # 1-D: a line
    with pytest.raises(DataError, match="at least 2 rows"):
        embedding_coordinates(rows[:1])
    with pytest.raises(DataError, match="NaN"):
        embedding_coordinates(np.full((3, 2), np.nan))
    with pytest.raises(DataError, match="unknown map method 'tsne'"):
        embedding_coordinates(rows, method="tsne")


def test_umap_without_the_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(KgemError, match=r"^UMAP maps need umap-learn, which is not installed: pip install umap-learn$"):
        embedding_coordinates(np.eye(4), method="umap")


def test_the_embedding_map_draws_every_row_in_its_group(tmp_path: Path) -> None:
    rows = np.random.default_rng(1).normal(size=(40, 3))
    groups = [f"g{i % 12}" for i in range(40)]  # g0..g3 have 4 rows, g4..g11 have 3
    groups[0] = ""
    figure = plot_embeddings(rows, [f"e{i}" for i in range(40)], groups, path=tmp_path / "map.png")
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["g1", "g2", "g3", "g0", "g10", "g11", "g4", "g5", "g6", "other (3 groups)", "unlabelled"]
    assert len(legend) == MAX_GROUPS + 2
    drawn = np.concatenate([collection.get_offsets() for collection in figure.axes[0].collections])
    assert sorted(map(tuple, drawn)) == sorted(map(tuple, embedding_coordinates(rows)))
    assert len(figure.axes[0].texts) == 40  # every point named
    assert_drawn(tmp_path / "map.png", 600, 800)
    with pytest.raises(DataError, match="3 colour groups for 40 embedding rows"):
        plot_embeddings(rows, colours=["a", "b", "c"])


def test_the_default_colour_is_the_most_frequent_relation() -> None:
    hrt = torch.tensor([[0, 1, 1], [0, 1, 2], [0, 0, 1], [2, 0, 3], [3, 0, 2], [2, 1, 0]])
    groups = most_frequent_relation(hrt, 5, ["a", "b"])
    # entity 0: b twice (as head), a once; 1: a and b once each (tie: a); 2: a twice, b twice (tie: a); 3: a; 4: none
    assert groups.tolist() == ["b", "a", "a", "a", ""]


def test_a_label_file_colours_the_map_and_a_bad_one_names_its_line(run_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(run_dir / "model")
    good = tmp_path / "groups.tsv"
    good.write_text("usa\twest\nuk\twest\n\nussr\teast\n", encoding="utf-8")
    groups = read_entity_groups(good, loaded.entities)
    labels = list(loaded.entities.labels)
    assert groups[labels.index("usa")] == "west" and groups[labels.index("ussr")] == "east"
    assert (groups == "").sum() == len(labels) - 3
    figure = plot_model_embeddings(loaded, labels_file=good)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["west", "east", "unlabelled"]
    assert main(["plot", str(run_dir), "-o", str(tmp_path / "out"), "--which", "embeddings",
                 "--labels", str(good)]) == 0
    assert_drawn(tmp_path / "out" / "embeddings.png", 600, 800)
    malformed = tmp_path / "malformed.tsv"
    malformed.write_text("usa\twest\nuk west\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{malformed}:2: .*expected 2 fields, found 1"):
        read_entity_groups(malformed, loaded.entities)
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("usa\twest\nuk\twest\natlantis\tsea\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{unknown}:3: unknown entity 'atlantis'"):
        read_entity_groups(unknown, loaded.entities)
    assert main(["plot", str(run_dir), "-o", str(tmp_path / "bad"), "--which", "embeddings",
                 "--labels", str(unknown)]) == 2


def test_a_large_table_is_sampled(run_dir: Path) -> None:
    loaded = load_model(run_dir / "model")
    figure = plot_model_embeddings(loaded, max_points=5, seed=3)
    assert len(figure.axes[0].collections[0].get_offsets()) == 5
    assert "5 of 14 sampled" in figure.axes[0].get_title()


def test_the_pipeline_results_plot_methods_draw_what_the_run_folder_plots_draw(tmp_path: Path) -> None:
    result = pipeline(overrides=["model.dim=8", "training.epochs=3", "training.batch_size=256",
                                 "training.frequency=1"], progress=False, output=tmp_path / "run")
    for name in ("losses", "validation", "embeddings", "relation_mrr", "relation_patterns"):
        figure = getattr(result, f"plot_{name}")(path=tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").is_file() and figure.axes
    from_folder = {p.stem: p for p in plot_run(tmp_path / "run", tmp_path / "folder")}
    assert image.imread(tmp_path / "losses.png").shape == image.imread(from_folder["losses"]).shape
    losses = result.plot_losses().axes[0].lines[0].get_ydata()
    assert list(losses) == pytest.approx(result.history.losses)
