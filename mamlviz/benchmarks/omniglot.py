"""Omniglot suite: ms per meta-iteration of the stacked path vs the per-task loop, and the
latency of the notebook API.

Workload: MAML's 5-way 1-shot Omniglot meta-iteration (Finn et al. 2017): meta-batch 32,
second order, 1 inner step at inner_lr 0.4, strided conv net, float32, with 1 and 15 query
examples per class. Timed: the meta-gradient (the optimiser step is the same for every path)
of the per-task loop, the stacked path, and the stacked path compiled (``train --compile``:
torch.compile with an empty kernel cache, its first call reported as ``compile_s``).
Inputs are random images of the right shape: the time of a conv net does not depend on the
pixel values, and the suite then runs without the dataset. Reported: the median of the timed
iterations after one warm-up, with ``threads`` torch threads (2 by default: the bar is
"at least 2x faster than the loop at 15 query on 2 cores"). The three paths take turns, one
iteration each per round, so a slow spell of a shared machine falls on all of them alike
instead of on whichever path it happened to be timing.

Each row also gives the median minor page faults per iteration (``*_faults``) and the JSON
the allocator setting (``malloc``): run as ``python -m mamlviz bench``, large freed blocks are
kept for reuse (:mod:`mamlviz.memory`), so no path pays for faulting its activations in afresh
each iteration; ``MAMLVIZ_MALLOC=default`` measures malloc's own behaviour.

The API latency is that of :mod:`mamlviz.course.omniglot` after the process is warm (load the
checkpoint, sample a meta-test task, 3 inner steps, predict); the first ``torch.func`` call of a
process also imports ``torch._dynamo`` (seconds), reported separately as ``api_cold_ms``. It
needs the Omniglot images and a shipped checkpoint; otherwise it is reported as skipped.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from mamlviz import memory
from mamlviz.algorithms import make_learner
from mamlviz.cache import inductor_cache
from mamlviz.core import stacked
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import detach
from mamlviz.core.outer import meta_gradient
from mamlviz.models.convnet import omniglot_convnet

WORKLOAD = {"ways": 5, "shots": 1, "meta_batch": 32, "inner_lr": 0.4, "inner_steps": 1}


def random_episode(query_shots: int, seed: int = 0) -> Episode:
    """A meta-batch of the workload's shape with random pixels."""
    g = torch.Generator().manual_seed(seed)
    ways, shots, tasks = WORKLOAD["ways"], WORKLOAD["shots"], WORKLOAD["meta_batch"]

    def examples(k: int) -> Examples:
        y = torch.arange(ways).repeat_interleave(k).expand(tasks, -1).contiguous()
        return Examples(torch.rand(tasks, ways * k, 1, 28, 28, generator=g), y)

    return Episode(examples(shots), examples(query_shots))


