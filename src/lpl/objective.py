"""The LPL objective: the rule's terms (``lpl.rules``) weighted by their coefficients."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lpl import rules
from lpl.rules import Reduction


@dataclass(frozen=True)
class LPLObjective:
    """``pred * L_pred + hebb * L_hebb + decorr * L_decorr`` for one layer and a temporal pair.

    The predictive term pulls the later view toward the stop-gradient earlier view; the Hebbian
    and decorrelation terms are averaged over both views (as the official code does). A zero
    coefficient switches a term off (ablations) and skips its computation.
    """

    pred: float = 1.0
    hebb: float = 1.0
    decorr: float = 10.0
    reduction: Reduction = "sum"
    eps: float = rules.EPS
    stop_gradient: bool = True  # of the earlier view in the predictive term (autograd paths only)

    def terms(self, z_prev: Tensor, z_now: Tensor) -> dict[str, Tensor]:
        """Unweighted value of every term (switched-off ones too, for monitoring); (B, M) inputs."""
        r, views = self.reduction, torch.stack((z_prev, z_now))
        return {
            "pred": rules.predictive_loss(z_now, z_prev, r),
            "hebb": 0.5 * rules.hebbian_loss(views, r, self.eps),
            "decorr": 0.5 * rules.decorrelation_loss(views, r),
        }

    def loss(self, z_prev: Tensor, z_now: Tensor) -> Tensor:
        """Weighted total, differentiable (the autograd path and the deep network use it)."""
        r, views, total = self.reduction, torch.stack((z_prev, z_now)), z_now.new_zeros(())
        if self.pred:
            total = total + self.pred * rules.predictive_loss(z_now, z_prev, r, self.stop_gradient)
        if self.hebb:
            total = total + 0.5 * self.hebb * rules.hebbian_loss(views, r, self.eps)
        if self.decorr:
            total = total + 0.5 * self.decorr * rules.decorrelation_loss(views, r)
        return total

    def grad(self, views: Tensor) -> Tensor:
        """Closed-form d loss / d views for ``views`` (2, B, M) = (z_prev, z_now); autograd's value.

        Both views' statistics are computed in one batched pass. Assumes ``stop_gradient``.
        """
        r, zc, grad = self.reduction, rules.centered(views), torch.zeros_like(views)
        if self.hebb:
            grad.add_(rules.hebbian_grad_centered(zc, r, self.eps), alpha=0.5 * self.hebb)
        if self.decorr:
            grad.add_(rules.decorrelation_grad_centered(zc, r), alpha=0.5 * self.decorr)
        if self.pred:
            grad[1].add_(rules.predictive_grad(views[1], views[0], r), alpha=self.pred)
        return grad
