"""Family suite: every shipped sinusoid learner's meta-iteration at its own trained settings.

What one meta-iteration of each algorithm costs when it is trained the way its shipped
checkpoint was (its inner steps, shots, query points, meta-batch and options, on the batched
path), so chapter 12 can set accuracy beside price. This is not a like-for-like race: iMAML's
row runs its 90 proximal steps, MAML's its one step; ``bench --suite sinusoid`` compares MAML,
FOMAML and Reptile at equal settings.

Method. As ``bench --suite sinusoid``: one torch thread, the median wall and CPU time of single
meta-iterations after warm-up, and the peak resident-set growth over them
(:mod:`mamlviz.measure`); all rows run in one fresh subprocess that hands freed memory back to
the system between rows. Meta-parameters are counted from the checkpoint (every tensor the
outer loop learns: weights, and the rule's learning rates or curvature factors, or the noise
net).
"""

from __future__ import annotations

from typing import Any

from mamlviz.measure import measure_in_fresh_process, time_steps

# One shipped checkpoint per algorithm, each at the shots its comparison in the README uses.
ROWS = (
    "sinusoid-maml",
    "sinusoid-fomaml",
    "sinusoid-reptile",
    "sinusoid-pretrained",
    "sinusoid-metasgd-10shot",
    "sinusoid-metacurv-10shot",
    "sinusoid-imaml-10shot",
    "sinusoid-metadropout-10shot",
)


def measure(name: str, inner_steps: int, iters: int, warmup: int) -> dict[str, Any]:
    """Time ``meta_step`` of checkpoint ``name``'s training configuration, in this process.

    ``inner_steps`` must be the checkpoint's own (it is passed to keep the configuration
    visible in the child's command line, and checked).
    """
    import torch

    from mamlviz.algorithms import get_algorithm
    from mamlviz.core.outer import meta_step
    from mamlviz.errors import IndefiniteError
    from mamlviz.training.config import build
    from mamlviz.training.hub import load
    from mamlviz.training.problems import get_problem

    torch.set_num_threads(1)
    checkpoint = load(name)
    config = checkpoint.config
    if config.inner_steps != inner_steps:
        raise ValueError(f"{name} trains with {config.inner_steps} inner steps, not {inner_steps}")
    learner, _ = build(config)
    meta = {n: w.detach().clone().requires_grad_() for n, w in checkpoint.meta.items()}
    # the optimiser training uses: Adam, or SGD for Reptile's interpolation step
    sgd = get_algorithm(config.algorithm).outer == "sgd"
    opt = (torch.optim.SGD if sgd else torch.optim.Adam)(meta.values(), lr=config.outer_lr)
    tasks = get_problem(config.problem).make_tasks("train")
    gen = torch.Generator().manual_seed(0)
    shape = (config.shots, config.query_shots)
    meta_step(learner, meta, opt, tasks.sample(gen, *shape, 1))
    episodes = [tasks.sample(gen, *shape, config.meta_batch) for _ in range(warmup + iters)]
    refused = 0

    def step(episode: Any) -> None:
        nonlocal refused
        try:
            meta_step(learner, meta, opt, episode)
        except IndefiniteError:
            # iMAML's definiteness check refused this meta-batch after the inner loops and the
            # CG solve, i.e. after the whole cost: it still times a meta-iteration (counted)
            refused += 1

    timing = time_steps(step, episodes, warmup)
    return {
        "name": name,
        "algorithm": config.algorithm,
        "inner_steps": config.inner_steps,
        "shots": config.shots,
        "meta_batch": config.meta_batch,
        "meta_parameters": sum(t.numel() for t in checkpoint.meta.values()),
        **timing,
        "refused": refused,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Aligned text table of the rows."""
    lines = [
        "sinusoid meta-iteration of each shipped learner at its trained settings (1 thread;"
        " median CPU and wall ms; peak RSS growth MiB)",
        f"{'checkpoint':<30}{'steps':>6}{'shots':>6}{'batch':>6}{'meta-params':>12}"
        f"{'cpu ms':>9}{'wall ms':>9}{'MiB':>7}",
    ]
    for r in rows:
        note = (
            f"  ({r['refused']} meta-batches refused as indefinite, timed)" if r["refused"] else ""
        )
        lines.append(
            f"{r['name']:<30}{r['inner_steps']:>6}{r['shots']:>6}{r['meta_batch']:>6}"
            f"{r['meta_parameters']:>12}{r['cpu_ms']:>9.2f}{r['ms']:>9.2f}{r['peak_mib']:>7.1f}"
            + note
        )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Every row in one fresh subprocess; ``quick`` times fewer iterations."""
    from mamlviz.training.hub import load

    iters, warmup = (5, 2) if quick else (30, 5)
    configs = [(name, load(name).config.inner_steps) for name in ROWS]
    rows = measure_in_fresh_process("mamlviz.benchmarks.family", configs, f"{iters}, {warmup}")
    return {
        "suite": "family",
        "iterations": iters,
        "warmup": warmup,
        "threads": 1,
        "method": __doc__.split("Method. ")[1].strip().replace("\n", " "),
        "rows": rows,
        "table": table(rows),
    }
