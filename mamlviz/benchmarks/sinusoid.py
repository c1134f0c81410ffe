"""Sinusoid suite: ms per meta-iteration and peak memory, batched (vmap) path vs per-task loop
vs the compiled path (``make_learner(..., compile=True)``: the batched meta-gradient through
torch.compile, with the fused Adam step ``fit(compile=True)`` uses; its cold-cache compile time
is a column of its own), and, for MAML and FOMAML, the floor: the same computation in bare
``torch.func`` (:mod:`mamlviz.benchmarks.floor`, tested equal), with the same Adam step.

The MAML paper's workload (meta-batch 25, 10 support and 10 query points, 1 or 5 inner steps)
for second-order MAML, FOMAML and Reptile. Sinusoid meta-learning is dispatch bound: a loop over
tasks issues every op once per task, ``vmap`` once per meta-batch.

Method. Every configuration runs in a fresh subprocess with one torch thread, so memory peaks do
not mix. Time: the median wall time of single meta-iterations after warm-up, and the median CPU
time of this process (with one thread it is the compute time, and it does not grow when other
processes share the cores; speed-ups use it). Memory: torch keeps
no allocator statistics on CPU, so we read the process's peak resident set size: after a
meta-batch-1 iteration has loaded the lazily initialised code paths, the peak is reset (Linux:
``echo 5 > /proc/self/clear_refs``), the resident size is the baseline, and the reported figure
is the peak (``VmHWM``) minus that baseline over the warm-up and timed iterations. Elsewhere
``ru_maxrss`` minus the baseline is used, which can only under-report. Both include memory the
allocator keeps cached, at page resolution. The compiled path's first iteration is a full
meta-batch (it compiles for that shape), timed as ``compile_s`` with an empty kernel cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mamlviz.measure import time_steps

ALGORITHMS = ("maml", "fomaml", "reptile")
STEPS = (1, 5)
WORKLOAD = {"meta_batch": 25, "shots": 10, "query_shots": 10, "inner_lr": 0.01}


PATHS = ("batched", "loop", "floor", "compiled")
FLOOR = ("maml", "fomaml")  # the algorithms the floor computes


def floor_step(learner: Any, meta: dict, optimizer: Any, episode: Any) -> Any:
    """One meta-step with the bare torch.func meta-gradient in place of the package's."""
    from mamlviz.benchmarks.floor import bare_meta_gradient

    theta = {n: w.detach() for n, w in meta.items()}
    grads, losses = bare_meta_gradient(
        learner.model, theta, tuple(episode.support), tuple(episode.query),
        float(learner.rule.inner_lr), learner.inner_steps, learner.first_order,
    )  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    for n, w in meta.items():
        w.grad = grads[n]
    optimizer.step()
    return losses


def measure(algorithm: str, inner_steps: int, path: str, iters: int, warmup: int) -> dict:
    """One configuration, in this process: median ms per meta-iteration and peak RSS growth.

    ``path``: ``batched`` (vmap), ``loop`` (task by task), ``floor`` (bare torch.func) or
    ``compiled`` (vmap through torch.compile)."""
    import time

    import torch

    from mamlviz.algorithms import make_learner
    from mamlviz.core.outer import meta_step
    from mamlviz.models import sinusoid_mlp
    from mamlviz.tasks.sinusoid import SinusoidTasks

    if path not in PATHS or (path == "floor" and algorithm not in FLOOR):
        raise ValueError(f"path must be one of {PATHS} (floor: {FLOOR} only), got {path!r}")

    torch.set_num_threads(1)
    compiled = path == "compiled"
    learner = make_learner(
        algorithm, sinusoid_mlp(0), "mse", inner_lr=WORKLOAD["inner_lr"],
        inner_steps=inner_steps, compile=compiled,
    )  # fmt: skip
    meta = {n: w.requires_grad_() for n, w in learner.init_meta().items()}
    opt = torch.optim.Adam(meta.values(), lr=1e-3, fused=compiled or None)
    gen, tasks = torch.Generator().manual_seed(0), SinusoidTasks()
    shape = (WORKLOAD["shots"], WORKLOAD["query_shots"])
    if path == "floor":
        step = lambda episode: floor_step(learner, meta, opt, episode)
    else:
        batched = path != "loop"
        step = lambda episode: meta_step(learner, meta, opt, episode, batched=batched)
    started = time.perf_counter()
    step(tasks.sample(gen, *shape, WORKLOAD["meta_batch"] if compiled else 1))
    first_s = time.perf_counter() - started
    episodes = [tasks.sample(gen, *shape, WORKLOAD["meta_batch"]) for _ in range(warmup + iters)]
    timing = time_steps(step, episodes, warmup)
    row = {"algorithm": algorithm, "inner_steps": inner_steps, "path": path, **timing}
    if compiled:
        row["compile_s"] = first_s
        row["compiled"] = learner.compiled["task_gradients"].state == "compiled"
    return row


