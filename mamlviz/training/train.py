"""Meta-training: ``fit(config) -> (meta, History)``, reproducible and resumable.

Each iteration samples a meta-batch from the problem's task distribution and takes one outer step
(:func:`mamlviz.core.outer.meta_step`, batched over tasks with vmap). The outer optimiser is Adam
(Finn et al. 2017) for every algorithm except those whose registry row says ``outer="sgd"``
(Reptile): SGD whose learning rate eps is annealed linearly from ``outer_lr`` to 0 over the
run, theta <- theta + eps_i (mean phi - theta), eps_i = outer_lr (1 - i / iterations)
(Nichol et al. 2018).

All randomness comes from ``config.seed``, in three streams (``TrainConfig.stream_seed``):
the model init, a ``torch.Generator`` for the tasks, and the global RNG (seeded inside
``fork_rng``, so the caller's RNG is untouched) for stochastic forwards. A checkpoint holds
all three states plus the optimiser's, so a run killed at any point
and resumed from its last checkpoint ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mamlviz.algorithms import get_algorithm
from mamlviz.algorithms.anil import head_names
from mamlviz.core import stacked
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import Params
from mamlviz.core.learner import Learner
from mamlviz.core.metagrad import unrolled
from mamlviz.core.outer import meta_gradient, meta_step
from mamlviz.core.rules import RULE_PREFIX
from mamlviz.errors import Interrupted
from mamlviz.models.noise import NOISE_PREFIX
from mamlviz.training import checkpoint as ckpt
from mamlviz.training import distributed, hub
from mamlviz.training.config import TrainConfig, build
from mamlviz.training.history import History
from mamlviz.training.problems import get_problem


def package_version() -> str:
    """This package's version, for the checkpoint metadata."""
    try:
        return version("mamlviz")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def hardware(device: torch.device | None = None, processes: int = 1) -> dict[str, Any]:
    """Where a run happened, for the checkpoint metadata."""
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": "cpu" if device is None else str(device),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if processes > 1:
        info["processes"] = processes  # data parallel (torchrun); the meta-batch is split
    return info


def _outer_sgd(config: TrainConfig) -> bool:
    return get_algorithm(config.algorithm).outer == "sgd"


