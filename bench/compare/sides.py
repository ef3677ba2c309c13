"""The sides of a comparison: how each one's runner process is started, and a baseline commit exported to run as one.

A side is a runner module (``compare.run_<name>``) started with an interpreter, a working folder and folders put
first on ``PYTHONPATH``. The current kgem and the peers run from this checkout; a baseline (``--baseline REF``) is
a commit of this repository exported by ``git archive`` into ``bench/out/compare/baseline/<sha>/`` and started with
that tree's own ``bench`` and ``src`` first, so its runner and the kgem it imports are the commit's. The repository's
checkout, index and refs are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from compare import envs
from compare.common import BENCH, OUT

REPO = BENCH.parent
BASELINES = OUT / "baseline"
MARKER = ".kgem-baseline-complete.json"  # written last: a tree without it is an interrupted export


@dataclass(frozen=True)
class Side:
    """``name`` labels the side's records; ``kgem_home``: the folder the side's ``import kgem`` must come from (a
    baseline's), None where it is not checked."""

    name: str
    runner: str
    python: str
    cwd: Path
    pythonpath: tuple[str, ...]
    kgem_home: Path | None = None

    @property
    def is_baseline(self) -> bool:
        return self.kgem_home is not None


def current(name: str) -> Side:
    """kgem (this interpreter) or a peer (its own environment), run from this checkout."""
    python = sys.executable if name == "kgem" else str(envs.python_of(name))
    return Side(name, f"compare.run_{name}", python, REPO, (str(BENCH),))


def baseline(tree: Path, sha: str) -> Side:
    """The exported commit's kgem runner, ``kgem@<sha7>``, with this interpreter and the tree's code first."""
    return Side(f"kgem@{sha[:7]}", "compare.run_kgem", sys.executable, tree, (str(tree / "src"), str(tree / "bench")),
                kgem_home=tree / "src" / "kgem")


def is_baseline_name(name: str) -> bool:
    return name.startswith("kgem@")


def resolve(repo: Path, ref: str) -> str:
    """The full sha of the commit ``ref`` names in ``repo``; a ValueError when it names none."""
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                          capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise ValueError(f"--baseline {ref!r} names no commit of {repo}")
    return done.stdout.strip()


def export_tree(repo: Path, ref: str, root: Path = BASELINES) -> Path:
    """``root/<sha>``: the files of commit ``ref`` (``git archive | tar -x``). Idempotent: a tree whose marker file
    exists is returned as it is; otherwise the commit is extracted into a fresh folder beside it, the marker written
    last, and that folder renamed into place (an interrupted export leaves no tree that looks complete)."""
    sha = resolve(repo, ref)
    tree = root / sha
    if (tree / MARKER).is_file():
        return tree
    partial = root / f"{sha}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        files = _extract(repo, sha, partial)
        (partial / MARKER).write_text(json.dumps({"ref": ref, "sha": sha, "files": files}))
        if tree.exists() and not (tree / MARKER).is_file():  # an interrupted export
            shutil.rmtree(tree)
        try:
            partial.rename(tree)
        except OSError:
            if not (tree / MARKER).is_file():  # not a concurrent export that finished first
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return tree


def _extract(repo: Path, sha: str, dest: Path) -> int:
    """``git -C repo archive sha | tar -x -C dest``; the number of files the commit has."""
    archive = subprocess.Popen(["git", "-C", str(repo), "archive", sha], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, text=True)
    assert archive.stdout is not None and archive.stderr is not None
    archive.stdout.close()
    archive_error = archive.stderr.read().decode(errors="replace").strip()
    if archive.wait() != 0 or untar.returncode != 0:
        raise RuntimeError(f"exporting {sha} failed: {archive_error or untar.stderr.strip()}")
    listed = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "-z", sha],
                            capture_output=True, check=True)
    return len([name for name in listed.stdout.split(b"\0") if name])


def kgem_origin(side: Side, env: dict[str, str]) -> str:
    """The ``kgem.__file__`` the side's runner imports, found as its runner is started (same interpreter, folder and
    environment)."""
    done = subprocess.run([side.python, "-c", "import kgem; print(kgem.__file__)"], cwd=side.cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side.name} cannot import kgem: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


def wrong_kgem(side: Side, kgem_path: str | None) -> str | None:
    """Why a side's kgem is not the one it must measure (a baseline that imported the current code); None if fine."""
    if side.kgem_home is None or kgem_path is None:
        return None
    if Path(kgem_path).resolve().is_relative_to(side.kgem_home.resolve()):
        return None
    return f"{side.name} imported kgem from {kgem_path}, not from {side.kgem_home}"
