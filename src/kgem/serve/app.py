"""The HTTP API and the web page of a saved model, as a FastAPI app: ``create_app``.

Every endpoint reads; none changes the model. Questions of one label come as GET requests with query parameters
(labels may hold ``/``, as Freebase's do, so they are never path segments), batches as POST requests with a JSON
body. Tables come back as ``{"rows": [...]}``, one object per row with the columns of the Python API's DataFrame
(``LinkPredictor.predict_tails`` and the rest), so ``pd.DataFrame(answer["rows"])`` is that DataFrame.

Errors are JSON ``{"error": "one line", ...}``: an unknown label is 404 with ``suggestions``; a k, batch or limit
out of bounds, or a request that does not validate, 422 (with ``problems``); malformed JSON 400; a body over
``max_body_bytes`` 413. FastAPI's OpenAPI schema is at ``/openapi.json``; its documentation pages are off, as they
load scripts from a CDN and the server works offline. The page at ``/`` is static HTML, JavaScript and CSS shipped
with kgem, served with a Content-Security-Policy that lets it load and ask nothing but this server.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kgem.data import Dataset
from kgem.errors import KgemError, TooLarge, UnknownLabel
from kgem.saving import LoadedModel
from kgem.serve.service import MAX_BODY_BYTES, Limits, ServedModel, Side

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                           "base-uri 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

Label = Annotated[str, Field(min_length=1, description="a label of the model's vocabulary")]
K = Annotated[int | None, Query(ge=1, description="answers per query (default 10, or max_k if smaller)")]
RemoveKnown = Annotated[bool, Query(description="leave out the facts of the model's dataset")]
MetricName = Literal["cosine", "l2", "dot"]
KindName = Literal["entity", "relation"]


class Strict(BaseModel):
    """A request body: a misspelt key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class TailQuery(Strict):
    head: Label
    relation: Label


class HeadQuery(Strict):
    relation: Label
    tail: Label


class RelationQuery(Strict):
    head: Label
    tail: Label


class Triple(Strict):
    head: Label
    relation: Label
    tail: Label


class TailsRequest(Strict):
    queries: list[TailQuery]
    k: int | None = Field(None, ge=1, description="answers per query (default 10, or max_k if smaller)")
    remove_known: bool = False


class HeadsRequest(Strict):
    queries: list[HeadQuery]
    k: int | None = Field(None, ge=1, description="answers per query (default 10, or max_k if smaller)")
    remove_known: bool = False


class RelationsRequest(Strict):
    queries: list[RelationQuery]
    k: int | None = Field(None, ge=1, description="answers per query (default 10, or max_k if smaller)")
    remove_known: bool = False


class TriplesRequest(Strict):
    triples: list[Triple]


class SimilarRequest(Strict):
    labels: list[Label]
    k: int | None = Field(None, ge=1, description="answers per query (default 10, or max_k if smaller)")
    metric: MetricName = "cosine"
    kind: KindName = "entity"


def served(request: Request) -> ServedModel:
    model: ServedModel = request.app.state.served
    return model


Served = Annotated[ServedModel, Depends(served)]
api = APIRouter(prefix="/api")


def table(frame: pd.DataFrame) -> JSONResponse:
    """``{"rows": [...]}``, a JSON object per row; a non-finite score (JSON has none) as null."""
    numbers = frame.select_dtypes("number")
    if not np.isfinite(numbers.to_numpy(np.float64)).all():
        frame = frame.replace([np.inf, -np.inf], np.nan)
        frame = frame.astype(object).where(frame.notna(), None)
    return JSONResponse({"rows": frame.to_dict(orient="records")})


@api.get("/info", summary="the model, its dataset and the server's limits")
def info(model: Served) -> dict[str, Any]:
    return model.info()


@api.get("/relations", summary="every relation label, in id order")
def relations(model: Served) -> dict[str, Any]:
    return {"relations": model.relations.labels.tolist()}


@api.get("/search", summary="labels starting with q, then holding it (case-insensitive)")
def search(model: Served, q: Annotated[str, Query(min_length=1)], limit: Annotated[int, Query(ge=1)] = 10,
           kind: KindName = "entity") -> dict[str, Any]:
    return model.search(q, limit, kind)


@api.get("/facts", summary="the known facts of an entity, as head or tail")
def facts(model: Served, entity: Annotated[str, Query(min_length=1)],
          limit: Annotated[int, Query(ge=1)] = 200) -> dict[str, Any]:
    return model.facts(entity, limit)


@api.get("/predict/tails", summary="the top k tails of (head, relation)")
def tails(model: Served, head: Annotated[str, Query(min_length=1)], relation: Annotated[str, Query(min_length=1)],
          k: K = None, remove_known: RemoveKnown = False) -> JSONResponse:
    return table(model.predict("tail", [(head, relation)], k, remove_known))


@api.get("/predict/heads", summary="the top k heads of (relation, tail)")
def heads(model: Served, relation: Annotated[str, Query(min_length=1)], tail: Annotated[str, Query(min_length=1)],
          k: K = None, remove_known: RemoveKnown = False) -> JSONResponse:
    return table(model.predict("head", [(relation, tail)], k, remove_known))


@api.get("/predict/relations", summary="the top k relations from head to tail")
def relations_between(model: Served, head: Annotated[str, Query(min_length=1)],
                      tail: Annotated[str, Query(min_length=1)], k: K = None,
                      remove_known: RemoveKnown = False) -> JSONResponse:
    return table(model.predict("relation", [(head, tail)], k, remove_known))


