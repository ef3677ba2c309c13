"""Virtual environments for the peers, each with the same CPU build of torch as kgem's ``.venv``.

    python bench/compare/envs.py [--force | --status] [pykeen] [pbg]

Without peer names: every peer. ``--status`` says which are ready and installs nothing.

Idempotent: a marker file in each environment records the installed specs; an environment whose marker matches is
left alone. torch is installed first and then pinned by a constraints file, so a peer's requirements can never
replace it with another build (a bare ``pip install torch`` of a newer version would pull the CUDA packages).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
ENVS = BENCH / ".envs"
TORCH_SPEC = "torch==2.13.0"
# torchbiggraph 1.0.0 imports pkg_resources, which setuptools 81 removed (torch pulls a newer setuptools).
PEERS = {"pykeen": ["pykeen==1.11.1"], "pbg": ["torchbiggraph==1.0.0", "setuptools<81"]}
MARKER = ".kgem-bench-ready.json"


def python_of(peer: str) -> Path:
    return ENVS / peer / "bin" / "python"


def status(peer: str) -> str:
    """``ready`` (the marker records the current specs), ``outdated`` (other specs, or a broken marker) or
    ``missing``."""
    marker = ENVS / peer / MARKER
    if not marker.is_file() or not python_of(peer).exists():
        return "missing"
    try:
        recorded = json.loads(marker.read_text())
    except ValueError:
        return "outdated"
    return "ready" if isinstance(recorded, dict) and recorded.get("specs") == [TORCH_SPEC, *PEERS[peer]] else "outdated"


def is_ready(peer: str) -> bool:
    return status(peer) == "ready"


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *args], check=True)


def create(peer: str, force: bool = False) -> Path:
    """Create (or reuse) the environment of ``peer``; returns its python."""
    if is_ready(peer) and not force:
        return python_of(peer)
    return build(peer, force=force)


def build(peer: str, force: bool = False) -> Path:
    """Create the environment of ``peer`` (``force``: from scratch) and install torch, then the peer."""
    folder = ENVS / peer
    (folder / MARKER).unlink(missing_ok=True)
    venv.EnvBuilder(with_pip=True, clear=force).create(folder)
    python = python_of(peer)
    pip(python, TORCH_SPEC)
    probe = "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda]))"
    version, cuda = json.loads(subprocess.run([str(python), "-c", probe], check=True, capture_output=True,
                                              text=True).stdout)
    if cuda is not None:
        raise SystemExit(f"{peer}: got a CUDA build of torch ({version}); install the CPU wheel first")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write(f"torch=={version}\n")
    pip(python, "-c", constraints.name, *PEERS[peer])
    Path(constraints.name).unlink()
    frozen = subprocess.run([str(python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
    (folder / MARKER).write_text(json.dumps({"specs": [TORCH_SPEC, *PEERS[peer]], "torch": version,
                                             "freeze": frozen.splitlines()}, indent=1))
    return python


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # no ``choices``: argparse checks a ``nargs="*"`` default against them as one value, and rejects the bare call
    parser.add_argument("peers", nargs="*", metavar="PEER", help=f"{' and/or '.join(PEERS)} (default: all)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--force", action="store_true", help="rebuild even if the marker says ready")
    action.add_argument("--status", action="store_true", help="say which are ready; install nothing")
    args = parser.parse_args(argv)
    unknown = [peer for peer in args.peers if peer not in PEERS]
    if unknown:
        parser.error(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)}")
    for peer in args.peers or list(PEERS):
        state = status(peer)
        if not args.status:
            create(peer, args.force)
            state = "ready" if state == "ready" and not args.force else "created"
        print(f"{peer}: {state} {python_of(peer)}", file=sys.stderr)


if __name__ == "__main__":
    main()
