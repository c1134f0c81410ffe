"""Registers the Omniglot problems: "omniglot" (5-way) and "omniglot-20way", MAML's conv net.

Settings follow the MAML paper and code for 5-way Omniglot (Finn et al. 2017, sec. 5.2 and
appendix A.1; REFERENCES.md sections 1 and 3):

* model: :func:`mamlviz.models.convnet.omniglot_convnet` (4 strided conv blocks, transductive BN);
* tasks: the standard 1200/423 class split with 100 of the 1200 held out for validation and
  90-degree rotations of the training characters as new classes (:mod:`mamlviz.tasks.omniglot`);
* inner: SGD, inner_lr 0.4, 1 step in meta-training, 3 steps at meta-test;
* outer: Adam 1e-3, meta-batch 32, 60,000 iterations;
* query_shots = shots: the MAML code draws 2K drawings per class and splits them into support
  and query, so 1-shot tasks have 1 query drawing per class;
* evaluation: 600 meta-test tasks, mean accuracy with a 95% CI (1.96 std / sqrt(600)).

Reptile (Nichol et al. 2018) uses its own published 5-way settings (their code's README
commands): 10 training shots per class whatever the test shots, Adam inner optimiser
(beta1 = 0) with lr 1e-3 and 5 steps on support minibatches of 10, meta-batch 5, outer step
eps = 1 annealed linearly to 0, 100,000 iterations; at test 50 steps on minibatches of 5. It
adapts on the support set only, so one trained model serves the 1-shot and the 5-shot rows.
One difference remains: our Adam starts every task with zero moments, while the official code
saves and restores only the trainable variables between tasks, so its Adam moments carry over
from task to task. Per-task Adam takes sign-like first steps on every weight and plateaued
(README); the shipped Reptile model uses ``--option inner_optimizer=sgd --inner-lr 0.2``.

"omniglot-20way" is MAML's 20-way setting (its code's flags for 20-way Omniglot; REFERENCES.md
section 3): inner_lr 0.1 and 5 inner steps in meta-training AND at meta-test, meta-batch 16,
1 query drawing per class at 1 shot, Adam 1e-3. ANIL (Raghu et al. 2020) and Meta-Dropout
(Lee et al. 2020) report Omniglot at 20 ways only, both with these MAML settings.

The images are loaded once, on first use, by :func:`mamlviz.tasks.omniglot_data.load_omniglot`
(env ``MAMLVIZ_OMNIGLOT`` names the folder with the two official zips; ``MAMLVIZ_CACHE`` the
cache folder).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mamlviz.models.convnet import omniglot_convnet
from mamlviz.tasks.omniglot import OmniglotTasks
from mamlviz.tasks.omniglot_data import load_omniglot
from mamlviz.training.problems import Problem, _frozen, register_problem

WAYS = 5
WAYS_20 = 20
TRAIN_5WAY = dict(
    inner_lr=0.4,
    inner_steps=1,
    shots=1,
    query_shots=1,
    meta_batch=32,
    outer_lr=1e-3,
    iterations=60_000,
    checkpoint_every=100,
    snapshot_every=1000,
)


@cache
def omniglot_tasks(ways: int = WAYS) -> OmniglotTasks:
    """The shared task distribution over all splits (loads the images on the first call)."""
    if ways != WAYS:  # one copy of the images: the 20-way tasks are a view of the 5-way ones
        return omniglot_tasks(WAYS).view(ways=ways)
    return OmniglotTasks(load_omniglot(progress=False), ways=WAYS)


# Prototypical Networks (Snell et al. 2017, sec. 3.1): one 60-way episode per update with 5 query
# points per class, Adam 1e-3 halved every 2000 episodes, training shots = test shots; no inner
# loop. The paper gives no episode count; 6,000 is this course's CPU budget (README).
PROTONET = dict(
    inner_lr=0.0,
    inner_steps=0,
    shots=1,
    query_shots=5,
    meta_batch=1,
    outer_lr=1e-3,
    iterations=6000,
    options={"train_ways": 60, "halve_every": 2000},
)

EVAL_5WAY = dict(shots=1, query_shots=None, tasks=600, steps=3)


def omniglot_problem(
    name: str, ways: int, labels: str = "shuffled", classes: int | None = None, **fields: Any
) -> Problem:
    """An Omniglot problem over the shared images: ``ways``-way tasks, MAML's conv net for
    ``ways`` classes, stacked batching; meta-training tasks labelled ``labels`` and drawn from
    the first ``classes`` training classes (None: all); meta-test and validation tasks are
    always the standard ones. ``fields`` are the rest of the ``Problem``."""

    def make_tasks(split: str) -> OmniglotTasks:
        if split != "train":
            return omniglot_tasks(ways).view(split, labels="shuffled")
        return omniglot_tasks(ways).view(split, labels=labels, classes=classes)

    return Problem(
        name=name,
        make_model=lambda seed, dtype: omniglot_convnet(ways, seed=seed, dtype=dtype),
        make_tasks=make_tasks,
        loss="cross_entropy",
        metric="accuracy",
        batching="stacked",
        **fields,
    )


register_problem(
    omniglot_problem(
        "omniglot",
        WAYS,
        title="Omniglot 5-way few-shot classification",
        paper="Finn, Abbeel & Levine 2017, sec. 5.2",
        train_defaults=_frozen(TRAIN_5WAY),
        algorithm_defaults=_frozen(
            {
                "reptile": _frozen(
                    dict(
                        inner_lr=1e-3,
                        inner_steps=5,
                        shots=10,
                        query_shots=1,
                        meta_batch=5,
                        outer_lr=1.0,
                        iterations=100_000,
                        options={"inner_optimizer": "adam", "inner_batch": 10},
                    )
                ),
                # iMAML's Omniglot setting (Rajeswaran et al. 2019, Table 2 caption): 16 SGD
                # steps of 0.1 on the proximal objective, lambda 2, 5 CG steps, at train and test
                "imaml": _frozen(dict(inner_lr=0.1, inner_steps=16)),
                "protonet": _frozen(PROTONET),
            }
        ),
        eval_defaults=_frozen(EVAL_5WAY),
        algorithm_eval_defaults=_frozen(
            {
                "reptile": _frozen(dict(steps=50, inner_batch=5)),
                "imaml": _frozen(dict(steps=16)),
                "protonet": _frozen(dict(steps=0)),  # no inner loop
            }
        ),
    )
)

register_problem(
    omniglot_problem(
        "omniglot-20way",
        WAYS_20,
        title="Omniglot 20-way few-shot classification",
        paper="Finn, Abbeel & Levine 2017, sec. 5.2 (20-way settings of the MAML code)",
        # MAML's 20-way flags differ from its 5-way ones in these only; 20-way iterations cost
        # ~15x more on CPU, hence the denser checkpoints.
        train_defaults=_frozen(
            TRAIN_5WAY
            | dict(
                inner_lr=0.1, inner_steps=5, meta_batch=16, checkpoint_every=50, snapshot_every=500
            )
        ),
        eval_defaults=_frozen(EVAL_5WAY | dict(steps=5)),
    )
)

register_problem(
    omniglot_problem(
        "omniglot-fixed-labels",
        WAYS,
        labels="fixed",  # only meta-training changes; meta-test is the standard one
        title="Omniglot 5-way, meta-training labels fixed per class (non-mutually-exclusive)",
        paper="Yin, Tucker, Zhou, Levine & Finn 2020, sec. 3 (label memorisation)",
        train_defaults=_frozen(TRAIN_5WAY),
        eval_defaults=_frozen(EVAL_5WAY),
    )
)

# Label memorisation needs each class to recur often enough to be learned by heart: over all
# 4,400 training classes 1,000 iterations meet each class ~36 times and nothing is memorised
# (chapter 09). Over the first 100 classes (100 characters, unrotated) the same budget meets each
# class ~1,600 times. The two problems differ in the label assignment only.
for _labels, _suffix in (("shuffled", ""), ("fixed", "-fixed-labels")):
    register_problem(
        omniglot_problem(
            f"omniglot-100{_suffix}",
            WAYS,
            labels=_labels,
            classes=100,
            title=f"Omniglot 5-way, meta-training on 100 classes, labels {_labels}",
            paper="Yin, Tucker, Zhou, Levine & Finn 2020, sec. 3 (label memorisation)",
            train_defaults=_frozen(TRAIN_5WAY),
            eval_defaults=_frozen(EVAL_5WAY),
        )
    )
