"""The LPL objective: the rule's terms (``lpl.rules``) weighted by their coefficients.

This is the one place where the terms are weighted. The dense closed-form rule (``grad``), the
dense autograd path (``loss``) and the deep network (``lpl.heads.LPLHead``, through ``terms``
and ``weighted``) all use it, so a new term or another weighting is an edit here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lpl import rules
from lpl.rules import Reduction

TERMS = ("pred", "hebb", "decorr")


@dataclass(frozen=True)
class LPLObjective:
    """``pred * L_pred + hebb * L_hebb + decorr * L_decorr`` for one layer and a temporal pair.

    The predictive term pulls the later view toward the (by default stop-gradient) earlier view;
    the Hebbian and decorrelation terms are averaged over both views, as the official code does.
    A zero coefficient switches a term off (ablations). The defaults are the official deep-network
    coefficients with means over units; the dense trainers pass their learning rates instead.
    """

    pred: float = 1.0
    hebb: float = 1.0
    decorr: float = 10.0
    reduction: Reduction = "mean"
    eps: float = rules.EPS
    stop_gradient: bool = True  # of the earlier view in the predictive term (autograd paths)
    correlation: bool = False  # decorrelate units below unit scale by correlation coefficients (rules.standardised)

    def coefficients(self) -> dict[str, float]:
        return {"pred": self.pred, "hebb": self.hebb, "decorr": self.decorr}

    def terms(self, views: Tensor, gather: Callable[[Tensor], Tensor] | None = None,
              decorr_views: Tensor | None = None, hebb_views: Tensor | None = None,
              pred_views: Sequence[Tensor] | None = None) -> dict[str, Tensor]:
        """Unweighted, differentiable value of every term for ``views`` (2, B, M): (z_prev, z_now) stacked.

        ``gather`` collects every process's rows of stacked views (2, S, K) before the batch statistics
        (variance, covariance) are taken, so they are those of the global batch under torchrun
        (``convnet.gather_views``; None: this process's batch is the whole batch). ``decorr_views`` and
        ``hebb_views`` (each (2, S, K), one row block per view) replace the samples of the decorrelation and
        Hebbian terms, for example the channel vectors of every position of a feature map (then S = B *
        positions and K = channels). ``pred_views`` (earlier, later[, mask]), each (B, K), replaces the views
        of the predictive term (for example the earlier view resampled at the later view's positions, with a
        mask of the positions both views see). Stacked inputs are used as they are: no copy is made.
        """
        r = self.reduction

        def gathered(given: Tensor | None) -> Tensor:
            stacked = views if given is None else given
            return stacked if gather is None else gather(stacked)

        earlier, later, *mask = pred_views if pred_views is not None else views.unbind(0)
        return {
            "pred": rules.predictive_loss(later, earlier, r, self.stop_gradient, *mask),
            "hebb": 0.5 * rules.hebbian_loss(gathered(hebb_views), r, self.eps),
            "decorr": 0.5 * rules.decorrelation_loss(gathered(decorr_views), r, self.correlation, self.eps),
        }

    def weighted(self, terms: dict[str, Tensor]) -> Tensor:
        """The weighted total of ``terms``; switched-off terms are left out (never ``0 * inf``)."""
        active = [c * terms[name] for name, c in self.coefficients().items() if c]
        return torch.stack(active).sum() if active else next(iter(terms.values())) * 0.0

    def loss(self, z_prev: Tensor, z_now: Tensor) -> Tensor:
        """Weighted total, differentiable (the dense autograd path)."""
        return self.weighted(self.terms(torch.stack((z_prev, z_now))))

    def grad(self, views: Tensor) -> Tensor:
        """Closed-form d loss / d views for ``views`` (2, B, M) = (z_prev, z_now): autograd's value.

        The paper's neuron-level rule; both views' statistics in one batched pass. Assumes
        ``stop_gradient``.
        """
        r, zc, grad = self.reduction, rules.centered(views), torch.zeros_like(views)
        if self.hebb:
            grad.add_(rules.hebbian_grad_centered(zc, r, self.eps), alpha=0.5 * self.hebb)
        if self.decorr:
            grad.add_(rules.decorrelation_grad_centered(zc, r, self.correlation, self.eps), alpha=0.5 * self.decorr)
        if self.pred:
            grad[1].add_(rules.predictive_grad(views[1], views[0], r), alpha=self.pred)
        return grad
