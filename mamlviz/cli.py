"""The command line: ``python -m mamlviz {train, evaluate, export, bench, mer, list, data}``.

    python -m mamlviz train --problem sinusoid --algorithm maml --out runs/maml.pt [--resume]
    python -m mamlviz evaluate sinusoid-maml --json
    python -m mamlviz bench --suite sinusoid --quick
    python -m mamlviz mer --method mer --seed 0
    python -m mamlviz data --download

One error policy, in :func:`main`, and no traceback for a user:

* our errors (a bad argument, a damaged checkpoint or data file, a divergence) print
  ``mamlviz <command>: error: <what, the allowed range, what to do>`` and exit 2;
* the operating system's (a missing, read-only or full folder) print one line naming the path
  and exit 1; running out of memory says what to lower, exit 1;
* Ctrl-C during training says where it stopped and what was saved, exit 130;
* anything else prints one line and "run with --debug for the traceback", exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mamlviz.errors import IndefiniteWarning, Interrupted, MamlvizError, check_range
from mamlviz.memory import reuse_freed_memory

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


def _writable(out: Path, flag: str = "--out") -> None:
    """Refuse an output path we could not write, before any work starts."""
    if out.is_dir():
        raise ValueError(f"{flag} {out} is a folder: name a file, e.g. {out / 'run.pt'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out.parent):  # raises PermissionError / OSError (disk full)
        pass


def _complete(out: Path, config: Any) -> bool:
    """Whether ``out`` already holds this exact run, finished (a re-run then trains nothing)."""
    from dataclasses import replace

    from mamlviz.training import checkpoint
    from mamlviz.training.config import TrainConfig

    if not out.exists():
        return False
    saved = checkpoint.load(out).metadata
    same = TrainConfig.from_dict(saved["config"]) == replace(
        config, checkpoint_every=saved["config"]["checkpoint_every"]
    )
    return same and saved.get("iteration") == config.iterations


def cmd_train(args: argparse.Namespace) -> int:
    from mamlviz.training import distributed
    from mamlviz.training.config import TrainConfig
    from mamlviz.training.problems import get_problem
    from mamlviz.training.train import fit

    check_range("--threads", args.threads, 1, integer=True)
    torch.set_num_threads(args.threads)
    overrides = {f: getattr(args, f) for f in TRAIN_FIELDS if getattr(args, f) is not None}
    if args.init is not None:
        overrides["init"] = args.init
    if args.outer_schedule is not None:
        overrides["outer_schedule"] = args.outer_schedule
    algorithm, compile = args.algorithm or "maml", args.compile
    if args.preset is not None:  # the recipe under the flags given: those win
        preset = get_problem(args.problem).preset(args.preset)
        if args.algorithm not in (None, preset.algorithm):
            raise ValueError(
                f"--algorithm {args.algorithm} differs from preset {preset.name}'s"
                f" {preset.algorithm}: drop --algorithm or --preset"
            )
        algorithm, compile = preset.algorithm, compile or preset.compile
        overrides = {**preset.overrides, **overrides}
    config = TrainConfig.for_problem(
        args.problem,
        algorithm,
        options=_options(args.option),
        dtype=args.dtype,
        rng=args.rng,
        **overrides,
    )
    out = Path(args.out)
    _writable(out)
    if out.exists() and not args.resume:
        raise ValueError(f"--out {out} exists: pass --resume to continue it, or remove it")
    if args.resume and _complete(out, config):
        print(f"already complete: {out} holds all {config.iterations} iterations; nothing to do")
        return 0
    command = shlex.join(["python", "-m", "mamlviz", *args.argv])
    device = distributed.resolve_device(args.device)
    world = distributed.setup(device)  # torchrun: join its process group; else rank 0 of 1
    try:
        _, history = fit(
            config, out, resume=args.resume, progress=not args.quiet, command=command,
            compile=compile, device=device,
        )  # fmt: skip
    finally:
        distributed.teardown()
    if world.main:
        processes = f" on {world.size} processes" if world.size > 1 else ""
        print(
            f"trained {config.algorithm} on {config.problem}{processes}: {len(history)}"
            f" iterations -> {out}"
        )
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
        device=args.device,
    )
    diverged = result.divergence()
    if args.write and not diverged:
        per_task = {"evaluation_per_task": result.per_task}
        checkpoint.update_metadata(loaded.path, per_task, evaluation=result.to_dict())
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    if diverged:  # the table shows the NaN rows; the exit code and stderr say why
        written = "; nothing was written" if args.write else ""
        print(f"mamlviz evaluate: error: {diverged}{written}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mamlviz.training import hub

    out = Path(args.out)
    _writable(out)
    check_range("--history-every", args.history_every, 1, integer=True)
    check_range("--snapshot-every", args.snapshot_every, 1, integer=True)
    hub.export(args.run, out, history_every=args.history_every, snapshot_every=args.snapshot_every)
    size = out.stat().st_size / 2**20
    print(
        f"exported {args.run} -> {out} ({size:.2f} MiB: meta-parameters, history every"
        f" {args.history_every}th iteration, snapshots every {args.snapshot_every}th;"
        " not resumable)"
    )
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


MER_FIELDS = ("lr", "beta", "gamma", "batches", "replay")


def _mer_settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The continual bench's tuned settings for ``method``, overridden by the flags given;
    ``beta`` and ``gamma`` only for MER, ``batches`` and ``replay`` not for online SGD."""
    from mamlviz.training.continual import SETTINGS

    settings = dict(SETTINGS["sinusoid"][method])
    for name in MER_FIELDS:
        value = getattr(args, name)
        if value is None:
            continue
        if method != "mer" and name in ("beta", "gamma"):
            raise ValueError(f"--{name} is MER's; --method {method} does not use it")
        if method == "online" and name in ("batches", "replay"):
            raise ValueError(f"--{name} is for replay and mer; online SGD takes one step")
        settings[name] = value
    return settings


