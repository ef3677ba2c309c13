from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import kgem
from kgem.cli import main
from kgem.config import load_config
from kgem.configs import PipelineConfig
from kgem.models import MODELS
from kgem.models.literal import LITERAL_MODELS


def test_datasets_list(capsys) -> None:
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "fb15k237" in out and "272115" in out and "bundled" in out


def test_datasets_describe(capsys) -> None:
    assert main(["datasets", "describe", "kinships"]) == 0
    out = capsys.readouterr().out
    assert "104 entities, 25 relations" in out and "relation categories" in out


def test_user_error_is_one_line_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "kgem.cli", "datasets", "describe", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "unknown dataset 'nope'" in proc.stderr and "Traceback" not in proc.stderr


QUICK = ["--dataset", "nations", "--dim", "16", "--epochs", "6", "--batch-size", "128", "-q",
         "--set", "training.frequency=3"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *QUICK, "--output", str(out)]) == 0
    return out


def test_train_writes_a_complete_run_folder(run_dir) -> None:
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "checkpoints", "model", "metrics.csv", "losses.csv"}
    metrics = pd.read_csv(run_dir / "metrics.csv", index_col=0)
    assert metrics.loc["both", "mrr"] > 0.3
    assert len(pd.read_csv(run_dir / "losses.csv")) == 6


def test_train_with_hogwild_workers_dgl_ke_spelling(tmp_path) -> None:
    assert main(["train", *QUICK, "--num_proc", "2", "--output", str(tmp_path / "run")]) == 0
    assert "workers: 2" in (tmp_path / "run" / "config.yaml").read_text()
    assert pd.read_csv(tmp_path / "run" / "metrics.csv", index_col=0).loc["both", "mrr"] > 0.3


def test_cli_and_python_api_do_the_same_job(run_dir) -> None:
    """The MRR bit-exact (up to the CSV's round trip): both runs in this process, same seed and thread count, on
    tensors PyTorch allocates (64-byte aligned), so every kernel reduces in the same order."""
    result = kgem.pipeline(overrides=["data.dataset=nations", "model.dim=16", "training.epochs=6",
                                      "training.batch_size=128", "training.frequency=3"], progress=False)
    metrics = pd.read_csv(run_dir / "metrics.csv", index_col=0)
    assert metrics.loc["both", "mrr"] == pytest.approx(result.metrics().loc["both", "mrr"], abs=1e-12)


def assert_same_metrics(got: Path, expected: Path) -> None:
    """Metrics of two models whose scores may differ in the last bits (one read from a file at another memory
    alignment, or trained partly in another process), so a near-tie may rank the other way: each such flip moves a
    metric by at most 1 / count; two are allowed."""
    a, b = pd.read_csv(got, index_col=0), pd.read_csv(expected, index_col=0)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=2 / b["count"].min())


