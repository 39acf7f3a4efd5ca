"""``lpl train-deep``: the paper's deep experiment (VGG-11, layer-local LPL) and the same network
trained with BYOL or SimCLR heads, layer-local or end-to-end, fast on one GPU or several.

Data stay on the device as uint8 and are augmented there in batches; both views go through the
network in one forward pass, under bf16 autocast, in channels_last, compiled with CUDA graphs.
No step waits for the host: a non-finite gradient makes the fused Adam step skip its update on
the device, and the count of skipped updates is read when the run logs (then the run stops with
the last finite weights). Under ``torchrun`` every process trains on its share of each global
batch; rank 0 writes the outputs, other ranks only their checkpoints (``<output-dir>/rank<k>``).
The trainer only trains and exports (pooled features, and the network before and after training as
safetensors); the ``lpl train-deep`` command then fits the readouts (``lpl.analysis.readout``).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist

from lpl.config import TrainConfig, flag, option, require, require_positive
from lpl.convnet import NETWORKS, ConvNet, NetworkSpec, network_spec
from lpl.data import load_splits
from lpl.data.images import ImageSet
from lpl.data.pairs import PairMode, PairStream
from lpl.heads import HEADS, build_model, head_class, head_options, options_dict, per_block
from lpl.io import atomic_torch_save, cache_dir
from lpl.layout import RunLayout, describe_data, save_export, save_tensors
from lpl.load import features
from lpl.terms import RUN_TERMS, Term, terms_record
from lpl.train.run import RunResult, Schedule, StateGroup, TrainingRun, check_data, check_output_dir

# Warnings torch 2.11 prints while compiling the step that a user can do nothing about: fp32 matmuls stay
# fp32 on purpose (the LPL terms' statistics), and the deprecation is inside inductor.
COMPILE_NOISE = ("TensorFloat32 tensor cores for float32 matrix multiplication available",
                 r"`torch._prims_common.check` is deprecated")


MONITOR_TRAIN, MONITOR_TEST = 5000, 1000  # images of the online kNN monitor (--monitor-every)
# A kNN monitor: per-layer features and labels of reference and query images -> accuracy per layer.
Monitor = Callable[[list[torch.Tensor], torch.Tensor, list[torch.Tensor], torch.Tensor], list[float]]

# Named settings for ``--preset`` (flags given beside it win), measured in docs/measured/h200_2026-12-03
# (CIFAR-10, 100 epochs, final layer: paper's readout / spatial readout of all layers) and
# docs/measured/h200_session4 (ETH-80 views at >= 45 degrees):
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},  # the official protocol: VGG-11, loss on globally pooled outputs (50.2% / 56.0%)
    "full-maps": {"loss_grid": [0]},  # VGG-11, loss on full feature maps (56.5% / 66.1% at 100 epochs)
    # the best layer-local LPL found: 3 wide blocks, full maps, scale-free decorrelation, 300 epochs
    # (69.9% / 71.1%, 4.6 minutes on an H200)
    "best-lpl": {"network": "wide3", "loss_grid": [0], "epochs": 300, "head": {"correlation": True}},
    # a sequence folder (video, turntable views): consecutive frames as pairs, scale-free decorrelation
    # (ETH-80, VGG-11, 400 epochs: every layer above its initialisation at 45 degrees, final layer 73.3% vs 62.6%)
    "video": {"views": "temporal", "head": {"correlation": True}},
}


def preset_help() -> str:
    """Each preset as the flags it stands for: ``best-lpl (--network wide3 --loss-grid 0 --epochs 300 ...)``."""
    def flags(settings: dict[str, Any]) -> str:
        def one(key: str, value: Any) -> str:
            if isinstance(value, dict):
                return " ".join(one(k, v) for k, v in value.items())
            if isinstance(value, bool):
                return flag(key) if value else flag("no_" + key)
            return f"{flag(key)} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        return " ".join(one(k, v) for k, v in settings.items())
    return ", ".join(f"{name} ({flags(settings) or 'the official protocol'})" for name, settings in PRESETS.items())


@dataclass
class DeepConfig(TrainConfig):
    """Official protocol by default: VGG-11, Adam 1e-3, wd 1.5e-6, batch 1024, 800 epochs, warm-up + cosine."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    options_field: ClassVar[str] = "head"
    option_owner: ClassVar[str] = "objective"  # a preset's head settings apply to the objectives that have them

    preset: str | None = option(None, f"named settings: {preset_help()}; flags given beside it win, and its "
                                "objective settings (--correlation) apply to the objectives that have them")
    objective: str = option("lpl", "per-layer objective: " + ", ".join(HEADS))
    head: dict[str, Any] = option({}, "the objective's own settings (given as flags)", hidden=True)
    end_to_end: bool = option(False, "one head on the last block, backpropagated through all blocks "
                              "(default: a head on every block, each block's input detached)")
    network: str = option("vgg11", "named network: " + ", ".join(NETWORKS))
    channels: list[int] | None = option(None, "output channels of each conv block (default: the network's)")
    kernel_sizes: list[int] | None = option(None, "kernel size of each conv block, or one for all (default: the "
                                            "network's)")
    pool_after: list[int] | None = option(None, "1-based blocks followed by 2x2 max-pooling (default: the network's)")
    width: float = option(1.0, "multiply every block's channels by this")
    bias: bool = option(True, "convolutions with biases (--no-bias: without, an option of the official code)")
    loss_grid: list[int] = option([1], "the objective's input per block (one value for all): 1 = the block's "
                                  "output pooled globally (paper), g = average-pooled to g x g positions, 0 = the "
                                  "full feature map")
    epochs: int = option(800, "training epochs")
    steps: int | None = option(None, "training steps (default: epochs x steps per epoch)")
    batch_size: int = option(1024, "image pairs per step (global batch under torchrun)")
    log_every: int | None = option(None, "steps between diagnostics (default: once per epoch)")
    lr: float = option(1e-3, "Adam learning rate after warm-up")
    weight_decay: float = option(1.5e-6, "Adam weight decay (not on biases)")
    warmup_epochs: float = option(10.0, "linear warm-up from 0, then cosine decay")
    final_lr: float = option(1e-6, "learning rate at the end of the cosine decay")
    shuffle_positives: bool = option(False, "ablation: pair each view with another image's view")
    views: Literal["simclr", "temporal", "temporal+simclr"] = option(
        "simclr", "simclr: two augmentations of one image (official); temporal: frames t and t + k of a sequence; "
        "temporal+simclr: those frames, each augmented")
    max_offset: int = option(1, "temporal views: the later frame is 1 to this many frames after the earlier one")
    precision: Literal["bf16", "fp32"] = option("bf16", "autocast precision on CUDA (CPU always runs fp32)")
    compile: bool = option(True, "torch.compile the training step with CUDA graphs (CUDA only)")
    evaluate: bool = option(True, "fit the readouts after training (lpl readout)")
    eval_train: int = option(50000, "training images whose features are exported for the readouts")
    eval_epochs: int = option(20, "epochs of each linear readout (Adam, batch 512, lr 1e-3)")
    readout_grid: int = option(4, "the frontier's readout besides the paper's: every block's output average-"
                               "pooled to at most g x g, alone and all concatenated; 0 = the paper's only")
    monitor_every: int = option(0, "epochs between online kNN-20 checks of every block (pooled features of "
                                f"{MONITOR_TEST} test images against {MONITOR_TRAIN} training images), logged as "
                                "layer<k>_knn20; 0 = none")
    name: str = option("", "run name (default deep_<objective>, with _e2e for --end-to-end)")

    @classmethod
    def option_groups(cls) -> dict[str, type]:
        """Each registered objective's settings (``LayerHead.Options``): their flags fill ``head``."""
        return {name: head.Options for name, head in HEADS.items()}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.preset is None or self.preset in PRESETS,
                f"--preset {self.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
        require_positive(self, "lr")  # whole numbers: config.MINIMUM
        head_options(self.objective, self.head)
        blocks = len(self.spec(3).channels)
        per_block(self.loss_grid, blocks)

    def spec(self, in_channels: int) -> NetworkSpec:
        """The network this config trains, for images of ``in_channels`` channels."""
        return network_spec(self.network, in_channels, self.channels, self.kernel_sizes, self.pool_after, self.width,
                            self.bias)

    def run_name(self) -> str:
        return self.name or f"deep_{self.objective}" + ("_e2e" if self.end_to_end else "")

    def layout(self, rank: int = 0) -> RunLayout:
        root = Path(self.output_dir) / (f"rank{rank}" if rank else "")
        return RunLayout(root, self.run_name(), f"{self.run_name()}_activations")

    def describe(self, train: ImageSet, test: ImageSet) -> dict[str, Any]:
        """The run record's description of network, objective and data (see ``lpl.layout``)."""
        cls = head_class(self.objective)
        spec = self.spec(train.shape[0])
        return {
            "writer": "lpl train-deep",
            "network": {"kind": "conv", **spec.to_dict(), "name": self.network,
                        "input": {"channels": train.shape[0], "size": list(train.shape[1:]),
                                  "scaling": "uint8 pixels / 255, no normalisation"}},
            "objective": {"name": self.objective, "summary": cls.summary,
                          "training": "end-to-end" if self.end_to_end else "layer-local",
                          "options": options_dict(head_options(self.objective, self.head)),
                          "loss_grid": per_block(self.loss_grid, len(spec.channels)),
                          "views": self.views, "max_offset": self.max_offset,
                          "shuffled_positives": self.shuffle_positives},
            "terms": terms_record(cls.terms, RUN_TERMS, MONITOR_TERMS if self.monitor_every else {}),
            "data": describe_data(self.dataset, train, test),
            "exports": {"rows": min(self.num_export, len(test)), "train_rows": min(self.eval_train, len(train)),
                        "features": "every block's output averaged over positions (float32; train rows float16)"},
        }


