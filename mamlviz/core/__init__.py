"""The engine: fast weights, THE inner loop, meta-gradients and the batched outer step.

In the order a meta-iteration runs through it (imports only point down this list):

* ``outer`` -- ``meta_step`` / ``meta_gradient``: the meta-batch under ``vmap`` (the per-task
  loop as reference); ``stacked`` -- the same for conv nets, tasks as grouped convolutions;
* ``metagrad``, ``implicit`` -- the meta-gradient strategies: unrolled (MAML and its order
  switch), Reptile's theta - phi, implicit (CG on (I + H / lambda));
* ``learner`` -- ``Learner``: one algorithm applied to one model, and ``inner_loop``, which runs
  ``inner`` -- ``adapt``, the one inner loop every algorithm uses -- with its settings;
* ``rules`` -- inner update rules (SGD, Adam, per-parameter, Kronecker);
* ``functional`` -- ``Params = dict[str, Tensor]``, ``functional_call`` and tree helpers;
* ``episode`` -- ``Episode(support, query)``, the data every layer passes around.

Imports only torch (and :mod:`mamlviz.errors`).
"""
