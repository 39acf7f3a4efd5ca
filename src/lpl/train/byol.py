"""``lpl train-byol``: the BYOL baseline on CIFAR-10 or shapes, through the shared training loop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lpl.byol import BYOL
from lpl.config import option, require
from lpl.data import load_splits
from lpl.data.images import to_unit_float
from lpl.data.pairs import PairStream
from lpl.io import atomic_torch_save, atomic_write_json
from lpl.train.loop import RunConfig, RunPaths, RunResult, run_training


@dataclass
class BYOLConfig(RunConfig):
    """BYOL with only the first convolution trained (the mission's local-learning constraint)."""

    steps: int = option(1000, "number of training steps")
    batch_size: int = option(32, "images per step (each gives two views)")
    log_every: int = option(100, "steps between diagnostics")
    checkpoint_every: int = option(250, "steps between checkpoints in weights/")
    views: Literal["byol", "temporal"] = option(
        "byol", "byol: crop/flip/colour/grayscale/blur (crop/flip for grayscale); temporal: LPL's pairs")
    lr: float = option(1e-3, "Adam learning rate of the first convolution (the only trained layer)")
    tau: float = option(0.99, "EMA rate of the target network")
    name: str = option("", "run name (default byol for cifar10, byol_<dataset> otherwise)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.lr > 0, "--lr must be positive")
        require(0.0 <= self.tau < 1.0, f"--tau must be in [0, 1), got {self.tau}")
        if not self.name:
            self.name = "byol" if self.dataset == "cifar10" else f"byol_{Path(self.dataset).stem}"

    def paths(self) -> RunPaths:
        return RunPaths(Path(self.output_dir), self.name, f"{self.name}_embeddings")


class BYOLTask:
    def __init__(self, config: BYOLConfig):
        self.config, self.device = config, torch.device(config.device)
        train, test = load_splits(config.dataset, config.data_dir, config.download)
        self.test_images = to_unit_float(test.images[: config.num_export]).to(self.device)
        self.test_labels = test.labels[: config.num_export].clone()
        self.shape = train.shape
        temporal = config.views == "temporal"
        self.stream = PairStream(train, "auto" if temporal else "strong", config.seed + 1, device=self.device)
        torch.manual_seed(config.seed)
        self.model = BYOL(self.shape[0], tau=config.tau).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.trainable_parameters(), lr=config.lr)
        self.paths = config.paths()
        self.samples_per_step = config.batch_size
        self.history: list[dict[str, float]] = []
        self._last: dict[str, float] = {}

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.config.batch_size
        pair = self.stream.next(batch).view(2, batch, *self.shape)
        return pair[0], pair[1]

    def step(self) -> torch.Tensor:
        start = time.perf_counter()
        self.model.train()
        loss, features = self.model.loss(*self.views())
        if not torch.isfinite(loss):
            return loss.detach()[None]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.model.update_target()
        collapse = F.normalize(features.detach(), dim=1).std(dim=0).mean()
        self._last = {"step": len(self.history) + 1, "loss": loss.item(), "embedding_std": collapse.item(),
                      "time_s": round(time.perf_counter() - start, 5)}
        self.history.append(self._last)
        return loss.detach()[None]

    def diagnostics(self) -> dict[str, float]:
        conv1 = self.model.backbone.conv1.weight
        return {"loss": self._last["loss"], "embedding_std": self._last["embedding_std"],
                "conv1_weight_norm": conv1.norm().item()}

    def nonfinite_terms(self) -> list[str]:
        bad = [name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        return bad or ["loss"]

    def export(self, tag: str) -> list[Path]:
        self.model.eval()
        blob = {"embeddings": self.model.embed(self.test_images).float().cpu(), "labels": self.test_labels}
        return [atomic_torch_save(blob, self.paths.activation_file(tag))]

    def write_logs(self) -> Path:
        """``logs/<name>_training_logs.json``: config, and loss, time and collapse metric per step."""
        return atomic_write_json({"config": vars(self.config), "steps": self.history},
                                 self.paths.logs / f"{self.config.name}_training_logs.json")

    def save_weights(self) -> Path:
        return atomic_torch_save(self.model.state_dict(), self.paths.weights / f"{self.config.name}_weights.pt")

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "stream": self.stream.state_dict(), "history": self.history}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])
        self.history = state["history"]


def train_byol(config: BYOLConfig) -> RunResult:
    task = BYOLTask(config)
    return run_training(task, config, task.paths)
