from __future__ import annotations

import pandas as pd
import pytest

from kgem.config import save_config
from kgem.configs import PipelineConfig
from kgem.errors import ConfigError
from kgem.pipeline import pipeline, resolve_config

FAST = ["training.epochs=4", "model.dim=16", "training.frequency=2"]


def test_pipeline_trains_and_evaluates_and_file_config_gives_same_result(tmp_path) -> None:
    """The MRR of the two runs bit-exact: same process, same seed and thread count, and tensors that PyTorch
    allocates (64-byte aligned), so every kernel reduces in the same order."""
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


def test_pipeline_result_saves_and_loads_with_identical_weights_and_close_scores(tmp_path) -> None:
    """Weights bit-exact (copied); scores close, not bit-exact: the loaded tensors sit in the safetensors buffer at
    another memory alignment, which can change a SIMD reduction's order."""
    import torch

    import kgem

    result = pipeline(overrides=FAST, progress=False)
    result.save(tmp_path / "model")
    loaded = kgem.load(tmp_path / "model")
    original = result.model.eval().state_dict()
    assert all(torch.equal(x, original[name]) for name, x in loaded.model.state_dict().items())
    hrt = result.dataset.test.hrt
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.score_hrt(hrt), result.model.score_hrt(hrt), rtol=1e-5, atol=1e-6)
    assert loaded.extra["pipeline"]["model"]["name"] == "complex"
    assert loaded.extra["evaluation"] is not None and loaded.entities == result.dataset.entities


def test_sampled_and_fractional_evaluation_from_the_config() -> None:
    import math

    quick = ["training.epochs=1", "model.dim=8", "training.frequency=1"]
    full = pipeline(overrides=quick, progress=False)
    assert full.evaluation is not None and not full.evaluation.sampled
    every = pipeline(overrides=[*quick, "evaluation.num_negatives=1000"], progress=False)  # >= num_entities: all
    assert every.evaluation is not None and every.evaluation.to_dict() == full.evaluation.to_dict()
    sampled = pipeline(overrides=[*quick, "evaluation.num_negatives=3"], progress=False)
    assert sampled.evaluation is not None and sampled.evaluation.sampled and sampled.evaluation.num_negatives == 3
    assert sampled.evaluation.ranks.realistic.max() <= 4
    assert sampled.history.validation[1] > full.history.validation[1]  # validation samples too: smaller ranks
    part = pipeline(overrides=[*quick, "evaluation.fraction=0.5", "evaluation.seed=1"], progress=False)
    assert part.evaluation is not None and len(part.evaluation.ranks) == 2 * math.floor(0.5 * 201 + 0.5)
    with pytest.raises(ConfigError, match="evaluation.fraction must lie in"):
        resolve_config(None, ["evaluation.fraction=0"])
    with pytest.raises(ConfigError, match="evaluation.num_negatives must be positive or null"):
        resolve_config(None, ["evaluation.num_negatives=0"])


def test_evaluation_and_device_options_on_the_command_line(tmp_path, capsys) -> None:
    from kgem.cli import build_parser, main
    from kgem.cli.train import overrides_from_flags

    args = build_parser().parse_args(["train", "--neg_sample_size_eval", "7", "--eval_percent", "0.25"])
    cfg = resolve_config(None, overrides_from_flags(args))
    assert (cfg.evaluation.num_negatives, cfg.evaluation.fraction) == (7, 0.25)
    pipeline(overrides=["training.epochs=1", "model.dim=8"], progress=False, output=tmp_path / "run")
    model = str(tmp_path / "run" / "model")
    assert main(["evaluate", model, "-q", "--eval-negatives", "5", "--eval-fraction", "0.5", "--device", "cpu",
                 "--output", str(tmp_path / "m.csv")]) == 0
    table = pd.read_csv(tmp_path / "m.csv", index_col=0)
    assert table.loc["both", "count"] == 2 * 101  # half of the 201 nations test triples, both sides
    assert "5 sampled negatives" in capsys.readouterr().out
    sampled = pipeline(overrides=["training.epochs=1", "model.dim=8", "evaluation.num_negatives=5"], progress=False,
                       output=tmp_path / "sampled")
    assert sampled.evaluation is not None and sampled.evaluation.sampled
    assert main(["evaluate", str(tmp_path / "sampled" / "model"), "-q", "--eval-negatives", "0", "--output",
                 str(tmp_path / "exact.csv")]) == 0  # every entity, though the model was trained with 5
    assert "sampled" not in capsys.readouterr().out
    exact = pd.read_csv(tmp_path / "exact.csv", index_col=0)
    assert exact.loc["both", "mrr"] < float(sampled.metrics().loc["both", "mrr"])  # among 14 entities, not 6
    assert main(["evaluate", model, "-q", "--eval-negatives", "5", "--eval-sampler", "degree"]) == 0
    assert "(degree-proportional)" in capsys.readouterr().out
    degree = pipeline(overrides=["training.epochs=1", "model.dim=8", "evaluation.num_negatives=5",
                                 "evaluation.negative_sampler=degree", "training.frequency=1"], progress=False)
    assert degree.evaluation is not None and degree.evaluation.sampler == "degree"
    assert main(["evaluate", model, "-q", "--eval-fraction", "2"]) == 2
    assert main(["predict", model, "--head", "usa", "--relation", "embassy", "--device", "gpu"]) == 2
    assert "device 'gpu' cannot hold the model" in capsys.readouterr().err
