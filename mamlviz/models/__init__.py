"""The networks: the sinusoid MLP, the Omniglot conv net, and Meta-Dropout's noise-wrapped MLP.

Plain ``nn.Module``s; the engine runs them through ``torch.func.functional_call`` with a dict of
fast weights, so a model never needs to know it is being meta-learned.
"""

from mamlviz.models.convnet import ConvNet, omniglot_convnet
from mamlviz.models.mlp import MLP, sinusoid_mlp
from mamlviz.models.noise import MetaDropoutMLP

__all__ = ["MLP", "ConvNet", "MetaDropoutMLP", "omniglot_convnet", "sinusoid_mlp"]
