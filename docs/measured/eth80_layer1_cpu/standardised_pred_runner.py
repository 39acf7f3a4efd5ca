"""Scratch: the deep LPL objective with the predictive term on features standardised by each unit's (detached)
batch std, so its scale matches the scale-free Hebbian term. Patches LPLObjective.terms, then runs the CLI."""
import sys

import torch

import lpl.objective as objective
from lpl.cli import main

original = objective.LPLObjective.terms


def terms(self, z_prev, z_now, gather=objective._same, decorr_views=None, hebb_views=None, pred_views=None):
    if pred_views is None:
        std = torch.cat((z_prev, z_now)).detach().std(dim=0) + 1e-4
        pred_views = (z_prev / std, z_now / std)
    return original(self, z_prev, z_now, gather, decorr_views=decorr_views, hebb_views=hebb_views,
                    pred_views=pred_views)


objective.LPLObjective.terms = terms
sys.exit(main(sys.argv[1:]))
