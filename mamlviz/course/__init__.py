"""What the chapters need beyond the engine: derivations, analyses, exercises, widgets.

* ``derivation`` -- the exact meta-gradient, one step at a time (chapter 03);
* ``taylor`` -- Nichol et al.'s Taylor analysis of FOMAML and Reptile (chapter 05);
* ``landscape`` -- loss surfaces on 2-D slices of parameter space (chapter 04);
* ``exercises`` -- the exercise checkers and their registry (chapters 08-11 add theirs in
  ``exercises_omniglot``, ``exercises_reuse``, ``exercises_dropout``, ``exercises_stream``);
* ``doctor`` -- chapter 00's environment check;
* ``omniglot`` -- load a shipped Omniglot learner, draw a task, adapt, predict;
* ``feature_reuse`` -- rapid learning or feature reuse: layer-restricted adaptation, linear CKA,
  prototypes, label memorisation (chapter 09; checkers in ``exercises_reuse``);
* ``dropout`` -- Meta-Dropout's learned noise map and fits under noise draws (chapter 10;
  checkers in ``exercises_dropout``);
* ``toy2d`` -- the 2-D toy whose tasks' solutions are lines: closed-form points of MAML,
  FOMAML, Reptile, iMAML and joint training (chapter 05);
* ``summary`` -- every shipped learner as a row on its benchmark, ranking and paired differences
  (chapter 12; checkers in ``exercises_summary``);
* ``viz`` -- figures and widgets, each with a static twin.
"""
