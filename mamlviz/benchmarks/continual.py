"""Continual suite: online SGD, experience replay and MER on two streams, over seeds 0-4.

Every MER number the course states comes from ``python -m mamlviz bench --suite continual``
(``--json`` for all per-seed values). Meta-Experience Replay is Riemer et al. 2019, Algorithm
1 (:mod:`mamlviz.algorithms.mer`); the metrics are Lopez-Paz & Ranzato 2017 (final average, backward
transfer, learning accuracy) and Chaudhry et al. 2018 (forgetting). Table cells are the mean
± sample standard deviation over the seeds.

The streams, networks, settings and one seeded run live in :mod:`mamlviz.training.continual`
(chapter 11 and ``python -m mamlviz mer`` use the same). The Omniglot stream needs the images
(env ``MAMLVIZ_OMNIGLOT``) and is reported as skipped without them. All methods see the same
memory size; ``replay`` uses the same s (``batches``) and k (``replay``) as MER. Every
method's settings were chosen on the validation seeds 100-104 only (``VALIDATION_SEEDS``;
``python -m mamlviz.benchmarks.continual --seeds 100-104`` prints the same table on them);
seeds 0-4 were run once, afterwards.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from mamlviz.algorithms.mer import METHODS
from mamlviz.tasks.omniglot_data import OmniglotArrays, OmniglotDataError, load_omniglot
from mamlviz.training.continual import (  # noqa: F401  (the bench's settings, re-exported)
    HIDDEN,
    MEMORY,
    QUICK_SIZES,
    SEEDS,
    SETTINGS,
    SIZES,
    VALIDATION_SEEDS,
    one_run,
)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


COLUMNS = {
    "sinusoid": (
        ("final_loss", "final loss"),
        ("bwt", "BWT"),
        ("forgetting", "forgetting"),
        ("learning_loss", "learning loss"),
    ),
    "omniglot": (
        ("final_metric", "final acc"),
        ("metric_bwt", "acc BWT"),
        ("metric_forgetting", "acc forgetting"),
        ("learning_accuracy", "learning acc"),
        ("final_loss", "final loss"),
    ),
}


def summarize(stream_name: str, runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per method: mean and std over seeds of every column of the table."""
    summary = {}
    for method, rows in runs.items():
        cells = {}
        for key, _ in COLUMNS[stream_name]:
            cells[key] = mean_std([row[key] for row in rows])
        summary[method] = cells
    return summary


def table(stream_name: str, summary: dict[str, dict]) -> str:
    """Aligned text: one row per method, ``mean ± std`` per column."""
    lines = [f"{'method':<8}" + "".join(f"{title:>20}" for _, title in COLUMNS[stream_name])]
    for method, cells in summary.items():
        lines.append(f"{method:<8}" + "".join(f"{m:>12.3f} ± {s:<5.3f}" for m, s in cells.values()))
    return "\n".join(lines)


def load_arrays() -> OmniglotArrays | str:
    """The Omniglot arrays from the package's defaults, or the reason they are unavailable."""
    try:
        return load_omniglot(progress=False)
    except (OmniglotDataError, OSError) as err:
        return f"Omniglot images not available ({err})"


def run(
    quick: bool = False, *, seeds: tuple[int, ...] = SEEDS, arrays: OmniglotArrays | None = None
) -> dict[str, Any]:
    """Every method on every seed of both streams; ``arrays`` default to :func:`load_arrays`."""
    torch.set_num_threads(1)
    sizes = QUICK_SIZES if quick else SIZES
    start = time.perf_counter()
    arrays = load_arrays() if arrays is None else arrays
    result: dict[str, Any] = {"suite": "continual", "seeds": list(seeds), "threads": 1}
    text = []
    for name in ("sinusoid", "omniglot"):
        if name == "omniglot" and isinstance(arrays, str):
            result[name] = {"skipped": arrays}
            text.append(f"{name}: skipped, {arrays}")
            continue
        runs = {m: [one_run(name, m, s, sizes[name], SETTINGS[name][m], arrays) for s in seeds]
                for m in METHODS}  # fmt: skip
        summary = summarize(name, runs)
        settings = {"sizes": sizes[name], "hidden": list(HIDDEN[name]), "memory_size": MEMORY[name]}
        result[name] = {
            "settings": {**settings, "methods": SETTINGS[name]},
            "summary": {m: {k: list(v) for k, v in c.items()} for m, c in summary.items()},
            "runs": runs,
        }
        head = f"{name}: {sizes[name]}, MLP hidden {HIDDEN[name]}, memory {MEMORY[name]}"
        methods = "; ".join(
            f"{m} " + ", ".join(f"{k} {v:g}" for k, v in SETTINGS[name][m].items()) for m in METHODS
        )
        text.append("\n".join([head, methods, table(name, summary)]))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    text.append(f"seeds {list(seeds)}, 1 thread, {result['wall_s']} s")
    result["table"] = "\n\n".join(text)
    return result


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"100-104"`` or ``"0,3,7"`` as a tuple of seeds."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return tuple(range(lo, hi + 1))
    return tuple(int(v) for v in text.split(","))


if __name__ == "__main__":
    args = sys.argv[1:]
    seeds = parse_seeds(args[args.index("--seeds") + 1]) if "--seeds" in args else SEEDS
    print(run("--quick" in args, seeds=seeds)["table"])
