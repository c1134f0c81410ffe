r"""Meta-Dropout's model (Lee, Nam, Yang & Hwang 2020): learned, input-dependent noise.

For every hidden layer l with input h, the model layer and a noise layer of the same shape give

    \mu = W h + b,      a = W_\phi h + b_\phi,      h' = relu(\mu (.) softplus(z)),

with z ~ N(a, I) in the SUPPORT forward of the inner loop only. The noise net (W_\phi, b_\phi)
is meta-learned but never adapted: it perturbs the inner gradient so that the adapted weights
generalise, and the outer loss teaches it how.

Query / test forward: deterministic, z replaced by its mean a, i.e. \mu (.) softplus(a). This
is the official code's choice (REFERENCES 4.7) and we keep it because it makes the query network
the noise-free counterpart of the support network: the inner loop adapts weights for a layer
scaled by softplus(z), and evaluating them with a multiplier of 1 instead would change every
layer's scale between adaptation and evaluation.

``noise`` selects the multiplier: ``"sample"`` (softplus(z), z ~ N(a, I), support only),
``"mean"`` (softplus(a) everywhere: deterministic, for tests) and ``"off"`` (exactly 1: the
noise net is unused, and Meta-Dropout is MAML, tested). ``samples`` averages the support loss
over that many noise draws (the paper uses 1 in training and 30 at test).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlviz.models.mlp import MLP

NOISE_MODES = ("sample", "mean", "off")
NOISE_PREFIX = "noise."


def multiplier(a: Tensor, mode: str, noisy: bool) -> Tensor:
    """``softplus(z)``: the factor applied to a layer's pre-activation ``mu`` (any layer type)."""
    if mode == "off":
        return torch.ones_like(a)
    if mode == "sample" and noisy:
        # randn_like draws fresh noise per task under vmap(randomness="different").
        return F.softplus(a + torch.randn_like(a))
    return F.softplus(a)


class MetaDropoutMLP(MLP):
    """The sinusoid MLP plus a noise layer ``noise.fc<l>`` beside each hidden layer ``fc<l>``.

    Parameter names of the MLP are unchanged, so a MAML checkpoint loads into it.
    """

    def __init__(
        self,
        in_features: int = 1,
        hidden: tuple[int, ...] = (40, 40),
        out_features: int = 1,
        noise: str = "sample",
    ):
        super().__init__(in_features, hidden, out_features)
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        self.noise_mode = noise
        sizes = (in_features, *hidden)
        self.noise = nn.ModuleDict(
            {f"fc{i}": nn.Linear(sizes[i - 1], sizes[i]) for i in range(1, len(hidden) + 1)}
        )

    @classmethod
    def from_mlp(cls, mlp: MLP, noise: str = "sample") -> MetaDropoutMLP:
        """Wrap a trained or fresh ``MLP``: same weights, a new noise net of matching shapes."""
        first = mlp.fc1
        model = cls(first.in_features, mlp.hidden, mlp.out.out_features, noise)
        model = model.to(dtype=first.weight.dtype, device=first.weight.device)
        model.load_state_dict(mlp.state_dict(), strict=False)
        return model

    def forward(self, x: Tensor, noisy: bool = False) -> Tensor:
        for i in range(1, len(self.hidden) + 1):
            mu = getattr(self, f"fc{i}")(x)
            a = self.noise[f"fc{i}"](x)
            x = torch.relu(mu * multiplier(a, self.noise_mode, noisy))
        return self.out(x)
