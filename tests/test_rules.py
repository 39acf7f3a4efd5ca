import math

import pytest
import torch

from lpl import rules
from lpl.objective import LPLObjective

Z = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]], dtype=torch.float64)
# By hand: unit variances 4 and 13 (unbiased), covariance 7.


def test_squash_is_bounded_and_near_identity():
    a = torch.tensor([-1e6, -1.0, 0.0, 0.5, 1e6])
    z = rules.squash(a)
    assert z.abs().max() <= 5.0
    assert torch.allclose(z[1:4], a[1:4], atol=0.02)
    assert torch.allclose(rules.squash_derivative_from_output(z), 1 - torch.tanh(a / 5) ** 2)


def test_hand_computed_values():
    assert rules.hebbian_loss(Z).item() == pytest.approx(-(math.log(4 + 1e-4) + math.log(13 + 1e-4)))
    assert rules.hebbian_loss(Z, "mean").item() == pytest.approx(-(math.log(4 + 1e-4) + math.log(13 + 1e-4)) / 2)
    assert rules.decorrelation_loss(Z).item() == pytest.approx(2 * 7**2)
    assert rules.decorrelation_loss(Z, "mean").item() == pytest.approx(2 * 7**2 / (4 - 2))
    zeros = torch.zeros_like(Z)
    assert rules.predictive_loss(Z, zeros).item() == pytest.approx(94 / 3)
    assert rules.predictive_loss(Z, zeros, "mean").item() == pytest.approx(94 / 6)


def test_correlation_form_is_scale_free_below_unit_scale_and_the_covariance_above():
    small = 0.1 * Z  # standard deviations 0.2 and 0.36: squared correlation, the variances regularised by eps
    r2 = 0.07 ** 2 / ((0.04 + 1e-4) * (0.13 + 1e-4))
    assert rules.decorrelation_loss(small, correlation=True).item() == pytest.approx(2 * r2)
    half = 0.0175 ** 2 / ((0.01 + 1e-4) * (0.0325 + 1e-4))  # the same correlation, eps weighing a little more
    assert rules.decorrelation_loss(0.5 * small, correlation=True).item() == pytest.approx(2 * half)
    assert half == pytest.approx(r2, rel=2e-2)
    # Z's deviations (2, 3.6) are above 1: the covariance form, which holds the features' scale
    assert rules.decorrelation_loss(Z, correlation=True).item() == pytest.approx(rules.decorrelation_loss(Z).item())
    # the covariance form alone fades with the square of the scale
    assert rules.decorrelation_loss(small).item() == pytest.approx(1e-4 * rules.decorrelation_loss(Z).item())


def test_predictive_term_stops_gradient_of_earlier_view():
    prev = torch.randn(8, 4, requires_grad=True)
    now = torch.randn(8, 4, requires_grad=True)
    rules.predictive_loss(now, prev).backward()
    assert prev.grad is None and now.grad is not None


def test_batch_mean_is_detached():
    z = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(rules.hebbian_loss(z), z)
    # With the mean attached the gradient would sum to zero over the batch; detached it need not,
    # but its closed form is exactly the detached-mean expression.
    assert torch.allclose(g, rules.hebbian_grad(z.detach()))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_closed_form_gradients_match_autograd(reduction):
    torch.manual_seed(0)
    prev = torch.randn(12, 6, dtype=torch.float64)
    now = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(rules.predictive_loss(now, prev, reduction), now)
    assert torch.allclose(g, rules.predictive_grad(now.detach(), prev, reduction))
    for loss, grad in [(rules.hebbian_loss, rules.hebbian_grad), (rules.decorrelation_loss, rules.decorrelation_grad)]:
        (g,) = torch.autograd.grad(loss(now, reduction), now)
        assert torch.allclose(g, grad(now.detach(), reduction))
    mixed = now * torch.tensor([0.05, 0.3, 1.0, 2.0, 0.5, 4.0], dtype=torch.float64)  # units below and above 1
    (g,) = torch.autograd.grad(rules.decorrelation_loss(mixed, reduction, correlation=True), now)
    closed = rules.decorrelation_grad_centered(rules.centered(mixed.detach()), reduction, True)
    assert torch.allclose(g, closed * mixed.detach().div(now.detach()))


def test_objective_grad_matches_autograd_of_weighted_loss():
    torch.manual_seed(1)
    scale = torch.tensor([0.03, 0.4, 2.0, 6.0], dtype=torch.float64)  # units below and above unit scale
    for correlation in (False, True):
        objective = LPLObjective(pred=0.7, hebb=0.2, decorr=3.0, correlation=correlation)
        prev = (torch.randn(10, 4, dtype=torch.float64) * scale).requires_grad_()
        now = (torch.randn(10, 4, dtype=torch.float64) * scale).requires_grad_()
        auto = torch.autograd.grad(objective.loss(prev, now), (prev, now))
        closed = objective.grad(torch.stack((prev, now)).detach())
        assert torch.allclose(torch.stack(auto), closed)


def test_switched_off_term_has_no_gradient():
    prev, now = torch.randn(10, 4), torch.randn(10, 4)
    only_pred = LPLObjective(pred=1.0, hebb=0.0, decorr=0.0, reduction="sum")
    g_prev, g_now = only_pred.grad(torch.stack((prev, now)))
    assert torch.count_nonzero(g_prev) == 0 and torch.allclose(g_now, rules.predictive_grad(now, prev))


def test_terms_keep_shapes_and_are_scalars():
    terms = LPLObjective().terms(torch.randn(2, 9, 3))
    assert set(terms) == {"pred", "hebb", "decorr"} and all(v.shape == () for v in terms.values())
    assert LPLObjective().grad(torch.randn(2, 9, 3)).shape == (2, 9, 3)


@pytest.mark.parametrize("term", ["pred", "hebb", "decorr"])
def test_each_term_falls_when_optimised(term):
    torch.manual_seed(2)
    prev = torch.randn(32, 6)
    z = (torch.randn(32, 6) * 0.5).requires_grad_()
    objective = LPLObjective(**{k: float(k == term) for k in ("pred", "hebb", "decorr")}, reduction="sum")
    start = objective.terms(torch.stack((prev, z)))[term].item()
    optimiser = torch.optim.SGD([z], lr=0.05)
    for _ in range(50):
        optimiser.zero_grad()
        objective.loss(prev, z).backward()
        optimiser.step()
    assert objective.terms(torch.stack((prev, z.detach())))[term].item() < start - 1e-3


@pytest.mark.parametrize("correlation", [False, True])
def test_decorrelation_over_many_samples_sums_blocks_of_rows_to_the_same_value_and_gradient(correlation):
    samples = 4 * rules.SPLIT_ROWS  # a full feature map's positions: split into row blocks
    assert rules._row_blocks(samples) == 4 and rules._row_blocks(samples + 1) == 1
    z = (torch.randn(2, samples, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.3
         ).requires_grad_()
    zc = rules.centered(z)
    zs = rules.standardised(zc) if correlation else zc
    cov = zs.mT @ zs / (samples - 1)  # the one product, written out
    expected = (cov.square().sum() - cov.diagonal(dim1=-2, dim2=-1).square().sum()) / 20
    loss = rules.decorrelation_loss(z, "mean", correlation)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    (grad,) = torch.autograd.grad(loss, z)
    closed = rules.decorrelation_grad_centered(zc.detach(), "mean", correlation)
    assert torch.allclose(grad, closed, rtol=1e-10, atol=1e-14)
