"""``kgem predict-lists | emb-sim``: DGL-KE's ``dglke_predict`` and ``dglke_emb_sim`` on a saved model folder. DGL-KE's
flag spellings (``--model_path``, ``--data_files``, ``--exec_mode``, ``--topK``, ``--score_func``, ``--sim_func``,
``--raw_data``, ``--gpu``, the mapping files) are accepted too, so a DGL-KE command line works with ``kgem`` in
front of it.

Where the command lines differ from DGL-KE's: list items are labels unless ``--ids`` (DGL-KE reads ids unless
``--raw_data``, which kgem accepts and which is its default); without ``--output`` the table is printed (DGL-KE
writes result.tsv), and a file written is TSV with DGL-KE's header; ``emb-sim`` reads the model folder's table
(``--kind entity|relation``) instead of an ``--emb_file``; the mapping files, which kgem does not need (the model
folder holds its vocabularies), are checked against them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from kgem.atomic import atomic_write
from kgem.cli.use import add_data_options, dataset_for, write_or_print
from kgem.data.vocab import Vocabulary
from kgem.errors import KgemError
from kgem.inference.emb_sim import SIM_FUNCS, SIM_MODES, embedding_similarity
from kgem.inference.lists import EXEC_MODES, FORMATS, SCORE_FUNCS, predict_lists
from kgem.saving import load_model

SIM_FORMATS = {"l_r": (True, True), "l_*": (True, False), "*_r": (False, True), "*": (False, False)}


def model_folder(args: argparse.Namespace) -> str:
    """The model folder: the positional MODEL or DGL-KE's --model_path, one of them."""
    if args.model and args.model_path and args.model != args.model_path:
        raise KgemError(f"two model folders: {args.model} and --model_path {args.model_path}; give one")
    folder: str | None = args.model or args.model_path
    if folder is None:
        raise KgemError("give the saved model folder (e.g. runs/umls/model), or --model_path")
    return folder


def device(args: argparse.Namespace) -> str:
    """--device, or DGL-KE's --gpu (-1: the CPU, N: cuda:N); the CPU by default."""
    if args.device is not None and args.gpu is not None:
        raise KgemError("give --device or --gpu, not both")
    if args.gpu is not None:
        return "cpu" if args.gpu < 0 else f"cuda:{args.gpu}"
    return args.device or "cpu"


def reads_ids(args: argparse.Namespace) -> bool:
    if args.ids and args.raw_data:
        raise KgemError("--ids reads ids, --raw_data labels (the default): give one")
    return bool(args.ids)


def check_mapping(path: str | None, vocab: Vocabulary, kind: str) -> None:
    """A DGL-KE mapping file (``id<TAB>label`` lines) must say what the model's vocabulary says."""
    if path is None:
        return
    mapping = Vocabulary.load(path, kind=kind)
    ours, theirs = vocab.labels, mapping.labels
    if len(ours) != len(theirs):
        raise KgemError(f"{path}: maps {len(theirs)} {kind} ids, the model has {len(ours)}")
    differ = (ours != theirs).nonzero()[0]
    if len(differ):
        i = int(differ[0])
        raise KgemError(f"{path}: {kind} id {i} is {theirs[i]!r} there, {ours[i]!r} in the model")


def emit(frame: pd.DataFrame, output: str | None) -> None:
    """Print the table, or write it as TSV with a header line (DGL-KE's result file)."""
    if output is None:
        write_or_print(frame, None)
        return
    if Path(output).is_dir():
        raise KgemError(f"{output}: is a folder; --output takes the name of a TSV file")
    with atomic_write(output) as f:
        frame.to_csv(f, sep="\t", index=False)
    print(f"wrote {len(frame)} rows to {output}")


def budget(args: argparse.Namespace) -> int | None:
    if args.memory_budget_mb is None:
        return None
    if args.memory_budget_mb < 1:
        raise KgemError(f"--memory-budget-mb must be at least 1, got {args.memory_budget_mb}")
    return int(args.memory_budget_mb) * 2**20


def cmd_predict_lists(args: argparse.Namespace) -> None:
    ids = reads_ids(args)
    args.model = model_folder(args)  # dataset_for names it
    loaded: Any = load_model(args.model, device=device(args), mmap=args.mmap)
    check_mapping(args.entity_mfile, loaded.entities, "entity")
    check_mapping(args.rel_mfile, loaded.relations, "relation")
    if args.remove_known:
        loaded = loaded.with_known(dataset_for(loaded, args))
    frame = predict_lists(loaded, args.format, *args.data_files, exec_mode=args.exec_mode, k=args.topk,
                          score_func=args.score_func, ids=ids, remove_known=args.remove_known,
                          memory_budget_bytes=budget(args))
    emit(frame.rename(columns={"relation": "rel"}), args.output)


