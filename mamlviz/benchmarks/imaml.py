"""Memory and time per meta-iteration against inner steps: iMAML vs second-order MAML.

Sinusoid MLP 1-40-40-1, meta-batch 25, 10 shots, 10 query points, inner_lr 0.01, iMAML with
lam = 10, damping 2 and 5 CG steps (the sinusoid problem's settings; Rajeswaran et al. 2019,
section 4, use lam = 2 on Omniglot). Second-order MAML keeps the graph of every inner step
for the backward pass, so its memory grows linearly with ``inner_steps``;
iMAML detaches theta in the inner loop and needs only phi for its meta-gradient, so its memory
stays flat (its time still grows, since the inner loop runs to near convergence).

Peak memory on CPU: torch keeps no allocator statistics for the CPU, and
``saved_tensors_hooks`` are refused inside ``torch.func.grad``. Each configuration therefore runs
in a fresh subprocess that resets the kernel's high-water mark (``echo 5 >
/proc/self/clear_refs``), runs one meta-iteration and reports the increase of ``VmHWM`` over
the resident size before it (Linux; elsewhere ``ru_maxrss`` gives a coarser bound).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mamlviz.measure import reset_peak, status_kib

STEPS = (1, 5, 10, 20, 40)
ALGORITHMS = ("imaml", "maml")
# lam 10 and damping 2: the sinusoid problem's iMAML settings, where the implicit system is
# positive definite (at lam 2 most tasks of a fresh init are not, and meta_gradient refuses
# them); memory does not depend on either.
SETTINGS = dict(
    meta_batch=25, shots=10, query_shots=10, inner_lr=0.01, lam=10.0, damping=2.0, cg_steps=5
)


def measure(algorithm: str, inner_steps: int, repeats: int) -> dict[str, Any]:
    """Run in a fresh process: peak memory of one meta-iteration, then mean time of ``repeats``."""
    import resource

    import torch

    from mamlviz.algorithms import make_learner
    from mamlviz.core.outer import meta_gradient
    from mamlviz.models import sinusoid_mlp
    from mamlviz.tasks.sinusoid import SinusoidTasks

    torch.set_num_threads(1)
    s = SETTINGS
    keys = ("lam", "damping", "cg_steps")
    options = {k: s[k] for k in keys} if algorithm == "imaml" else {}
    learner = make_learner(
        algorithm, sinusoid_mlp(), "mse", inner_lr=s["inner_lr"], inner_steps=inner_steps, **options
    )
    meta = learner.init_meta()
    tasks, gen = SinusoidTasks(), torch.Generator().manual_seed(0)
    episode = tasks.sample(gen, s["shots"], s["query_shots"], s["meta_batch"])
    # Warm up on one task and one step so that lazy imports and caches are not counted.
    warm = make_learner(algorithm, learner.model, "mse", inner_lr=0.01, inner_steps=1, **options)
    meta_gradient(warm, meta, tasks.sample(gen, 2, 2, 1))
    exact = reset_peak()
    before = status_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    meta_gradient(learner, meta, episode)
    peak = status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in range(repeats):
        meta_gradient(learner, meta, episode)
    ms = (time.perf_counter() - start) / repeats * 1e3
    return {
        "algorithm": algorithm,
        "inner_steps": inner_steps,
        "peak_mib": round((peak - before) / 1024, 2),
        "ms_per_iteration": round(ms, 2),
        "peak_method": "VmHWM" if exact else "ru_maxrss",
    }


def run(quick: bool = False) -> dict[str, Any]:
    """All configurations, each in its own subprocess; returns rows, settings and a text table."""
    steps = (1, 5, 10) if quick else STEPS
    repeats = 2 if quick else 5
    root = str(Path(__file__).resolve().parents[2])  # the package's parent: importable as-is
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    # A fixed mmap threshold returns big freed blocks to the OS, so RSS follows live memory.
    env = {**os.environ, "PYTHONPATH": path, "MALLOC_MMAP_THRESHOLD_": "65536"}
    rows = []
    for algorithm in ALGORITHMS:
        for k in steps:
            out = subprocess.run(
                [sys.executable, "-m", "mamlviz.benchmarks.imaml", algorithm, str(k), str(repeats)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [f"{'algorithm':<10}{'inner_steps':>12}{'peak MiB':>10}{'ms/iter':>10}"]
    for r in rows:
        ms, mib = r["ms_per_iteration"], r["peak_mib"]
        lines.append(f"{r['algorithm']:<10}{r['inner_steps']:>12}{mib:>10.2f}{ms:>10.1f}")
    settings = {**SETTINGS, "threads": 1, "repeats": repeats, "model": "MLP 1-40-40-1"}
    return {"suite": "imaml", "settings": settings, "rows": rows, "table": "\n".join(lines)}


if __name__ == "__main__":
    name, k, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(measure(name, k, repeats)))