MONITOR_TERMS = {"knn20": Term(f"online kNN-20 accuracy of the block's pooled features ({MONITOR_TEST} test images "
                                f"against {MONITOR_TRAIN} training images)", "rises", "statistics")}


def keep_compile_caches() -> None:
    """Keep torch.compile's caches (inductor's compiled graphs, Triton's kernels) in lpl's cache folder
    (``lpl.io.cache_dir``), which outlives the machine's temporary folder, unless the user has placed them:
    a later run on this machine compiles from them in a fraction of the time."""
    root = cache_dir() / "compile"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))


STREAM_MODES: dict[str, PairMode] = {"simclr": "strong", "temporal": "temporal", "temporal+simclr": "temporal+strong"}


def lr_at(config: DeepConfig, epoch: float, total_epochs: float) -> float:
    """Linear warm-up from 0 over ``warmup_epochs``, then cosine decay to ``final_lr``."""
    if epoch < config.warmup_epochs:
        return config.lr * epoch / config.warmup_epochs
    progress = min(1.0, (epoch - config.warmup_epochs) / max(1e-9, total_epochs - config.warmup_epochs))
    return config.final_lr + 0.5 * (config.lr - config.final_lr) * (1 + math.cos(math.pi * progress))


def schedule_for(config: DeepConfig, train_size: int) -> tuple[Schedule, int]:
    """The run's step counts and its steps per epoch, from the data set size."""
    per_epoch = max(1, train_size // config.batch_size)
    steps = config.steps or config.epochs * per_epoch
    return Schedule(steps, config.log_every or per_epoch, config.checkpoint_every, config.checkpoint_minutes,
                    config.stop_after_minutes), per_epoch


def join_process_group(config: DeepConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device); joins the torchrun process group if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        cuda = config.device.startswith("cuda")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
        return dist.get_rank(), world, torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), torch.device(config.device)
    return 0, 1, torch.device(config.device)


