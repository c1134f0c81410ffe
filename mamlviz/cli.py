"""The command line: ``python -m mamlviz {train, evaluate, export, bench, list}``.

    python -m mamlviz train --problem sinusoid --algorithm maml --out runs/maml.pt [--resume]
    python -m mamlviz evaluate sinusoid-maml --json
    python -m mamlviz bench --suite sinusoid --quick

Bad arguments print one line naming the argument and its allowed range, and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from mamlviz.errors import check_range

TRAIN_FIELDS = (
    "inner_lr",
    "inner_steps",
    "shots",
    "query_shots",
    "meta_batch",
    "outer_lr",
    "iterations",
    "seed",
    "checkpoint_every",
    "snapshot_every",
)


def _value(text: str) -> Any:
    """``--option`` values: bool, int, float, else the string itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option must look like key=value, got {pair!r}")
        options[key] = _value(value)
    return options


def cmd_train(args: argparse.Namespace) -> int:
    from mamlviz.training.train import TrainConfig, fit

    check_range("--threads", args.threads, 1, integer=True)
    torch.set_num_threads(args.threads)
    overrides = {f: getattr(args, f) for f in TRAIN_FIELDS if getattr(args, f) is not None}
    if args.init is not None:
        overrides["init"] = args.init
    config = TrainConfig.for_problem(
        args.problem, args.algorithm, options=_options(args.option), dtype=args.dtype, **overrides
    )
    out = Path(args.out)
    if out.exists() and not args.resume:
        raise ValueError(f"--out {out} exists: pass --resume to continue it, or remove it")
    command = shlex.join(["python", "-m", "mamlviz", *args.argv])
    _, history = fit(config, out, resume=args.resume, progress=not args.quiet, command=command)
    print(f"trained {config.algorithm} on {config.problem}: {len(history)} iterations -> {out}")
    tail = history.loss[-100:]
    print(f"mean query loss over the last {len(tail)} iterations: {sum(tail) / len(tail):.4f}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mamlviz.training import checkpoint, hub
    from mamlviz.training.evaluate import evaluate_checkpoint

    check_range("--threads", args.threads, 1, integer=True)
    torch.set_num_threads(args.threads)
    if args.write and args.option:
        raise ValueError("--write stores the checkpoint's own evaluation: drop --option")
    loaded = hub.load(args.checkpoint)
    result = evaluate_checkpoint(
        loaded,
        shots=args.shots,
        query_shots=args.query_shots,
        tasks=args.tasks,
        steps=args.steps,
        inner_lr=args.inner_lr,
        inner_batch=args.inner_batch,
        seed=args.seed,
        options=_options(args.option),
        progress=not args.quiet,
    )
    diverged = result.divergence()
    if args.write and not diverged:
        checkpoint.update_metadata(loaded.path, evaluation=result.to_dict())
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    if diverged:  # the table shows the NaN rows; the exit code and stderr say why
        written = "; nothing was written" if args.write else ""
        print(f"mamlviz evaluate: error: {diverged}{written}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mamlviz.training import hub

    hub.export(
        args.run, args.out, history_every=args.history_every, snapshot_every=args.snapshot_every
    )
    print(f"exported {args.run} -> {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if not args.suite.isidentifier():
        raise ValueError(f"--suite must be a module name, got {args.suite!r}")
    try:
        suite = importlib.import_module(f"mamlviz.benchmarks.{args.suite}")
    except ModuleNotFoundError as err:
        from mamlviz.benchmarks import suites

        raise ValueError(f"--suite must be one of {suites()}, got {args.suite!r}") from err
    result = suite.run(quick=args.quick)
    print(json.dumps(result, indent=2) if args.json else result.get("table", result))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from mamlviz.algorithms import ALGORITHMS
    from mamlviz.training import hub
    from mamlviz.training.problems import available_problems

    print("problems:   " + ", ".join(available_problems()))
    print("algorithms: " + ", ".join(sorted(ALGORITHMS)))
    print("shipped:    " + ", ".join(hub.available()))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mamlviz", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    from mamlviz.algorithms import ALGORITHMS
    from mamlviz.training.problems import available_problems

    rows = "; ".join(f"{n} ({s.title}, {s.paper})" for n, s in sorted(ALGORITHMS.items()))
    t = sub.add_parser("train", help="meta-train and checkpoint")
    t.add_argument(
        "--problem", default="sinusoid", help="one of: " + ", ".join(available_problems())
    )
    t.add_argument("--algorithm", default="maml", help=f"one of: {rows}")
    for name in TRAIN_FIELDS:
        kind = float if name.endswith("_lr") else int
        t.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--dtype", default="float32")
    t.add_argument("--out", required=True)
    t.add_argument("--resume", action="store_true", help="continue --out if it exists")
    t.add_argument("--init", default=None, help="start from this checkpoint's meta-parameters")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=cmd_train)

    e = sub.add_parser("evaluate", help="MAML-paper evaluation of a checkpoint")
    e.add_argument("checkpoint", help="a shipped name (see `list`) or a file")
    e.add_argument("--shots", type=int, default=None)
    e.add_argument("--query-shots", type=int, default=None)
    e.add_argument("--tasks", type=int, default=None)
    e.add_argument("--steps", type=int, default=None)
    e.add_argument("--inner-lr", type=float, default=None)
    e.add_argument("--inner-batch", type=int, default=None, help="support minibatch per step")
    e.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="e.g. samples=30"
    )
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--json", action="store_true")
    e.add_argument("--write", action="store_true", help="store the result in the checkpoint")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(handler=cmd_evaluate)

    x = sub.add_parser("export", help="a small shippable copy of a training checkpoint")
    x.add_argument("run")
    x.add_argument("--out", required=True)
    x.add_argument("--history-every", type=int, default=100)
    x.add_argument("--snapshot-every", type=int, default=5000)
    x.set_defaults(handler=cmd_export)

    b = sub.add_parser("bench", help="speed and memory benchmarks")
    b.add_argument("--suite", default="sinusoid")
    b.add_argument("--json", action="store_true")
    b.add_argument("--quick", action="store_true")
    b.set_defaults(handler=cmd_bench)

    sub.add_parser("list", help="problems, algorithms, shipped checkpoints").set_defaults(
        handler=cmd_list
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv  # recorded in checkpoints as the exact command
    try:
        return args.handler(args)
    except ValueError as err:  # includes CheckpointError: a clear message, no traceback
        print(f"mamlviz {args.command}: error: {err}", file=sys.stderr)
        return 2
