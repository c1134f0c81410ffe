"""A function run through ``torch.compile`` (inductor), falling back to eager with one line.

Sinusoid meta-learning is bound by dispatch, not arithmetic: a meta-iteration is about 10 MFLOP
spread over thousands of tiny ops, and ``torch.func``'s vmap and grad add Python work per op.
Compiling the batched meta-gradient traces that work once into a few fused C++ kernels (about 9x
faster for sinusoid MAML, ``bench --suite sinusoid``). The eager path stays the reference:
tests assert the compiled one equals it (float64 to 1e-10).

Compilation happens at the first call (tens of seconds cold) and again for each new input shape;
inductor's kernels are cached under ``<mamlviz cache>/inductor``, so a later process starts in
seconds. Where compilation is unavailable (no C++ compiler, an unsupported platform or op), the
first call says why in one line on stderr and the eager function runs from then on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from mamlviz.cache import use_inductor_cache
from mamlviz.errors import MamlvizError


def _own_error(err: BaseException) -> bool:
    """Errors that are the caller's (bad input, our checks), not the compiler's: re-raised."""
    return isinstance(err, MamlvizError | ValueError | KeyboardInterrupt)


class Compiled:
    """``fn`` through ``torch.compile`` from its first call on, or ``fn`` itself if that fails.

    ``state`` is ``"cold"`` before the first call, then ``"compiled"`` or ``"eager"``;
    ``compile_seconds`` is the first call's wall time (tracing, code generation and the run);
    ``reason`` says why the eager fallback was taken. Shapes are static (``dynamic=False``):
    a new shape compiles again once, and both stay cached.
    """

    def __init__(
        self, fn: Callable[..., Any], name: str, *, say: Callable[[str], None] | None = None
    ):
        self.fn, self.name = fn, name
        self.state = "cold"
        self.compile_seconds: float | None = None
        self.reason = ""
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        if self.state == "eager":
            return self.fn(*args)
        started = time.perf_counter()
        try:  # a new shape compiles here too, so a failure then also falls back
            if self._compiled is None:
                use_inductor_cache()
                self._compiled = torch.compile(self.fn, dynamic=False)
            out = self._compiled(*args)
        except Exception as err:
            if _own_error(err):
                raise
            self.fall_back(f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}")
            return self.fn(*args)
        if self.state == "cold":
            self.compile_seconds = time.perf_counter() - started
            self.state = "compiled"
        return out

    def fall_back(self, reason: str) -> None:
        """Run eager from now on, and say why in one line."""
        self.state, self.reason, self._compiled = "eager", reason, None
        self._say(
            f"mamlviz: torch.compile is unavailable for {self.name} ({reason}); running eager"
        )
