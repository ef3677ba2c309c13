from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def toy_folder() -> Path:
    """4 training triples over entities a, b, c; the test split has one triple with unseen entity d."""
    return DATA / "toy"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGEM_HOME", str(tmp_path_factory.mktemp("kgem_home")))


@pytest.fixture(autouse=True)
def _restore_threads() -> object:
    """A CLI test that passes --threads sets the process's thread count; the next test gets it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` run where torch sees a GPU (``pytest -m cuda`` runs only them) and skip elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