def median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (all threads), in ms.

    CPU time is reported too because on a shared machine the wall time also counts the time
    other processes hold the cores; CPU time does not.
    """
    timing = interleaved({"fn": fn}, repeats)["fn"]
    return timing["ms"], timing["cpu_ms"]


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Each function's median wall ms, CPU ms and minor page faults per call, timed in turns.

    One warm-up call each (lazy initialisation, allocator), then ``repeats`` rounds of one
    call of every function.
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, cpu, faults = time.perf_counter(), time.process_time(), memory.minor_faults()
            fn()
            samples[name].append(
                (
                    time.perf_counter() - start,
                    time.process_time() - cpu,
                    memory.minor_faults() - faults,
                )
            )
    return {
        name: {
            "ms": 1000 * statistics.median(s[0] for s in runs),
            "cpu_ms": 1000 * statistics.median(s[1] for s in runs),
            "faults": int(statistics.median(s[2] for s in runs)),
        }
        for name, runs in samples.items()
    }


def api_latency(repeats: int) -> dict[str, Any]:
    """Warm and cold latency of load + sample + adapt(3) + predict, in ms, on ONE thread.

    One thread: each op is on 5-10 images, too small for a second thread to pay (measured:
    2 threads were slower on a loaded machine).
    """
    from mamlviz.course.omniglot import load_demo
    from mamlviz.training.hub import SHIPPED

    name = "omniglot-maml-5w1s"
    if not (SHIPPED / f"{name}.pt").is_file():
        return {"api_skipped": f"no shipped checkpoint {name}.pt"}
    try:
        load_demo(name).sample(0)  # loads the images once; not timed
    except (OSError, RuntimeError) as err:
        return {"api_skipped": f"Omniglot images not available ({err})"}

    def once(seed: int) -> None:
        demo = load_demo(name)
        result = demo.adapt(demo.sample(seed), steps=3)
        assert len(result.accuracy) == 4

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        once(0)
        cold = 1000 * (time.perf_counter() - start)
        seeds = iter(range(1, repeats + 2))
        warm, cpu = median_ms(lambda: once(next(seeds)), repeats)
    finally:
        torch.set_num_threads(threads)
    return {
        "api_cold_ms": round(cold, 1),
        "api_ms": round(warm, 1),
        "api_cpu_ms": round(cpu, 1),
        "api_bar_ms": 300,
    }


def run(quick: bool = False, threads: int = 2) -> dict[str, Any]:
    """The suite; ``quick`` times 1 iteration per path instead of 5."""
    torch.set_num_threads(threads)
    repeats = 1 if quick else 5
    make = lambda compile: make_learner(
        "maml", omniglot_convnet(WORKLOAD["ways"]), "cross_entropy",
        inner_lr=WORKLOAD["inner_lr"], inner_steps=WORKLOAD["inner_steps"], compile=compile,
    )  # fmt: skip
    learner, compiled = make(False), make(True)
    meta = detach(learner.init_meta())
    rows = []
    with tempfile.TemporaryDirectory() as cold, inductor_cache(cold):
        for query_shots in (1, 15):
            episode = random_episode(query_shots)
            started = time.perf_counter()
            stacked.meta_gradient(compiled, meta, episode)  # compiles for this shape
            compile_s = time.perf_counter() - started
            t = interleaved(
                {
                    "loop": lambda ep=episode: meta_gradient(learner, meta, ep, batched=False),
                    "stacked": lambda ep=episode: stacked.meta_gradient(learner, meta, ep),
                    "compiled": lambda ep=episode: stacked.meta_gradient(compiled, meta, ep),
                },
                repeats,
            )
            loop, fast, comp = t["loop"]["ms"], t["stacked"]["ms"], t["compiled"]["ms"]
            rows.append(
                {
                    "query_shots": query_shots,
                    "loop_ms": round(loop, 1),
                    "stacked_ms": round(fast, 1),
                    "speedup": round(loop / fast, 2),
                    "loop_cpu_ms": round(t["loop"]["cpu_ms"], 1),
                    "stacked_cpu_ms": round(t["stacked"]["cpu_ms"], 1),
                    "compiled_ms": round(comp, 1),
                    "compiled_cpu_ms": round(t["compiled"]["cpu_ms"], 1),
                    "compiled_speedup": round(loop / comp, 2),
                    "compile_s": round(compile_s, 1),
                    "loop_faults": t["loop"]["faults"],
                    "stacked_faults": t["stacked"]["faults"],
                    "compiled_faults": t["compiled"]["faults"],
                    "compiled": compiled.compiled["stacked"].state == "compiled",
                }
            )
    result: dict[str, Any] = {
        "suite": "omniglot",
        "workload": {**WORKLOAD, "order": "second", "dtype": "float32"},
        "threads": threads,
        "malloc": memory.state,
        "rows": rows,
        **api_latency(repeats=2 if quick else 5),
    }
    lines = [
        f"Omniglot 5w1s MAML meta-gradient, meta-batch 32, {threads} threads (ms/iteration;"
        f" malloc: {memory.state})"
    ]
    lines += [
        "  query/class      loop   stacked   speedup  compiled   speedup  compile s"
        "   (CPU ms: loop, stacked, compiled)"
    ]
    lines += [
        f"  {r['query_shots']:>11} {r['loop_ms']:>9.0f} {r['stacked_ms']:>9.0f}"
        f" {r['speedup']:>8.2f}x {r['compiled_ms']:>9.0f} {r['compiled_speedup']:>8.2f}x"
        f" {r['compile_s']:>10.0f}   ({r['loop_cpu_ms']:.0f}, {r['stacked_cpu_ms']:.0f},"
        f" {r['compiled_cpu_ms']:.0f})"
        for r in rows
    ]
    if "api_ms" in result:
        lines.append(
            f"  notebook API (load, sample, adapt 3 steps, predict):"
            f" {result['api_ms']:.0f} ms warm ({result['api_cpu_ms']:.0f} ms CPU),"
            f" {result['api_cold_ms']:.0f} ms cold, 1 thread (bar 300 ms)"
        )
    else:
        lines.append(f"  notebook API: skipped ({result['api_skipped']})")
    result["table"] = "\n".join(lines)
    return result
