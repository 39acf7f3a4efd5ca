import torch

from lpl.layers import DenseLPLLayer, DenseLPLStack, Plasticity
from lpl.locality import layerwise_outputs
from lpl.objective import LPLObjective


def _views(batch=16, features=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, features, generator=g)
    return torch.stack((x, (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)))


def test_closed_form_and_autograd_updates_agree():
    views = _views()
    a, b = DenseLPLStack([20, 8], seed=3), DenseLPLStack([20, 8], seed=3)
    for _ in range(5):
        a.plasticity_step(views, LPLObjective(1e-2, 1e-2, 1e-2, "sum"))
        b.plasticity_step(views, LPLObjective(1e-2, 1e-2, 1e-2, "sum"), Plasticity(method="autograd"))
    assert torch.allclose(a.layers[0].weight, b.layers[0].weight, atol=1e-6)


def test_update_norm_is_clipped():
    stack = DenseLPLStack([20, 8])
    before = stack.layers[0].weight.clone(), stack.layers[0].bias.clone()
    _, norms = stack.plasticity_step(_views(), LPLObjective(1e3, 1e3, 1e3, "sum"), Plasticity(max_update_norm=0.5))
    change = torch.cat([(stack.layers[0].weight - before[0]).flatten(), stack.layers[0].bias - before[1]])
    assert norms[0] > 0.5
    assert abs(change.norm().item() - 0.5) < 1e-4


def test_weights_are_clamped():
    stack = DenseLPLStack([20, 8])
    stack.layers[0].weight.data.fill_(4.999)
    for _ in range(20):
        big_hebbian = LPLObjective(1e-3, 10.0, 5e-4, "sum")
        stack.plasticity_step(_views(), big_hebbian, Plasticity(max_update_norm=100.0, weight_bound=5.0))
    assert stack.layers[0].weight.abs().max() <= 5.0


def test_activations_are_squashed():
    layer = DenseLPLLayer(4, 3)
    layer.weight.data.fill_(5.0)
    assert layer(torch.ones(2, 4) * 1e3).abs().max() <= 5.0


def test_nonfinite_update_is_not_applied():
    stack = DenseLPLStack([20, 8])
    before = stack.layers[0].weight.clone()
    views = _views()
    views[0, 0, 0] = float("nan")
    _, norms = stack.plasticity_step(views)
    assert not torch.isfinite(norms).all()
    assert torch.equal(stack.layers[0].weight, before)


def test_locality_helper_blocks_gradients_to_lower_layers():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(5, 4), torch.nn.Linear(4, 3)]
    x = torch.randn(6, 5)
    outputs = layerwise_outputs(layers, x, local=True)
    outputs[1].sum().backward()
    assert layers[0].weight.grad is None and layers[1].weight.grad is not None
    end_to_end = layerwise_outputs(layers, x, local=False)
    end_to_end[1].sum().backward()
    assert layers[0].weight.grad is not None


def test_layer_one_update_is_identical_with_or_without_layer_two():
    views = _views(features=20)
    one, two = DenseLPLStack([20, 8], seed=5), DenseLPLStack([20, 8, 4], seed=5)
    assert torch.equal(one.layers[0].weight, two.layers[0].weight)
    for seed in range(3):
        views = _views(features=20, seed=seed)
        one.plasticity_step(views)
        two.plasticity_step(views)
    assert torch.equal(one.layers[0].weight, two.layers[0].weight)
    assert torch.equal(one.layers[0].bias, two.layers[0].bias)


def test_layer_two_learns_from_layer_one_outputs():
    stack = DenseLPLStack([20, 8, 4])
    before = stack.layers[1].weight.clone()
    outputs, norms = stack.plasticity_step(_views())
    assert [o.shape for o in outputs] == [(32, 8), (32, 4)] and norms.shape == (2,)
    assert not torch.equal(before, stack.layers[1].weight)
