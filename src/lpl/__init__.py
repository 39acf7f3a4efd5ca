"""Latent Predictive Learning: the rule, the networks it trains, the commands, the analysis.

A map of the package (each module's docstring says more):

- The rule: ``rules`` (the terms as pure functions of ``(batch, features)`` tensors) and
  ``objective`` (``LPLObjective``, the one place that weights them, with the closed-form rule).
- What learns: ``layers`` (dense LPL layers and their local plasticity step), ``locality``
  (detached inputs), ``convnet`` (the paper's VGG-11) and ``heads`` (per-layer objectives for it:
  LPL, BYOL, SimCLR), ``small_byol`` (the seed's BYOL baseline, first convolution trained).
- Data: ``data`` (CIFAR-10, image folders, shapes, files; temporal pairs and augmentations).
- Commands: ``train/`` holds one module per training command (``train/dense``, ``train/deep``,
  ``train/byol``, ``train/sanity``), each a config dataclass and a loop of one screen, and
  ``train/run`` the fault handling they share; ``reproduce`` and ``demo`` compose them;
  ``cli`` maps sub-commands to them, ``config`` turns dataclasses into flags.
- Outputs and analysis: ``layout`` (where a run writes, its run record, the export schema), ``load``
  (``lpl.load`` and ``lpl.features``: a trained network back from its run folder), ``analysis/``
  (statistics, probes, per-layer readouts, invariance, comparison tables, reports), ``io`` (atomic writes).
"""

from lpl.load import features, load

__all__ = ["features", "load"]
