"""The LPL objective's three terms as pure functions, with their closed-form gradients.

Shapes: ``z`` is ``(batch, features)``, the output of one layer for one view; the Hebbian and
decorrelation functions also take ``(views, batch, features)`` and then sum over views. ``reduction``
chooses how a term is normalised over units:

- ``"sum"`` (our default): predictive and Hebbian terms summed over units, decorrelation the
  plain sum of squared off-diagonal covariances. With plain gradient steps this is what lets the
  dense learning rates (``layers.DENSE_RATES``) learn; see README "Normalisation".
- ``"mean"``: the official code's form (means over units, decorrelation divided by M^2 - M).

The ``*_grad`` functions return d(term)/dz in closed form; together with ``f'(a)`` and the
presynaptic input they give the paper's neuron-level rule. ``tests/test_rules.py`` checks each
against autograd.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["sum", "mean"]
SQUASH_SCALE = 5.0
EPS = 1e-4


def squash(a: Tensor) -> Tensor:
    """Bounded activation ``5 * tanh(a / 5)``; roughly linear for ``|a| < 2``."""
    return torch.tanh(a / SQUASH_SCALE) * SQUASH_SCALE


def squash_derivative_from_output(z: Tensor) -> Tensor:
    """``f'(a)`` written in terms of ``z = f(a)``: ``1 - (z / 5)^2``."""
    return 1.0 - (z / SQUASH_SCALE).square()


def _unit_scale(features: int, reduction: Reduction) -> float:
    return 1.0 if reduction == "sum" else 1.0 / features


def _pair_scale(features: int, reduction: Reduction) -> float:
    return 1.0 if reduction == "sum" else 1.0 / (features * features - features)


def predictive_loss(z_now: Tensor, z_prev: Tensor, reduction: Reduction = "sum", stop_gradient: bool = True,
                    mask: Tensor | None = None) -> Tensor:
    """Squared prediction error of ``z_now`` (B, M) toward ``z_prev`` (B, M), by default a constant.

    Mean over the batch; summed (or averaged) over units. ``stop_gradient=False`` lets the gradient
    reach both views, as the official deep-network code does (``F.mse_loss(z1, z2)``). ``mask`` (B, M)
    of 0/1 leaves entries out (units with no counterpart in the other view): the error is then averaged
    over the entries kept, with the same scale as without a mask when every entry is kept.
    """
    error = (z_now - (z_prev.detach() if stop_gradient else z_prev)).square()
    if mask is not None:
        per_unit = (error * mask).sum() / mask.sum().clamp(min=1)
        return per_unit * z_now.shape[1] * _unit_scale(z_now.shape[1], reduction)
    return error.sum(dim=1).mean() * _unit_scale(z_now.shape[1], reduction)


def predictive_grad(z_now: Tensor, z_prev: Tensor, reduction: Reduction = "sum") -> Tensor:
    """d predictive_loss / d z_now, shape (B, M)."""
    scale = 2.0 * _unit_scale(z_now.shape[1], reduction) / z_now.shape[0]
    return (z_now - z_prev) * scale


def centered(z: Tensor) -> Tensor:
    """``z`` (..., B, M) minus its batch mean, with the mean treated as a constant (detached)."""
    return z - z.detach().mean(dim=-2, keepdim=True)


def hebbian_loss(z: Tensor, reduction: Reduction = "sum", eps: float = EPS) -> Tensor:
    """``-log(var_i + eps)`` for each unit's unbiased batch variance of ``z`` (B, M), mean detached."""
    variance = centered(z).square().sum(dim=-2) / (z.shape[-2] - 1)
    return -torch.log(variance + eps).sum() * _unit_scale(z.shape[-1], reduction)


def hebbian_loss_stale(z: Tensor, mean: Tensor, variance: Tensor, reduction: Reduction = "sum",
                       eps: float = EPS) -> Tensor:
    """The Hebbian term with stale estimates (an option of the official code): ``-sum_b (z - mean)^2 /
    ((B - 1)(var + eps))`` for ``z`` (..., B, M), with ``mean`` and ``variance`` (M,) estimated on earlier
    batches (constants). Its gradient is ``hebbian_grad``'s with those estimates in place of the batch's own."""
    spread = (z - mean.detach()).square().sum(dim=-2) / ((z.shape[-2] - 1) * (variance.detach() + eps))
    return -spread.sum() * _unit_scale(z.shape[-1], reduction)


def hebbian_grad(z: Tensor, reduction: Reduction = "sum", eps: float = EPS) -> Tensor:
    """d hebbian_loss / d z, shape (..., B, M): ``-2 (z - mean) / ((B - 1)(var + eps))``."""
    return hebbian_grad_centered(centered(z), reduction, eps)


