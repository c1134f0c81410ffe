"""What the chapters need beyond the engine: derivations, analyses, exercises, widgets.

* ``derivation`` -- the exact meta-gradient, one step at a time (chapter 03);
* ``taylor`` -- Nichol et al.'s Taylor analysis of FOMAML and Reptile (chapter 05);
* ``landscape`` -- loss surfaces on 2-D slices of parameter space (chapter 04);
* ``exercises`` -- the checkers of every chapter's exercises;
* ``omniglot`` -- load a shipped Omniglot learner, draw a task, adapt, predict;
* ``viz`` -- figures and widgets, each with a static twin.
"""