def batch(model: ServedModel, side: Side, body: TailsRequest | HeadsRequest | RelationsRequest) -> JSONResponse:
    """One batched prediction for every query of ``body``."""
    queries = [tuple(query.model_dump().values()) for query in body.queries]
    return table(model.predict(side, queries, body.k, body.remove_known))


@api.post("/predict/tails", summary="the top k tails of each (head, relation) query")
def tails_batch(model: Served, body: TailsRequest) -> JSONResponse:
    return batch(model, "tail", body)


@api.post("/predict/heads", summary="the top k heads of each (relation, tail) query")
def heads_batch(model: Served, body: HeadsRequest) -> JSONResponse:
    return batch(model, "head", body)


@api.post("/predict/relations", summary="the top k relations of each (head, tail) pair")
def relations_batch(model: Served, body: RelationsRequest) -> JSONResponse:
    return batch(model, "relation", body)


@api.post("/score", summary="scores of triples, in input order (probabilities where calibrated)")
def score(model: Served, body: TriplesRequest) -> JSONResponse:
    return table(model.score([(t.head, t.relation, t.tail) for t in body.triples]))


@api.post("/probabilities", summary="the calibrated probability of each triple (a calibrated model)")
def probabilities(model: Served, body: TriplesRequest) -> JSONResponse:
    return table(model.probabilities([(t.head, t.relation, t.tail) for t in body.triples]))


@api.get("/similar", summary="the k nearest neighbours of a label in embedding space")
def similar(model: Served, label: Annotated[str, Query(min_length=1)], k: K = None, metric: MetricName = "cosine",
            kind: KindName = "entity") -> JSONResponse:
    return table(model.similar([label], k, metric, kind))


@api.post("/similar", summary="the k nearest neighbours of each label")
def similar_batch(model: Served, body: SimilarRequest) -> JSONResponse:
    return table(model.similar(body.labels, body.k, body.metric, body.kind))


@api.get("/top", summary="the k highest-scoring triples of a relation, or of every relation")
def top(model: Served, k: K = None, relation: Annotated[str | None, Query(min_length=1)] = None,
        remove_known: RemoveKnown = False) -> JSONResponse:
    return table(model.top(k, relation, remove_known))


@api.get("/map", summary="the entities on the first two principal axes of their embeddings")
def embedding_map(model: Served) -> dict[str, Any]:
    return model.embedding_map


def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split()), "status": status, **extra}, status_code=status)


async def unknown_label(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, UnknownLabel)
    return error(404, str(e), kind=e.kind, label=e.label, suggestions=e.suggestions)


async def too_large(request: Request, e: Exception) -> JSONResponse:
    return error(422, str(e))


async def bad_request(request: Request, e: Exception) -> JSONResponse:
    return error(400, str(e))


async def invalid(request: Request, e: Exception) -> JSONResponse:
    """422 naming each problem (where, what); 400 for a body that is not JSON at all."""
    assert isinstance(e, RequestValidationError)
    problems = [{"where": ".".join(map(str, p.get("loc", ()))), "problem": p.get("msg", "")} for p in e.errors()]
    if any(p.get("type") == "json_invalid" for p in e.errors()):
        return error(400, f"malformed JSON body: {problems[0]['problem']}")
    first = problems[0] if problems else {"where": "request", "problem": "invalid"}
    return error(422, f"{first['where']}: {first['problem']}", problems=problems)


async def http_error(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, HTTPException)
    return error(e.status_code, str(e.detail))


async def internal(request: Request, e: Exception) -> JSONResponse:
    return error(500, f"internal error: {type(e).__name__}: {e}")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` (declared, or as it arrives) is answered 413 before the
    app reads it; one within the limit is read and handed on whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.refuse(scope, receive, send)
            return
        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
            if size > self.max_bytes:
                await self.refuse(scope, receive, send)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error(413, f"request body larger than the server's limit of {self.max_bytes} bytes")
        await response(scope, receive, send)


def create_app(model: ServedModel | LoadedModel | str | os.PathLike[str], *, dataset: Dataset | None = None,
               with_known: bool = True, max_body_bytes: int = MAX_BODY_BYTES,
               cors_origins: Sequence[str] | None = None, device: str = "cpu", mmap: bool = False,
               **limits: int) -> FastAPI:
    """The app serving ``model``: a saved model folder (loaded once, with the dataset its config names unless
    ``dataset`` is given or ``with_known`` is False), a ``LoadedModel`` (with ``dataset``'s facts if given) or a
    ``ServedModel``. ``limits`` are those of ``Limits`` (``max_k``, ``max_batch``, ``max_search``, ``max_facts``,
    ``max_top_scores``, ``map_points``); ``max_body_bytes`` bounds a request body; ``cors_origins`` lets pages of
    those origins call the API from a browser (none by default)."""
    if isinstance(model, ServedModel):
        if limits or dataset is not None:
            raise KgemError("a ServedModel has its own dataset and limits; give them when making it")
        target = model
    elif isinstance(model, LoadedModel):
        target = ServedModel(model, dataset, Limits(**limits))
    else:
        target = ServedModel.open(model, dataset=dataset, with_known=with_known, limits=Limits(**limits),
                                  device=device, mmap=mmap)
    if max_body_bytes < 1:
        raise KgemError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
    app = FastAPI(title="kgem", summary="Link prediction with a knowledge-graph embedding model",
                  docs_url=None, redoc_url=None)
    app.state.served = target
    app.include_router(api)
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for kind, handler in [(UnknownLabel, unknown_label), (TooLarge, too_large), (KgemError, bad_request),
                          (RequestValidationError, invalid), (HTTPException, http_error), (Exception, internal)]:
        app.add_exception_handler(kind, handler)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
