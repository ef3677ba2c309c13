"""``kgem train`` and ``kgem resume``: the pipeline from flags or a config file, into a run folder."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kgem.cli.use import check_folder
from kgem.config import save_config, yaml_value
from kgem.configs import PipelineConfig
from kgem.errors import KgemError
from kgem.factory import dataset_from_config
from kgem.pipeline import pipeline, resolve_config, resume
from kgem.recipes import recipe
from kgem.training.distributed import follower, launched


def column(text: str) -> int | str:
    """A column: its position (a whole number) or its name."""
    return int(text) if text.isdigit() else text


# (option strings, config key, type, help); DGL-KE's spelling is accepted next to ours
FLAGS: list[tuple[tuple[str, ...], str, Callable[[str], Any], str]] = [
    (("--dataset",), "data.dataset", str, "registered dataset, a folder of train/valid/test files, or one file of "
                                          "facts to split 80/10/10"),
    (("--data-path", "--data_path"), "data.path", str, "folder holding the dataset's files"),
    (("--format",), "data.format", str, "raw_udd_{hrt,htr,...} (label triples) or udd_{...} (ids + .dict files); "
                                        "RDF: ntriples, nquads, turtle or rdfxml (by default from .nt, .nq, .ttl, "
                                        ".rdf names)"),
    (("--rdf-literals", "--rdf_literals"), "data.rdf_literals", str,
     "RDF triples with a literal object: drop (default), entities (literals become entities) or attributes "
     "(numeric ones become the literal models' attributes)"),
    (("--header",), "data.header", bool, "the label files' first line names the columns: skip it"),
    (("--quotechar",), "data.quotechar", str, "quote character of fields holding the delimiter (CSV: '\"')"),
    (("--edge-weights", "--edge_weights", "--weight-col", "--weight_col"), "data.edge_weights", column,
     "the column of a number per edge (3: a 4th column; a name with --header; PyTorch-BigGraph's weight_col): "
     "weighs the loss, or FocusE's scores"),
    (("--edge-weights-mode", "--edge_weights_mode"), "training.edge_weights", str,
     "what the edge weights do: loss (default: weigh each edge's terms), focuse (AmpliGraph's FocusE) or ignore"),
    (("--literals",), "data.literals", str, "file of numeric entity attributes (entity<TAB>attribute<TAB>value) for "
     "the literal models: distmult_literal, distmult_literal_gated, complex_literal"),
    (("--model", "--model-name", "--model_name"), "model.name", str, "model name (see 'kgem models')"),
    (("--dim", "--hidden-dim", "--hidden_dim"), "model.dim", int, "embedding dimension"),
    (("--storage",), "model.storage", str,
     "memory, or mapped: the entity table in a file the OS pages in and out (tables larger than RAM)"),
    (("--approach",), "training.approach", str, "slcwa (negative sampling), kvsall or 1vsall"),
    (("--objective",), "training.objective", str,
     "generative circuits (--model complex2, cp2, ...): pll (pseudo-log-likelihood) or mle (exact likelihood)"),
    (("--loss",), "training.loss", str, "loss name, e.g. margin_ranking, softplus, bce, cross_entropy"),
    (("--margin", "--gamma"), "training.loss_args.margin", float, "margin of margin losses"),
    (("--num-negatives", "--neg-sample-size", "--neg_sample_size"), "training.num_negatives", int,
     "negatives per positive (slcwa)"),
    (("--optimizer",), "training.optimizer", str,
     "adam, adamw, adagrad, rowadagrad (PyTorch-BigGraph's), sgd or sparseadam"),
    (("--lr",), "training.lr", float, "learning rate"),
    (("--scheduler",), "training.scheduler", str,
     "learning-rate schedule: step, multistep, exponential, cosine, linear or plateau (arguments: --set "
     "training.scheduler_args.gamma=0.5)"),
    (("--warmup-epochs", "--warmup_epochs"), "training.warmup_epochs", int, "epochs of linear learning-rate warm-up"),
    (("--clip-grad-norm", "--clip_grad_norm"), "training.clip_grad_norm", float,
     "clip the gradients' joint L2 norm to this"),
    (("--init-from", "--init_from"), "model.init_from", str,
     "warm start from a saved model directory (rows matched by label)"),
    (("--regularization-coef", "--regularization_coef"), "training.regularizer_args.weight", float,
     "regularizer weight"),
    (("--relation-prediction",), "training.relation_prediction", float,
     "1vsall: weight of the relation prediction term (Chen et al. 2021; 0: off)"),
    (("--epochs",), "training.epochs", int, "maximum number of epochs"),
    (("--time-budget",), "training.time_budget", str, "stop at the first epoch boundary past this much training "
                                                      "time, keeping the best validated weights: 600, 90s, 20m, 1.5h"),
    (("--batch-size", "--batch_size"), "training.batch_size", int, "positives (or queries) per batch"),
    (("--seed",), "training.seed", int, "random seed (initialisation, order, sampling)"),
    (("--device",), "training.device", str, "cpu (default), cuda, cuda:N or auto (the first GPU if any)"),
    (("--mixed", "--mix-cpu-gpu", "--mix_cpu_gpu"), "training.mixed", bool,
     "keep the entity table and its optimizer state in CPU memory, compute on --device (slcwa + rowadagrad)"),
    (("--distributed",), "training.distributed", str,
     "with --nproc: replicated (exact, gradients summed every step) or sharded (PyTorch-BigGraph's buckets)"),
    (("--partitions", "--num-partitions", "--num_partitions"), "training.partitions", int,
     "sharded training: entity partitions (default twice the processes)"),
    (("--bucket-passes", "--bucket_passes"), "training.bucket_passes", int,
     "sharded training: passes per epoch over a slice of every bucket"),
    (("--round-checkpoints", "--round_checkpoints"), "training.round_checkpoints", int,
     "sharded training: also checkpoint every N rounds, so a killed run resumes at its last round"),
    (("--shard-negatives", "--shard_negatives"), "training.shard_negatives", str,
     "sharded training: negatives from the whole 'graph' (default) or from the 'bucket' (PyTorch-BigGraph's; "
     "only the bucket's partitions in memory)"),
    (("--bucket-order", "--bucket_order"), "training.bucket_order", str,
     "sharded training: 'random' (default) or 'affinity' (each next bucket shares a partition with the last)"),
    (("--async-update", "--async_update"), "training.async_update", bool,
     "with --mixed: update the CPU rows in a background thread while the next batch computes (not reproducible)"),
    (("--workers", "--num-proc", "--num_proc"), "training.workers", int,
     "HOGWILD processes of one thread each (not reproducible; rowadagrad, adagrad or sgd)"),
    (("--precision",), "training.precision", str,
     "float32 (default) or bfloat16: the training step's matrix products in bfloat16 (faster on CPUs with AVX-512 "
     "BF16 or AMX, and GPUs)"),
    (("--retain-memory", "--retain_memory"), "training.retain_memory", bool,
     "keep freed memory for reuse instead of returning it to the OS (glibc): faster large steps, more memory held"),
    (("--eval-negatives", "--neg-sample-size-eval", "--neg_sample_size_eval"), "evaluation.num_negatives", int,
     "rank against this many sampled entities (filtered, seeded) instead of all"),
    (("--eval-sampler", "--eval_sampler"), "evaluation.negative_sampler", str,
     "with --eval-negatives: 'uniform' (default) or 'degree' (in proportion to training degree + 1)"),
    (("--eval-fraction", "--eval-percent", "--eval_percent"), "evaluation.fraction", float,
     "evaluate this seeded random fraction (0, 1] of the valid/test triples"),
    (("--experiment",), "tracking.experiment", str, "the experiment (MLflow) or project (W&B) --tracker files the "
                                                    "run under"),
]


def overrides_from_flags(args: argparse.Namespace) -> list[str]:
    """``key=value`` overrides for the flags given on the command line, then the ``--set`` ones."""
    found = []
    for _, key, _, _ in FLAGS:
        value = getattr(args, key.replace(".", "_"))
        if value is not None:
            # a folder named 123 stays a str, nan a float
            found.append(f"{key}={yaml_value(value) if isinstance(value, str | float) else value}")
    if args.tracker:  # repeatable: the whole list
        found.append(f"tracking.trackers={yaml_value(args.tracker)}")
    return found + list(args.set or [])


def cmd_train(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = resolve_config(base_config(args), overrides_from_flags(args) + gpu_overrides(args))
    if args.output:
        check_folder(args.output)  # before any work: the run would fail only when it first writes there
    data = None
    if args.max_step is not None:  # DGL-KE counts steps; we train whole epochs, so round up
        data = dataset_from_config(cfg.data)
        rows = len(data.train) * (2 if cfg.model.inverse and cfg.training.approach != "slcwa" else 1)
        epochs = max(1, math.ceil(args.max_step * cfg.training.batch_size / max(rows, 1)))
        cfg = resolve_config(cfg, [f"training.epochs={epochs}"])
    output = Path(args.output) if args.output else next_run_folder(cfg.model.name, cfg.data.dataset)
    if args.nproc is not None or args.nnodes is not None:
        launch(args, cfg, output)
        return
    result = pipeline(cfg, data=data, progress=not args.quiet, output=output, checkpoint_every=args.checkpoint_every)
    if follower():
        leave_quietly()
    report(result)


def base_config(args: argparse.Namespace) -> str | dict[str, Any] | None:
    """The config the flags override: ``--config FILE``, ``--recipe NAME`` (a shipped one), or the defaults."""
    if args.recipe and args.config:
        raise KgemError("--recipe and --config both name the base config: give one (flags override either)")
    return recipe(args.recipe).config() if args.recipe else args.config


def gpu_overrides(args: argparse.Namespace) -> list[str]:
    """DGL-KE's ``--gpu 0 1 ...``: one GPU is ``training.device=cuda:N``; several train one process per GPU
    (``--nproc``), each seeing only its own (``CUDA_VISIBLE_DEVICES``)."""
    if not args.gpu:
        return []
    if len(set(args.gpu)) != len(args.gpu):
        raise KgemError(f"--gpu names a GPU twice: {' '.join(map(str, args.gpu))}")
    if len(args.gpu) == 1:
        return [f"training.device=cuda:{args.gpu[0]}"]
    if args.nproc is not None and args.nproc != len(args.gpu):
        raise KgemError(f"--gpu names {len(args.gpu)} GPUs but --nproc asks for {args.nproc} processes")
    args.nproc = len(args.gpu)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, args.gpu))  # the processes torchrun starts inherit it
    return ["training.device=cuda"]


def launch(args: argparse.Namespace, cfg: PipelineConfig, output: Path) -> None:
    """Start ``--nproc`` processes (on each of ``--nnodes`` machines) with torchrun, each training its part of every
    batch (``kgem.training.distributed``); they read the resolved config from a file, so every flag has applied."""
    if launched():
        raise KgemError("--nproc starts the processes itself: under torchrun, leave --nproc and --nnodes out")
    nodes = args.nnodes or 1
    if nodes > 1 and not args.rdzv_endpoint:
        raise KgemError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT, the same on every machine")
    with tempfile.TemporaryDirectory(prefix="kgem-launch-") as folder:
        config = Path(folder) / "config.yaml"
        save_config(cfg, config)
        rendezvous = ["--standalone"] if nodes == 1 else meeting(args, nodes)
        code = torchrun(rendezvous, args.nproc or 1, ["train", "--config", str(config), "--output", str(output),
                                                      "--checkpoint-every", str(args.checkpoint_every),
                                                      *(["-q"] if args.quiet else [])])
    if code:
        raise KgemError(f"the training processes failed (exit code {code}; each rank's error is printed above); "
                        f"kgem resume {output} continues from the last checkpoint")


def cmd_resume(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.nproc is not None:
        if launched():
            raise KgemError("--nproc starts the processes itself: under torchrun, leave it out")
        device = ["--device", args.device] if args.device else []
        code = torchrun(["--standalone"], args.nproc, ["resume", args.run, *device, *(["-q"] if args.quiet else [])])
        if code:
            raise KgemError(f"the training processes failed (exit code {code}; each rank's error is printed above)")
        return
    result = resume(args.run, progress=not args.quiet, device=args.device)
    if follower():
        leave_quietly()
    report(result)


def meeting(args: argparse.Namespace, nodes: int) -> list[str]:
    """torchrun's rendezvous flags for ``nodes`` machines: static with ``--node-rank`` (machine 0 hosts the meeting
    at the endpoint), else torchrun's c10d rendezvous, which numbers the machines itself."""
    if args.node_rank is None:
        return ["--nnodes", str(nodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint,
                "--rdzv-id", args.rdzv_id]
    if args.node_rank >= nodes:
        raise KgemError(f"--node-rank must lie in [0, {nodes}) for --nnodes {nodes}, got {args.node_rank}")
    host, _, port = args.rdzv_endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise KgemError(f"--rdzv-endpoint must be HOST:PORT, got {args.rdzv_endpoint!r}")
    return ["--nnodes", str(nodes), "--node-rank", str(args.node_rank), "--master-addr", host, "--master-port", port]


def torchrun(rendezvous: list[str], nproc: int, kgem_args: list[str]) -> int:
    """Run ``kgem KGEM_ARGS`` in ``nproc`` processes under torchrun; its exit code. A process that dies in C++ (an
    abort in a collective library) prints its Python stack too (faulthandler)."""
    command = [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--nproc-per-node", str(nproc),
               "-m", "kgem", *kgem_args]
    return subprocess.run(command, check=False, env={**os.environ, "PYTHONFAULTHANDLER": "1"}).returncode


def leave_quietly() -> None:
    """End a rank other than 0 once its work is done: rank 0 reports, and skipping the interpreter's teardown
    avoids an abort that collective libraries' threads can cause in it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def report(result: Any) -> None:
    epochs = len(result.history.losses)
    best = f", best validation MRR at epoch {result.history.best_epoch}" if result.history.best_epoch else ""
    budget = " (the time budget ran out)" if result.history.out_of_time else ""
    print(f"trained {result.config.model.name} for {epochs} epochs in {result.timings['train']:.1f} s{budget}{best}")
    if result.evaluation is not None:
        print(result.evaluation)
    if result.likelihood is not None:
        print(f"test log-likelihood {result.likelihood['log_likelihood']:.4f} nats per triple (uniform "
              f"{result.likelihood['uniform_log_likelihood']:.4f})")
    print(f"run folder {result.output}: model/ (load with kgem.load), config.yaml, metrics.csv, losses.csv, "
          f"environment.json")


def next_run_folder(model: str, dataset: str) -> Path:
    """``runs/{model}_{dataset}_{n}`` with the first unused n, as DGL-KE names its save paths."""
    stem = f"{model}_{Path(dataset).name or 'data'}"
    n = 0
    while (Path("runs") / f"{stem}_{n}").exists():
        n += 1
    return Path("runs") / f"{stem}_{n}"


TRAIN_HELP = """\
Train a model and save the run: config.yaml, checkpoints/, model/, metrics.csv, losses.csv, environment.json.

The defaults are a strong ComplEx recipe (1vsAll, reciprocal relations, N3, Adagrad, early stopping on validation
MRR). Flags override the config file, and --set overrides any config key ('kgem config' lists them all).

examples:
  kgem train --dataset umls
  kgem train --recipe fb15k237-complex-cpu20m    # a shipped recipe: the best FB15k-237 model in 20 CPU minutes
  kgem train --dataset fb15k237 --model transe --approach slcwa --loss margin_ranking --margin 1 \\
             --num-negatives 64 --optimizer adam --lr 0.001 --dim 200 --batch-size 1024 --epochs 100
  kgem train --config my.yaml --set model.args.p=1 --output runs/transe-l1
  kgem train --dataset umls --tracker tensorboard --tracker mlflow --experiment umls    # also report to trackers
  kgem train --data_path my_graph/ --format raw_udd_htr --model_name distmult --hidden_dim 400 --max_step 20000
  kgem train --dataset fb15k237 --model complex2 --objective pll --dim 200 --optimizer adam --lr 0.001 \\
             --batch-size 500    # a generative circuit: exact probabilities, then kgem sample RUN/model
Stop with Ctrl-C (a checkpoint is saved after the current batch) and continue with 'kgem resume RUN'."""


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model (flags or a config file) and save the run",
                       description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML or JSON config file (see 'kgem config')")
    p.add_argument("--recipe", help="a shipped config to start from, e.g. fb15k237-complex-rp ('kgem recipes' lists "
                                    "them with published and measured results)")
    for flags, key, kind, text in FLAGS:
        if kind is bool:  # a switch: present sets the key to true, absent leaves the config's value
            p.add_argument(*flags, dest=key.replace(".", "_"), action="store_const", const=True, help=text)
        else:
            p.add_argument(*flags, dest=key.replace(".", "_"), type=kind, help=text, metavar=kind.__name__.upper())
    p.add_argument("--has-edge-importance", "--has_edge_importance", dest="data_edge_weights", action="store_const",
                   const=3, help="DGL-KE's spelling of --edge-weights 3: a 4th column of edge importances")
    p.add_argument("--focuse", dest="training_edge_weights", action="store_const", const="focuse",
                   help="train with FocusE (--edge-weights-mode focuse; its settings: --set "
                        "training.focuse_args.stop_epoch=50)")
    p.add_argument("--max-step", "--max_step", type=positive,
                   help="training steps (DGL-KE); rounded up to whole epochs")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config override, e.g. model.inverse=false")
    p.add_argument("--tracker", action="append", metavar="NAME",
                   help="also report the run to tensorboard, mlflow or wandb (repeatable; settings: --set "
                        "'tracking.args={mlflow: {tracking_uri: sqlite:///mlflow.db}}')")
    p.add_argument("--output", "--save-path", "--save_path",
                   help="run folder (default: runs/{model}_{dataset}_{n}, the first unused n)")
    p.add_argument("--checkpoint-every", type=positive, default=1, metavar="N", help="checkpoint every N epochs")
    p.add_argument("--threads", "--num-thread", "--num_thread", type=positive, help="CPU threads for PyTorch")
    p.add_argument("--nproc", type=positive, metavar="N",
                   help="train with N processes on this machine (torchrun; each trains its part of every batch, the "
                        "gradients are summed: the same result as one process)")
    p.add_argument("--gpu", type=non_negative, nargs="+", metavar="N",
                   help="GPU ids (DGL-KE): one trains on cuda:N; several train one process per GPU (--nproc)")
    p.add_argument("--nnodes", type=positive, metavar="M", help="machines taking part (each runs the same command)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the machines meet (with --nnodes > 1)")
    p.add_argument("--rdzv-id", default="kgem", help="the run's name at the rendezvous (default kgem)")
    p.add_argument("--node-rank", type=int, metavar="K",
                   help="this machine's number, 0 to M-1 (machine 0 hosts the rendezvous); without it torchrun "
                        "numbers the machines")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("resume", help="continue an interrupted 'kgem train' run from its newest checkpoint",
                       description="Continue the run in RUN (a folder written by 'kgem train') from its newest "
                                   "checkpoint; the result is exactly that of an uninterrupted run.")
    p.add_argument("run", help="the run folder")
    p.add_argument("--device", help="continue on this device instead of the run's (cpu, cuda, cuda:N, auto)")
    p.add_argument("--nproc", type=positive, metavar="N", help="continue with N processes (torchrun)")
    p.add_argument("--threads", type=positive, help="CPU threads for PyTorch")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_resume)


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value

