"""Figures and widgets of the course, kept out of the notebooks so that tests can drive them.

* :mod:`mamlviz.course.viz.common` -- sliders, status line, readouts, static fallbacks;
* :mod:`mamlviz.course.viz.sinusoid` -- plotting functions for sinusoid tasks and fitted curves;
* :mod:`mamlviz.course.viz.adaptation` -- chapter 02's widget (inner loop in function space);
* :mod:`mamlviz.course.viz.landscape` -- chapter 04's widget (loss surfaces and inner-loop paths);
* :mod:`mamlviz.course.viz.tasks`, ``derivation``, ``reptile``, ``rules``, ``implicit`` --
  chapters 01, 03, 05, 06 and 07;
* :mod:`mamlviz.course.viz.toy2d` -- chapter 05's 2-D toy (task lines and where each algorithm
  puts theta, from the closed forms of :mod:`mamlviz.course.toy2d`);
* :mod:`mamlviz.course.viz.omniglot` -- chapter 08 (data explorer, episode sampler, adaptation);
* :mod:`mamlviz.course.viz.stream` -- chapter 11 (the stream player of MER and its baselines).

Submodules are imported on demand: ``from mamlviz.course.viz.adaptation import AdaptationExplorer``.
"""
