"""Inner update rules: how one inner step turns a gradient into new fast weights.

A rule is a small object with three pure methods, so that ``adapt`` never needs to know which
algorithm it serves:

* ``init_params(fast)`` -> the rule's own meta-learned tensors (empty for plain SGD), named
  ``"rule.<what>.<param>"`` so they sit beside the model's parameters in one meta-parameter dict;
* ``init_state(fast)`` -> per-task optimiser state (Adam moments; empty for SGD);
* ``step(fast, grads, state, rule_params, k)`` -> ``(new_fast, new_state)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from mamlviz.core.functional import Params
from mamlviz.errors import check_range

RULE_PREFIX = "rule."


class InnerRule(Protocol):
    """What ``adapt`` needs from an update rule."""

    def init_params(self, fast: Params) -> Params: ...

    def init_state(self, fast: Params) -> Params: ...

    def step(
        self, fast: Params, grads: Params, state: Params, rule_params: Params, k: int
    ) -> tuple[Params, Params]: ...


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent, MAML's inner rule: ``phi = theta - inner_lr * grad``.

    ``max_norm`` (None: off) clips each step's gradient to that global norm (Pascanu et al.
    2013): g * min(1, max_norm / ||g||). iMAML uses it to keep a long inner solve finite on the
    rare task whose support curvature exceeds 2 / inner_lr.
    """

    inner_lr: float
    max_norm: float | None = None

    def __post_init__(self) -> None:
        check_range("inner_lr", self.inner_lr, 0.0)
        if self.max_norm is not None:
            check_range("max_norm", self.max_norm, 0.0, low_open=True)

    def init_params(self, fast: Params) -> Params:
        return {}

    def init_state(self, fast: Params) -> Params:
        return {}

    def step(
        self, fast: Params, grads: Params, state: Params, rule_params: Params, k: int
    ) -> tuple[Params, Params]:
        lr: torch.Tensor | float = self.inner_lr
        if self.max_norm is not None:  # tensor ops only, so it runs under vmap
            norm = torch.sqrt(sum(torch.sum(g**2) for g in grads.values()))
            lr = self.inner_lr * torch.clamp(self.max_norm / (norm + 1e-12), max=1.0)
        return {n: w - lr * grads[n] for n, w in fast.items()}, state


@dataclass(frozen=True)
class Adam:
    """Adam as an inner optimiser (Reptile, Nichol et al. 2018, uses beta1 = 0).

    Written out with pure tensor ops so that it runs per task under ``vmap``. The state holds
    the first and second moments per parameter; bias correction uses the step count ``k``.
    """

    inner_lr: float
    beta1: float = 0.0
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        check_range("inner_lr", self.inner_lr, 0.0)
        check_range("beta1", self.beta1, 0.0, 1.0, high_open=True)
        check_range("beta2", self.beta2, 0.0, 1.0, high_open=True)

    def init_params(self, fast: Params) -> Params:
        return {}

    def init_state(self, fast: Params) -> Params:
        state = {f"m.{n}": torch.zeros_like(w) for n, w in fast.items()}
        state.update({f"v.{n}": torch.zeros_like(w) for n, w in fast.items()})
        return state

    def step(
        self, fast: Params, grads: Params, state: Params, rule_params: Params, k: int
    ) -> tuple[Params, Params]:
        t = k + 1
        new_fast, new_state = {}, {}
        for n, w in fast.items():
            m = self.beta1 * state[f"m.{n}"] + (1 - self.beta1) * grads[n]
            v = self.beta2 * state[f"v.{n}"] + (1 - self.beta2) * grads[n] ** 2
            m_hat = m / (1 - self.beta1**t)
            v_hat = v / (1 - self.beta2**t)
            new_fast[n] = w - self.inner_lr * m_hat / (torch.sqrt(v_hat) + self.eps)
            new_state[f"m.{n}"], new_state[f"v.{n}"] = m, v
        return new_fast, new_state


