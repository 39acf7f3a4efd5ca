"""``lpl sanity``: one LPL layer on random data, checking weights, variance and NaNs as it learns.

It runs through the same ``TrainingRun`` as the trainers (signals, resume, NaN stop, atomic
outputs) and exports the layer's responses to a fixed random probe batch before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from lpl.collapse import COLLAPSE_STD, collapsed_units
from lpl.config import RunOptions, option
from lpl.layers import DENSE_RATES, DenseLPLLayer, DenseLPLStack
from lpl.layout import RunLayout, save_export
from lpl.objective import LPLObjective
from lpl.terms import RUN_TERMS, Term, terms_record
from lpl.train.dense import DENSE_TERMS
from lpl.train.run import Schedule, TrainingRun


@dataclass
class SanityConfig(RunOptions):
    """Random inputs in [0, 1]; the later view is the earlier one plus small noise."""

    steps: int = option(5000, "number of steps")
    batch_size: int = option(256, "pairs per step")
    log_every: int = option(500, "steps between printed checks")
    features: int = option(3072, "input size")
    units: int = option(128, "layer size")
    noise: float = option(0.05, "std of the difference between the two views")
    lr_hebb: float = option(DENSE_RATES.hebb, "Hebbian learning rate")
    lr_pred: float = option(DENSE_RATES.pred, "predictive learning rate")
    lr_stab: float = option(DENSE_RATES.decorr, "stabilization (decorrelation) learning rate")
    max_collapsed: float = option(0.5, "fail when more than this fraction of units has std < 0.1")
    output_dir: str = option("outputs/sanity", "folder for activations/, weights/ and logs/")
    overwrite: bool = option(True, "replace the outputs of an earlier sanity check")


SANITY_TERMS = {**{k: DENSE_TERMS[k] for k in ("weight_norm", "update_norm", "collapsed_units")},
                "act_var": Term("mean over units of each unit's variance over the batch", "stays well above 0.01",
                                "statistics")}


def sanity_check(config: SanityConfig) -> int:
    """Run the check; returns 0 if everything stays finite and uncollapsed, else 1."""
    generator, device = torch.Generator().manual_seed(config.seed), torch.device(config.device)
    stack = DenseLPLStack([config.features, config.units], config.seed).to(device)
    objective = LPLObjective(config.lr_pred, config.lr_hebb, config.lr_stab, DENSE_RATES.reduction)
    probe = torch.rand(1024, config.features, generator=torch.Generator().manual_seed(config.seed + 1)).to(device)
    layout = RunLayout(Path(config.output_dir), "sanity", "sanity_activations")

    def export(tag: str) -> None:
        labels = torch.zeros(len(probe), dtype=torch.long)  # random data: one class
        save_export(layout.activation_file(tag), stack.representations(probe), labels)

    class RandomPairs:
        """The data and the layer as one checkpointed state."""

        def state_dict(self) -> dict:
            return {"stack": stack.state_dict(), "generator": generator.get_state()}

        def load_state_dict(self, state: dict) -> None:
            stack.load_state_dict(state["stack"])
            generator.set_state(state["generator"])

    collapsed = 0
    schedule = Schedule(config.steps, config.log_every, 0, config.checkpoint_minutes, config.stop_after_minutes)
    describe = {"writer": "lpl sanity",
                "network": {"kind": "dense", "dims": [config.features, config.units], "activation": "5 tanh(a / 5)"},
                "objective": {"name": "lpl", "summary": "LPL's local rule on random inputs and their noisy copies",
                              "training": "layer-local"},
                "data": {"dataset": "random", "pairs": f"uniform inputs and the same plus noise of std {config.noise}"},
                "terms": terms_record(SANITY_TERMS, RUN_TERMS)}
    with TrainingRun(config, layout, schedule, RandomPairs(), export, config.batch_size, describe=describe) as run:
        for step in run.steps():
            earlier = torch.rand(config.batch_size, config.features, generator=generator)
            later = (earlier + config.noise * torch.randn(earlier.shape, generator=generator)).clamp_(0, 1)
            (z,), norms = stack.plasticity_step(torch.stack((earlier, later)).to(device), objective)
            if not (torch.isfinite(norms).all() and torch.isfinite(z).all()):
                run.nonfinite(step, step - 1, "activations or update")
                break
            if run.log_due(step):  # the last step is always checked
                std = z.std(dim=0)
                collapsed = collapsed_units(std)
                weight = cast(DenseLPLLayer, stack.layers[0]).weight
                run.log(step, {"weight_norm": weight.norm().item(), "update_norm": norms[0].item(),
                               "act_var": std.square().mean().item(), "collapsed_units": collapsed})
    if run.result.status == "interrupted":
        print(run.result.message)
        return run.result.exit_code
    if run.result.status != "completed":
        print(f"FAIL: {run.result.message}")
        return 1
    if collapsed > config.max_collapsed * config.units:
        print(f"FAIL: {collapsed}/{config.units} units collapsed (std < {COLLAPSE_STD})")
        return 1
    print(f"OK: finite after {config.steps} steps, {collapsed}/{config.units} units collapsed")
    return 0
