"""``model.init_from``: a warm start from a saved model copies the rows of labels both vocabularies know, leaves the
others at their fresh initialisation, copies vocabulary-free tensors whole and refuses what does not fit."""

from __future__ import annotations

import pytest
import torch

from kgem.cli import build_parser
from kgem.cli.train import overrides_from_flags
from kgem.configs import ModelConfig
from kgem.data import Vocabulary
from kgem.errors import ConfigError
from kgem.factory import model_from_config
from kgem.models import build_model
from kgem.pipeline import pipeline, resolve_config
from kgem.pretrained import warm_start
from kgem.saving import save_model

OLD_ENTITIES = Vocabulary(["a", "b", "c", "d"], kind="entity")  # in this order (from_labels sorts)
OLD_RELATIONS = Vocabulary(["r1", "r2"], kind="relation")
NEW_ENTITIES = Vocabulary(["c", "x", "a", "y", "z"], kind="entity")
NEW_RELATIONS = Vocabulary(["r2", "r3"], kind="relation")


def save(tmp_path, name: str = "distmult", dim: int = 4, inverse: bool = True, **args):
    torch.manual_seed(123)
    model = build_model(name, 4, 2, dim, inverse=inverse, **args)
    path = save_model(model, tmp_path / name, entities=OLD_ENTITIES, relations=OLD_RELATIONS,
                      spec={"name": name, "dim": dim, "inverse": inverse, "args": args})
    return model, str(path)


def build(init_from: str | None, name: str = "distmult", dim: int = 4, inverse: bool = True, **args):
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, dim=dim, inverse=inverse, args=args, init_from=init_from)
    return model_from_config(cfg, 5, 2, entities=NEW_ENTITIES, relations=NEW_RELATIONS)


@pytest.mark.parametrize(("old_inverse", "new_inverse"), [(True, True), (False, True), (True, False)])
def test_rows_are_matched_by_label_and_the_others_keep_the_fresh_init(tmp_path, old_inverse, new_inverse) -> None:
    old, path = save(tmp_path, inverse=old_inverse)
    fresh, warm = build(None, inverse=new_inverse), build(path, inverse=new_inverse)
    e_old, e_new, e_fresh = old.entity.weight, warm.entity.weight, fresh.entity.weight
    assert torch.equal(e_new[0], e_old[2]) and torch.equal(e_new[2], e_old[0])  # c and a
    for row in (1, 3, 4):  # x, y, z: unknown to the saved model
        assert torch.equal(e_new[row], e_fresh[row])
    r_old, r_new, r_fresh = old.relation.weight, warm.relation.weight, fresh.relation.weight
    assert torch.equal(r_new[0], r_old[1]) and torch.equal(r_new[1], r_fresh[1])  # r2 copied, r3 fresh
    if new_inverse:  # reciprocal rows: copied where the saved model has them
        assert torch.equal(r_new[2], r_old[3] if old_inverse else r_fresh[2])
        assert torch.equal(r_new[3], r_fresh[3])


def test_tensors_outside_the_tables_are_copied_whole(tmp_path) -> None:
    old, path = save(tmp_path, "tucker", dim=4, relation_dim=3)
    warm = build(path, "tucker", dim=4, relation_dim=3)
    assert torch.equal(warm.interaction.core, old.interaction.core)
    with pytest.raises(ConfigError, match="its relation.weight rows have width 3, this model's 2"):
        build(path, "tucker", dim=4, relation_dim=2)
    old, path = save(tmp_path, "ermlp", dim=4, hidden=5)
    assert torch.equal(build(path, "ermlp", dim=4, hidden=5).interaction.hidden.weight, old.interaction.hidden.weight)
    with pytest.raises(ConfigError, match=r"model.init_from .*: its interaction.hidden.weight has shape \(5, 12\), "
                                          r"this model's \(6, 12\)"):
        build(path, "ermlp", dim=4, hidden=6)


def test_what_does_not_fit_is_a_clear_config_error(tmp_path) -> None:
    _, path = save(tmp_path)
    with pytest.raises(ConfigError, match="its entity.weight rows have width 4, this model's 8"):
        build(path, dim=8)
    with pytest.raises(ConfigError, match="holds a distmult model, not TransE"):
        build(path, "transe")
    with pytest.raises(ConfigError, match="model.init_from .*nowhere.*does not exist"):
        build(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="encoder"):
        build(path, "rgcn")
    literal_model, literal = save(tmp_path, "distmult_literal")
    with pytest.raises(ConfigError, match=r"encoder \(LiteralEmbedding"):
        warm_start(literal_model, literal, entities=OLD_ENTITIES, relations=OLD_RELATIONS)
    with pytest.raises(ConfigError, match="give the entity and relation vocabularies"):
        model_from_config(ModelConfig(name="distmult", dim=4, init_from=path), 5, 2)
    torch.manual_seed(0)
    strangers = Vocabulary.from_labels(["p", "q", "s", "u", "v"], kind="entity")
    with pytest.raises(ConfigError, match="shares no entity or relation label"):
        model_from_config(ModelConfig(name="distmult", dim=4, init_from=path), 5, 2, entities=strangers,
                          relations=Vocabulary.from_labels(["s1", "s2"], kind="relation"))


def test_pipeline_warm_started_from_a_trained_model_starts_where_it_ended(tmp_path) -> None:
    fast = ["training.epochs=3", "model.dim=16", "training.early_stopping=false"]
    trained = pipeline(overrides=fast, progress=False)
    trained.save(tmp_path / "model")
    fresh = pipeline(overrides=[*fast, "training.epochs=1"], progress=False)
    warm = pipeline(overrides=[*fast, "training.epochs=1", f"model.init_from={tmp_path / 'model'}"], progress=False)
    # its one epoch continues the trained run's three (lower loss than their last), a fresh one starts over
    assert warm.history.losses[0] < trained.history.losses[-1] < fresh.history.losses[0]
    assert warm.evaluation.mrr > fresh.evaluation.mrr


def test_command_line_flag_reaches_the_config() -> None:
    args = build_parser().parse_args(["train", "--init-from", "runs/old/model"])
    assert resolve_config(None, overrides_from_flags(args)).model.init_from == "runs/old/model"


def test_string_flags_stay_strings() -> None:
    """A folder named like a YAML number or null is still that folder: str flags are not read as YAML."""
    for name in ("123", "null", "1e-3", "true"):
        args = build_parser().parse_args(["train", "--init-from", name, "--dataset", name])
        cfg = resolve_config(None, overrides_from_flags(args))
        assert cfg.model.init_from == name and cfg.data.dataset == name
