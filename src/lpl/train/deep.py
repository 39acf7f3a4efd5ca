"""``lpl train-deep``: layer-local VGG-11 LPL (the paper's main experiment), fast on one GPU.

Data stay on the device as uint8 and are augmented there in batches; both views go through the
network in one forward pass, under bf16 autocast, in channels_last, compiled on CUDA. Under
``torchrun`` every process trains on its own share of each global batch and rank 0 writes the
outputs (other ranks write their checkpoints under ``<output-dir>/rank<k>``).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lpl.analysis.metrics import participation_ratio
from lpl.config import option, require
from lpl.data import load_splits
from lpl.data.images import ImageSet, to_unit_float
from lpl.data.pairs import PairStream
from lpl.deep import VGG11_CHANNELS, VGG11_POOL_AFTER, DeepLPLLoss, DeepLPLNet
from lpl.io import atomic_torch_save, atomic_write_json
from lpl.train.loop import RunConfig, RunPaths, RunResult, run_training


@dataclass
class DeepLPLConfig(RunConfig):
    """Official protocol by default: Adam 1e-3, wd 1.5e-6, batch 1024, 800 epochs, warm-up + cosine."""

    epochs: int = option(800, "training epochs (used when --steps is 0)")
    steps: int = option(0, "training steps; 0 = epochs x steps per epoch")
    batch_size: int = option(1024, "image pairs per step (global batch under torchrun)")
    log_every: int = option(0, "steps between diagnostics; 0 = once per epoch")
    checkpoint_every: int = option(0, "steps between checkpoints; 0 = once per epoch")
    lr: float = option(1e-3, "Adam learning rate after warm-up")
    weight_decay: float = option(1.5e-6, "Adam weight decay (not on biases)")
    warmup_epochs: float = option(10.0, "linear warm-up from 0, then cosine decay")
    final_lr: float = option(1e-6, "learning rate at the end of the cosine decay")
    pred: float = option(1.0, "predictive coefficient; 0 switches the term off")
    hebb: float = option(1.0, "Hebbian coefficient; 0 switches the term off")
    decorr: float = option(10.0, "decorrelation coefficient; 0 switches the term off")
    stop_gradient: bool = option(True, "stop the gradient of the earlier view (paper); off = official code")
    no_pooling: bool = option(False, "losses on full feature maps instead of pooled outputs")
    shuffle_positives: bool = option(False, "ablation: pair each view with another image's view")
    end_to_end: bool = option(False, "ablation: backpropagate through all blocks from the last one's loss")
    channels: list[int] = option(list(VGG11_CHANNELS), "output channels of each conv block")
    pool_after: list[int] = option(list(VGG11_POOL_AFTER), "1-based blocks followed by 2x2 max-pooling")
    views: Literal["simclr", "temporal"] = option("simclr", "simclr augmentations (official) or temporal pairs")
    precision: Literal["bf16", "fp32"] = option("bf16", "autocast precision on CUDA (CPU always runs fp32)")
    compile: bool = option(True, "torch.compile the training step with CUDA graphs (CUDA only)")
    eval_train: int = option(50000, "training images used to fit the per-layer linear readouts")
    eval_epochs: int = option(20, "epochs of each linear readout (Adam, batch 512, lr 1e-3)")
    name: str = option("deep_lpl", "run name: prefix of output files")

    # 0 = derived from the data set size once it is loaded (see DeepLPLTask).
    POSITIVE: ClassVar[tuple[str, ...]] = ("batch_size", "keep_checkpoints", "num_export")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.epochs > 0 and self.lr > 0 and self.weight_decay >= 0, "--epochs and --lr must be positive")
        require(min(self.pred, self.hebb, self.decorr) >= 0, "coefficients must be >= 0")
        require(not (self.no_pooling and self.end_to_end), "--no-pooling with --end-to-end is not supported")
        require(all(1 <= p <= len(self.channels) for p in self.pool_after),
                "--pool-after names blocks 1..len(channels)")

    def paths(self) -> RunPaths:
        return RunPaths(Path(self.output_dir), self.name, f"{self.name}_activations")

    def loss(self) -> DeepLPLLoss:
        return DeepLPLLoss(self.pred, self.hebb, self.decorr, self.stop_gradient, self.no_pooling, self.end_to_end)


def lr_at(config: DeepLPLConfig, epoch: float, total_epochs: float) -> float:
    """Linear warm-up from 0 over ``warmup_epochs``, then cosine decay to ``final_lr``."""
    if epoch < config.warmup_epochs:
        return config.lr * epoch / config.warmup_epochs
    progress = min(1.0, (epoch - config.warmup_epochs) / max(1e-9, total_epochs - config.warmup_epochs))
    return config.final_lr + 0.5 * (config.lr - config.final_lr) * (1 + math.cos(math.pi * progress))


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def linear_readout(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                   epochs: int = 20, batch: int = 512, lr: float = 1e-3, seed: int = 0) -> float:
    """Accuracy of a logistic-regression readout on standardised frozen features (official protocol)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    generator = torch.Generator(train_x.device).manual_seed(seed)
    classes = int(max(train_y.max(), test_y.max())) + 1
    head = torch.nn.Linear(train_x.shape[1], classes).to(train_x.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator, device=train_x.device)
        for index in order.split(batch):
            with torch.enable_grad():
                loss = F.cross_entropy(head(train_x[index]), train_y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
    return float((head(test_x).argmax(1) == test_y).float().mean())


class DeepLPLTask:
    def __init__(self, config: DeepLPLConfig):
        self.rank, self.world_size = world()
        self.config, self.device = config, torch.device(config.device)
        train, test = load_splits(config.dataset, config.data_dir, config.download)
        require(config.batch_size % self.world_size == 0, "--batch-size must divide by the number of processes")
        self.local_batch = config.batch_size // self.world_size
        # Counts given as 0 are derived here, before the loop saves the config.
        self.steps_per_epoch = max(1, len(train) // config.batch_size)
        config.steps = config.steps or config.epochs * self.steps_per_epoch
        config.log_every = config.log_every or self.steps_per_epoch
        config.checkpoint_every = config.checkpoint_every or self.steps_per_epoch
        self.train_set, self.test_set = train, test
        self.memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        mode = "auto" if config.views == "temporal" else "strong"
        self.stream = PairStream(train, mode, config.seed + 1 + self.rank, device=self.device)
        torch.manual_seed(config.seed)
        self.net = DeepLPLNet(train.shape[0], tuple(config.channels), tuple(config.pool_after))
        self.net = self.net.to(self.device, memory_format=self.memory_format)
        decay = [p for n, p in self.net.named_parameters() if not n.endswith("bias")]
        no_decay = [p for n, p in self.net.named_parameters() if n.endswith("bias")]
        self.cuda = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                                          lr=config.lr, weight_decay=config.weight_decay, fused=self.cuda)
        self.model: torch.nn.Module = self.net
        if self.world_size > 1:
            ids = [self.device.index] if self.cuda else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.loss_fn = config.loss()
        # CUDA graphs ("reduce-overhead") remove the launch overhead that bounds this small-image step.
        compiled = config.compile and self.cuda
        self.forward = torch.compile(self._forward, mode="reduce-overhead") if compiled else self._forward
        self.samples_per_step = config.batch_size
        self.paths = config.paths()
        self.step_count = 0
        self._last: list[dict[str, torch.Tensor]] = []
        self._total = torch.zeros(())
        self.results: dict[str, Any] = {}

    # ------------------------------------------------------------------ training
    def _autocast(self):
        if self.cuda and self.config.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, views: torch.Tensor, shuffle: torch.Tensor | None):
        with self._autocast():
            feature_maps = self.model(views, local=not self.config.end_to_end)
        return self.loss_fn(feature_maps, shuffle)

    def views(self) -> torch.Tensor:
        """Both views of the local batch stacked: (2B, C, H, W) float32 on the device."""
        return self.stream.next(self.local_batch).view(2 * self.local_batch, *self.train_set.shape)

    def step(self) -> torch.Tensor:
        epoch = self.step_count / self.steps_per_epoch
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.config, epoch, self.config.steps / self.steps_per_epoch)
        views = self.views().contiguous(memory_format=self.memory_format)
        shuffle = None
        if self.config.shuffle_positives:
            shuffle = torch.randperm(self.local_batch, generator=self.stream.generator, device=self.device)
        self.model.train()
        if self.cuda and self.config.compile:
            torch.compiler.cudagraph_mark_step_begin()
        total, terms = self.forward(views, shuffle)
        if not torch.isfinite(total):
            self._last, self._total = terms, total.detach()
            return total.detach()[None]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step_count += 1
        self._last, self._total = terms, total.detach()
        return self._total[None]

    def diagnostics(self) -> dict[str, float]:
        record: dict[str, float] = {"loss": self._total.item(), "lr": self.optimizer.param_groups[0]["lr"],
                                    "epoch": round(self.step_count / self.steps_per_epoch, 3)}
        for i, terms in enumerate(self._last, 1):
            record.update({f"layer{i}_{k}": v.item() for k, v in terms.items()})
        return record

    def nonfinite_terms(self) -> list[str]:
        bad = [f"layer{i}.{k}" for i, terms in enumerate(self._last, 1) for k, v in terms.items()
               if not torch.isfinite(v)]
        return bad or ["loss"]

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def features(self, data: ImageSet, count: int) -> list[torch.Tensor]:
        """Pooled features of every block for the first ``count`` images, float32 on the device."""
        self.net.eval()
        chunks = []
        for images in data.images[:count].split(1024):
            x = to_unit_float(images.to(self.device)).contiguous(memory_format=self.memory_format)
            with self._autocast():
                chunks.append(self.net.pooled_features(x))
        return [torch.cat(layer) for layer in zip(*chunks)]

    def evaluate(self, test_features: list[torch.Tensor]) -> list[dict[str, float]]:
        """Per layer: linear readout accuracy, participation ratio and mean activation."""
        count = min(self.config.eval_train, len(self.train_set))
        train_features = self.features(self.train_set, count)
        train_y = self.train_set.labels[:count].to(self.device)
        test_y = self.test_set.labels[: len(test_features[0])].to(self.device)
        return [{"layer": i, "readout": linear_readout(tr, train_y, te, test_y, self.config.eval_epochs),
                 "participation_ratio": participation_ratio(te.cpu()), "mean_activation": float(te.mean())}
                for i, (tr, te) in enumerate(zip(train_features, test_features), 1)]

    def export(self, tag: str) -> list[Path]:
        if self.rank != 0:
            return []
        features = self.features(self.test_set, self.config.num_export)
        blob = {f"layer{i}_activations": f.cpu() for i, f in enumerate(features, 1)}
        blob["labels"] = self.test_set.labels[: self.config.num_export].clone()
        self.results["initialisation" if tag == "before" else "trained"] = self.evaluate(features)
        results = atomic_write_json({"config": vars(self.config), **self.results},
                                    self.paths.logs / f"{self.config.name}_results.json")
        return [atomic_torch_save(blob, self.paths.activation_file(tag)), results]

    def write_logs(self) -> None:
        """The loop's log and the results file hold everything this task reports."""

    def save_weights(self) -> Path | None:
        if self.rank != 0:
            return None
        blob = {"channels": self.config.channels, "pool_after": self.config.pool_after,
                "state_dict": self.net.state_dict()}
        return atomic_torch_save(blob, self.paths.weights / f"{self.config.name}_weights.pt")

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "stream": self.stream.state_dict(), "step": self.step_count, "results": self.results}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])
        self.step_count, self.results = state["step"], state["results"]


def _init_distributed(config: DeepLPLConfig) -> DeepLPLConfig:
    """Join the torchrun process group; each rank gets its own GPU and, past rank 0, scratch outputs."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return config
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = config.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    updates: dict[str, Any] = {"device": f"cuda:{local_rank}" if cuda else "cpu"}
    if rank:
        updates.update(output_dir=str(Path(config.output_dir) / f"rank{rank}"), progress=False)
    return replace(config, **updates)


def train_deep(config: DeepLPLConfig) -> RunResult:
    config = _init_distributed(config)
    task = DeepLPLTask(config)
    return run_training(task, config, task.paths)
