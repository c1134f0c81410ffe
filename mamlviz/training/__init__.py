"""Training and its artefacts: problems, configs, ``fit``, checkpoints, evaluation, the hub.

* ``problems`` (+ ``omniglot_problem``) -- the benchmark registry: model, tasks, loss, metric
  and paper defaults per problem;
* ``config`` -- ``TrainConfig`` and ``build``: the one place a config becomes a learner;
* ``train`` -- ``fit``: reproducible, resumable meta-training; ``history`` -- its record;
* ``checkpoint`` -- verified, atomic checkpoint files; ``hub`` -- the shipped checkpoints;
* ``evaluate`` -- the papers' evaluation protocol.
"""
