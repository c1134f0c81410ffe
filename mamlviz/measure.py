"""Peak-memory measurement on CPU, shared by the benchmark suites.

torch keeps no CPU allocator statistics, so a suite runs each configuration in a fresh
subprocess and reads the kernel's view of it: on Linux, writing ``5`` to
``/proc/self/clear_refs`` resets the peak resident set size (``VmHWM``), so the rise of
``VmHWM`` over ``VmRSS`` measured just before the work is the work's own peak memory.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def measure_in_fresh_process(module: str, configs: list[tuple[str, int]], args: str) -> list[dict]:
    """Run ``<module>.measure(algorithm, inner_steps, <args>)`` for each config in ONE new process.

    The child prints one JSON line per configuration. A low mmap threshold hands freed blocks
    back to the OS, so one configuration's memory does not hide the next one's.
    """
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        f"from {module} import measure\n"
        "for a, k in json.loads(sys.argv[1]):\n"
        f"    print(json.dumps(measure(a, k, {args})))\n"
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(configs)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(configs) :]]


def time_steps(step: Callable[[Any], None], episodes: list[Any], warmup: int) -> dict[str, Any]:
    """Run ``step(episode)`` on each episode; the median wall and CPU milliseconds of the steps
    after the first ``warmup``, and the peak resident-set growth over all of them (VmHWM after
    :func:`reset_peak` where the kernel has it, else ``ru_maxrss``)."""
    proc = reset_peak()
    base = status_kib("VmRSS") if proc else None
    if base is None:
        proc, base = False, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu = [], []
    for i, episode in enumerate(episodes):
        start, start_cpu = time.perf_counter(), time.process_time()
        step(episode)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    peak = status_kib("VmHWM") if proc else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "ms": 1e3 * statistics.median(times),
        "cpu_ms": 1e3 * statistics.median(cpu),
        "peak_mib": max(0, peak - base) / 1024,
        "memory_method": "VmHWM" if proc else "ru_maxrss",
    }