def cmd_mer(args: argparse.Namespace) -> int:
    from mamlviz.algorithms.mer import METHODS, check_settings, run_stream
    from mamlviz.core.functional import make_loss, params_of
    from mamlviz.models import MLP
    from mamlviz.tasks.stream import DriftingSinusoids
    from mamlviz.training.continual import HIDDEN, MEMORY, SIZES

    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    check_range("--threads", args.threads, 1, integer=True)
    check_range("--seed", args.seed, 0, integer=True)
    sizes = dict(SIZES["sinusoid"])
    for name in sizes:
        value = getattr(args, name)
        if value is not None:
            check_range("--" + name.replace("_", "-"), value, 1 if name != "families" else 2,
                        integer=True)  # fmt: skip
            sizes[name] = value
    settings = _mer_settings(args.method, args)
    memory = MEMORY["sinusoid"] if args.memory is None else args.memory
    if args.method == "online":
        if args.memory is not None:
            raise ValueError("--memory is for replay and mer; online SGD keeps no memory")
        memory = 0
    full = {"beta": 1.0, "gamma": 1.0, "batches": 1, "replay": 0, **settings}
    names = {"memory_size": "--memory", **{k: f"--{k}" for k in full}}
    try:
        check_settings(args.method, full["lr"], memory, full["beta"], full["gamma"],
                       full["batches"], full["replay"])  # fmt: skip
    except ValueError as err:  # name the flag, not the function argument
        key = str(err).split(" ", 1)[0]
        raise ValueError(f"{names.get(key, key)} {str(err).split(' ', 1)[1]}") from err
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    with torch.random.fork_rng(devices=[]):  # as the continual bench: the init is seeded
        torch.manual_seed(args.seed)
        stream = DriftingSinusoids(sizes["families"], sizes["examples_per_family"])
        model = MLP(3, HIDDEN["sinusoid"], 1)
    model = model.float()
    examples, family = stream.stream(gen, torch.float32)
    tests = stream.test_sets(gen, sizes["test_examples"], torch.float32)
    out = run_stream(
        args.method, make_loss(model, "mse"), params_of(model), examples, family, tests,
        memory_size=memory, seed=args.seed, **settings,
    )  # fmt: skip
    losses = out["losses"]
    result = {
        "method": args.method,
        "seed": args.seed,
        "settings": {**settings, "memory_size": memory},
        "stream": {**sizes, "hidden": list(HIDDEN["sinusoid"])},
        "final_loss": out["final_loss"],
        "bwt": out["bwt"],
        "forgetting": out["forgetting"],
        "learning_loss": sum(losses[j][j] for j in range(len(losses))) / len(losses),
        "losses": losses,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    shown = ", ".join(f"{k.removesuffix('_size')} {v:g}" for k, v in result["settings"].items())
    print(f"{args.method} on the drifting sinusoids ({sizes['families']} families x"
          f" {sizes['examples_per_family']} examples, {sizes['test_examples']} held out each),"
          f" seed {args.seed}: {shown}")  # fmt: skip
    titles = {"final_loss": "final loss", "bwt": "BWT", "forgetting": "forgetting",
              "learning_loss": "learning loss"}  # fmt: skip
    for key, title in titles.items():
        print(f"{title + ':':<15} {result[key]:8.3f}")
    print("loss matrix R[t, j] (row: after family t; column: family j):")
    for t, row in enumerate(losses):
        print(f"  {t}: " + " ".join(f"{v:7.3f}" for v in row))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from mamlviz.tasks import omniglot_data as od

    folder = Path(args.dir).expanduser() if args.dir else od.default_omniglot_root()
    if folder is not None and not folder.is_dir() and not args.download:
        raise od.OmniglotDataError(
            f"--dir {folder} is not a folder: add --download to fetch the two zips into it, or"
            " name a folder that holds images_background.zip and images_evaluation.zip"
        )
    if args.download:
        for part, how in od.fetch_omniglot(folder, progress=not args.quiet).items():
            note = f"downloaded, MD5 {od.MD5[part]} ok" if how == "downloaded" else "present"
            print(f"{part}: {note}")
    # Reading every drawing is the check: structure and decoding, then the verified cache.
    data = od.load_omniglot(root=folder, progress=not args.quiet)
    background = int(data.background.sum())
    print(
        f"Omniglot from {folder or od.default_cache_dir() / 'omniglot'}: {len(data)} characters"
        f" ({background} background, {len(data) - background} evaluation) x"
        f" {data.images.shape[1]} drawings, cached in {od.default_cache_dir() / 'omniglot'}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from mamlviz.algorithms import ALGORITHMS
    from mamlviz.training import hub
    from mamlviz.training.problems import available_problems

    if args.json:
        algorithms = {
            name: {"title": s.title, "paper": s.paper, "options": s.known_options()}
            for name, s in sorted(ALGORITHMS.items())
        }
        listing = {
            "problems": available_problems(),
            "algorithms": algorithms,
            "shipped": hub.available(),
        }
        print(json.dumps(listing, indent=2))
        return 0
    print("problems:   " + ", ".join(available_problems()))
    print("algorithms: " + ", ".join(sorted(ALGORITHMS)))
    print("shipped:    " + ", ".join(hub.available()))
    return 0


TRAIN_HELP = {
    "inner_lr": "inner-loop step size, >= 0",
    "inner_steps": "inner steps per task in meta-training, an integer >= 1 (0: pretrained only)",
    "shots": "support examples per class (sinusoid: per task), an integer >= 1",
    "query_shots": "query examples per class (sinusoid: per task), an integer >= 1",
    "meta_batch": "tasks per meta-iteration, an integer >= 1",
    "outer_lr": "outer step size, > 0 (Adam; Reptile: its interpolation step, annealed to 0)",
    "iterations": "meta-iterations, an integer >= 1",
    "seed": "seed of the init, the tasks and the noise, an integer >= 0",
    "checkpoint_every": "iterations between checkpoints, an integer >= 1",
    "snapshot_every": "iterations between weight snapshots in the history, an integer >= 1",
}

EPILOGS = {
    "train": """examples:
  python -m mamlviz train --problem sinusoid --algorithm maml --out runs/maml.pt --resume
  python -m mamlviz train --problem sinusoid --preset live --out runs/live.pt   # under a minute
  python -m mamlviz train --problem omniglot --algorithm metasgd --out runs/metasgd.pt --resume
  python -m mamlviz train --problem sinusoid --algorithm imaml --option lam=10 --out runs/i.pt""",
    "evaluate": """examples:
  python -m mamlviz evaluate sinusoid-maml                 # the stored protocol of a shipped row
  python -m mamlviz evaluate runs/maml.pt --shots 10 --steps 1 --json
  python -m mamlviz evaluate sinusoid-metadropout-10shot --option samples=30""",
    "export": """example:
  python -m mamlviz export runs/maml.pt --out mamlviz/checkpoints/sinusoid-maml.pt""",
    "bench": """examples:
  python -m mamlviz bench --suite sinusoid --json
  python -m mamlviz bench --suite imaml
  MAMLVIZ_MALLOC=default python -m mamlviz bench --suite omniglot   # malloc's own behaviour""",
    "mer": """examples:
  python -m mamlviz mer --method mer --seed 0              # one row of bench --suite continual
  python -m mamlviz mer --method replay --lr 0.02 --json
  python -m mamlviz mer --method mer --beta 1 --gamma 1 --batches 1 --memory 0   # = online SGD""",
    "data": """examples:
  python -m mamlviz data --download                        # into the cache folder
  python -m mamlviz data --download --dir data/omniglot    # then MAMLVIZ_OMNIGLOT=data/omniglot
  MAMLVIZ_OMNIGLOT=path/to/omniglot python -m mamlviz data # check a local copy""",
    "list": """examples:
  python -m mamlviz list
  python -m mamlviz list --json""",
}


def _defaults_text() -> str:
    """Each problem's paper defaults for the train flags, for --help."""
    from mamlviz.training.problems import available_problems, get_problem

    lines = []
    for name in available_problems():
        d = get_problem(name).defaults("maml")
        lines.append(f"  {name}: " + ", ".join(f"{k} {d[k]:g}" for k in TRAIN_FIELDS if k in d))
    return (
        "defaults (MAML's paper settings; per-algorithm overrides in training/problems.py):\n"
        + ("\n".join(lines))
    )


def parser() -> argparse.ArgumentParser:
    from mamlviz.algorithms import ALGORITHMS
    from mamlviz.benchmarks import suites
    from mamlviz.training.problems import available_problems, get_problem

    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="python -m mamlviz",
        description=__doc__.split("\n")[0],
        epilog="add --debug to any command to see a traceback instead of the one-line error;\n"
        "MAMLVIZ_MALLOC=default keeps malloc's own handling of freed memory (mamlviz.memory)",
        formatter_class=raw,
    )
    sub = p.add_subparsers(dest="command", required=True)

    rows = "\n".join(
        f"  {n:<12} {s.title} ({s.paper})"
        + "".join(f"\n      --option {k}=...  {v}" for k, v in s.known_options().items())
        for n, s in sorted(ALGORITHMS.items())
    )
    t = sub.add_parser(
        "train",
        help="meta-train and checkpoint",
        formatter_class=raw,
        description="algorithms and their --option keys:\n" + rows + "\n\n" + _defaults_text(),
        epilog=EPILOGS["train"],
    )
    t.add_argument(
        "--problem", default="sinusoid", help="one of: " + ", ".join(available_problems())
    )
    t.add_argument("--algorithm", default=None, help="one of the algorithms above (default maml)")
    presets = "; ".join(
        f"--problem {n} --preset {pr.name}: {pr.about}"
        for n in available_problems()
        for pr in get_problem(n).presets
    )
    t.add_argument(
        "--preset",
        default=None,
        help=f"a problem's named recipe, under any flags given ({presets or 'none yet'})",
    )
    t.add_argument(
        "--compile",
        action="store_true",
        help="run the batched meta-gradient through torch.compile (same values; the first"
        " iteration compiles for tens of seconds, cached for later runs; falls back to eager,"
        " saying why, where compilation is unavailable)",
    )
    t.add_argument(
        "--outer-schedule",
        default=None,
        help="outer step size over the run: constant (default) or cosine (to 0)",
    )
    for name in TRAIN_FIELDS:
        kind = float if name.endswith("_lr") else int
        help_text = TRAIN_HELP[name] + "; default: the problem's (above)"
        t.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_text)
    t.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="an algorithm option (see above), repeatable",
    )  # fmt: skip
    t.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    t.add_argument(
        "--rng",
        default="derived",
        help="how --seed seeds the init, task and noise streams: derived (default; one"
        " sha256-derived stream each) or shared (the seed itself for all three, as the shipped"
        " checkpoints were trained: give it to reproduce or resume them)",
    )
    t.add_argument("--out", required=True, help="the checkpoint file to write")
    t.add_argument("--resume", action="store_true", help="continue --out if it exists")
    t.add_argument(
        "--init",
        default=None,
        help="start from this checkpoint's meta-parameters (a shipped name or a path); an"
        " inner rule's parameters it lacks start neutral (e.g. Meta-SGD from a MAML checkpoint:"
        " alpha = --inner-lr, so the run starts at MAML's model)",
    )
    t.add_argument("--threads", type=int, default=1, help="torch threads, >= 1 (default 1)")
    t.add_argument(
        "--device", default="cpu",
        help="cpu (default), cuda, or auto (cuda when available); under torchrun each process"
        " takes the GPU of its LOCAL_RANK and a share of every meta-batch",
    )  # fmt: skip
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=cmd_train)

    e = sub.add_parser(
        "evaluate",
        help="MAML-paper evaluation of a checkpoint",
        formatter_class=raw,
        description="The query metric after 0..steps inner steps on held-out tasks, mean +- 95%"
        " CI. Every flag defaults to the checkpoint's stored evaluation, else its problem's.",
        epilog=EPILOGS["evaluate"],
    )
    e.add_argument("checkpoint", help="a shipped name (see `list`) or a file")
    e.add_argument("--shots", type=int, default=None, help="support examples, an integer >= 1")
    e.add_argument("--query-shots", type=int, default=None, help="query examples, >= 1")
    e.add_argument("--tasks", type=int, default=None, help="held-out tasks, >= 1 (papers: 600)")
    e.add_argument("--steps", type=int, default=None, help="inner steps recorded, >= 0")
    e.add_argument(
        "--inner-lr", type=float, default=None, help="inner step size, >= 0 (not Meta-SGD)"
    )
    e.add_argument("--inner-batch", type=int, default=None, help="support minibatch per step")
    e.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="an algorithm option for this evaluation, e.g. samples=30",
    )  # fmt: skip
    e.add_argument("--seed", type=int, default=None, help="seed of the held-out tasks, >= 0")
    e.add_argument("--json", action="store_true", help="print every number as JSON")
    e.add_argument("--write", action="store_true", help="store the result in the checkpoint")
    e.add_argument("--threads", type=int, default=1, help="torch threads, >= 1 (default 1)")
    e.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(handler=cmd_evaluate)

    x = sub.add_parser(
        "export",
        help="a small shippable copy of a training checkpoint",
        formatter_class=raw,
        epilog=EPILOGS["export"],
    )
    x.add_argument("run", help="a training checkpoint")
    x.add_argument("--out", required=True, help="the file to write")
    x.add_argument("--history-every", type=int, default=100, help="keep every Nth history entry")
    x.add_argument("--snapshot-every", type=int, default=5000, help="keep every Nth snapshot")
    x.set_defaults(handler=cmd_export)

    b = sub.add_parser(
        "bench", help="speed and memory benchmarks", formatter_class=raw, epilog=EPILOGS["bench"]
    )
    b.add_argument("--suite", default="sinusoid", help="one of: " + ", ".join(suites()))
    b.add_argument("--json", action="store_true", help="print every number as JSON")
    b.add_argument("--quick", action="store_true", help="fewer repeats")
    b.set_defaults(handler=cmd_bench)

    _mer_parser(sub, raw)

    lst = sub.add_parser(
        "list",
        help="problems, algorithms, shipped checkpoints",
        formatter_class=raw,
        epilog=EPILOGS["list"],
    )
    lst.add_argument("--json", action="store_true", help="with each algorithm's options")
    lst.set_defaults(handler=cmd_list)

    d = sub.add_parser(
        "data",
        help="get and check the Omniglot data",
        formatter_class=raw,
        description="Find Omniglot (--dir, else env MAMLVIZ_OMNIGLOT, else the cache folder),"
        " read every drawing and build the verified 28x28 cache. --download first fetches each"
        " missing official zip (about 14 MB in all) and checks its MD5.",
        epilog=EPILOGS["data"],
    )
    d.add_argument("--dir", default=None, help="the folder holding (or to receive) the two zips")
    d.add_argument("--download", action="store_true", help="fetch the zips that are missing")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(handler=cmd_data)
    return p


