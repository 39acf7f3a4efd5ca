"""Training dense LPL stacks: single-layer (``lpl train``) and hierarchical (``lpl train-hierarchical``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lpl.analysis.metrics import collapsed_units
from lpl.config import option, require
from lpl.data import DATASET_HELP, load_splits
from lpl.data.augment import WeakAugmentSpec
from lpl.data.pairs import PairMode, PairStream
from lpl.io import atomic_torch_save
from lpl.layers import DenseLPLStack, GradMethod, Plasticity
from lpl.rules import Reduction
from lpl.train.loop import RunConfig, RunPaths, RunResult, run_training


@dataclass
class DenseLPLConfig(RunConfig):
    """Single-layer LPL on CIFAR-10 (3072 -> 128), the mission's defaults."""

    dims: list[int] = option([3072, 128], "layer sizes, input first (the input must match the data)")
    lr_hebb: float = option(1e-3, "learning rate of the Hebbian (variance) term; 0 switches it off")
    lr_pred: float = option(1e-3, "learning rate of the predictive term; 0 switches it off")
    lr_stab: float = option(5e-4, "learning rate of the stabilization (decorrelation) term; 0 switches it off")
    reduction: Reduction = option("sum", "normalisation of the terms over units (see README)")
    grad: GradMethod = option("closed-form", "closed-form neuron-level rule, or autograd of the loss")
    max_update_norm: float = option(1.0, "clip each layer's update to this norm")
    weight_bound: float = option(5.0, "clamp weights to [-bound, bound] after every step")
    pairs: PairMode = option("auto", "temporal (consecutive frames), augment (two weak views), "
                             "strong (two SimCLR-style views), auto")
    max_shift: int = option(3, "augment pairs: largest shift in pixels")
    flip: bool = option(True, "augment pairs: random horizontal flips")
    jitter: float = option(0.1, "augment pairs: brightness and contrast jitter")
    name: str = option("lpl", "run name: prefix of log, weight and checkpoint files")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.dims) >= 2 and min(self.dims) > 0,
                f"--dims needs positive sizes, input first; got {self.dims}")
        require(min(self.lr_hebb, self.lr_pred, self.lr_stab) >= 0, "learning rates must be >= 0")
        require(self.max_update_norm > 0 and self.weight_bound > 0,
                "--max-update-norm and --weight-bound must be positive")

    def plasticity(self) -> Plasticity:
        return Plasticity(self.lr_pred, self.lr_hebb, self.lr_stab, self.reduction,
                          self.max_update_norm, self.weight_bound, self.grad)

    def paths(self) -> RunPaths:
        stems = {"lpl": "activations", "hierarchical_lpl": "hierarchical_activations"}
        stem = stems.get(self.name, f"{self.name}_activations")
        return RunPaths(Path(self.output_dir), self.name, stem)


@dataclass
class HierarchicalLPLConfig(DenseLPLConfig):
    """Two-layer LPL on synthetic shapes (1024 -> 128 -> 64), each layer learning locally."""

    steps: int = option(10000, "number of training steps")
    dataset: str = option("shapes", DATASET_HELP)
    dims: list[int] = option([1024, 128, 64], "layer sizes, input first (the input must match the data)")
    name: str = option("hierarchical_lpl", "run name: prefix of log, weight and checkpoint files")


def activation_stats(z: torch.Tensor) -> dict[str, float]:
    """Mean, mean per-unit std and number of collapsed units (std < 0.1) of z (B, M)."""
    std = z.std(dim=0)
    return {"act_mean": z.mean().item(), "act_std": std.mean().item(),
            "collapsed_units": collapsed_units(std)}


class DenseLPLTask:
    """A dense LPL stack learning from a stream of temporal pairs."""

    def __init__(self, config: DenseLPLConfig):
        self.config, self.plasticity = config, config.plasticity()
        device = torch.device(config.device)
        train, test = load_splits(config.dataset, config.data_dir, config.download, config.dims[0])
        self.eval_inputs = test.flat_float(config.num_export).to(device)
        self.eval_labels = test.labels[: config.num_export].clone()
        spec = WeakAugmentSpec(config.max_shift, config.flip, config.jitter, config.jitter)
        self.stream = PairStream(train, config.pairs, config.seed + 1, spec, device)
        self.stack = DenseLPLStack(config.dims, config.seed).to(device)
        self.samples_per_step = config.batch_size
        self.paths = config.paths()
        self._last: tuple[list[torch.Tensor], torch.Tensor] | None = None

    def step(self) -> torch.Tensor:
        views = self.stream.next(self.config.batch_size)
        outputs, norms = self.stack.plasticity_step(views, self.plasticity)
        self._last = (outputs, norms)
        return norms

    def _layer_terms(self) -> list[dict[str, torch.Tensor]]:
        assert self._last is not None
        objective, half = self.plasticity.objective(), self.config.batch_size
        return [objective.terms(z[:half], z[half:]) for z in self._last[0]]

    def diagnostics(self) -> dict[str, float]:
        outputs, norms = self._last  # type: ignore[misc]
        record: dict[str, Any] = {}
        for i, (layer, z, terms, norm) in enumerate(zip(self.stack.layers, outputs, self._layer_terms(), norms), 1):
            prefix = f"layer{i}_" if len(self.stack.layers) > 1 else ""
            record.update({f"{prefix}{k}": v.item() for k, v in terms.items()})
            record[f"{prefix}weight_norm"] = layer.weight.norm().item()
            record[f"{prefix}update_norm"] = norm.item()
            record.update({f"{prefix}{k}": v for k, v in activation_stats(z).items()})
        return record

    def nonfinite_terms(self) -> list[str]:
        bad = [f"layer{i}.{k}" for i, terms in enumerate(self._layer_terms(), 1)
               for k, v in terms.items() if not torch.isfinite(v)]
        bad += [f"layer{i}.activations" for i, z in enumerate(self._last[0], 1) if not torch.isfinite(z).all()]
        return bad or ["update norm"]

    @torch.no_grad()
    def representations(self) -> list[torch.Tensor]:
        """Every layer's activations (N, M_k) on the exported test samples, in chunks."""
        chunks = [self.stack(x) for x in self.eval_inputs.split(4096)]
        return [torch.cat(layer).float().cpu() for layer in zip(*chunks)]

    def export(self, tag: str) -> list[Path]:
        layers = self.representations()
        if len(layers) == 1:
            blob = {"activations": layers[0]}
        else:
            blob = {f"layer{i}_activations": z for i, z in enumerate(layers, 1)}
        blob["labels"] = self.eval_labels
        return [atomic_torch_save(blob, self.paths.activation_file(tag))]

    def write_logs(self) -> None:
        """The loop's own log holds everything this task reports."""

    def save_weights(self) -> Path:
        return atomic_torch_save({"dims": self.config.dims, "state_dict": self.stack.state_dict()},
                                 self.paths.weights / f"{self.config.name}_weights.pt")

    def state_dict(self) -> dict[str, Any]:
        return {"stack": self.stack.state_dict(), "stream": self.stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stack.load_state_dict(state["stack"])
        self.stream.load_state_dict(state["stream"])


def train_dense(config: DenseLPLConfig) -> RunResult:
    task = DenseLPLTask(config)
    return run_training(task, config, task.paths)
