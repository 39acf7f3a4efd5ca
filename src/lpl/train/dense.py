"""``lpl train`` (single-layer LPL, CIFAR-10, 3072 -> 128) and ``lpl train-hierarchical`` (the
``HIERARCHICAL`` preset: shapes, 1024 -> 128 -> 64): dense LPL stacks learning by the local rule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from lpl.collapse import collapsed_units
from lpl.config import TrainConfig, flag, option, require, require_positive, with_default
from lpl.data import load_splits
from lpl.data.augment import WeakAugmentSpec
from lpl.data.images import ImageSet
from lpl.data.pairs import PairMode, PairStream
from lpl.io import atomic_torch_save
from lpl.layers import DENSE_RATES, DenseLPLLayer, DenseLPLStack, GradMethod, Plasticity
from lpl.layout import RunLayout, describe_data, save_export, save_tensors
from lpl.objective import LPLObjective
from lpl.rules import Reduction
from lpl.terms import LPL_TERMS, RUN_TERMS, Term, terms_record
from lpl.train.run import RunResult, Schedule, StateGroup, TrainingRun, check_data, check_output_dir


@dataclass
class DenseConfig(TrainConfig):
    """Single-layer LPL on CIFAR-10 (3072 -> 128) by default; see ``HIERARCHICAL`` for the stack."""

    steps: int = option(5000, "number of training steps")
    batch_size: int = option(256, "temporal pairs per step")
    log_every: int = option(500, "steps between diagnostics")
    checkpoint_every: int = with_default(TrainConfig, "checkpoint_every", 1000)
    dims: list[int] = option([3072, 128], "layer sizes, input first (the input must match the data)")
    lr_hebb: float = option(DENSE_RATES.hebb, "learning rate of the Hebbian (variance) term; 0 switches it off")
    lr_pred: float = option(DENSE_RATES.pred, "learning rate of the predictive term; 0 switches it off")
    lr_stab: float = option(DENSE_RATES.decorr, "learning rate of the stabilization (decorrelation) term; "
                            "0 switches it off")
    reduction: Reduction = option(DENSE_RATES.reduction, "normalisation of the terms over units (see README)")
    grad: GradMethod = option(Plasticity.method, "closed-form neuron-level rule, or autograd of the loss")
    max_update_norm: float = option(Plasticity.max_update_norm, "clip each layer's update to this norm")
    weight_bound: float = option(Plasticity.weight_bound, "clamp weights to [-bound, bound] after every step")
    pairs: PairMode = option("auto", "temporal (frames t and t + k of a sequence), augment (two weak views of "
                             "an image), strong (two SimCLR-style views), temporal+augment or temporal+strong (the "
                             "frames, each augmented), auto (temporal for sequences, else augment)")
    max_offset: int = option(1, "temporal pairs: the later frame is 1 to this many frames after the earlier one")
    max_shift: int = option(WeakAugmentSpec.max_shift, "augment pairs: largest shift in pixels")
    flip: bool = option(WeakAugmentSpec.flip, "augment pairs: random horizontal flips")
    jitter: float = option(WeakAugmentSpec.brightness, "augment pairs: brightness and contrast jitter")
    name: str = option("lpl", "run name: prefix of log, weight and checkpoint files")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.dims) >= 2, f"--dims needs the input size and at least one layer size (e.g. --dims "
                f"3072 128), got {self.dims}")
        for rate in ("lr_hebb", "lr_pred", "lr_stab"):
            require(getattr(self, rate) >= 0, f"{flag(rate)} must be a non-negative number, got {getattr(self, rate)}")
        require_positive(self, "max_update_norm", "weight_bound")
        require(0 <= self.jitter < 1, f"--jitter must be in [0, 1), got {self.jitter}")

    def objective(self) -> LPLObjective:
        return LPLObjective(self.lr_pred, self.lr_hebb, self.lr_stab, self.reduction)

    def plasticity(self) -> Plasticity:
        return Plasticity(self.max_update_norm, self.weight_bound, self.grad)

    def layout(self) -> RunLayout:
        stem = {"lpl": "activations", "hierarchical_lpl": "hierarchical_activations"}.get(
            self.name, f"{self.name}_activations")
        return RunLayout(Path(self.output_dir), self.name, stem)

    def describe(self, train: ImageSet, test: ImageSet) -> dict[str, Any]:
        """The run record's description of network, objective and data (see ``lpl.layout``)."""
        return {
            "writer": "lpl train" if len(self.dims) == 2 else "lpl train-hierarchical",
            "network": {"kind": "dense", "dims": list(self.dims), "activation": "5 tanh(a / 5)",
                        "input": {"channels": train.shape[0], "size": list(train.shape[1:]),
                                  "scaling": "uint8 pixels / 255, flattened, no normalisation"}},
            "objective": {"name": "lpl", "summary": "LPL's local rule: each layer's weights follow the gradient of "
                          "its own predictive, Hebbian and decorrelation terms (closed-form neuron-level rule)",
                          "training": "layer-local", "pairs": self.pairs, "max_offset": self.max_offset,
                          "options": {"lr_pred": self.lr_pred, "lr_hebb": self.lr_hebb, "lr_stab": self.lr_stab,
                                      "reduction": self.reduction, "grad": self.grad}},
            "terms": terms_record(LPL_TERMS, DENSE_TERMS, RUN_TERMS),
            "data": describe_data(self.dataset, train, test),
            "exports": {"rows": min(self.num_export, len(test)), "features": "every layer's output"},
        }


