"""Collapse: a unit whose responses hardly vary answers every input alike. Trainers log it, analysis judges it."""

from __future__ import annotations

from torch import Tensor

COLLAPSE_STD = 0.1  # a unit whose standard deviation over the inputs is below this is collapsed


def collapsed_units(std: Tensor) -> int:
    """How many units have a standard deviation (``std``: one per unit) below ``COLLAPSE_STD``."""
    return int((std < COLLAPSE_STD).sum())
