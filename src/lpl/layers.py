"""Dense LPL layers ``z = squash(W x + b)`` and their local plasticity step."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpl import rules
from lpl.locality import layerwise_outputs
from lpl.objective import LPLObjective

GradMethod = Literal["closed-form", "autograd"]


# The dense rule's learning rates: one plain gradient step on the objective, whose coefficients
# they are (summed over units; see README "Normalisation"). Every dense command takes its defaults
# from here. The predictive rate is 10x the seed's 1e-3: on real images it learns more invariance and
# better probes (ETH-80 views 45 degrees apart: identification .615 -> .749; CIFAR-10 augmented pairs:
# linear .393 -> .414, kNN-20 .333 -> .418), at a cost on the synthetic shapes (kNN-20 .457 -> .322).
DENSE_RATES = LPLObjective(pred=1e-2, hebb=1e-3, decorr=5e-4, reduction="sum")


@dataclass(frozen=True)
class Plasticity:
    """How a layer turns the gradient of its objective into a weight change.

    ``dW = -grad``, its norm (weights and bias together) clipped to ``max_update_norm``, then the
    weights clamped to ``[-bound, bound]``; the learning rates are the objective's coefficients.
    """

    max_update_norm: float = 1.0
    weight_bound: float = 5.0
    method: GradMethod = "closed-form"


class DenseLPLLayer(nn.Module):
    """One fully connected LPL layer; its parameters change only through ``local_gradients``."""

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator | None = None):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        weight = torch.empty(out_features, in_features).uniform_(-bound, bound, generator=generator)
        bias = torch.empty(out_features).uniform_(-bound, bound, generator=generator)
        # Shape (out, in) as nn.Linear, stored in (in, out) memory order: the forward (x @ W.T),
        # the weight gradient (x.T @ g) and the update W += dW then all run on contiguous memory.
        self.weight = nn.Parameter(weight.T.contiguous().T, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_features) -> (B, out_features)."""
        return rules.squash(F.linear(x, self.weight, self.bias))

    def local_gradients(
        self, x: Tensor, z: Tensor, objective: LPLObjective, method: GradMethod = "closed-form"
    ) -> tuple[Tensor, Tensor]:
        """Gradients of ``objective`` for this layer's weight and bias.

        ``x`` (2B, in) stacks the earlier view's inputs over the later view's; ``z`` (2B, out) is
        this layer's output for them. The closed form is the paper's neuron-level rule:
        ``dL/dz * f'(a)`` times the presynaptic input.
        """
        half = x.shape[0] // 2
        if method == "autograd":
            weight = self.weight.detach().requires_grad_()
            bias = self.bias.detach().requires_grad_()
            with torch.enable_grad():
                out = rules.squash(F.linear(x.detach(), weight, bias))
                loss = objective.loss(out[:half], out[half:])
                return tuple(torch.autograd.grad(loss, (weight, bias)))  # type: ignore[return-value]
        grad_z = objective.grad(z.view(2, half, -1)).view_as(z)
        grad_a = grad_z.mul_(rules.squash_derivative_from_output(z))
        return (x.T @ grad_a).T, grad_a.sum(dim=0)  # same memory order as self.weight

    @torch.no_grad()
    def apply_update(self, grad_w: Tensor, grad_b: Tensor, plasticity: Plasticity) -> Tensor:
        """Step against the gradient with a clipped norm, clamp the weights; returns the raw norm.

        A non-finite update is not applied, so the weights stay the last finite ones.
        """
        norm = torch.hypot(torch.linalg.vector_norm(grad_w), torch.linalg.vector_norm(grad_b))
        value = float(norm)
        if not math.isfinite(value):
            return norm
        scale = -min(1.0, plasticity.max_update_norm / (value + 1e-12))
        self.weight.add_(grad_w, alpha=scale).clamp_(-plasticity.weight_bound, plasticity.weight_bound)
        self.bias.add_(grad_b, alpha=scale).clamp_(-plasticity.weight_bound, plasticity.weight_bound)
        return norm


class DenseLPLStack(nn.Module):
    """A stack of dense LPL layers of any depth, each learning from its own local loss."""

    def __init__(self, dims: list[int], seed: int = 0):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"dims needs an input size and at least one layer size, got {dims}")
        generator = torch.Generator().manual_seed(seed)
        self.dims = list(dims)
        self.layers = nn.ModuleList(
            DenseLPLLayer(d_in, d_out, generator) for d_in, d_out in zip(dims[:-1], dims[1:])
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, dims[0]) -> every layer's output, [(B, dims[1]), (B, dims[2]), ...]."""
        return layerwise_outputs(self.layers, x)

    @torch.no_grad()
    def plasticity_step(self, views: Tensor, objective: LPLObjective = DENSE_RATES,
                        plasticity: Plasticity = Plasticity()) -> tuple[list[Tensor], Tensor]:
        """One local update of every layer on a batch of temporal pairs.

        ``views`` (2, B, D): earlier views, then later views. Every layer is updated from the same
        forward pass (layer k+1 sees layer k's output before layer k's update). Returns each
        layer's output (2B, M) and the raw update norm of each layer (n_layers,).
        """
        x = views.reshape(-1, views.shape[-1])
        outputs = self(x)
        norms = []
        layers = cast(Iterable[DenseLPLLayer], self.layers)
        for layer, layer_in, z in zip(layers, [x, *outputs[:-1]], outputs):
            grad_w, grad_b = layer.local_gradients(layer_in, z, objective, plasticity.method)
            norms.append(layer.apply_update(grad_w, grad_b, plasticity))
        return outputs, torch.stack(norms)

    @torch.no_grad()
    def representations(self, inputs: Tensor, chunk: int = 4096) -> list[Tensor]:
        """Every layer's activations (N, M_k) of ``inputs`` (N, D), in float32 on the CPU."""
        chunks = [self(x) for x in inputs.split(chunk)]
        return [torch.cat(layer).float().cpu() for layer in zip(*chunks)]
