from __future__ import annotations

import pandas as pd
import pytest

from kgem.config import save_config
from kgem.configs import PipelineConfig
from kgem.errors import ConfigError
from kgem.pipeline import pipeline, resolve_config

FAST = ["training.epochs=4", "model.dim=16", "training.frequency=2"]


def test_pipeline_trains_and_evaluates_and_file_config_gives_same_result(tmp_path) -> None:
    result = pipeline({"data": {"dataset": "nations"}}, overrides=FAST, progress=False)
    assert result.evaluation is not None and result.evaluation.mrr > 0.3
    assert list(result.metrics().index) == ["head", "tail", "both"]
    assert len(result.losses()) == len(result.history.losses) and set(result.timings) == {"load", "train", "evaluate"}
    save_config(result.config, tmp_path / "run.yaml")
    again = pipeline(tmp_path / "run.yaml", progress=False)
    assert again.evaluation is not None and again.evaluation.mrr == result.evaluation.mrr


def test_pipeline_on_a_dataframe_without_test_split() -> None:
    frame = pd.DataFrame({"head": list("abcab"), "relation": ["r"] * 5, "tail": list("bcaca")})
    result = pipeline(data=frame, overrides=FAST, progress=False)
    assert result.evaluation is None and result.model.num_entities == 3


def test_negative_sampling_config() -> None:
    result = pipeline(overrides=[*FAST, "training.approach=slcwa", "model.name=transe", "model.inverse=false",
                                 "training.loss=margin_ranking", "training.optimizer=adam", "training.lr=0.01",
                                 "training.regularizer=null", "training.num_negatives=8"], progress=False)
    assert result.evaluation is not None and result.history.losses[-1] < result.history.losses[0]


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="training.approach"):
        resolve_config({"training": {"approach": "2vsall"}})
    with pytest.raises(ConfigError, match="model.dim must be positive"):
        resolve_config(PipelineConfig(), ["model.dim=0"])
    with pytest.raises(ConfigError, match="unknown model 'complx'"):
        pipeline(overrides=["model.name=complx"], progress=False)


def test_pipeline_result_saves_and_loads_with_identical_scores(tmp_path) -> None:
    import torch

    import kgem

    result = pipeline(overrides=FAST, progress=False)
    result.save(tmp_path / "model")
    loaded = kgem.load(tmp_path / "model")
    hrt = result.dataset.test.hrt
    assert torch.equal(loaded.model.score_hrt(hrt), result.model.eval().score_hrt(hrt))
    assert loaded.extra["pipeline"]["model"]["name"] == "complex"
    assert loaded.extra["evaluation"] is not None and loaded.entities == result.dataset.entities
