"""Keep freed CPU memory in the process, so that inference stops paying for fresh pages.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves blocks above a
threshold with ``mmap`` and hands freed memory at the top of its heap back to the kernel once
more than a threshold sits there (both thresholds adapt, starting at 128 KiB and 256 KiB). An
inference pass frees every feature map right after its consumer has read it, so the next pass
(the next clip) gets its feature maps in pages the kernel must map and zero again: one page
fault per 4 KiB written. Measured on the 2-core benchmark VM (TDN-ResNet50 and TSN-ResNet50,
one clip of 8 x 224x224, packed for oneDNN): 6,000-25,000 page faults per forward, and 17-19%
of the forward's time; with the thresholds fixed as below, none after the first pass.

:func:`keep_freed_cpu_memory` fixes them: blocks up to 32 MiB (glibc's largest threshold; a
(8, 256, 56, 56) float32 map is 25.7 MB) come from the heap, and freed heap memory stays in the
process for the next pass. The cost is resident memory: the process keeps what it used at its
peak instead of returning it between passes. Blocks above 32 MiB (batches of several clips)
are still mapped per allocation; a caching allocator preloaded for the whole process (jemalloc,
tcmalloc, mimalloc via ``LD_PRELOAD``) keeps those too, and is then left alone by this module.

It changes the whole process's allocator, so the library never calls it by itself: the
``tdn predict`` and ``tdn evaluate`` commands and ``benchmarks/bench_tdm.py`` do, on a CPU,
unless told not to (``--no-keep-memory``, ``--malloc default``); call it at the start of your
own inference service.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["keep_freed_cpu_memory", "preloaded_allocator"]

log = logging.getLogger("tdn")

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit systems.
MAX_HEAP_BLOCK_BYTES = 32 * 1024 * 1024
# The trim threshold is an int: the largest one keeps up to 2 GiB of free heap.
_KEEP_FREE_BYTES = 2**31 - 1

_PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")
_applied: bool | None = None


def preloaded_allocator() -> str | None:
    """The caching allocator preloaded into the process (``LD_PRELOAD``), if any."""
    preload = os.environ.get("LD_PRELOAD", "")
    return next((name for name in _PRELOADED if name in preload), None)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):     # not glibc (musl has no mallopt thresholds)
        return None
    return libc


def keep_freed_cpu_memory() -> bool:
    """Make glibc keep freed memory for reuse (module docstring); True when it now does.

    Idempotent. Does nothing, and says why on the ``"tdn"`` logger, where another allocator
    is preloaded (it caches already) or the C library is not glibc.
    """
    global _applied
    if _applied is not None:
        return _applied
    other = preloaded_allocator()
    libc = None if other else _glibc()
    if other:
        log.info("keep_freed_cpu_memory: %s is preloaded and caches freed memory itself", other)
        _applied = False
    elif libc is None:
        log.info("keep_freed_cpu_memory: not glibc; the C library's allocator is left as it is")
        _applied = False
    else:
        _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MAX_HEAP_BLOCK_BYTES)
                        and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_BYTES))
        if not _applied:
            log.warning("keep_freed_cpu_memory: glibc refused the malloc thresholds")
    return _applied