def cmd_emb_sim(args: argparse.Namespace) -> None:
    ids = reads_ids(args)
    given = SIM_FORMATS[args.format]
    if len(args.data_files) != sum(given):
        raise KgemError(f"format {args.format} takes {sum(given)} list file(s) in --data-files, got "
                        f"{len(args.data_files)}")
    files = iter(args.data_files)
    left, right = (next(files) if side else None for side in given)
    loaded = load_model(model_folder(args), device=device(args), mmap=args.mmap)
    check_mapping(args.mfile, loaded.entities if args.kind == "entity" else loaded.relations, args.kind)
    frame = embedding_similarity(loaded, left, right, sim_func=args.sim_func, exec_mode=args.exec_mode,
                                 k=args.topk, kind=args.kind, ids=ids, memory_budget_bytes=budget(args))
    emit(frame.rename(columns={"similarity": "score"}), args.output)


def add_common(p: argparse.ArgumentParser) -> None:
    """The options both commands share: model, lists, k, output, device."""
    p.add_argument("model", nargs="?", help="saved model folder (e.g. runs/umls/model)")
    p.add_argument("--model-path", "--model_path", dest="model_path", metavar="MODEL",
                   help="the model folder, DGL-KE's spelling")
    p.add_argument("--data-files", "--data_files", dest="data_files", nargs="+", default=[], metavar="FILE",
                   help="one list file per list the format gives, in its order: one label (or id) per line")
    p.add_argument("--ids", action="store_true", help="the lists hold ids, not labels (DGL-KE's default)")
    p.add_argument("--raw_data", "--raw-data", dest="raw_data", action="store_true",
                   help="the lists hold labels: kgem's default, accepted for DGL-KE command lines")
    p.add_argument("-k", "--topk", "--topK", dest="topk", type=int, default=10,
                   help="how many results (per item with the batch modes; default 10)")
    p.add_argument("-o", "--output", help="write a TSV file (DGL-KE's header) instead of printing")
    p.add_argument("--memory-budget-mb", type=int, metavar="MB", help="size of one score block (default 256)")
    p.add_argument("--device", help="where the model computes: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--gpu", type=int, help="DGL-KE's device: -1 the CPU, N cuda:N")
    p.add_argument("--mmap", action="store_true", help="map the saved weights instead of reading them (CPU)")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("predict-lists", help="top-k triples over lists of heads, relations, tails (dglke_predict)",
                       description="DGL-KE's dglke_predict: score the combinations of the head, relation and tail "
                                   "lists that --format names (* = every entity or relation) and keep the k best, "
                                   "overall (--exec-mode all), per triple position (triplet_wise: the i-th items "
                                   "of the lists form a triple) or per item of one list (batch_head, batch_rel, "
                                   "batch_tail). Output: head, rel, tail, score.",
                       epilog="example: kgem predict-lists runs/umls/model --format 'h_r_*' --data-files heads.txt "
                              "rels.txt --exec-mode batch_head -k 5")
    add_common(p)
    p.add_argument("--format", required=True, choices=FORMATS, help="the lists given; * = all")
    p.add_argument("--exec-mode", "--exec_mode", dest="exec_mode", choices=EXEC_MODES, default="all",
                   help="which triples compete for the top k (default all)")
    p.add_argument("--score-func", "--score_func", dest="score_func", choices=SCORE_FUNCS, default="none",
                   help="none: the model's score; logsigmoid: log(sigmoid(score))")
    p.add_argument("--remove-known", action="store_true", help="leave out triples of the dataset")
    add_data_options(p)
    p.add_argument("--entity-mfile", "--entity_mfile", dest="entity_mfile", metavar="FILE",
                   help="DGL-KE's entity mapping (id<TAB>label): checked against the model's")
    p.add_argument("--rel-mfile", "--rel_mfile", dest="rel_mfile", metavar="FILE",
                   help="DGL-KE's relation mapping: checked against the model's")
    p.set_defaults(func=cmd_predict_lists)

    p = sub.add_parser("emb-sim", help="most similar pairs of embeddings over two lists (dglke_emb_sim)",
                       description="DGL-KE's dglke_emb_sim: compare the entity (or relation) embeddings of a left "
                                   "and a right list (* = every row) and keep the k most similar pairs, overall "
                                   "(--exec-mode all), pair by pair (pairwise) or per left item (batch_left). "
                                   "l2 and l1 are negative distances: higher is always more similar. Output: "
                                   "left, right, score.",
                       epilog="example: kgem emb-sim runs/umls/model --format 'l_*' --data-files left.txt "
                              "--sim-func cosine --exec-mode batch_left -k 5")
    add_common(p)
    p.add_argument("--format", required=True, choices=list(SIM_FORMATS), help="the lists given; * = all")
    p.add_argument("--exec-mode", "--exec_mode", dest="exec_mode", choices=SIM_MODES, default="all",
                   help="which pairs compete for the top k (default all)")
    p.add_argument("--sim-func", "--sim_func", dest="sim_func", choices=SIM_FUNCS, default="cosine",
                   help="cosine (default), l2, l1 (negative distances), dot or ext_jaccard")
    p.add_argument("--kind", choices=["entity", "relation"], default="entity", help="which table (default entity)")
    p.add_argument("--mfile", metavar="FILE", help="DGL-KE's mapping of the table's ids: checked against the model's")
    p.set_defaults(func=cmd_emb_sim)
