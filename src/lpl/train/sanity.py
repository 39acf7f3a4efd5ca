"""``lpl sanity``: one LPL layer on random data, checking weights, variance and NaNs as it learns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lpl.analysis.metrics import COLLAPSE_STD, collapsed_units
from lpl.config import option, require
from lpl.layers import DenseLPLStack, Plasticity


@dataclass
class SanityConfig:
    """Random inputs in [0, 1]; the later view is the earlier one plus small noise."""

    steps: int = option(5000, "number of steps")
    batch_size: int = option(256, "pairs per step")
    features: int = option(3072, "input size")
    units: int = option(128, "layer size")
    noise: float = option(0.05, "std of the difference between the two views")
    lr_hebb: float = option(1e-3, "Hebbian learning rate")
    lr_pred: float = option(1e-3, "predictive learning rate")
    lr_stab: float = option(5e-4, "stabilization (decorrelation) learning rate")
    max_collapsed: float = option(0.5, "fail when more than this fraction of units has std < 0.1")
    log_every: int = option(500, "steps between printed checks")
    seed: int = option(0, "random seed")

    def __post_init__(self) -> None:
        require(self.steps > 0 and self.batch_size >= 2 and self.log_every > 0,
                "--steps and --log-every must be positive, --batch-size at least 2")


def sanity_check(config: SanityConfig) -> int:
    """Run the check; returns 0 if everything stays finite and uncollapsed, else 1."""
    generator = torch.Generator().manual_seed(config.seed)
    stack = DenseLPLStack([config.features, config.units], config.seed)
    plasticity = Plasticity(config.lr_pred, config.lr_hebb, config.lr_stab)
    collapsed = 0
    for step in tqdm(range(1, config.steps + 1), desc="sanity", leave=False):
        earlier = torch.rand(config.batch_size, config.features, generator=generator)
        later = (earlier + config.noise * torch.randn(earlier.shape, generator=generator)).clamp_(0, 1)
        (z,), norms = stack.plasticity_step(torch.stack((earlier, later)), plasticity)
        weight = stack.layers[0].weight
        finite = bool(torch.isfinite(norms).all() and torch.isfinite(z).all() and torch.isfinite(weight).all())
        if not finite:
            tqdm.write(f"FAIL step {step}: non-finite activations, update or weights")
            return 1
        if step % config.log_every == 0 or step == config.steps:  # the last step is always checked
            std = z.std(dim=0)
            collapsed = collapsed_units(std)
            tqdm.write(f"step {step}: weight_norm={weight.norm():.3f} update_norm={norms[0]:.3g} "
                       f"act_var={std.square().mean():.4f} collapsed_units={collapsed}/{config.units} "
                       f"nan=no")
    if collapsed > config.max_collapsed * config.units:
        print(f"FAIL: {collapsed}/{config.units} units collapsed (std < {COLLAPSE_STD})")
        return 1
    print(f"OK: finite after {config.steps} steps, {collapsed}/{config.units} units collapsed")
    return 0
