"""``kgem serve``: a saved model behind an HTTP API and a web page (``kgem.serve``; needs ``kgem[serve]``)."""

from __future__ import annotations

import argparse
from typing import Any

from kgem.cli.use import add_data_options, add_device_option, dataset_for
from kgem.errors import KgemError
from kgem.saving import load_model
from kgem.serve import Limits, ServedModel, create_app, require_serve
from kgem.serve.server import bind, loopback, serve, url
from kgem.serve.service import MAX_BODY_BYTES


def cmd_serve(args: argparse.Namespace) -> None:
    require_serve("fastapi", "pydantic", "starlette", "uvicorn")  # before the model and its data load
    loaded = load_model(args.model, device=args.device, mmap=args.mmap)
    named = loaded.extra.get("pipeline", {}).get("data") is not None or args.dataset or args.data_path
    try:
        dataset = dataset_for(loaded, args) if named and not args.no_known else None
    except KgemError as e:
        raise KgemError(f"{e} (--no-known serves the model without its dataset)") from e
    limits = Limits(max_k=args.max_k, max_batch=args.max_batch, map_points=args.map_points)
    app = create_app(ServedModel(loaded, dataset, limits), max_body_bytes=args.max_body_bytes,
                     cors_origins=args.cors)
    with bind(args.host, args.port) as sock:
        print(f"serving {args.model} at {url(args.host, sock.getsockname()[1])} (the page at /, the API under /api, "
              f"its schema at /openapi.json); Ctrl-C stops", flush=True)
        if not loopback(args.host):
            print(f"note: the API has no authentication: anyone who reaches {args.host} can query the model",
                  flush=True)
        serve(app, sock, log_level="warning" if args.quiet else "info")


def port(text: str) -> int:
    """A TCP port number, 0 to 65535 (argparse's type: anything else is a usage error)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text!r}")
    return int(text)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("serve", help="an HTTP API and a web page for a saved model (needs kgem[serve])",
                       description="Serve a saved model: predict tails, heads and relations, score triples, "
                                   "probabilities (a calibrated model), nearest neighbours, top triples, entity "
                                   "search and known facts as a JSON API under /api (schema at /openapi.json), "
                                   "and a web page at / to explore them. Read-only; binds 127.0.0.1 unless --host "
                                   "says otherwise. Needs pip install 'kgem[serve]'.",
                       epilog="example: kgem serve runs/umls/model --port 8000, then open http://127.0.0.1:8000/")
    p.add_argument("model", help="saved model folder (e.g. runs/NAME/model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="port to listen on (default 8000; 0: a free one)")
    p.add_argument("--cors", action="append", metavar="ORIGIN",
                   help="let pages of ORIGIN (e.g. http://localhost:3000) call the API; repeat for more (default: "
                        "none)")
    add_data_options(p)
    p.add_argument("--no-known", action="store_true",
                   help="do not load the dataset: no known facts, predictions not marked known")
    p.add_argument("--max-k", type=int, default=Limits.max_k, metavar="K", help="most answers per query")
    p.add_argument("--max-batch", type=int, default=Limits.max_batch, metavar="N",
                   help="most queries, triples or labels per request")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, metavar="BYTES",
                   help="largest request body (default 1 MiB; larger ones get 413)")
    p.add_argument("--map-points", type=int, default=Limits.map_points, metavar="N",
                   help="entities on the page's map (a seeded sample beyond)")
    p.add_argument("-q", "--quiet", action="store_true", help="no request log")
    add_device_option(p)
    p.set_defaults(func=cmd_serve)
