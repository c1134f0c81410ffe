"""MAML, First-Order MAML and the joint-training baseline: SGD inner steps, unrolled meta-gradient.

| name       | inner rule    | meta-gradient                          |
| ---------- | ------------- | -------------------------------------- |
| maml       | SGD(inner_lr) | unrolled, second order                 |
| fomaml     | SGD(inner_lr) | unrolled, inner gradients detached     |
| pretrained | SGD(inner_lr) | the query loss at theta (0 inner steps)|

Finn, Abbeel & Levine 2017: theta <- theta - beta grad_theta sum_i L_query(theta - alpha
grad L_support(theta)); FOMAML drops the Hessian term of that gradient.
"""

from __future__ import annotations

from mamlviz.algorithms.registry import AlgorithmSpec, register, sgd
from mamlviz.core.metagrad import unrolled

register(AlgorithmSpec("maml", "MAML", "Finn, Abbeel & Levine 2017", sgd, unrolled))
register(
    AlgorithmSpec(
        "fomaml", "First-Order MAML", "Finn, Abbeel & Levine 2017", sgd, unrolled, first_order=True
    )
)
# The MAML paper's "pretrained" baseline: one network trained on all tasks jointly. It is MAML
# with zero inner steps during meta-training (the query loss at theta itself); it is then
# fine-tuned with the same inner loop as the others at evaluation.
register(
    AlgorithmSpec(
        "pretrained", "Pretrained (joint training)", "Finn et al. 2017, sec. 5.1", sgd, unrolled
    )
)