def _child(algorithm: str, steps: int, path: str, iters: int, warmup: int) -> dict:
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    }
    args = [algorithm, str(steps), path, str(iters), str(warmup)]
    with tempfile.TemporaryDirectory() as cold:  # the compiled path: an empty kernel cache
        env["TORCHINDUCTOR_CACHE_DIR"] = cold
        out = subprocess.run(
            [sys.executable, "-m", "mamlviz.benchmarks.sinusoid", *args],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict], ratios: dict[str, dict[str, float]]) -> str:
    """Aligned text table of the rows with the loop/batched, batched/floor and compiled ratios."""
    speedup, over_floor = ratios["speedup"], ratios["over_floor"]
    lines = [
        "sinusoid meta-iteration, meta-batch 25, 10 shots, 10 query (1 thread; median CPU ms"
        " per iteration; median wall ms batched/loop; peak RSS growth MiB; floor: the same"
        " computation in bare torch.func; compiled: torch.compile, its cold compile in s)",
        f"{'algorithm':<10}{'steps':>6}{'batched ms':>12}{'loop ms':>10}{'speed-up':>10}"
        f"{'wall b/loop':>14}{'batched MiB':>13}{'loop MiB':>10}{'floor ms':>10}"
        f"{'b/floor':>9}{'compiled ms':>13}{'loop/c':>8}{'b/c':>7}{'compile s':>11}",
    ]
    by = {(r["algorithm"], r["inner_steps"], r["path"]): r for r in rows}
    for alg in ALGORITHMS:
        for k in STEPS:
            b, lp = by[(alg, k, "batched")], by[(alg, k, "loop")]
            fl = by.get((alg, k, "floor"))
            floor = (
                f"{fl['cpu_ms']:>10.2f}{over_floor[f'{alg}-{k}']:>8.2f}x"
                if fl
                else f"{'-':>10}{'-':>9}"
            )
            c, key = by[(alg, k, "compiled")], f"{alg}-{k}"
            lines.append(
                f"{alg:<10}{k:>6}{b['cpu_ms']:>12.2f}{lp['cpu_ms']:>10.2f}"
                f"{speedup[key]:>9.1f}x{b['ms']:>7.1f}/{lp['ms']:<6.1f}"
                f"{b['peak_mib']:>13.1f}{lp['peak_mib']:>10.1f}"
                + floor
                + f"{c['cpu_ms']:>13.2f}{ratios['loop_over_compiled'][key]:>7.1f}x"
                f"{ratios['batched_over_compiled'][key]:>6.1f}x{c['compile_s']:>11.1f}"
            )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """All configurations, each in a fresh subprocess; ``quick`` times fewer iterations."""
    iters, warmup = (10, 3) if quick else (50, 10)
    rows = [
        _child(alg, k, path, iters, warmup)
        for alg in ALGORITHMS
        for k in STEPS
        for path in PATHS
        if path != "floor" or alg in FLOOR
    ]
    by = {(r["algorithm"], r["inner_steps"], r["path"]): r["cpu_ms"] for r in rows}
    speedup = {
        f"{a}-{k}": by[(a, k, "loop")] / by[(a, k, "batched")] for a in ALGORITHMS for k in STEPS
    }
    over_floor = {
        f"{a}-{k}": by[(a, k, "batched")] / by[(a, k, "floor")] for a in FLOOR for k in STEPS
    }
    ratios = {
        "speedup": speedup,
        "over_floor": over_floor,
        "loop_over_compiled": {
            f"{a}-{k}": by[(a, k, "loop")] / by[(a, k, "compiled")]
            for a in ALGORITHMS
            for k in STEPS
        },
        "batched_over_compiled": {
            f"{a}-{k}": by[(a, k, "batched")] / by[(a, k, "compiled")]
            for a in ALGORITHMS
            for k in STEPS
        },
    }
    return {
        "suite": "sinusoid",
        "workload": WORKLOAD,
        "iterations": iters,
        "warmup": warmup,
        "threads": 1,
        "method": __doc__.split("Method. ")[1].strip().replace("\n", " "),
        "rows": rows,
        **ratios,
        "table": table(rows, ratios),
    }


if __name__ == "__main__":
    alg, steps, path, iters, warmup = sys.argv[1:6]
    print(json.dumps(measure(alg, int(steps), path, int(iters), int(warmup))))
