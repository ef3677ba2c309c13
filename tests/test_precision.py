"""bfloat16 training steps (``training.precision``): the step runs under autocast and validation does not, the
parameters stay float32, and a model trained so is as good as one trained in float32."""

from __future__ import annotations

import pytest
import torch

import kgem
from kgem.data import load_dataset
from kgem.errors import ConfigError
from kgem.models import build_model
from kgem.training import OneVsAll, Trainer, build_optimizer
from kgem.training.losses import LOSSES
from kgem.training.trainer import EarlyStopping


class Recording(OneVsAll):
    """1vsAll that records the autocast state and the score type of every step."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, torch.dtype]] = []

    def compute(self, model, batch, loss, drawn, part):
        h, r = batch[:, 0], batch[:, 1]
        self.seen.append((torch.is_autocast_enabled("cpu"), model.score_t(h, r).dtype))
        return super().compute(model, batch, loss, drawn, part)


@pytest.mark.parametrize(("precision", "expected"), [("float32", (False, torch.float32)),
                                                      ("bfloat16", (True, torch.bfloat16))])
def test_steps_run_in_the_precision_and_validation_in_float32(precision, expected) -> None:
    ds = load_dataset("nations")
    torch.manual_seed(0)
    model = build_model("complex", ds.num_entities, ds.num_relations, 8, inverse=True)
    approach = Recording()
    validated = []

    def validate(m) -> float:
        validated.append((torch.is_autocast_enabled("cpu"), m.score_t(ds.valid.hrt[:, 0], ds.valid.hrt[:, 1]).dtype))
        return 0.5

    trainer = Trainer(model, approach, LOSSES.get("cross_entropy")(),
                      build_optimizer("adagrad", model.parameters(), lr=0.1), batch_size=512, progress=False,
                      precision=precision)
    trainer.fit(ds.train.hrt, 2, EarlyStopping(validate, frequency=1, patience=5))
    assert approach.seen and set(approach.seen) == {expected}
    assert set(validated) == {(False, torch.float32)}
    assert all(p.dtype in (torch.float32, torch.complex64) for p in model.parameters())
    assert all(s["sum"].dtype == torch.float32 for s in trainer.optimizer.state.values())


def test_bfloat16_trains_as_well_as_float32() -> None:
    mrr = {}
    for precision in ("float32", "bfloat16"):
        result = kgem.pipeline(overrides=["data.dataset=umls", "model.dim=32", "training.epochs=15",
                                          "training.early_stopping=false", f"training.precision={precision}"],
                               progress=False)
        assert result.evaluation is not None
        mrr[precision] = result.evaluation.mrr
    assert mrr["float32"] > 0.8
    assert abs(mrr["bfloat16"] - mrr["float32"]) < 0.02, mrr


def test_precision_is_checked() -> None:
    with pytest.raises(ConfigError, match="training.precision"):
        kgem.pipeline(overrides=["training.precision=float16", "training.epochs=1"], progress=False)
    with pytest.raises(ConfigError, match="circuits train in float32"):
        kgem.pipeline(overrides=["model.name=cp2", "training.precision=bfloat16", "training.epochs=1"],
                      progress=False)
