"""The README runs as written: every ``python`` block (in order, one namespace) and every ``kgem`` line of the
``bash`` blocks, in a scratch folder. Only ``make`` lines (set-up itself) are not run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import torch

from kgem.cli import main

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def test_readme_has_python_and_cli_quick_start() -> None:
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 4 and kinds.count("bash") >= 3
    assert all(kind in ("python", "bash") for kind in kinds), kinds


def run_kgem(line: str, where: str) -> None:
    argv = shlex.split(line, comments=True)
    if not argv or argv[0] == "make":
        return
    assert argv[0] == "kgem", f"{where}: not a kgem command: {line}"
    quiet = ["-q"] if argv[1] in ("train", "resume") else []
    try:
        code = main([*argv[1:], *quiet])
    except SystemExit as e:  # --help
        code = e.code or 0
    assert code == 0, f"{where}: {line} exited with {code}"


def test_readme_code_runs_as_written(tmp_path, monkeypatch) -> None:
    """The Python and the command-line run give byte-identical metrics.csv: both train in this process, same seed and
    thread count, on tensors PyTorch allocates (64-byte aligned), so every kernel reduces in the same order; the
    resume copies the checkpoint's weights into such tensors before evaluating."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    namespace: dict[str, object] = {"__name__": "__readme__"}
    try:
        for number, (kind, code) in enumerate(blocks(), 1):
            if kind == "python":
                exec(compile(code, f"README.md block {number}", "exec"), namespace)
            else:
                for line in code.splitlines():
                    run_kgem(line, f"README.md block {number}")
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "runs" / "umls" / "model" / "weights.safetensors").is_file()
    assert (tmp_path / "runs" / "umls-cli" / "metrics.csv").read_text() == \
        (tmp_path / "runs" / "umls" / "metrics.csv").read_text()
