r"""Meta-Dropout's conv model (Lee, Nam, Yang & Hwang 2020, sec. 3; REFERENCES 4.7).

Beside each conv block l of :class:`mamlviz.models.convnet.ConvNet` a noise convolution of the
same shape (plus a bias) reads the block's input h:

    \mu = conv(h; \theta_l),   a = conv(h; \phi_l) + b_l,   h' = relu(BN(\mu (.) softplus(z))),

with z ~ N(a, I) in the inner loop's support forward, and z = a (the mean) in every other
forward. The noise net (\phi, b) is meta-learned and never adapted.

Two choices of ours, and why:

* The noise net starts at zero (weights and bias). Batch norm divides out any per-channel
  constant factor, so with \phi = 0 the noise-free forward equals the base net's: a warm start
  from a MAML checkpoint starts exactly at MAML's query network, while the support forward
  already sees the multiplicative noise softplus(z), z ~ N(0, 1), that the paper injects.
* The paper also perturbs the logits of the last layer; we perturb the conv features only, so
  the head, and every checkpoint's head, is the base net's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mamlviz.models.convnet import BLOCKS, ConvNet, stacked_logits
from mamlviz.models.noise import NOISE_MODES, multiplier


class MetaDropoutConvNet(ConvNet):
    """The Omniglot conv net plus ``noise.conv<l>`` beside each ``conv<l>``; names unchanged,
    so a MAML checkpoint loads into it."""

    noisy_support = True  # the stacked path runs the support forward with noisy=True

    def __init__(self, ways: int, *, noise: str = "sample", **kwargs: bool | int) -> None:
        super().__init__(ways, **kwargs)  # type: ignore[arg-type]
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        self.noise_mode = noise
        self.noise = nn.ModuleDict()
        for i in range(1, BLOCKS + 1):
            conv = getattr(self, f"conv{i}")
            layer = nn.Conv2d(conv.in_channels, conv.out_channels, 3, self.stride, 1)
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
            self.noise[f"conv{i}"] = layer

    @classmethod
    def from_convnet(cls, net: ConvNet, noise: str = "sample") -> MetaDropoutConvNet:
        """Wrap a trained or fresh ``ConvNet``: same weights, a zero noise net."""
        first = net.conv1
        model = cls(
            net.ways,
            noise=noise,
            channels=first.in_channels,
            filters=first.out_channels,
            pool=net.pool,
            size=net.size,
        )
        model = model.to(dtype=first.weight.dtype, device=first.weight.device)
        model.load_state_dict(net.state_dict(), strict=False)
        return model

    def forward(self, x: Tensor, noisy: bool = False) -> Tensor:
        def scale(i: int, h: Tensor) -> Tensor:
            # a module call (not F.conv2d on its weight), so forward hooks see a
            return multiplier(self.noise[f"conv{i}"](h), self.noise_mode, noisy)

        return self.head(self.features(x, scale))

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor, noisy: bool = False) -> Tensor:
        """T task networks at once (``ConvNet.stacked_forward``); the noise net is stacked too."""
        tasks = x.shape[0]

        def scale(i: int, h: Tensor) -> Tensor:
            w, b = params[f"noise.conv{i}.weight"], params[f"noise.conv{i}.bias"]
            a = F.conv2d(
                h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), self.stride, 1, groups=tasks
            )
            return multiplier(a, self.noise_mode, noisy)

        return stacked_logits(self, params, x, scale)
