"""Optional native kernels: fused CPU loops for the hot passes that torch runs as several operators.

Ranking a ``(B, E)`` score block with torch ops takes five passes over it (subtract, NaN check, sign, two sums);
``count_ranks`` reads it once. Finishing a squared distance into a score (``clamp, sqrt, neg``) takes three;
``neg_sqrt_`` takes one. ``bench/compare`` measured FB15k-237's filtered evaluation 1.3x (ComplEx) and 1.4x
(TransE) faster with them.

The C source (``kernels.c``) is built on first use with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) into a per-user cache (``$KGEM_CACHE_DIR``, else ``$XDG_CACHE_HOME/kgem`` or ``~/.cache/kgem``), keyed
by a hash of the source, the compiler and the platform; the build takes about half a second, once. kgem never needs
it: without a compiler, or with ``KGEM_NATIVE=0``, every caller uses torch ops that give the same results (the tests
compare the two). The kernels run on disjoint rows in ``torch.get_num_threads()`` Python threads (ctypes releases
the GIL during the call).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from kgem.atomic import atomic_path

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-fno-math-errno", "-ffp-contract=off", "-shared", "-fPIC")
MIN_PARALLEL_ELEMENTS = 2**16  # below this, one thread: a thread hand-off costs more than the loop

_log = logging.getLogger(__name__)
_library: ctypes.CDLL | None = None
_tried = False
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


def cache_dir() -> Path:
    if "KGEM_CACHE_DIR" in os.environ:
        return Path(os.environ["KGEM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kgem"


def compiler() -> str | None:
    """The C compiler to build with: ``$CC`` if set, else the first of cc, gcc, clang on the PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


def library() -> ctypes.CDLL | None:
    """The loaded kernels, built on the first call; ``None`` when disabled or unavailable (logged once)."""
    global _library, _tried
    if not _tried:
        _tried = True
        if os.environ.get("KGEM_NATIVE", "1") == "0":
            _log.info("kgem native kernels disabled by KGEM_NATIVE=0")
        else:
            try:
                _library = _declare(_load())
            except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                _log.info("kgem native kernels unavailable, using torch ops: %s", error)
    return _library


def reset() -> None:
    """Forget the loaded library, so that the next ``library()`` call looks again (tests, settings changed)."""
    global _library, _tried
    _library, _tried = None, False


def library_path() -> Path | None:
    """Where the built library is cached for this source, compiler and platform; ``None`` without a compiler."""
    cc = compiler()
    if cc is None:
        return None
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), cc.encode(), " ".join(FLAGS).encode(),
                                     platform.machine().encode(), sys.platform.encode()])).hexdigest()[:16]
    return cache_dir() / f"kernels-{key}.so"


def _load() -> ctypes.CDLL:
    path, cc = library_path(), compiler()
    if path is None or cc is None:
        raise RuntimeError("no C compiler found (set CC)")
    if path.exists():
        try:
            return ctypes.CDLL(str(path))
        except OSError:  # a damaged file (e.g. left by a full disk): build it again
            _log.info("rebuilding the damaged %s", path)
    _build(cc, path)
    return ctypes.CDLL(str(path))


def _build(cc: str, path: Path) -> None:
    """Compile ``SOURCE`` to ``path`` atomically (``kgem.atomic``): a loaded library is never written into."""
    with atomic_path(path) as temporary:
        done = subprocess.run([cc, *FLAGS, "-o", str(temporary), str(SOURCE)], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed on {SOURCE}: {done.stderr.strip()[-2000:]}")


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.kgem_count_ranks.argtypes = [_PTR, _I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR]
    lib.kgem_count_ranks.restype = None
    lib.kgem_neg_sqrt.argtypes = [_PTR, _I64]
    lib.kgem_neg_sqrt.restype = None
    return lib


def _parallel(parts: int, work: Callable[[int, int], object], elements: int) -> None:
    """``work(begin, end)`` over ``[0, parts)`` split into one range per thread; the calling thread runs the first."""
    threads = min(torch.get_num_threads(), parts) if elements >= MIN_PARALLEL_ELEMENTS else 1
    bounds = [parts * i // threads for i in range(threads + 1)]
    if threads == 1:
        work(0, parts)
        return
    global _pool, _pool_size, _pool_pid
    if _pool is None or _pool_size < threads - 1 or _pool_pid != os.getpid():  # a forked child has no pool threads
        _pool, _pool_size = ThreadPoolExecutor(threads - 1, thread_name_prefix="kgem-native"), threads - 1
        _pool_pid = os.getpid()
    pending = [_pool.submit(work, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    work(bounds[0], bounds[1])
    for future in pending:
        future.result()


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors: all float32 on the CPU, and the library loaded."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and library() is not None


def count_ranks(x: torch.Tensor, true: torch.Tensor, offsets: torch.Tensor | None = None,
                excluded: torch.Tensor | None = None) -> torch.Tensor:
    """Per row of ``x (B, C)``: ``(better, equal, removed, nan)`` counts against ``true (B,)`` as int64 ``(4, B)``.

    ``excluded`` holds the columns to leave out, row ``i``'s at ``offsets[i]:offsets[i + 1]`` (int64, in bounds,
    distinct per row; checked by the caller). Requires ``usable(x, true)``.
    """
    lib = library()
    assert lib is not None and x.ndim == 2 and true.shape == x.shape[:1]
    if x.stride(1) != 1:
        x = x.contiguous()
    true = true.contiguous()
    counts = torch.empty(4, len(x), dtype=torch.int64)
    offsets_ptr = excluded_ptr = None
    if offsets is not None and excluded is not None:
        offsets, excluded = offsets.contiguous(), excluded.contiguous()
        offsets_ptr, excluded_ptr = offsets.data_ptr(), excluded.data_ptr()
    pointers = [row.data_ptr() for row in counts]

    def work(begin: int, end: int) -> None:
        lib.kgem_count_ranks(x.data_ptr(), x.stride(0), x.shape[1], begin, end, true.data_ptr(), offsets_ptr,
                             excluded_ptr, *pointers)

    _parallel(len(x), work, x.numel())
    return counts


def neg_sqrt_(x: torch.Tensor) -> bool:
    """``x = -sqrt(max(x, 0))`` in place, as ``x.clamp_min_(0).sqrt_().neg_()``; False (x untouched) when the kernels
    cannot take ``x`` (not a contiguous float32 CPU tensor, or no library)."""
    if not (x.is_contiguous() and usable(x)):
        return False
    lib, start, size = library(), x.data_ptr(), x.element_size()
    assert lib is not None
    _parallel(x.numel(), lambda begin, end: lib.kgem_neg_sqrt(start + begin * size, end - begin), x.numel())
    return True
