"""Scratch: the deep LPL objective with the predictive term on features standardised by each unit's (detached)
batch std, so its scale matches the scale-free Hebbian term. Patches LPLObjective.terms, then runs the CLI."""
import sys

import lpl.objective as objective
from lpl.cli import main

original = objective.LPLObjective.terms


def terms(self, views, gather=None, decorr_views=None, hebb_views=None, pred_views=None):
    if pred_views is None:
        std = views.detach().flatten(0, 1).std(dim=0) + 1e-4
        pred_views = tuple((views / std).unbind(0))
    return original(self, views, gather, decorr_views=decorr_views, hebb_views=hebb_views, pred_views=pred_views)


objective.LPLObjective.terms = terms
sys.exit(main(sys.argv[1:]))
