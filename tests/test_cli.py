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
from kgem.models import MODELS


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
    result = kgem.pipeline(overrides=["data.dataset=nations", "model.dim=16", "training.epochs=6",
                                      "training.batch_size=128", "training.frequency=3"], progress=False)
    metrics = pd.read_csv(run_dir / "metrics.csv", index_col=0)
    assert metrics.loc["both", "mrr"] == pytest.approx(result.metrics().loc["both", "mrr"], abs=1e-12)


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
    assert main(["evaluate", model, "-q", "--per-category"]) == 0
    out = capsys.readouterr().out
    saved = pd.read_csv(run_dir / "metrics.csv", index_col=0).loc["both", "mrr"]
    assert f"{saved:.4f}" in out and "N-N" in out  # same protocol and numbers as at training time
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
])
def test_user_errors_are_one_line_exit_2(run_dir, tmp_path, capsys, argv, message) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [\n")
    subs = {"{bad}": str(bad), "{model}": str(run_dir / "model"), "{missing}": str(tmp_path / "none")}
    assert main([subs.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_sigterm_then_resume_gives_the_uninterrupted_metrics(tmp_path) -> None:
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
    for name in ("metrics.csv", "losses.csv"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "ref" / name).read_text()


@pytest.mark.parametrize("name", MODELS)
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