def hebbian_grad_centered(zc: Tensor, reduction: Reduction = "sum", eps: float = EPS) -> Tensor:
    """``hebbian_grad`` of an already centred ``zc`` (saves recentring when terms share it)."""
    batch = zc.shape[-2]
    variance = zc.square().sum(dim=-2, keepdim=True) / (batch - 1)
    scale = -2.0 * _unit_scale(zc.shape[-1], reduction) / (batch - 1)
    return zc * (scale / (variance + eps))


def standardised(zc: Tensor, eps: float = EPS) -> Tensor:
    """Centred ``zc`` (..., B, M) in units of each unit's batch standard deviation where that is below 1 (the
    deviation detached, a constant): covariances of the result are correlation coefficients between units below
    unit scale, covariances between units above it, and ``C_ik / std_i`` between one of each. ``eps`` regularises
    the variance as in the Hebbian term, so units with deviations near sqrt(eps) = 0.01 are divided a little less."""
    return zc / _scale_unit(zc, eps)


def _scale_unit(zc: Tensor, eps: float = EPS) -> Tensor:
    """``min(std, 1)`` of each unit of centred ``zc`` (..., B, M), detached, shape (..., 1, M)."""
    variance = zc.detach().square().sum(dim=-2, keepdim=True) / (zc.shape[-2] - 1)
    return (variance + eps).sqrt().clamp(max=1.0)


def off_diagonal_covariance(z: Tensor) -> Tensor:
    """Covariance (..., M, M) of ``z`` (..., B, M) over the batch (mean detached), diagonal zeroed."""
    return _off_diagonal_covariance_centered(centered(z))


SPLIT_ROWS = 8192  # rows per block of a covariance over many samples (full feature maps: a million positions)


def _row_blocks(samples: int) -> int:
    """How many blocks of at least ``SPLIT_ROWS`` rows the samples of a covariance split into evenly (powers of 2)."""
    blocks = 1
    while samples % (2 * blocks) == 0 and samples // (2 * blocks) >= SPLIT_ROWS:
        blocks *= 2
    return blocks


def _off_diagonal_covariance_centered(zc: Tensor) -> Tensor:
    """``zc.mT @ zc / (S - 1)`` with the diagonal zeroed. Over many samples (S of a million positions, a skinny
    product with a huge inner dimension) it sums one product per block of rows in float32 instead: the same
    value, as many independent products as blocks."""
    blocks = _row_blocks(zc.shape[-2])
    if blocks > 1:
        parts = zc.unflatten(-2, (blocks, -1))
        products = parts.mT @ parts  # bf16 under autocast: summed in float32 (float64 stays float64)
        cov = products.to(torch.promote_types(products.dtype, torch.float32)).sum(-3) / (zc.shape[-2] - 1)
    else:
        cov = zc.mT @ zc / (zc.shape[-2] - 1)
    cov.diagonal(dim1=-2, dim2=-1).zero_()
    return cov


def decorrelation_loss(z: Tensor, reduction: Reduction = "sum", correlation: bool = False, eps: float = EPS
                       ) -> Tensor:
    """Sum of squared off-diagonal covariances of ``z`` (B, M) (or their mean over M^2 - M).

    ``correlation=True`` measures each unit in units of its detached standard deviation while that is below 1
    (``standardised``): for small features the term takes squared correlation coefficients, whose pull does not
    fade with the square of the features' scale as the covariances' does (while the Hebbian term's ``-log var``
    keeps its strength at any scale, so that units at a small scale all align with the strongest input
    direction); units with deviations of 1 or more keep the covariance form, which limits their growth.
    """
    zc = centered(z)
    zc = standardised(zc, eps) if correlation else zc
    return _off_diagonal_covariance_centered(zc).square().sum() * _pair_scale(z.shape[-1], reduction)


def decorrelation_grad(z: Tensor, reduction: Reduction = "sum") -> Tensor:
    """d decorrelation_loss / d z, shape (..., B, M): ``4 (z - mean) C_off / (B - 1)``."""
    return decorrelation_grad_centered(centered(z), reduction)


def decorrelation_grad_centered(zc: Tensor, reduction: Reduction = "sum", correlation: bool = False,
                                eps: float = EPS) -> Tensor:
    """``decorrelation_grad`` of an already centred ``zc``; with ``correlation`` that of the ``standardised``
    form (``zs = zc / s`` with s = min(std, 1) constant): ``4 zs R_off / ((B - 1) s)``."""
    scale = 4.0 * _pair_scale(zc.shape[-1], reduction) / (zc.shape[-2] - 1)
    if not correlation:
        return zc @ _off_diagonal_covariance_centered(zc).mul_(scale)
    unit = _scale_unit(zc, eps)
    zs = zc / unit
    return zs @ _off_diagonal_covariance_centered(zs).mul_(scale) / unit
