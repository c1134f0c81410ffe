"""Errors with messages that say what went wrong and what to change.

Every error of ours derives from :class:`MamlvizError` (and from the built-in class it is a
kind of, so ``except ValueError`` still catches a bad argument); the command line prints them as
one line, ``mamlviz <command>: error: <message>``, and exits with code 2.
"""

from __future__ import annotations

import math
import numbers


class MamlvizError(Exception):
    """Base of the package's own errors: the message says what, the allowed range, what to do."""


class Interrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); says where, and what was saved."""

    def __init__(self, iteration: int, path: str | None, saved: int | None, every: int):
        self.iteration, self.path, self.saved = iteration, path, saved
        if path is None:
            where = "no checkpoint was being written (no --out)"
        elif saved is None:
            where = f"nothing was saved yet (the first checkpoint comes at {every} iterations)"
        else:
            where = f"the checkpoint at {path} (iteration {saved}) is intact"
        super().__init__(f"interrupted at iteration {iteration}; {where}; continue with --resume")


class DivergenceError(MamlvizError, FloatingPointError):
    """The loss became NaN or infinite during adaptation or meta-training."""

    def __init__(self, where: str, step: int, loss: float, hint: str = "lower the learning rate"):
        self.where, self.step, self.loss = where, step, loss
        kind = "NaN" if math.isnan(loss) else "infinite"
        super().__init__(f"diverged: loss is {kind} at {where} {step}, {hint}")


class IndefiniteWarning(UserWarning):
    """iMAML skipped the tasks of a meta-batch whose implicit system was not positive definite
    (option ``indefinite=skip``); the meta-gradient is the mean over the other tasks."""

    def __init__(self, tasks: int, total: int, curvature: float):
        self.tasks, self.total, self.curvature = tasks, total, curvature
        super().__init__(
            f"implicit gradient: skipped {tasks} of {total} tasks whose (1 + damping) I + H / lam"
            f" is not positive definite (smallest curvature seen {curvature:.3g} <= 0); the"
            " meta-gradient is the mean over the other tasks"
        )


class IndefiniteError(MamlvizError, ValueError):
    """iMAML's implicit system (1 + damping) I + H / lam was not positive definite on a task:
    its solution is no meta-gradient, so it is refused rather than used."""

    def __init__(self, tasks: int, total: int, curvature: float):
        self.tasks, self.total, self.curvature = tasks, total, curvature
        super().__init__(
            f"implicit gradient refused: (1 + damping) I + H / lam is not positive definite on"
            f" {tasks} of {total} tasks (smallest curvature seen {curvature:.3g} <= 0; the support"
            " Hessian H has an eigenvalue below -lam (1 + damping)). Raise the option damping"
            " (>= 0) or lam (> 0), or lower inner_lr so the inner loop stays near a minimum;"
            " or pass the option indefinite=skip to drop such tasks from the meta-batch."
        )


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` naming ``name`` and the allowed range when ``value`` is outside it."""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    allowed = f"{left}{lo}, {hi}{right}"
    kind = "an integer" if integer else "a finite number"
    # numbers.Real admits numpy scalars (np.float32, np.int64) as well as int and float
    bad_type = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if integer and not bad_type:
        bad_type = not float(value).is_integer()
    if bad_type or not math.isfinite(value):
        raise ValueError(f"{name} must be {kind} in {allowed}, got {value!r}")
    if (low is not None and (value < low or (low_open and value == low))) or (
        high is not None and (value > high or (high_open and value == high))
    ):
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