@dataclass(frozen=True)
class PerParamLR:
    """Meta-SGD (Li et al. 2017): ``phi = theta - alpha (.) grad``.

    ``alpha`` has the shape of each adapted parameter, is free in sign and size, starts at
    ``inner_lr`` everywhere and is meta-learned with theta. With ``alpha`` held at a constant
    it is exactly MAML's SGD rule (tested).
    """

    inner_lr: float  # alpha's initial value only
    learned_lr: ClassVar[bool] = True  # the step sizes in use are alpha, not inner_lr

    def __post_init__(self) -> None:
        check_range("inner_lr", self.inner_lr, 0.0)

    def init_params(self, fast: Params) -> Params:
        return {f"{RULE_PREFIX}lr.{n}": torch.full_like(w, self.inner_lr) for n, w in fast.items()}

    def init_state(self, fast: Params) -> Params:
        return {}

    def step(
        self, fast: Params, grads: Params, state: Params, rule_params: Params, k: int
    ) -> tuple[Params, Params]:
        lr = {n: rule_params[f"{RULE_PREFIX}lr.{n}"] for n in fast}
        return {n: w - lr[n] * grads[n] for n, w in fast.items()}, state


def _kronecker_roles(shape: torch.Size) -> tuple[str, ...]:
    """Which Meta-Curvature factors a parameter of this shape gets (see :class:`Kronecker`)."""
    if len(shape) <= 1:
        return ("vec",)
    if len(shape) == 2:
        return ("out", "in")
    return ("out", "in", "f")


@dataclass(frozen=True)
class Kronecker:
    r"""Meta-Curvature (Park & Oliva 2019): ``phi = theta - inner_lr * MC(grad)``.

    The gradient of each parameter is preconditioned by learned Kronecker factors, i.e. the
    matrix ``M_out (x) M_in (x) M_f`` acting on ``vec(G)`` without ever being formed:

    * linear weight ``G [out, in]``:       ``MC(G) = M_out G M_in``;
    * conv weight ``G [out, in, k, k]``:   mode products ``G x_out M_out x_in M_in x_f M_f``
      over the flattened filter axis ``f = k * k``;
    * bias and other vectors:              ``MC(g) = m (.) g``.

    (The paper writes ``M_in G M_out`` for TensorFlow's ``[in, out]`` weights; PyTorch stores
    ``[out, in]``, so the same map reads ``M_out G M_in``.) Factors start at the identity
    (vectors at ones), so at initialisation this is exactly
    MAML's SGD rule (tested). They are stored as ``rule.mc_out.<name>``, ``rule.mc_in.<name>``,
    ``rule.mc_f.<name>`` and ``rule.mc_vec.<name>`` and meta-learned through the second-order
    meta-gradient.
    """

    inner_lr: float

    def __post_init__(self) -> None:
        check_range("inner_lr", self.inner_lr, 0.0)

    def init_params(self, fast: Params) -> Params:
        out: Params = {}
        for n, w in fast.items():
            roles = _kronecker_roles(w.shape)
            if roles == ("vec",):
                out[f"{RULE_PREFIX}mc_vec.{n}"] = torch.ones_like(w)
                continue
            sizes = {"out": w.shape[0], "in": w.shape[1], "f": w[0, 0].numel()}
            for role in roles:
                eye = torch.eye(sizes[role], dtype=w.dtype, device=w.device)
                out[f"{RULE_PREFIX}mc_{role}.{n}"] = eye
        return out

    def init_state(self, fast: Params) -> Params:
        return {}

    def precondition(self, name: str, g: torch.Tensor, rule_params: Params) -> torch.Tensor:
        """``MC(g)`` for the parameter ``name``.

        Which factors a parameter has decides the map, not ``g``'s rank, so ``g`` and the
        factors may carry leading batch axes (the stacked path's task axis, [T, ...]).
        """
        vec = rule_params.get(f"{RULE_PREFIX}mc_vec.{name}")
        if vec is not None:
            return vec * g
        m_out = rule_params[f"{RULE_PREFIX}mc_out.{name}"]
        m_in = rule_params[f"{RULE_PREFIX}mc_in.{name}"]
        m_f = rule_params.get(f"{RULE_PREFIX}mc_f.{name}")
        if m_f is None:
            return m_out @ g @ m_in
        g3 = g.reshape(*g.shape[:-2], -1)  # [..., out, in, f]
        mc = torch.einsum("...po,...oif,...iq,...fr->...pqr", m_out, g3, m_in, m_f)
        return mc.reshape(g.shape)

    def step(
        self, fast: Params, grads: Params, state: Params, rule_params: Params, k: int
    ) -> tuple[Params, Params]:
        return {
            n: w - self.inner_lr * self.precondition(n, grads[n], rule_params)
            for n, w in fast.items()
        }, state
