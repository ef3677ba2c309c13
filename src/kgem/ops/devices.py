"""Which device computes: one resolution of a device name for training, loading and prediction.

``auto`` is the first GPU when torch sees one, else the CPU. Any other name must be a device that can hold tensors
here: ``cuda`` needs a CUDA build of torch and a GPU, ``cuda:N`` that GPU. Checking by allocating an empty tensor
catches every way a device can be missing (no CUDA build, no driver, an index past the last GPU) in one place.
"""

from __future__ import annotations

import torch

from kgem.errors import ConfigError


def resolve_device(name: str | torch.device, what: str = "device") -> torch.device:
    """``name`` as a torch device that can hold tensors here; a ConfigError naming ``what`` otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        if device.type == "meta":
            raise ValueError("the meta device holds no data")
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError, TypeError, NotImplementedError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{what} {str(name)!r} cannot hold the model: {first}") from e
    return device
