r"""Loss surfaces on 2-D slices of parameter space.

A :class:`Plane` is ``origin + a * d1 + b * d2`` for two directions in parameter space. Two
ways to choose it:

* :func:`plane_through` three points (say the meta-learned init theta, the pretrained init and
  the adapted weights phi): ``d1`` points from the first to the second, ``d2`` is the third
  point's offset made orthogonal to ``d1`` (Gram-Schmidt), both of unit norm. Coordinates are
  then true Euclidean distances in parameter space, and all three points lie exactly on the
  plane.
* :func:`random_plane`: two random Gaussian directions, each *filter-normalised* (Li et al.
  2018, "Visualizing the loss landscape of neural nets"): every filter (a row of a weight
  matrix, i.e. one neuron's incoming weights) of the direction is rescaled to the norm of the
  same filter of the weights, so the picture does not depend on how the weights are scaled.

:func:`surface` evaluates a loss on a whole grid of the plane at once, with ``torch.func.vmap``
over the grid points (a 41 x 41 grid is one batched forward, not 1,681 of them).
:func:`window_around` picks a square window (same scale on both axes) that holds a whole
inner-loop path, :func:`losses_per_step` runs the inner loop at one ``inner_lr`` and
:func:`curvature_along` measures the support loss's curvature ``d^T H d / d^T d`` along a
direction, the number that decides how large a gradient step may be before it overshoots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import vmap

from mamlviz.core.episode import Examples
from mamlviz.core.functional import LossFn, Params, tree_dot, tree_norm, tree_sub
from mamlviz.core.implicit import hvp
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.rules import SGD
from mamlviz.errors import DivergenceError


@dataclass(frozen=True)
class Plane:
    """The 2-D slice ``origin + a * d1 + b * d2`` of parameter space."""

    origin: Params
    d1: Params
    d2: Params

    def point(self, a: float, b: float) -> Params:
        """The parameters at coordinates ``(a, b)``."""
        return {n: w + a * self.d1[n] + b * self.d2[n] for n, w in self.origin.items()}

    def points(self, a: Tensor, b: Tensor) -> Params:
        """Parameters at many coordinates at once: a leading axis of ``len(a)`` (= ``len(b)``)."""
        out = {}
        for n, w in self.origin.items():
            shape = (-1,) + (1,) * w.dim()
            out[n] = w + a.reshape(shape) * self.d1[n] + b.reshape(shape) * self.d2[n]
        return out

    def project(self, params: Params) -> tuple[float, float]:
        """Coordinates of the point of the plane closest to ``params`` (least squares).

        The directions need not be orthogonal (two random directions are only nearly so): the
        2 x 2 Gram system is solved exactly. A point that lies on the plane projects to itself.
        """
        v = tree_sub(params, self.origin)
        gram = torch.stack(
            [
                torch.stack([tree_dot(self.d1, self.d1), tree_dot(self.d1, self.d2)]),
                torch.stack([tree_dot(self.d2, self.d1), tree_dot(self.d2, self.d2)]),
            ]
        )
        rhs = torch.stack([tree_dot(self.d1, v), tree_dot(self.d2, v)])
        a, b = torch.linalg.solve(gram, rhs).tolist()
        return a, b

    def project_path(self, path: Sequence[Params]) -> Tensor:
        """Coordinates ``[len(path), 2]`` of a sequence of parameters (e.g. ``Trajectory.fast``)."""
        if not path:
            return torch.zeros(0, 2)
        return torch.tensor([self.project(p) for p in path])


def plane_through(origin: Params, first: Params, second: Params) -> Plane:
    """The plane through three points, with orthonormal directions and ``origin`` at (0, 0).

    ``first`` lands at ``(|first - origin|, 0)`` and ``second`` at ``(<v, d1>, |v_perp|)``.
    Raises ``ValueError`` if the three points are (nearly) on one line.
    """
    u = tree_sub(first, origin)
    v = tree_sub(second, origin)
    nu = tree_norm(u)
    if float(nu) == 0.0:
        raise ValueError("plane_through: the first point equals the origin, choose another")
    d1 = {n: t / nu for n, t in u.items()}
    coef = tree_dot(v, d1)
    w = {n: v[n] - coef * d1[n] for n in v}
    nw = tree_norm(w)
    if float(nw) <= 1e-6 * max(float(nu), float(tree_norm(v))):
        raise ValueError("plane_through: the three points are on one line, choose another")
    return Plane(origin, d1, {n: t / nw for n, t in w.items()})


def filter_normalized(direction: Params, weights: Params, *, bias: str = "zero") -> Params:
    """Rescale every filter of ``direction`` to the norm of the same filter of ``weights``.

    A filter is a slice along the first axis (a row of a ``Linear`` weight, an output channel of
    a conv). One-dimensional tensors (biases) are set to zero with ``bias="zero"`` (Li et al.'s
    default, "ignore biasbn"), or treated as one filter with ``bias="filter"``.
    """
    if bias not in ("zero", "filter"):
        raise ValueError(f"bias must be 'zero' or 'filter', got {bias!r}")
    out = {}
    for n, d in direction.items():
        w = weights[n]
        if d.dim() <= 1:
            if bias == "zero":
                out[n] = torch.zeros_like(d)
            else:
                out[n] = d * (w.norm() / (d.norm() + 1e-12))
            continue
        dims = tuple(range(1, d.dim()))
        d_norm = d.norm(dim=dims, keepdim=True)
        w_norm = w.norm(dim=dims, keepdim=True)
        out[n] = d * (w_norm / (d_norm + 1e-12))
    return out


def random_plane(origin: Params, generator: torch.Generator, *, bias: str = "zero") -> Plane:
    """Two filter-normalised Gaussian directions around ``origin`` (Li et al. 2018)."""

    def gaussian() -> Params:
        return {
            n: torch.randn(w.shape, generator=generator, dtype=w.dtype) for n, w in origin.items()
        }

    d1 = filter_normalized(gaussian(), origin, bias=bias)
    d2 = filter_normalized(gaussian(), origin, bias=bias)
    return Plane(origin, d1, d2)


def surface(
    loss_fn: LossFn,
    plane: Plane,
    examples: Examples,
    a_values: Tensor,
    b_values: Tensor,
    *,
    chunk: int = 512,
) -> Tensor:
    """Loss on the grid ``a_values x b_values``: shape ``[len(b_values), len(a_values)]``.

    Row ``i``, column ``j`` is the loss at ``plane.point(a_values[j], b_values[i])`` (the layout
    of contour plots). Grid points are evaluated with ``vmap`` in chunks of ``chunk``.
    """
    bb, aa = torch.meshgrid(b_values, a_values, indexing="ij")
    a_flat, b_flat = aa.reshape(-1), bb.reshape(-1)
    batched = vmap(loss_fn, in_dims=(0, None))
    parts = []
    with torch.no_grad():
        for i in range(0, a_flat.numel(), chunk):
            params = plane.points(a_flat[i : i + chunk], b_flat[i : i + chunk])
            parts.append(batched(params, examples))
    return torch.cat(parts).reshape(len(b_values), len(a_values))


def grid_around(
    coords: Tensor, n: int = 41, margin: float = 0.25, min_span: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """``n`` grid values per axis covering the points ``coords`` ``[m, 2]`` with a margin."""
    lo, hi = coords.min(0).values, coords.max(0).values
    span = torch.clamp(hi - lo, min=min_span)
    lo, hi = lo - margin * span, hi + margin * span
    dtype = coords.dtype
    return (
        torch.linspace(float(lo[0]), float(hi[0]), n, dtype=dtype),
        torch.linspace(float(lo[1]), float(hi[1]), n, dtype=dtype),
    )


def window_around(
    coords: Tensor,
    base: tuple[float, float, float, float],
    margin: float = 0.08,
) -> tuple[float, float, float, float]:
    """The smallest square window ``(a_lo, a_hi, b_lo, b_hi)`` holding ``base`` and ``coords``.

    ``coords`` ``[m, 2]`` are plane coordinates (e.g. a projected path); each side of their
    bounding box gets ``margin`` times the larger side as room, then the window is widened
    about its centre until both sides are equal, so distances read the same on both axes.
    Non-finite rows are ignored.
    """
    a_lo, a_hi, b_lo, b_hi = base
    finite = coords[torch.isfinite(coords).all(dim=1)]
    if len(finite):
        lo, hi = finite.min(0).values.tolist(), finite.max(0).values.tolist()
        room = margin * max(hi[0] - lo[0], hi[1] - lo[1])
        a_lo, a_hi = min(a_lo, lo[0] - room), max(a_hi, hi[0] + room)
        b_lo, b_hi = min(b_lo, lo[1] - room), max(b_hi, hi[1] + room)
    half = max(a_hi - a_lo, b_hi - b_lo) / 2
    a_mid, b_mid = (a_lo + a_hi) / 2, (b_lo + b_hi) / 2
    return a_mid - half, a_mid + half, b_mid - half, b_mid + half


def losses_per_step(
    loss_fn: LossFn, init: Params, support: Examples, inner_lr: float, steps: int
) -> Tensor:
    """Support loss before each of ``steps`` SGD steps and after the last: ``[steps + 1]``.

    Where the loss stops being finite (divergence) that entry and every later one are ``inf``.
    """
    trajectory = Trajectory()
    try:
        adapt(loss_fn, init, support, SGD(inner_lr), steps, record=trajectory.record,
              check_finite=True)  # fmt: skip
    except DivergenceError:
        pass
    out = torch.full((steps + 1,), float("inf"), dtype=torch.float64)
    out[: len(trajectory.losses)] = torch.tensor(trajectory.losses, dtype=torch.float64)
    return out.masked_fill(~torch.isfinite(out), float("inf"))


def curvature_along(
    loss_fn: LossFn, params: Params, examples: Examples, direction: Params
) -> float:
    r"""Curvature of the loss along ``direction``: the Rayleigh quotient ``d^T H d / d^T d``.

    H is the Hessian at ``params`` (Hessian-vector product, :func:`mamlviz.core.implicit.hvp`).
    On a quadratic a gradient step of size ``lr`` along a direction of curvature ``c`` changes
    the loss by ``-lr |g|^2 + lr^2 c |g|^2 / 2``: it undershoots for ``lr < 1/c``, lands on the
    minimum of that line at ``1/c`` and raises the loss beyond ``2/c``.
    """
    hd = hvp(loss_fn, params, examples, direction)
    return float(tree_dot(direction, hd) / tree_dot(direction, direction))
