"""Freed large blocks stay in the process heap, so the next meta-iteration reuses them.

glibc's malloc serves a request above its mmap threshold (32 MiB at most) with a fresh mapping
and unmaps it again on free. The stacked Omniglot meta-iteration allocates activations of up to
120 MB (layer 1 at 15 query images per class: 2,400 images x 64 x 14 x 14 floats), so every
iteration maps those blocks anew and the kernel page-faults and zero-fills them on first touch:
about 73,000 minor faults per compiled iteration and 237,000 per eager one
(``MAMLVIZ_MALLOC=default python -m mamlviz bench --suite omniglot --json``, ``*_faults``; none
with this setting). The per-task loop's tensors (under 4 MB) are recycled by malloc and fault
nothing, so without this only the stacked path pays.

:func:`reuse_freed_memory` calls ``mallopt(M_MMAP_MAX, 0)``, which serves large blocks from
the heap as well, and ``mallopt(M_TRIM_THRESHOLD, 2 GiB)``, which keeps freed memory for reuse
instead of handing it back. The price: the process keeps up to 2 GiB of freed heap until it
exits, as PyTorch's CUDA caching allocator does. ``python -m mamlviz`` calls it because it owns
its process; importing mamlviz changes nothing. ``MAMLVIZ_MALLOC=default`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "MAMLVIZ_MALLOC"
VALUES = ("reuse", "default")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
TRIM_BYTES = 2**31 - 1  # 2 GiB, the largest value mallopt's int takes

state = "default"  # "reuse" once reuse_freed_memory() succeeded


def reuse_freed_memory() -> str:
    """Keep freed large blocks for reuse (glibc on Linux); returns the state, as ``state``.

    ``"reuse"`` when set, ``"default"`` when ``MAMLVIZ_MALLOC=default`` asks for malloc's own
    behaviour, ``"unavailable: <why>"`` elsewhere (another C library or platform).
    """
    global state
    choice = os.environ.get(ENV, "reuse").strip().lower() or "reuse"
    if choice not in VALUES:
        raise ValueError(f"{ENV} must be one of {', '.join(VALUES)}, got {choice!r}")
    if choice == "default":
        state = "default"
        return state
    if not sys.platform.startswith("linux"):
        state = f"unavailable: {sys.platform} is not Linux"
        return state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as err:
        state = f"unavailable: no glibc mallopt ({err})"
        return state
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success, 0 on error
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) != 1:
        state = "unavailable: mallopt refused"
        return state
    state = "reuse"
    return state


def minor_faults() -> int:
    """Minor page faults of this process so far (``getrusage``; 0 where unavailable)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
