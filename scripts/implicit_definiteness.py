"""How often iMAML's implicit system (1 + damping) I + H / lam is indefinite, over tasks.

    python scripts/implicit_definiteness.py sinusoid-imaml-10shot [--tasks 60]
    python scripts/implicit_definiteness.py --fresh sinusoid --lam 2 --inner-steps 1 [--tasks 25]

For each training task the learner (a checkpoint's, or with ``--fresh`` the problem's iMAML
learner at its seed-0 init) runs its own proximal inner loop from theta; H is the support-loss
Hessian at the adapted phi, computed densely (small models only). Printed, per damping: on how
many tasks the system has an eigenvalue <= 0, where CG's answer is no meta-gradient and
``meta_gradient`` refuses the meta-batch. It chose iMAML's default damping
(``mamlviz/algorithms/imaml.py``) and the sinusoid problem's lam and damping.
"""

from __future__ import annotations

import argparse

import torch

from mamlviz.core.functional import detach, flatten, proximal_loss, unflatten
from mamlviz.training import hub
from mamlviz.training.config import TrainConfig, build
from mamlviz.training.problems import get_problem

DAMPINGS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="a shipped name or file (or use --fresh)")
    parser.add_argument("--fresh", metavar="PROBLEM", help="a fresh iMAML learner of PROBLEM")
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--lam", type=float, default=None, help="default: the learner's")
    parser.add_argument("--inner-steps", type=int, default=None, help="default: the learner's")
    args = parser.parse_args()
    if (args.checkpoint is None) == (args.fresh is None):
        parser.error("give a checkpoint or --fresh PROBLEM, not both")
    torch.set_num_threads(1)
    overrides = {} if args.inner_steps is None else {"inner_steps": args.inner_steps}
    if args.fresh:
        options = {} if args.lam is None else {"lam": args.lam}
        config = TrainConfig.for_problem(args.fresh, "imaml", options=options, **overrides)
        learner, meta = build(config)
        name = f"fresh {args.fresh} init"
    else:
        loaded = hub.load(args.checkpoint)
        config, meta, name = loaded.config, loaded.meta, args.checkpoint
        learner = loaded.learner(**overrides)
    lam = args.lam if args.lam is not None else float(learner.options["lam"])
    tasks = get_problem(config.problem).make_tasks("train")
    episode = tasks.sample(torch.Generator().manual_seed(5), config.shots, 1, args.tasks)
    fast, frozen, rule = learner.split(detach(meta))
    loss = learner.support_loss_fn(frozen)
    smallest = []
    for i in range(args.tasks):
        support = episode.task(i).support
        # the learner's proximal objective, at the lam asked for
        objective = proximal_loss(loss, fast, lam)
        phi = learner.inner_loop(fast, frozen, rule, support, first_order=True, objective=objective)
        phi = detach(phi)
        h = torch.func.hessian(lambda v, phi=phi, s=support: loss(unflatten(v, phi), s))(
            flatten(phi)
        )
        smallest.append(float(torch.linalg.eigvalsh(h.double())[0]))
    values = torch.tensor(smallest)
    steps = learner.inner_steps
    print(f"{name}: lambda_min(H) at phi after {steps} inner steps, {args.tasks} training tasks:")
    print(f"  median {values.median():.2f}, min {values.min():.2f}; lam = {lam:g}")
    for damping in DAMPINGS:
        bad = int((1 + damping + values / lam <= 0).sum())
        print(f"  damping {damping:<4g}: indefinite on {bad} of {args.tasks} tasks")


if __name__ == "__main__":
    main()
