"""What the chapters need beyond the engine: derivations, analyses, exercises, widgets.

* ``derivation`` -- the exact meta-gradient, one step at a time (chapter 03);
* ``taylor`` -- Nichol et al.'s Taylor analysis of FOMAML and Reptile (chapter 05);
* ``landscape`` -- loss surfaces on 2-D slices of parameter space (chapter 04);
* ``exercises`` -- the exercise checkers and their registry (chapters 08 and 11 add theirs in
  ``exercises_omniglot`` and ``exercises_stream``);
* ``doctor`` -- chapter 00's environment check;
* ``omniglot`` -- load a shipped Omniglot learner, draw a task, adapt, predict;
* ``viz`` -- figures and widgets, each with a static twin.
"""
