"""CPU memory allocator settings that make training steps faster (a named
speed path; imports nothing of swinlab).

A training step on the CPU allocates and frees tensors of several MiB to
hundreds of MiB each (activations, gradients). glibc's ``malloc`` serves
blocks above its *mmap threshold* with fresh ``mmap`` pages and returns them
to the kernel on ``free``; every fresh page then costs a page fault (and
zeroing) the first time it is written. On small models, where many
elementwise passes run over such blocks, this is a large share of the step
(``benchmarks/RESULTS_train.md``). :func:`tune_cpu_allocator` raises the
mmap threshold and the trim threshold (``mallopt``), so that freed blocks
stay in the heap and are reused without faults. The process keeps its peak
memory instead of returning it -- the right trade for a training run.

It changes nothing on other C libraries or platforms (it reports False).
Set ``SWINLAB_TUNE_MALLOC=0`` to switch it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_cpu_allocator", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: allocations below this many bytes come from the heap, not fresh mmap pages.
MMAP_THRESHOLD = 1 << 30
#: free memory at the top of the heap is returned to the kernel only above this.
TRIM_THRESHOLD = 2**31 - 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
_done: bool | None = None


def tune_cpu_allocator() -> bool:
    """Apply the glibc ``mallopt`` settings of the module docstring (once per process).

    Returns:
        True when they are in effect (Linux with glibc, not switched off by
        ``SWINLAB_TUNE_MALLOC=0``), else False.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("SWINLAB_TUNE_MALLOC", "1") == "0":
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _done
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