class DeepTrainer:
    """The model, its optimizer, the view stream and one training step (no host synchronisation)."""

    def __init__(self, config: DeepConfig, train: ImageSet, schedule: Schedule, steps_per_epoch: int,
                 rank: int, world: int, device: torch.device):
        require(config.batch_size % world == 0, "--batch-size must divide by the number of processes")
        self.config, self.schedule, self.steps_per_epoch, self.device = config, schedule, steps_per_epoch, device
        self.local_batch, self.image_shape = config.batch_size // world, train.shape
        self.cuda = device.type == "cuda"
        torch.backends.cudnn.benchmark = self.cuda  # fixed shapes: let cuDNN pick the fastest kernels
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        self.stream = PairStream(train, STREAM_MODES[config.views], config.seed + 1 + rank, device=device,
                                 max_offset=config.max_offset)
        torch.manual_seed(config.seed)
        net = ConvNet(config.spec(train.shape[0]))
        self.model = build_model(config.objective, net, not config.end_to_end, config.head, config.loss_grid)
        # Module.to accepts memory_format at runtime (torch._C._nn._parse_to), but torch's stubs omit it
        self.model.to(device, memory_format=self.memory_format)  # type: ignore[call-overload]
        trained = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [
            {"params": [p for n, p in trained if not n.endswith("bias")]},
            {"params": [p for n, p in trained if n.endswith("bias")], "weight_decay": 0.0}]
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True)
        model: torch.nn.Module = self.model
        if world > 1:
            ids = [device.index] if self.cuda else None
            model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self._model = model
        # CUDA graphs ("reduce-overhead") remove the launch overhead that bounds this small-image step.
        self.compiled = config.compile and self.cuda
        if self.compiled:
            keep_compile_caches()
        self.forward = torch.compile(self._forward, mode="reduce-overhead") if self.compiled else self._forward
        self.compiling = self.compiled  # until this process's first step (a resumed run compiles again)
        self.step_count = 0
        self.skipped = torch.zeros((), device=device)  # updates skipped for non-finite gradients
        self._one = torch.ones((), device=device)
        self.last: tuple[torch.Tensor, dict[int, dict[str, torch.Tensor]]] | None = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cuda and self.config.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, drawn: tuple[torch.Tensor, ...], order: torch.Tensor | None
                 ) -> tuple[torch.Tensor, dict[int, dict[str, torch.Tensor]]]:
        """Views from the drawn random choices, then the model's loss: one compiled graph on CUDA."""
        views = self.stream.views(drawn).view(2 * self.local_batch, *self.image_shape)
        geometry = self.stream.geometry(drawn)
        if order is not None:  # shuffled positives: pair each first view with another image's second
            views = torch.cat((views[: self.local_batch], views[self.local_batch:][order]))
            geometry = None if geometry is None else torch.cat((geometry[: self.local_batch],
                                                                geometry[self.local_batch:][order]))
        with self._autocast():
            return self._model(views.contiguous(memory_format=self.memory_format), geometry)

    def _compiled_or_eager(self, *args: Any) -> tuple[torch.Tensor, dict[int, dict[str, torch.Tensor]]]:
        """The compiled step; if compiling fails (it happens at the first call), eager from then on."""
        try:
            return self.forward(*args)
        except Exception as exc:  # dynamo, inductor and triton raise many types
            if not self.compiling:
                raise
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training "
                          f"continues without it (slower); --no-compile skips it", RuntimeWarning, stacklevel=2)
            self.compiled, self.forward = False, self._forward
            return self.forward(*args)

    def step(self) -> None:
        """One update; skipped on the device (and counted) when a gradient is not finite."""
        if not self.compiling:
            return self._step()
        with warnings.catch_warnings():  # this step compiles; torch's notes to its own developers go
            for message in COMPILE_NOISE:
                warnings.filterwarnings("ignore", message=message)
            self._step()
        self.compiling = False

    def _step(self) -> None:
        epoch = self.step_count / self.steps_per_epoch
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.config, epoch, self.schedule.steps / self.steps_per_epoch)
        drawn = self.stream.draw(self.local_batch)
        order = None
        if self.config.shuffle_positives:
            order = torch.randperm(self.local_batch, generator=self.stream.generator, device=self.device)
        self.model.train()
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()
        loss, terms = self._compiled_or_eager(drawn, order)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        found_inf = (~torch.isfinite(loss.detach())).float()
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, self._one)
        self.optimizer.found_inf = found_inf  # type: ignore[attr-defined]  # fused Adam skips the update
        self.optimizer.step()
        self.model.after_step(self.step_count, self.schedule.steps)
        self.skipped += found_inf
        self.step_count += 1
        self.last = (loss.detach(), terms)  # read before the next step (CUDA graphs reuse the memory)

    def diagnostics(self) -> dict[str, Any]:
        """Loss, learning rate, epoch and every head's terms (one host sync)."""
        assert self.last is not None
        loss, terms = self.last
        record: dict[str, Any] = {"loss": loss.item(), "lr": self.optimizer.param_groups[0]["lr"],
                                  "epoch": round(self.step_count / self.steps_per_epoch, 3)}
        for layer, layer_terms in terms.items():
            record.update({f"layer{layer}_{k}": v.item() for k, v in layer_terms.items()})
        return record

    def features(self, data: ImageSet, count: int, on_device: bool = False) -> list[torch.Tensor]:
        """Pooled features of every block for the first ``count`` images, float32 on the CPU (or the device):
        ``lpl.load.features`` under this trainer's autocast and memory format."""
        self.model.eval()
        with self._autocast():
            return features(self.model.net, data.images[:count], on_device=on_device, memory_format=self.memory_format)

    def monitor(self, knn: Monitor, train: ImageSet, test: ImageSet) -> dict[str, float]:
        """``layer<k>_knn20`` of every block: the monitor's accuracy on the first test and training images."""
        reference = self.features(train, MONITOR_TRAIN, on_device=True)
        query = self.features(test, MONITOR_TEST, on_device=True)
        labels = [data.labels[:len(x[0])].to(self.device) for data, x in ((train, reference), (test, query))]
        return {f"layer{k}_knn20": round(v, 4) for k, v in enumerate(knn(reference, labels[0], query, labels[1]), 1)}

    def state_dict(self) -> dict[str, Any]:
        return StateGroup(model=self.model, optimizer=self.optimizer, stream=self.stream).state_dict() | {
            "step": self.step_count, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        StateGroup(model=self.model, optimizer=self.optimizer, stream=self.stream).load_state_dict(state)
        self.step_count = state["step"]
        self.skipped.copy_(state["skipped"])


def train_deep(config: DeepConfig, knn: Monitor | None = None) -> RunResult:
    """Train; export pooled features and the network before and after training. ``knn``: the kNN monitor that
    ``--monitor-every`` runs (the command passes it in; trainers do no evaluation of their own)."""
    rank, world, device = join_process_group(config)
    check_output_dir(config.layout(rank), config.resume, config.overwrite)  # before the data are loaded
    train, test = load_splits(config.dataset, config.data_dir, config.download, image_size=config.image_size)
    check_data(config, train, test)
    schedule, per_epoch = schedule_for(config, len(train))
    trainer = DeepTrainer(config, train, schedule, per_epoch, rank, world, device)
    layout = config.layout(rank)

    def export(tag: str) -> None:
        if rank:
            return
        test_features = trainer.features(test, config.num_export)
        train_features = trainer.features(train, min(config.eval_train, len(train)))
        half = [f.half() for f in train_features]
        save_export(layout.activation_file(tag), test_features, test.labels[: config.num_export].clone(),
                    train={"layers": half, "labels": train.labels[: len(half[0])].clone()},
                    rows=test.head(config.num_export))
        save_tensors(trainer.model.net.state_dict(), layout.network_file(tag))
        if tag == "after":
            atomic_torch_save({"objective": config.objective, "state_dict": trainer.model.net.state_dict(),
                               "heads": trainer.model.heads.state_dict()}, layout.weights_file)

    with TrainingRun(config, layout, schedule, trainer, export, config.batch_size, writer=rank == 0,
                     describe=config.describe(train, test)) as run:
        checked = 0  # the last epoch the kNN monitor ran at
        for step in run.steps():
            trainer.step()
            if run.log_due(step):
                record = trainer.diagnostics()
                skipped = int(trainer.skipped.item())
                if skipped:
                    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
                    run.nonfinite(step, step, f"{skipped} update(s) skipped; {', '.join(bad) or 'gradients'}")
                    break
                epoch = step // per_epoch
                if knn is not None and config.monitor_every and epoch % config.monitor_every == 0 and rank == 0 \
                        and epoch != checked:  # once per due epoch, however often it logs
                    record.update(trainer.monitor(knn, train, test))
                    checked = epoch
                run.log(step, record)
    return run.result
