"""What a logged quantity means: every trainer declares the terms it logs where it logs them, and the run
record (``lpl.layout``) carries them to reports, so a report never guesses what a number is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Term:
    """A logged quantity: what it is (``meaning``), what it should do during training (``should``), and its
    group: ``objective`` (minimised), ``statistics`` (of weights and activity), ``schedule`` or ``throughput``."""

    meaning: str
    should: str = ""
    group: str = "objective"


LPL_TERMS: dict[str, Term] = {
    "pred": Term("predictive term: squared difference of the two views' responses",
                 "falls; it can rise while the Hebbian term spreads the responses (read it with their variance)"),
    "hebb": Term("Hebbian term: minus the log of each unit's variance over the batch",
                 "falls as units spread their responses, then levels off"),
    "decorr": Term("decorrelation term: squared covariances between different units (with --correlation, of each "
                   "unit divided by its standard deviation where that is below 1)", "stays small"),
}
RUN_TERMS: dict[str, Term] = {
    "loss": Term("the weighted objective summed over every head", "falls"),
    "lr": Term("learning rate (set by the schedule, not learned)", group="schedule"),
    "epoch": Term("passes over the training images so far", group="schedule"),
    "samples_per_s": Term("training pairs (or images) per second since the last record", group="throughput"),
    "elapsed_s": Term("seconds since training started (in this session: a resumed run starts again at 0)",
                      group="throughput"),
}


def terms_record(*groups: Mapping[str, Term]) -> dict[str, dict[str, Any]]:
    """The terms of ``groups`` as the run record keeps them: {name: {meaning, should, group}}. A name in several
    groups keeps its first meaning: a trainer's own terms, given first, win over the shared ``RUN_TERMS``."""
    out: dict[str, dict[str, Any]] = {}
    for group in groups:
        for name, term in group.items():
            out.setdefault(name, asdict(term))
    return out
