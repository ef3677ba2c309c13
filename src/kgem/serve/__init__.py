"""``kgem serve``: a saved model behind an HTTP API and a small web page (``pip install 'kgem[serve]'``).

``ServedModel`` (``kgem.serve.service``) answers the questions with the batched inference of ``LinkPredictor``;
``create_app`` puts it behind FastAPI (``kgem.serve.app``); ``kgem.serve.server`` runs the app under uvicorn.
FastAPI and uvicorn are an optional extra: ``kgem.serve.app`` imports FastAPI at its top, so it is imported here only
when an app is made, and a missing extra is a one-line error naming it.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from kgem.errors import KgemError, UnknownLabel
from kgem.saving import LoadedModel
from kgem.serve.service import Limits, ServedModel

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Limits", "ServedModel", "UnknownLabel", "create_app", "require_serve"]

EXTRA_HINT = "pip install 'kgem[serve]'"


def require_serve(*modules: str) -> None:
    """Import ``modules`` (default: what an app needs), or fail with one line naming the extra."""
    for module in modules or ("fastapi", "pydantic", "starlette"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise KgemError(f"kgem serve needs {module}, which is not installed: {EXTRA_HINT}") from e


def create_app(model: ServedModel | LoadedModel | str | os.PathLike[str], **options: Any) -> FastAPI:
    """The FastAPI app serving ``model``: see ``kgem.serve.app.create_app`` for the options."""
    require_serve()
    app: FastAPI = importlib.import_module("kgem.serve.app").create_app(model, **options)
    return app