def _outer_lr(config: TrainConfig, i: int) -> float:
    """The outer step size of iteration ``i``: Reptile's eps annealed linearly to 0; with option
    ``halve_every`` (ProtoNet, Snell et al. 2017) Adam's step halved every that many episodes;
    with ``outer_schedule="cosine"``, outer_lr (1 + cos(pi i / iterations)) / 2."""
    if _outer_sgd(config):
        return config.outer_lr * (1 - i / config.iterations)
    if config.outer_schedule == "cosine":
        return config.outer_lr * 0.5 * (1 + math.cos(math.pi * i / config.iterations))
    halve = config.options.get("halve_every")
    return config.outer_lr if halve is None else config.outer_lr * 0.5 ** (i // int(halve))


def _resume(path: Path, config: TrainConfig, meta: Params, state: dict[str, Any]) -> dict:
    data = ckpt.load(path)
    saved = TrainConfig.from_dict(data.metadata["config"])
    ignore = {"checkpoint_every"}
    diff = [
        f"{f.name} ({getattr(saved, f.name)!r} in the checkpoint, {getattr(config, f.name)!r} now)"
        for f in fields(TrainConfig)
        if f.name not in ignore and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if diff:
        raise ckpt.CheckpointError(path, "cannot resume, the config differs: " + "; ".join(diff))
    stored = data.metadata.get("data")
    if stored is not None and state.get("data") is not None and stored != state["data"]:
        raise ckpt.CheckpointError(path, "cannot resume: it was trained on another data split")
    tensors = data.tensors
    if "optimizer" not in tensors or "rng" not in tensors:
        raise ckpt.CheckpointError(path, "cannot resume: no optimizer or RNG state (shipped file?)")
    ckpt.check_params(path, tensors["meta"], meta)
    with torch.no_grad():
        for n, w in meta.items():
            w.copy_(tensors["meta"][n])
    state["optimizer"].load_state_dict(tensors["optimizer"])
    state["generator"].set_state(tensors["rng"]["tasks"])
    torch.set_rng_state(tensors["rng"]["torch"])
    return data.metadata


# Meta-parameters a variant adds to the base model, each with a neutral initial value.
ADDED = (RULE_PREFIX, NOISE_PREFIX)


def _new_head(
    path: Path, given: Params, own: Params, head: frozenset[str]
) -> tuple[Params, list[str]]:
    """The checkpoint's parameters without its head when only the head's shape differs.

    A 5-way checkpoint can start a 20-way run: its body is the learned part worth keeping, and
    a head for other classes has nothing to inherit (labels are a random order in every
    episode), so the run's own freshly initialised head is used. Any other mismatch is refused.
    """
    resized = [n for n in head if n in given and n in own and given[n].shape != own[n].shape]
    if not resized or set(resized) != {n for n in head if n in own}:
        return given, []
    body = {n: w for n, w in given.items() if n not in head}
    ckpt.check_params(path, body, {n: w for n, w in own.items() if n not in head})
    return body, sorted(resized)


def _warm_start(
    name: str, meta: Params, data: Any = None, head: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Copy the meta-parameters of checkpoint ``name`` into ``meta``; what to record of it.

    E.g. 5-shot training that starts from a 1-shot checkpoint, or Meta-SGD that starts from a
    MAML checkpoint. The model's parameters must match in names and shapes, except the
    ``head`` (the last layer's parameter names) when it alone differs in shape: a 20-way run
    from a 5-way checkpoint keeps its own fresh head (recorded as ``new_head``). An inner rule's
    meta-parameters (``rule.*``) the checkpoint lacks stay at their neutral initial value
    (alpha = inner_lr, identity curvature), where the variant equals MAML; so the run starts at
    the checkpoint's own model. So does Meta-Dropout's noise net (``noise.*``, zero on the conv
    net, where the query network then equals the base net's). A checkpoint with such parameters
    this run lacks is refused: dropping learned step sizes would silently change the model it
    starts from.
    """
    source = hub.load(name)
    own = {n: w for n, w in meta.items() if not n.startswith(ADDED)}
    given = {n: w for n, w in source.meta.items() if not n.startswith(ADDED)}
    given, new_head = _new_head(Path(source.path), given, own, head)
    if not new_head:
        ckpt.check_params(Path(source.path), given, own)
    rules = [n for n in meta if n.startswith(ADDED)]
    kept = [n for n in rules if n not in source.meta]
    dropped = [n for n in source.meta if n.startswith(ADDED) and n not in meta]
    if dropped or (kept and len(kept) < len(rules)):
        ckpt.check_params(Path(source.path), source.meta, meta)  # names the mismatch
    stored = source.metadata.get("data")
    if stored is not None and data is not None and stored != data:
        # its training characters could be among this run's test characters
        raise ckpt.CheckpointError(source.path, "cannot warm-start: trained on another data split")
    with torch.no_grad():
        for n, w in meta.items():
            if n in source.meta and n not in new_head:
                w.copy_(source.meta[n])
    info = source.metadata
    record = {
        "from": name,
        "algorithm": info.get("algorithm"),
        "iterations": info.get("iteration"),
        "shots": info.get("config", {}).get("shots"),
        "wall_time_s": info.get("wall_time_s"),
    }
    if kept:
        record["kept_at_init"] = kept
    if new_head:
        record["new_head"] = new_head
    return record


def unrolled_bytes_per_step(learner: Learner, meta: Params, episode: Episode) -> int:
    """Rough memory the second-order unrolled graph keeps per inner step, for a meta-batch:
    per task, the fast weights, their gradient and its graph (3 copies of the parameters) plus
    the support forward's activations (counted with forward hooks) and their backward (x 3)."""
    task = episode.task(0)
    activations = 0

    def count(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        nonlocal activations
        if isinstance(output, torch.Tensor):
            activations += output.numel()

    leaves = [m for m in learner.model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            fast, frozen, _ = learner.split(meta)
            learner.loss({**fast, **frozen}, task.support)
    finally:
        for h in hooks:
            h.remove()
    params = sum(w.numel() for w in fast.values())
    itemsize = next(iter(meta.values())).element_size()
    return episode.num_tasks * 3 * (params + activations) * itemsize


def check_memory(config: TrainConfig, learner: Learner, meta: Params, tasks: Any) -> None:
    """Refuse, before any work, an unrolled second-order run whose graph cannot fit in memory.

    The estimate (``unrolled_bytes_per_step``) gives 0.74 MiB per step for sinusoid MAML at
    meta-batch 25, where ``bench --suite imaml`` measures 0.76.
    """
    if learner.strategy is not unrolled or learner.first_order or config.inner_steps < 100:
        return
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (not Linux): no check
        return
    probe = tasks.sample(torch.Generator().manual_seed(0), config.shots, config.query_shots, 1)
    device = next(iter(meta.values())).device
    probe = Episode(*(Examples(e.x.to(device, config.torch_dtype), e.y.to(device)) for e in probe))
    per_step = unrolled_bytes_per_step(learner, meta, probe) * config.meta_batch
    need = per_step * config.inner_steps
    if need > available:
        raise ValueError(
            f"inner_steps {config.inner_steps} would need about {need / 2**30:.1f} GiB for"
            f" {config.algorithm}'s second-order graph (about {per_step / 2**20:.2f} MiB per"
            f" inner step at meta_batch {config.meta_batch}); {available / 2**30:.1f} GiB are"
            " available: lower --inner-steps or --meta-batch, or use fomaml or imaml, whose"
            " memory does not grow with the inner steps"
        )


def _to_cpu(obj: Any) -> Any:
    """A state dict with every tensor on the CPU (a checkpoint loads on any machine)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_run(path: Path, config: TrainConfig, meta: Params, state: dict, history: History) -> None:
    """Write a resumable checkpoint of the run so far."""
    metadata = {
        "algorithm": config.algorithm,
        "problem": config.problem,
        "config": config.to_dict(),
        "seed": config.seed,
        "iteration": state["iteration"],
        "mamlviz_version": package_version(),
        "torch_version": torch.__version__,
        "command": state["command"],
        "wall_time_s": state["wall_time_s"],
        "hardware": hardware(state.get("device"), state.get("processes", 1)),
    }
    if "init" in state:
        metadata["initialised_from"] = state["init"]
    if state.get("data") is not None:
        metadata["data"] = state["data"]  # the split a later evaluation must match
    tensors = {
        "meta": {n: w.detach().cpu().clone() for n, w in meta.items()},
        "optimizer": _to_cpu(state["optimizer"].state_dict()),
        "rng": {"tasks": state["generator"].get_state(), "torch": torch.get_rng_state()},
        "history": history.to_tensors(),
    }
    ckpt.save(path, metadata, tensors)


def fit(
    config: TrainConfig,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    command: str | None = None,
    compile: bool = False,
    callback: Callable[[int, Params, History], bool | None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Params, History]:
    """Meta-train ``config``; returns the meta-parameters (detached) and the ``History``.

    With ``checkpoint``, the run is saved there every ``config.checkpoint_every`` iterations and
    at the end, and (``resume=True``) continued from it if it exists. ``stop_after=n`` returns
    after iteration n without a final save, as if the process had been killed there.
    ``compile=True`` runs the batched meta-gradient through torch.compile (the first iteration
    compiles, shown as such in the progress bar) and the outer Adam step fused; the eager path
    is the reference, and tests hold the two equal. ``callback(iteration, meta, history)``
    runs after every iteration; returning True stops the run there (saving the checkpoint, if
    any), as the course's Stop button does. ``device`` (``cpu``, ``cuda`` or ``auto``) is where
    the model and the meta-batches live. Under ``torchrun`` (a process group is initialised,
    :mod:`mamlviz.training.distributed`) each process computes its share of the meta-batch, the
    meta-gradient is all-reduced, and only rank 0 writes the checkpoint and shows progress.
    """
    dev = distributed.resolve_device(device) if isinstance(device, str) else device
    world = distributed.current()
    generator = torch.Generator().manual_seed(config.stream_seed("tasks"))
    state: dict[str, Any] = {
        "generator": generator,
        "iteration": 0,
        "wall_time_s": 0.0,
        "command": command if command is not None else shlex.join(sys.argv),
        "device": dev,
        "processes": world.size,
    }
    history = History()
    tasks = get_problem(config.problem).make_tasks("train")
    state["data"] = tasks.signature() if hasattr(tasks, "signature") else None
    path = Path(checkpoint) if checkpoint is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.stream_seed("noise"))
        learner, init = build(config, compile=compile, device=dev)
        if config.init:
            state["init"] = _warm_start(config.init, init, state["data"], head_names(learner.model))
        if "train_ways" in config.options:  # ProtoNet: training episodes of other ways
            tasks = tasks.view(ways=int(config.options["train_ways"]))
        check_memory(config, learner, init, tasks)
        meta = {n: w.requires_grad_() for n, w in init.items()}
        if _outer_sgd(config):
            optimizer: torch.optim.Optimizer = torch.optim.SGD(meta.values(), lr=config.outer_lr)
        else:
            # fused: one kernel for all tensors, a third of the foreach step's time on CPU
            optimizer = torch.optim.Adam(meta.values(), lr=config.outer_lr, fused=compile or None)
        state["optimizer"] = optimizer
        if path is not None and resume and path.exists():
            saved = _resume(path, config, meta, state)
            state["iteration"], state["wall_time_s"] = saved["iteration"], saved["wall_time_s"]
            history = History.from_tensors(ckpt.load(path).tensors["history"])
        else:
            history.snapshot(0, meta)
        end = config.iterations if stop_after is None else min(stop_after, config.iterations)
        warming = compile and learner.compile and state["iteration"] < end
        bar = tqdm(
            total=config.iterations,
            initial=state["iteration"],
            disable=not progress or not world.main,
            desc="compiling (first iteration; cached for later runs)" if warming else "train",
        )
        started = time.perf_counter() - state["wall_time_s"]
        stack = get_problem(config.problem).batching == "stacked" and stacked.supports(learner)
        gradient = stacked.meta_gradient if stack else None
        if not get_algorithm(config.algorithm).batched:  # task by task (ProtoNet)
            gradient = functools.partial(meta_gradient, batched=False)
        if world.size > 1:  # this rank's share of every meta-batch, all-reduced
            gradient = distributed.sharded(gradient or meta_gradient, world)
        saved_at = state["iteration"] if path is not None and path.exists() else None
        try:
            for i in range(state["iteration"], end):
                optimizer.param_groups[0]["lr"] = _outer_lr(config, i)
                episode = tasks.sample(
                    generator,
                    config.shots,
                    config.query_shots,
                    config.meta_batch,
                    config.torch_dtype,
                )
                if dev.type != "cpu":
                    episode = distributed.to_device(episode, dev)
                losses = meta_step(
                    learner, meta, optimizer, episode, iteration=i, gradient=gradient
                )
                grad_norm = torch.sqrt(sum(w.grad.pow(2).sum() for w in meta.values()))
                history.record(i, float(losses.mean()), float(grad_norm))
                state["iteration"] = i + 1
                if (i + 1) % config.snapshot_every == 0 or i + 1 == config.iterations:
                    history.snapshot(i + 1, meta)
                if warming:
                    bar.set_description("train", refresh=False)
                    warming = False
                bar.update(1)
                last = i + 1 == config.iterations  # a stop_after run ends without a final save
                stop = callback is not None and bool(callback(i + 1, meta, history))
                due = (i + 1) % config.checkpoint_every == 0 or last or stop
                if path is not None and world.main and due:
                    state["wall_time_s"] = time.perf_counter() - started
                    save_run(path, config, meta, state, history)
                    saved_at = i + 1
                if stop:
                    break
        except KeyboardInterrupt:  # Ctrl-C: say where, and what is on disk
            bar.close()
            every = config.checkpoint_every
            raise Interrupted(
                state["iteration"], None if path is None else str(path), saved_at, every
            ) from None
        bar.close()
    return {n: w.detach().clone() for n, w in meta.items()}, history
