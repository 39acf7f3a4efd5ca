"""``lpl train-byol``: the seed's BYOL baseline (only the first convolution trained) on CIFAR-10 or
shapes. The fair comparison with LPL on the same network is ``lpl train-deep --objective byol``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lpl.config import TrainConfig, option, require, require_positive, with_default
from lpl.data import load_splits
from lpl.data.images import ImageSet, to_unit_float
from lpl.data.pairs import PairStream
from lpl.io import atomic_torch_save, atomic_write_json
from lpl.layout import RunLayout, describe_data, save_export, save_tensors
from lpl.small_byol import BYOL
from lpl.terms import RUN_TERMS, Term, terms_record
from lpl.train.run import RunResult, Schedule, StateGroup, TrainingRun, check_data, check_output_dir


@dataclass
class BYOLConfig(TrainConfig):
    """BYOL with only the first convolution trained (the seed's local-learning constraint)."""

    steps: int = option(1000, "number of training steps")
    batch_size: int = option(32, "images per step (each gives two views)")
    log_every: int = option(100, "steps between diagnostics")
    checkpoint_every: int = with_default(TrainConfig, "checkpoint_every", 250)
    views: Literal["byol", "temporal"] = option(
        "byol", "byol: crop/flip/colour/grayscale/blur (crop/flip for grayscale); temporal: LPL's pairs")
    lr: float = option(1e-3, "Adam learning rate of the first convolution (the only trained layer)")
    tau: float = option(0.99, "EMA rate of the target network")
    name: str = option("", "run name (default byol for cifar10, byol_<dataset> otherwise)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "lr")
        require(0.0 <= self.tau < 1.0, f"--tau must be in [0, 1), got {self.tau}")

    def layout(self) -> RunLayout:
        name = self.name or ("byol" if self.dataset == "cifar10" else f"byol_{Path(self.dataset).stem}")
        return RunLayout(Path(self.output_dir), name, f"{name}_embeddings")

    def describe(self, train: ImageSet, test: ImageSet) -> dict[str, Any]:
        """The run record's description of network, objective and data (see ``lpl.layout``)."""
        return {
            "writer": "lpl train-byol",
            "network": {"kind": "small-byol", "trained": "the first convolution only",
                        "input": {"channels": train.shape[0], "size": list(train.shape[1:]),
                                  "scaling": "uint8 pixels / 255, no normalisation"}},
            "objective": {"name": "byol", "summary": "the seed's BYOL baseline: a small random conv network whose "
                          "first convolution alone learns, through BYOL's loss (2 - 2 cos of prediction and an EMA "
                          "target's projection; -2 x cosine is logged)", "training": "first layer only",
                          "views": self.views, "options": {"lr": self.lr, "tau": self.tau}},
            "terms": terms_record(BYOL_TERMS, RUN_TERMS),
            "data": describe_data(self.dataset, train, test),
            "exports": {"rows": min(self.num_export, len(test)), "features": "L2-normalised embeddings"},
        }


BYOL_TERMS = {
    "loss": Term("BYOL loss: -2 x cosine of prediction and target (minimum -2)", "falls"),
    "embedding_std": Term("std of the L2-normalised embeddings per dimension", "stays near 1/sqrt(width); near 0 "
                          "means collapse", "statistics"),
    "conv1_weight_norm": Term("L2 norm of the trained first convolution", "levels off", "statistics"),
}


class History(list):
    """Per step: loss, seconds and embedding std (the seed's log), checkpointed with the run."""

    def state_dict(self) -> dict[str, list]:
        return {"records": list(self)}

    def load_state_dict(self, state: dict[str, list]) -> None:
        self[:] = state["records"]


def train_byol(config: BYOLConfig) -> RunResult:
    device, layout = torch.device(config.device), config.layout()
    check_output_dir(layout, config.resume, config.overwrite)  # before the data are loaded
    train, test = load_splits(config.dataset, config.data_dir, config.download, image_size=config.image_size)
    check_data(config, train, test)
    test_images = to_unit_float(test.images[: config.num_export]).to(device)
    test_labels = test.labels[: config.num_export].clone()
    stream = PairStream(train, "auto" if config.views == "temporal" else "strong", config.seed + 1, device=device)
    torch.manual_seed(config.seed)
    model = BYOL(train.shape[0], tau=config.tau).to(device)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.lr)
    history = History()
    history_file = layout.logs / f"{layout.name}_training_logs.json"

    def export(tag: str) -> None:
        model.eval()
        save_export(layout.activation_file(tag), [model.embed(test_images).float().cpu()], test_labels,
                    rows=test.head(config.num_export))
        save_tensors(model.backbone.state_dict(), layout.network_file(tag))  # what lpl.load rebuilds
        if tag == "after":
            atomic_torch_save(model.state_dict(), layout.weights_file)
            atomic_write_json({"config": vars(config), "steps": history}, history_file)

    state = StateGroup(model=model, optimizer=optimizer, stream=stream, history=history)
    with TrainingRun(config, layout, schedule=Schedule(config.steps, config.log_every, config.checkpoint_every,
                                                       config.checkpoint_minutes, config.stop_after_minutes),
                     state=state, export=export, samples_per_step=config.batch_size,
                     describe=config.describe(train, test)) as run:
        for step in run.steps():
            start = time.perf_counter()
            model.train()
            views = stream.next(config.batch_size).view(2, config.batch_size, *train.shape)
            loss, features = model.loss(views[0], views[1])
            if not torch.isfinite(loss):  # never applied
                run.nonfinite(step, step - 1, "loss")
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.update_target()
            spread = F.normalize(features.detach(), dim=1).std(dim=0).mean()
            history.append({"step": step, "loss": loss.item(), "embedding_std": spread.item(),
                            "time_s": round(time.perf_counter() - start, 5)})
            if run.log_due(step):
                run.log(step, {"loss": loss.item(), "embedding_std": spread.item(),
                               "conv1_weight_norm": model.backbone.conv1.weight.norm().item()})
                atomic_write_json({"config": vars(config), "steps": history}, history_file)
    return run.result
