"""``kgem extend``: fold the new entities and relations of a file of triples into a saved model
(``LoadedModel.extend``) and save the grown model as a new model folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kgem.cli.use import add_data_options, add_device_option, check_folder, dataset_for, load
from kgem.data.triples import Triples, read_triples
from kgem.errors import KgemError
from kgem.saving import LoadedModel


def cmd_extend(args: argparse.Namespace) -> None:
    """Read the new triples, grow the model, save it (atomically) and say what was added and how the fit went."""
    source = Path(args.model)
    target = Path(args.output) if args.output else source.with_name(f"{source.name}-extended")
    if target.exists() and not args.overwrite:
        same = target.resolve() == source.resolve()
        raise KgemError(f"{target} {'is the model itself' if same else 'exists'}; pass --overwrite to replace it")
    check_folder(target.parent)
    new = read_triples(args.triples)
    loaded = load(args)
    old = old_triples(loaded, args)
    grown = loaded.extend(new, steps=args.steps, lr=args.lr, init=args.init,
                          new_relations="error" if args.no_new_relations else "add", unfreeze=args.unfreeze,
                          epochs=args.epochs, train=old, seed=args.seed)
    grown.save(target)
    for line in summary(grown.extra["extensions"][-1]):
        print(line)
    print(f"saved to {target}")


def old_triples(loaded: LoadedModel, args: argparse.Namespace) -> Triples | None:
    """The old training triples: ``--train``, else those of the dataset the model was trained on (or
    ``--dataset``); None with ``--new-only``, or, said in a note, when that dataset cannot be read and the model
    is not unfrozen."""
    if args.train:
        return read_triples(args.train)
    if args.new_only:
        return None
    try:
        return dataset_for(loaded, args).train
    except KgemError as e:
        if args.unfreeze:
            raise
        print(f"note: no old triples ({' '.join(str(e).split())}); fitting on the new triples alone (--train FILE "
              f"or --dataset gives them)")
        return None


def summary(report: dict[str, Any]) -> list[str]:
    """What ``extend`` reported, as the lines the command prints."""
    entities, relations = report["entities_added"], report["relations_added"]
    lines = [f"added {entities} entit{'y' if entities == 1 else 'ies'} and {relations} "
             f"relation{'' if relations == 1 else 's'} from {report['triples']} triples "
             f"({report['triples_touching_new']} touch them)"]
    if "note" in report:
        lines.append(f"note: {report['note']}")
    if report.get("final_loss") is not None:
        lines.append(f"fit: {report['steps']} steps, loss {report['first_loss']:.4f} on the first pass over the new "
                     f"triples, {report['final_loss']:.4f} on the last")
    if report.get("final_intrusion") is not None:
        lines.append(f"intrusion into the old triples' answers (-log of the old entities' share): "
                     f"{report['first_intrusion']:.4f} on the first pass, {report['final_intrusion']:.4f} on the last")
    if report["unfreeze"]:
        losses, epochs = report["epoch_losses"], report["epochs"]
        lines.append(f"unfreeze: {epochs} epoch{'' if epochs == 1 else 's'} on {report['train_triples']} old and "
                     f"{report['triples']} new triples, loss {losses[0]:.4f} in the first, {losses[-1]:.4f} in the "
                     f"last")
    return lines


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("extend", help="fold new entities and relations into a saved model (old scores unchanged)",
                       description="Give the entities and relations of FILE's triples that the model does not know "
                                   "rows of their own: each starts as the row of its closest analogue among the "
                                   "old ones and is fitted on the triples that touch it, every old row frozen, so "
                                   "the old entities' scores stay bit-identical. With --unfreeze, then train the "
                                   "whole model on the old and new triples. Writes a new model folder.",
                       epilog="example: kgem extend runs/umls/model --triples new.tsv -o runs/umls/model-v2")
    p.add_argument("model", help="saved model folder (e.g. runs/NAME/model)")
    p.add_argument("--triples", required=True, metavar="FILE",
                   help="the new triples: head<TAB>relation<TAB>tail lines (a .csv: commas), labels")
    p.add_argument("-o", "--output", metavar="DIR", help="where to save the grown model (default: MODEL-extended)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists (even the model itself)")
    p.add_argument("--steps", type=int, default=300, help="fitting steps of the new rows (default 300; 0: no fit)")
    p.add_argument("--lr", type=float, default=0.01, help="their learning rate (Adam, default 0.01)")
    p.add_argument("--init", choices=["neighbours", "random"], default="neighbours",
                   help="new rows start as their closest analogue's (default) or at random")
    p.add_argument("--no-new-relations", action="store_true",
                   help="a relation the model does not know is an error (a misspelt label), not a new relation")
    p.add_argument("--unfreeze", action="store_true",
                   help="then train the whole model on the old and new triples (the old scores change)")
    p.add_argument("--epochs", type=int, default=1, help="epochs of --unfreeze (default 1)")
    p.add_argument("--train", metavar="FILE", help="the old training triples (default: the training split of the "
                                                  "dataset the model was trained on)")
    p.add_argument("--new-only", action="store_true",
                   help="fit on the new triples alone, without reading the old ones (faster; new entities may then "
                        "rise over the old answers of unrelated queries)")
    add_data_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the fit's batches and of random rows")
    add_device_option(p)
    p.set_defaults(func=cmd_extend)