def test_predict_similar_evaluate_export(run_dir, capsys, tmp_path) -> None:
    model = str(run_dir / "model")
    assert main(["predict", model, "--head", "usa", "--relation", "intergovorgs", "-k", "3", "--remove-known"]) == 0
    out = capsys.readouterr().out
    assert out.count("usa") == 3 and "known" in out and "True" not in out
    assert main(["predict", model, "--relation", "intergovorgs", "--tail", "uk", "-k", "2"]) == 0
    assert "query_tail" in capsys.readouterr().out
    assert main(["predict", model, "--head", "usa", "--relation", "intergovorgs", "--tail", "uk", "--mark-known"]) == 0
    assert "True" in capsys.readouterr().out  # (usa, intergovorgs, uk) is a training fact
    csv = str(tmp_path / "p.csv")
    assert main(["predict", model, "--head", "usa", "--tail", "uk", "-k", "2", "--output", csv]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 2
    assert main(["similar", model, "usa", "china", "-k", "2"]) == 0
    assert capsys.readouterr().out.count("china") >= 2
    assert main(["evaluate", model, "-q", "--per-category", "--output", str(tmp_path / "metrics.csv")]) == 0
    assert "N-N" in capsys.readouterr().out
    assert_same_metrics(tmp_path / "metrics.csv", run_dir / "metrics.csv")  # same protocol and numbers as in training
    assert main(["export", model, str(tmp_path / "emb")]) == 0
    assert (tmp_path / "emb" / "entity_embeddings.npy").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--dataset", "nations", "--model", "transee"], "unknown model 'transee'"),
    (["train", "--config", "{bad}"], "cannot read config"),
    (["train", "--set", "training.epochs=many"], "training.epochs"),
    (["predict", "{model}", "--head", "usaa", "--relation", "intergovorgs"], "did you mean 'usa'"),
    (["predict", "{model}", "--head", "usa"], "give two of"),
    (["evaluate", "{model}", "--filter", "train,nope"], "no split 'nope'"),
    (["resume", "{missing}"], "not a run folder"),
    (["train", "--config", "{list}"], "a config must be a mapping, got list"),
    (["train", "--set", "training.loss_args.bogus=1"], "training.loss_args.bogus: cross_entropy takes no argument "
                                                       "'bogus'; known: label_smoothing"),
    (["train", "--model", "transe", "--set", "model.args.p=banana"], "model.args.p: expected float, got 'banana'"),
    (["train", "--set", "model.args.p=1"], "model.args.p: complex takes no argument 'p'; known: normalize"),
    (["train", "--model", "transe", "--set", "model.args.normalize=bogus"], "model.args.normalize: 'bogus' is not"),
    (["train", "--set", "training.regularizer_args.weight=abc"], "training.regularizer_args.weight: expected float"),
    (["train", "--set", "training.regularizer_args.bogus=1"], "training.regularizer_args.bogus: n3 takes no"),
    (["train", "--set", "model.init=normal", "--set", "model.init_args.bogus=1"], "model.init_args.bogus: normal"),
    (["train", "--set", "training.optimizer_args.bogus=1"], "training.optimizer_args.bogus: adagrad takes no"),
    (["train", "--model", "transe", "--set", "model.args.p=inf"], "model.args.p: expected float, got 'inf' (YAML "
                                                                  "writes infinity and not-a-number as .inf and .nan)"),
    (["train", "--model", "transe", "--set", 'model.args.p="2"'], "model.args.p: expected float, got '2'"),
    (["train", "--optimizer", "sgd", "--set", "training.optimizer_args.momentum=.nan"],
     "training.optimizer_args.momentum must be finite, got nan"),
    (["train", "--lr", "1e39"], "training.lr must be positive and finite, got 1e+39"),
    (["train", "--lr", "nan"], "training.lr must be positive and finite, got nan"),
    (["train", "--lr", "-0.1"], "training.lr must be positive and finite, got -0.1"),
    (["train", "--set", "training.min_delta=-1"], "training.min_delta must be zero or positive, got -1"),
    (["train", "--set", "training.shared_negatives=true"], "training.shared_negatives is an option of negative "
                                                            "sampling (approach slcwa); approach 1vsall"),
    (["train", "--set", "model.init_args.std=0.1"], "model.init_args {'std': 0.1} needs model.init"),
    (["train", "--set", "training.loss_args.label_smoothing=2"], "label_smoothing must lie in [0, 1), got 2"),
    (["train", "--model", "tucker", "--set", "model.args.relation_dim=0"], "relation_dim must be a positive integer"),
    (["train", "--set", "evaluation.memory_budget_mb=0"], "evaluation.memory_budget_mb must be positive, got 0"),
    (["train", "--set", "model.init=normal", "--set", "model.init_args.std=-1"], "model.init_args: normal: normal "
                                                                                 "expects std >= 0.0"),
    (["train", "--model", "conve", "--dim", "8", "--set", "model.args.height=3"],
     "model.args: conve: height 3 does not divide dim 8"),
    (["predict", "{model}", "--relation", "intergovorgs", "--file", "{onecol}"], "--file or --head/--relation/--tail"),
    (["train", "--output", "{file}"], "is not a folder"),
    (["train", "--output", "{file}/run"], "is not a folder"),
    (["predict", "{model}", "--file", "{missing}"], "none: no such file"),
    (["predict", "{model}", "--file", "{empty}"], "empty.csv: empty"),
    (["predict", "{model}", "--file", "{headonly}"], "headonly.csv: a header but no queries"),
    (["predict", "{model}", "--file", "{dir}"], "is a folder, not a file"),
    (["predict", "{model}", "--file", "{binary}"], "binary.csv: cannot read"),
    (["predict", "{model}", "--file", "{onecol}"], "two or three of head, relation, tail; got ['usa']"),
    (["predict", "{model}", "--head", "usa", "--relation", "intergovorgs", "--output", "{dir}"], "is a folder"),
    (["evaluate", "{model}", "-q", "--output", "{dir}"], "is a folder"),
    (["similar", "{model}", "usa", "--output", "{file}/x.csv"], "File exists"),
    (["evaluate", "{model}", "-q", "--dataset", "kinships"], "none of the 1074 test triples"),
    (["evaluate", "{model}", "-q", "--memory-budget-mb", "0"], "memory_budget_mb must be positive"),
    (["evaluate", "{missing}"], "does not exist"),
    (["similar", "{model}", "usaa"], "unknown entity 'usaa'"),
    (["similar", "{missing}", "usa"], "does not exist"),
    (["export", "{model}", "{file}"], "is not a folder"),
    (["export", "{missing}", "{dir}"], "does not exist"),
])
def test_user_errors_are_one_line_exit_2(run_dir, tmp_path, capsys, argv, message) -> None:
    bad, listed, file, empty, binary = (tmp_path / name for name in ("bad.yaml", "list.yaml", "file.txt", "empty.csv",
                                                                    "binary.csv"))
    bad.write_text("model: [\n")
    listed.write_text("[]\n")
    file.write_text("not a folder\n")
    empty.write_text("")
    binary.write_bytes(b"\xff\xfe\x00head,\x81relation\n")
    (tmp_path / "onecol.csv").write_text("usa\nuk\n")
    (tmp_path / "headonly.csv").write_text("head,relation\n")
    (tmp_path / "dir").mkdir()
    subs = {"{bad}": str(bad), "{model}": str(run_dir / "model"), "{missing}": str(tmp_path / "none"),
            "{list}": str(listed), "{file}": str(file), "{empty}": str(empty), "{dir}": str(tmp_path / "dir"),
            "{binary}": str(binary), "{onecol}": str(tmp_path / "onecol.csv"),
            "{headonly}": str(tmp_path / "headonly.csv")}
    assert main([subs.get(a, a).replace("{file}", str(file)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kgem: error: ") and "Traceback" not in err
    assert message in err


def test_sigterm_then_resume_gives_the_uninterrupted_metrics(tmp_path) -> None:
    """Losses and metrics close, not bit-exact: the epochs before the stop ran in another process."""
    args = ["--dataset", "nations", "--dim", "16", "--epochs", "12", "--batch-size", "64", "-q",
            "--set", "training.early_stopping=false", "--threads", "1"]
    assert main(["train", *args, "--output", str(tmp_path / "ref")]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "kgem.cli", "train", *args, "--output", str(tmp_path / "cut")],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "checkpoints" / "epoch-000002").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be stopped"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "kgem resume" in err
    assert not (tmp_path / "cut" / "model").exists()
    assert main(["resume", str(tmp_path / "cut"), "-q", "--threads", "1"]) == 0
    losses = [pd.read_csv(tmp_path / run / "losses.csv", index_col=0) for run in ("cut", "ref")]
    assert all(frame["seconds"].is_monotonic_increasing for frame in losses)  # the resumed run counts on
    pd.testing.assert_frame_equal(*(frame.drop(columns="seconds") for frame in losses), check_exact=False, rtol=1e-5,
                                  atol=0)
    assert_same_metrics(tmp_path / "cut" / "metrics.csv", tmp_path / "ref" / "metrics.csv")


@pytest.mark.parametrize("name", [name for name in MODELS if name not in LITERAL_MODELS])  # literal: test_literals.py
def test_train_works_for_every_model(name, tmp_path, capsys) -> None:
    argv = ["train", "--dataset", "nations", "--model", name, "--dim", "8", "--epochs", "1", "-q",
            "--set", "training.early_stopping=false", "--output", str(tmp_path / name)]
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / name / "model" / "weights.safetensors").is_file()
    assert name in capsys.readouterr().out


def test_models_lists_every_model_with_its_paper(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in MODELS) and "Bordes et al. 2013" in out


def test_config_save_edit_run(tmp_path, capsys) -> None:
    """The README's 'kgem config > my.yaml', edit it, 'kgem train --config my.yaml'."""
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "my.yaml"
    saved.write_text(printed)
    assert load_config(PipelineConfig, saved) == PipelineConfig()
    saved.write_text(printed.replace("  dim: 100  #", "  dim: 8  #"))  # the edit
    argv = ["train", "--config", str(saved), "--set", "training.epochs=1", "--set", "training.early_stopping=false",
            "-q", "--output", str(tmp_path / "run")]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    ran = load_config(PipelineConfig, tmp_path / "run" / "config.yaml")
    assert ran.model.dim == 8 and ran.training.epochs == 1 and ran.training.regularizer_args == {"weight": 0.01}
    assert main(["config", str(tmp_path / "run" / "config.yaml")]) == 0  # a resolved config prints the same way
    saved.write_text(capsys.readouterr().out)
    assert load_config(PipelineConfig, saved) == ran


def test_max_step_must_be_positive(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--max-step", "0"])
    assert stop.value.code == 2 and "--max-step" in capsys.readouterr().err


def test_evaluate_reads_a_dataset_folder_named_like_a_number(tmp_path, monkeypatch, capsys) -> None:
    """--dataset/--data-path are strings: a folder named 2024 is not the integer 2024."""
    import shutil

    shutil.copytree(Path(__file__).parent / "data" / "toy", tmp_path / "2024")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "2024", "--dim", "4", "--epochs", "1", "-q", "--output", "run"]) == 0
    assert main(["evaluate", "run/model", "--dataset", "2024", "-q"]) == 0
    assert main(["evaluate", "run/model", "--data-path", "2024", "-q"]) == 0
