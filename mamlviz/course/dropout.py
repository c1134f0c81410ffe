r"""Meta-Dropout for the notebooks (chapter 10): the learned noise, and adaptation under it.

Meta-Dropout (Lee, Nam, Yang & Hwang 2020) multiplies each hidden pre-activation of the inner
loop's SUPPORT forward by softplus(z), z ~ N(a(h), I), where a(h) is computed by a meta-learned
noise net from the layer's input h (:mod:`mamlviz.models.noise`, :mod:`mamlviz.models.noise_conv`).
The query forward uses the mean multiplier softplus(a(h)). Here:

* :func:`noise_multipliers`: per noisy layer, softplus(a(h)) on given inputs -- the learned
  noise map (the multiplier's median; z's spread around a is always 1);
* :func:`adapted_fits`: the model's outputs after the inner loop on one task's support set,
  under several independent noise draws (and, with ``samples``, each step's support loss
  averaged over that many draws, as the paper does at test time with 30).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, call, detach
from mamlviz.core.learner import Learner
from mamlviz.errors import check_range
from mamlviz.models.noise import NOISE_PREFIX


def noise_multipliers(model: nn.Module, params: Params, x: Tensor) -> dict[str, Tensor]:
    """``{layer: softplus(a)}`` for every noise layer of ``model`` (``fc1``, ``conv3``, ...) on
    inputs ``x``, with ``params`` (noise-free forward): MLP layers [N, units], conv blocks
    [N, C, H, W]."""
    noise = getattr(model, "noise", None)
    if not isinstance(noise, nn.ModuleDict):
        raise ValueError(f"model must be a Meta-Dropout model, got {type(model).__name__}")
    out: dict[str, Tensor] = {}
    handles = []
    for name, layer in noise.items():

        def hook(_m: nn.Module, _i: object, a: Tensor, key: str = name) -> None:
            out[key] = F.softplus(a)

        handles.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            call(model, params, x)
    finally:
        for h in handles:
            h.remove()
    return out


def adapted_fits(
    learner: Learner,
    meta: Params,
    episode: Episode,
    x: Tensor,
    draws: Sequence[int],
    steps: int | None = None,
) -> Tensor:
    """``[len(draws), len(x), ...]``: the model's output on ``x`` after ``steps`` (default: the
    learner's) inner steps from ``meta`` on ``episode``'s support set (one task), one row per
    noise draw; draw d seeds the noise with d, so a row is reproducible. The caller's RNG is
    left alone."""
    if len(draws) == 0:
        raise ValueError("draws must name at least one noise seed")
    for d in draws:
        check_range("draw", d, 0, 2**63 - 1, integer=True)
    fast, frozen, rule = learner.split(detach(meta))
    rows = []
    for d in draws:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(d))
            phi = learner.inner_loop(fast, frozen, rule, episode.support, steps=steps)
        with torch.no_grad():
            rows.append(call(learner.model, {**detach(phi), **frozen}, x))
    return torch.stack(rows)


def noise_parameters(meta: Params) -> Params:
    """The noise net's part of ``meta`` (names starting with ``noise.``)."""
    return {n: w for n, w in meta.items() if n.startswith(NOISE_PREFIX)}