DENSE_TERMS: dict[str, Term] = {
    "weight_norm": Term("L2 norm of the layer's weights", "levels off rather than growing without bound",
                        "statistics"),
    "update_norm": Term("L2 norm of one step's weight change (before clipping)", "shrinks as learning settles",
                        "statistics"),
    "act_mean": Term("mean response over batch and units", "stays moderate: a large drift means saturation",
                     "statistics"),
    "act_std": Term("mean over units of each unit's std over the batch", "stays well above 0.1", "statistics"),
    "collapsed_units": Term("units whose std over the batch is below 0.1 (they answer every image alike)",
                            "stays at or near 0", "statistics"),
}


HIERARCHICAL: dict[str, Any] = {"dataset": "shapes", "dims": [1024, 128, 64], "steps": 10000,
                                "name": "hierarchical_lpl"}


def diagnostics(stack: DenseLPLStack, outputs: list[torch.Tensor], norms: torch.Tensor,
                objective: LPLObjective) -> dict[str, float]:
    """Every layer's terms, weight and update norms, activity and collapsed units (std < 0.1)."""
    record: dict[str, float] = {}
    layers = cast(Iterable[DenseLPLLayer], stack.layers)
    for i, (layer, z, norm) in enumerate(zip(layers, outputs, norms), 1):
        prefix = f"layer{i}_" if len(outputs) > 1 else ""
        record.update({f"{prefix}{k}": v.item() for k, v in objective.terms(z.unflatten(0, (2, -1))).items()})
        std = z.std(dim=0)
        record.update({f"{prefix}weight_norm": layer.weight.norm().item(), f"{prefix}update_norm": norm.item(),
                       f"{prefix}act_mean": z.mean().item(), f"{prefix}act_std": std.mean().item(),
                       f"{prefix}collapsed_units": collapsed_units(std)})
    return record


def nonfinite_parts(outputs: list[torch.Tensor], norms: torch.Tensor) -> str:
    bad = [f"layer{i}.activations" for i, z in enumerate(outputs, 1) if not torch.isfinite(z).all()]
    bad += [f"layer{i}.update" for i, n in enumerate(norms, 1) if not torch.isfinite(n)]
    return ", ".join(bad)


def train_dense(config: DenseConfig) -> RunResult:
    device = torch.device(config.device)
    check_output_dir(config.layout(), config.resume, config.overwrite)  # before the data are loaded
    train, test = load_splits(config.dataset, config.data_dir, config.download, config.dims[0], config.image_size)
    check_data(config, train, test)
    eval_inputs, eval_labels = test.flat_float(config.num_export).to(device), test.labels[: config.num_export].clone()
    augment = WeakAugmentSpec(config.max_shift, config.flip, config.jitter, config.jitter)
    stream = PairStream(train, config.pairs, config.seed + 1, augment, device, config.max_offset)
    stack = DenseLPLStack(config.dims, config.seed).to(device)
    objective, plasticity, layout = config.objective(), config.plasticity(), config.layout()
    schedule = Schedule(config.steps, config.log_every, config.checkpoint_every, config.checkpoint_minutes,
                        config.stop_after_minutes)

    def export(tag: str) -> None:
        save_export(layout.activation_file(tag), stack.representations(eval_inputs), eval_labels,
                    rows=test.head(config.num_export))
        save_tensors(stack.state_dict(), layout.network_file(tag))
        if tag == "after":
            atomic_torch_save({"dims": config.dims, "state_dict": stack.state_dict()}, layout.weights_file)

    state = StateGroup(stack=stack, stream=stream)
    with TrainingRun(config, layout, schedule, state, export, config.batch_size,
                     describe=config.describe(train, test)) as run:
        for step in run.steps():
            outputs, norms = stack.plasticity_step(stream.next(config.batch_size), objective, plasticity)
            if not torch.isfinite(norms).all():  # the update was not applied
                run.nonfinite(step, step - 1, nonfinite_parts(outputs, norms) or "update")
                break
            if run.log_due(step):
                run.log(step, diagnostics(stack, outputs, norms, objective))
    return run.result
