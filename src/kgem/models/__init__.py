"""Models: representations (embedding tables) plus interactions (scoring functions)."""

from kgem.models import (  # noqa: F401  (register the interactions)
    autosf,
    bilinear,
    composed,
    crosse,
    distma,
    factorization,
    geometric,
    lineare,
    literal,
    neural,
    probabilistic,
    transf,
    translational,
    triplere,
)
from kgem.models.builders import build_model, model_info, model_names, register_model
from kgem.models.initializers import INITIALIZERS, from_tensor
from kgem.models.interaction import INTERACTIONS, Interaction
from kgem.models.model import Model
from kgem.models.representation import Embedding

MODELS = model_names()

__all__ = ["INITIALIZERS", "INTERACTIONS", "MODELS", "Embedding", "Interaction", "Model", "build_model",
           "from_tensor", "model_info", "model_names", "register_model"]
