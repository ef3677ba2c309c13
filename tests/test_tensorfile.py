"""safetensors files in bounded memory: what ``save_tensors`` writes, safetensors reads back, and what safetensors
writes, ``map_tensors`` maps; a saved model loads memory-mapped and predicts as the loaded one."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import kgem
from kgem.data import tensorfile
from kgem.data.tensorfile import map_tensors, save_tensors
from kgem.errors import ModelFileError
from kgem.pipeline import pipeline


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"table": torch.randn(37, 5, generator=g), "bias": torch.randn(7, generator=g).double(),
            "ids": torch.arange(12).view(3, 4), "mask": torch.rand(4, 3, generator=g) > 0.5,
            "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "half": torch.randn(3, generator=g).half()}


def test_what_save_tensors_writes_safetensors_reads(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tensorfile, "BLOCK_BYTES", 16)  # many blocks per tensor
    save_tensors(tensors(), tmp_path / "mine.safetensors", metadata={"format": "pt"})
    back = load_file(str(tmp_path / "mine.safetensors"))
    for name, value in tensors().items():
        assert back[name].dtype == value.dtype and torch.equal(back[name], value), name


def test_what_safetensors_writes_map_tensors_maps_copy_on_write(tmp_path) -> None:
    save_file(tensors(), str(tmp_path / "theirs.safetensors"))
    before = (tmp_path / "theirs.safetensors").read_bytes()
    mapped = map_tensors(tmp_path / "theirs.safetensors")
    for name, value in tensors().items():
        assert mapped[name].dtype == value.dtype and torch.equal(mapped[name], value), name
    mapped["table"].add_(1)  # this process's copy only
    assert (tmp_path / "theirs.safetensors").read_bytes() == before


@pytest.mark.parametrize(("content", "problem"), [(b"\x01", "shorter than"),
                                                  (b"\xff" * 8 + b"{}", "header of"),
                                                  (b"\x04\x00\x00\x00\x00\x00\x00\x00nope", "not JSON"),
                                                  (b"\x1c\x00\x00\x00\x00\x00\x00\x00"
                                                   b'{"a":{"dtype":"F32"}}       ', "malformed")])
def test_a_broken_header_is_named(content: bytes, problem: str, tmp_path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(ValueError, match=problem):
        map_tensors(tmp_path / "bad.safetensors")


def test_a_saved_model_loads_memory_mapped_and_predicts_the_same(tmp_path) -> None:
    result = pipeline({"data": {"dataset": "nations"}, "model": {"name": "complex", "dim": 8},
                       "training": {"epochs": 1, "early_stopping": False}}, progress=False, output=tmp_path / "run")
    folder = tmp_path / "run" / "model"
    plain, mapped = kgem.load(folder), kgem.load(folder, mmap=True)
    for (name, x), (_, y) in zip(plain.model.state_dict().items(), mapped.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    query = [("usa", "treaties")]
    assert mapped.predict_tails(query, k=5).equals(plain.predict_tails(query, k=5))
    columns = ["tail", "score"]
    assert mapped.predict_tails(query, k=5)[columns].equals(result.predict_tails(query, k=5)[columns])
    if torch.cuda.is_available():
        with pytest.raises(ModelFileError, match="CPU memory"):
            kgem.load(folder, device="cuda", mmap=True)
    done = subprocess.run([sys.executable, "-m", "kgem", "predict", str(folder), "--head", "usa", "--relation",
                           "treaties", "-k", "3", "--mmap"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_the_finiteness_check_goes_block_by_block_and_misses_no_block() -> None:
    from kgem.data.files import _all_finite
    values = torch.randn(1001)
    assert _all_finite(values, block=100)
    for where in (0, 99, 100, 1000):
        broken = values.clone()
        broken[where] = float("inf") if where % 2 else float("nan")
        assert not _all_finite(broken, block=100), where
