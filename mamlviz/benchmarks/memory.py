"""Peak-memory measurement on CPU, shared by the benchmark suites.

torch keeps no CPU allocator statistics, so a suite runs each configuration in a fresh
subprocess and reads the kernel's view of it: on Linux, writing ``5`` to
``/proc/self/clear_refs`` resets the peak resident set size (``VmHWM``), so the rise of
``VmHWM`` over ``VmRSS`` measured just before the work is the work's own peak memory.
"""

from __future__ import annotations

from pathlib import Path


def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset this process's peak RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
