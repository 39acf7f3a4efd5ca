"""Changing the rule is an edit in one place: ``LPLObjective`` feeds the dense autograd step, the
dense diagnostics and the deep network's heads alike."""

import torch
from conftest import tiny_net

from lpl.heads import build_model
from lpl.layers import DenseLPLStack, Plasticity
from lpl.objective import LPLObjective
from lpl.train.dense import diagnostics


def _with_activity_penalty(monkeypatch) -> None:
    """A user's edit of objective.py: a new term 'activity' with coefficient 0.5."""
    terms, coefficients = LPLObjective.terms, LPLObjective.coefficients

    def new_terms(self, views, *args, **kwargs):
        return {**terms(self, views, *args, **kwargs), "activity": views[1].square().mean()}

    monkeypatch.setattr(LPLObjective, "terms", new_terms)
    monkeypatch.setattr(LPLObjective, "coefficients", lambda self: {**coefficients(self), "activity": 0.5})


def _dense_update(objective: LPLObjective) -> torch.Tensor:
    stack = DenseLPLStack([12, 5], seed=0)
    views = torch.rand(2, 16, 12, generator=torch.Generator().manual_seed(0))
    before = stack.layers[0].weight.clone()
    stack.plasticity_step(views, objective, Plasticity(method="autograd"))
    return stack.layers[0].weight - before


def test_a_new_term_reaches_dense_and_deep_training_from_one_edit(monkeypatch):
    objective = LPLObjective(1e-2, 1e-2, 1e-2, "sum")
    stock_update = _dense_update(objective)
    torch.manual_seed(0)
    model = build_model("lpl", tiny_net(4, 6), True)
    views = torch.rand(2 * 8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    stock_loss, _ = model(views)

    _with_activity_penalty(monkeypatch)
    assert not torch.allclose(_dense_update(objective), stock_update)  # the dense step follows it
    loss, terms = model(views)  # the deep heads optimise and report it
    assert all("activity" in layer for layer in terms.values())
    activity = sum(layer["activity"] for layer in terms.values())
    assert torch.allclose(loss, stock_loss + 0.5 * activity, atol=1e-5)
    stack = DenseLPLStack([12, 5], seed=0)  # and the dense diagnostics log it
    outputs, norms = stack.plasticity_step(torch.rand(2, 16, 12), objective)
    assert "activity" in diagnostics(stack, outputs, norms, objective)
