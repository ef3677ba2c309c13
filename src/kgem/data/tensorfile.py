"""safetensors files written and read in bounded memory.

safetensors' own ``save_file`` turns every tensor into one ``bytes`` object before writing, and ``load_file`` reads
every tensor into memory: a table larger than RAM (``model.storage: mapped``) can be neither saved nor loaded that
way. ``save_tensors`` writes the same format (an 8-byte little-endian header length, a JSON header padded with
spaces to a multiple of 8 bytes, then each tensor's bytes at its ``data_offsets``) a block at a time.
``map_tensors`` opens a file's tensors as copy-on-write memory maps, so a saved model can serve predictions while
the OS pages its rows in. Both only read or write raw bytes: nothing in the file is ever run.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from kgem.ops.pages import register, release_rows

BLOCK_BYTES = 64 << 20
DTYPES: dict[torch.dtype, tuple[str, np.dtype]] = {
    torch.float64: ("F64", np.dtype("<f8")), torch.float32: ("F32", np.dtype("<f4")),
    torch.float16: ("F16", np.dtype("<f2")), torch.int64: ("I64", np.dtype("<i8")),
    torch.int32: ("I32", np.dtype("<i4")), torch.int16: ("I16", np.dtype("<i2")), torch.int8: ("I8", np.dtype("i1")),
    torch.uint8: ("U8", np.dtype("u1")), torch.bool: ("BOOL", np.dtype("?")),
}
BY_NAME = {name: (dtype, np_dtype) for dtype, (name, np_dtype) in DTYPES.items()}


def save_tensors(tensors: dict[str, torch.Tensor], filename: str | os.PathLike[str],
                 metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (CPU, contiguous) as a safetensors file, a block of at most 64 MiB at a time (a
    memory-mapped tensor's pages handed back after each)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    order = sorted(tensors)
    for name in order:
        tensor = tensors[name]
        if tensor.dtype not in DTYPES:
            raise ValueError(f"{name}: dtype {tensor.dtype} has no safetensors name here")
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": DTYPES[tensor.dtype][0], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(filename, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            flat = tensors[name].detach().reshape(-1)
            step = max(1, BLOCK_BYTES // max(flat.element_size(), 1))
            for start in range(0, len(flat), step):
                f.write(_raw(flat[start : start + step]))
                release_rows(flat, start, start + step)  # a mapped table's pages back (kgem.ops.pages)


def _raw(block: torch.Tensor) -> bytes:
    if block.dtype == torch.bool:
        return block.numpy().astype(np.uint8).tobytes()
    return block.contiguous().numpy().tobytes()


def map_tensors(filename: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as copy-on-write memory maps (changes stay in this process). A header
    that does not describe the file is a ValueError naming the problem."""
    path = Path(filename)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise ValueError(f"header of {length} bytes in a file of {size}")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    start, tensors = 8 + length, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _mapped(path, name, info, start, size)
    return tensors


def _mapped(path: Path, name: str, info: object, start: int, size: int) -> torch.Tensor:
    if not isinstance(info, dict) or info.get("dtype") not in BY_NAME:
        raise ValueError(f"{name}: no dtype this reader knows")
    dtype, np_dtype = BY_NAME[info["dtype"]]
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
            and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise ValueError(f"{name}: shape or data_offsets malformed")
    count = int(np.prod(shape)) if shape else 1
    begin, end = offsets
    if end - begin != count * np_dtype.itemsize or begin < 0 or start + end > size:
        raise ValueError(f"{name}: data_offsets {offsets} do not hold {count} {info['dtype']} values in the file")
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    array = np.memmap(path, dtype=np_dtype, mode="c", offset=start + begin, shape=(count,))
    tensor = torch.from_numpy(array).view(dtype).reshape(shape)
    register(tensor, array, private=True)  # a scan hands its pages back while it is unmodified (kgem.ops.pages)
    return tensor
