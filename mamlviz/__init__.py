"""mamlviz: optimization-based meta-learning (MAML and its family), built to be read and seen.

The engine is functional: fast weights are ``dict[str, Tensor]`` (``Params``), one inner loop
serves every algorithm (:func:`adapt`), and each algorithm is a registry row
(:func:`make_learner`). Subpackages, in the order data flows through them: ``tasks`` ->
``core`` (episode, inner loop, meta-gradient, outer step) -> ``algorithms`` -> ``training``
(checkpoints, evaluation, the shipped hub) -> ``course`` (what the notebooks show).

>>> import mamlviz
>>> ckpt = mamlviz.load("sinusoid-maml")                  # a shipped checkpoint
>>> learner = mamlviz.make_learner("maml", mamlviz.sinusoid_mlp(), "mse", inner_lr=0.01,
...                                inner_steps=1)
"""

from mamlviz.algorithms import ALGORITHMS, AlgorithmSpec, get_algorithm, make_learner, register
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import (
    Params,
    flatten,
    make_loss,
    params_of,
    tree_dot,
    tree_norm,
    tree_sub,
    unflatten,
)
from mamlviz.core.implicit import conjugate_gradient, hvp, implicit
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.learner import Learner
from mamlviz.core.metagrad import reptile, unrolled
from mamlviz.core.outer import meta_gradient, meta_step
from mamlviz.core.rules import SGD, Adam, Kronecker, PerParamLR
from mamlviz.errors import DivergenceError
from mamlviz.models import ConvNet, omniglot_convnet, sinusoid_mlp
from mamlviz.tasks import TaskDistribution
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid
from mamlviz.training.config import TrainConfig, build
from mamlviz.training.evaluate import Evaluation, evaluate, evaluate_checkpoint
from mamlviz.training.history import History
from mamlviz.training.hub import Checkpoint, available, load
from mamlviz.training.problems import get_problem
from mamlviz.training.train import fit

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "SGD",
    "Adam",
    "AlgorithmSpec",
    "Checkpoint",
    "ConvNet",
    "DivergenceError",
    "Episode",
    "Evaluation",
    "Examples",
    "History",
    "Kronecker",
    "Learner",
    "Params",
    "PerParamLR",
    "SinusoidTasks",
    "TaskDistribution",
    "TrainConfig",
    "Trajectory",
    "__version__",
    "adapt",
    "available",
    "build",
    "conjugate_gradient",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "flatten",
    "get_algorithm",
    "get_problem",
    "hvp",
    "implicit",
    "load",
    "make_learner",
    "make_loss",
    "meta_gradient",
    "meta_step",
    "omniglot_convnet",
    "params_of",
    "register",
    "reptile",
    "sinusoid",
    "sinusoid_mlp",
    "tree_dot",
    "tree_norm",
    "tree_sub",
    "unflatten",
    "unrolled",
]
