from __future__ import annotations

import subprocess
import sys

from kgem.cli import main


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
