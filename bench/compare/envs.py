"""Virtual environments for the peers, each with the same CPU build of torch as kgem's ``.venv``.

    python bench/compare/envs.py [--force] [pykeen] [pbg]

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
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
ENVS = BENCH / ".envs"
TORCH_SPEC = "torch==2.13.0"
# torchbiggraph 1.0.0 imports pkg_resources, which setuptools 81 removed (torch pulls a newer setuptools).
PEERS = {"pykeen": ["pykeen==1.11.1"], "pbg": ["torchbiggraph==1.0.0", "setuptools<81"]}
MARKER = ".kgem-bench-ready.json"


def python_of(peer: str) -> Path:
    return ENVS / peer / "bin" / "python"


def is_ready(peer: str) -> bool:
    marker = ENVS / peer / MARKER
    if not marker.is_file() or not python_of(peer).exists():
        return False
    recorded = json.loads(marker.read_text())
    return bool(recorded.get("specs") == [TORCH_SPEC, *PEERS[peer]])


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *args], check=True)


def create(peer: str, force: bool = False) -> Path:
    """Create (or reuse) the environment of ``peer``; returns its python."""
    if is_ready(peer) and not force:
        return python_of(peer)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--force", action="store_true", help="rebuild even if the marker says ready")
    args = parser.parse_args()
    for peer in args.peers:
        print(f"{peer}: {create(peer, args.force)}", file=sys.stderr)


if __name__ == "__main__":
    main()