MER_HELP = {
    "lr": "SGD step size, >= 0",
    "beta": "MER's within-batch Reptile step, in (0, 1] (mer only)",
    "gamma": "MER's across-batch Reptile step, in (0, 1] (mer only)",
    "batches": "s, batches per example, an integer >= 1 (replay, mer)",
    "replay": "k, memories per batch, an integer >= 0 (replay, mer)",
}


def _mer_parser(sub: Any, raw: type[argparse.HelpFormatter]) -> None:
    """The ``mer`` command's parser; its defaults are generated from the continual bench."""
    from mamlviz.algorithms.mer import METHODS
    from mamlviz.training.continual import MEMORY, SETTINGS, SIZES

    tuned = "\n".join(
        f"  {m:<7} " + ", ".join(f"{k} {v:g}" for k, v in SETTINGS["sinusoid"][m].items())
        for m in METHODS
    )
    m = sub.add_parser(
        "mer",
        help="online SGD, experience replay or MER on the continual bench's stream",
        formatter_class=raw,
        description=textwrap.fill(
            "Meta-Experience Replay (Riemer et al. 2019, Algorithm 1) and its baselines, learning"
            " the drifting-sinusoid stream of `bench --suite continual` once, one example at a"
            " time; prints the final loss, backward transfer (Lopez-Paz & Ranzato 2017),"
            " forgetting (Chaudhry et al. 2018) and the loss matrix.",
            90,
        )
        + "\n\nsettings when a flag is not given (the bench's, chosen on its validation seeds;"
        f" memory {MEMORY['sinusoid']},\nnone for online):\n" + tuned,
        epilog=EPILOGS["mer"],
    )
    m.add_argument(
        "--method", default="mer", help="one of: " + ", ".join(METHODS) + " (default mer)"
    )
    for name in MER_FIELDS:
        kind = int if name in ("batches", "replay") else float
        m.add_argument("--" + name, type=kind, default=None,
                       help=MER_HELP[name] + "; default: the method's (above)")  # fmt: skip
    m.add_argument(
        "--memory", type=int, default=None,
        help=f"reservoir memory size, an integer >= 0 (default {MEMORY['sinusoid']}; replay, mer)",
    )  # fmt: skip
    m.add_argument("--seed", type=int, default=0, help="seed of the init, stream, test sets and"
                   " reservoir, an integer >= 0 (default 0)")  # fmt: skip
    for name, value in SIZES["sinusoid"].items():
        m.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"stream size, an integer >= {2 if name == 'families' else 1}"
                       f" (default {value})")  # fmt: skip
    m.add_argument("--json", action="store_true", help="print every number as JSON")
    m.add_argument("--threads", type=int, default=1, help="torch threads, >= 1 (default 1)")
    m.set_defaults(handler=cmd_mer)


NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--outer-lr -1e-3`` as ``--outer-lr=-1e-3``: argparse would read "-1e-3" as a flag,
    so a negative value reaches the range check and its clear message instead."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NUMBER.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "can't allocate memory" in str(err)


def process_main() -> int:
    """``python -m mamlviz`` and the ``mamlviz`` script: :func:`main` in a process of its own,
    whose large freed blocks are kept for reuse (:mod:`mamlviz.memory`)."""
    try:
        reuse_freed_memory()
    except ValueError as err:  # a bad MAMLVIZ_MALLOC: what is allowed, no traceback
        print(f"mamlviz: error: {err}", file=sys.stderr)
        return 2
    return main()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = _attach_negative_values([a for a in argv if a != "--debug"])
    args = parser().parse_args(argv)
    args.argv = argv  # recorded in checkpoints as the exact command
    name = f"mamlviz {args.command}"
    with warnings.catch_warnings():
        warnings.showwarning = _one_line(name, warnings.showwarning)
        return _run(args, name, debug)


def _one_line(name: str, show: Callable[..., None]) -> Callable[..., None]:
    """Our warnings as one line, ``mamlviz <command>: warning: <message>``; others unchanged."""

    def showwarning(message: Warning | str, category: type[Warning], *rest: object) -> None:
        if issubclass(category, IndefiniteWarning):
            print(f"{name}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, *rest)

    return showwarning


def _run(args: argparse.Namespace, name: str, debug: bool) -> int:
    try:
        return args.handler(args)
    except KeyboardInterrupt as err:
        message = str(err) if isinstance(err, Interrupted) else "interrupted; nothing was written"
        print(f"{name}: {message}", file=sys.stderr)
        return 130
    except (MamlvizError, ValueError) as err:  # ours: what, the allowed range, what to do
        if debug:
            raise
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if debug:
            raise
        if _out_of_memory(err):
            message = "out of memory: lower --meta-batch, --inner-steps or --shots"
        elif isinstance(err, OSError):
            path = err.filename or ""
            message = f"{err.strerror or err}{': ' + str(path) if path else ''}"
        else:
            message = (
                f"internal error ({type(err).__name__}: {err}); run with --debug for the traceback"
            )
        print(f"{name}: {message}", file=sys.stderr)
        return 1
