"""Deep layer-local LPL on one GPU (VGG-11, batch 1024, full SimCLR augmentation), in one run:

- bare step: ``DeepTrainer.step`` alone (uint8 data on the GPU, batched augmentation, both views
  in one forward, bf16, channels_last, CUDA graphs), in image pairs/s and as model FLOPs
  utilisation against the GPU's dense bf16 peak;
- default run: ``lpl train-deep`` with its default logging and checkpointing (by wall time) on
  CIFAR-sized data, from its own log, and the same with a checkpoint every epoch (worst case for
  the background writer: one falling due while the last is being written waits for it, so the
  number written is printed too); each as a ratio to the bare step;
- kNN monitor: one ``--monitor-every`` check timed, as a share of an epoch and of a run checking every 10 epochs;
- variants (``--variants [NAME ...]``): the bare step of other networks and losses, as ratios to the default's;
- anchor (``--anchor PATH``): the prototype ``peer_deep.py`` run in the same process tree, and
  our bare step as a ratio to its ``fast_bf16_compiled``.

Images are random uint8 (62,500 x 3 x 32 x 32, the first 80% for training); speed does not depend on content.
``--device cpu --no-compile --width 0.0625 --images 20 --batch-size 16 --warmup 1 --steps 2 --epochs 3`` runs
every part at toy size on a CPU (a smoke test of the script, no figure to quote).

    python benchmarks/bench_deep.py [--steps 40] [--epochs 12] [--anchor ../shared/anchors/peer_deep.py]
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from lpl.cli import knn_monitor
from lpl.convnet import NetworkSpec
from lpl.data.images import ImageSet
from lpl.train.checkpoint import CheckpointFolder
from lpl.train.deep import DeepConfig, DeepTrainer, schedule_for, train_deep

# --variants: the bare step of other networks and objective settings, each as a ratio to the default's
VARIANTS: dict[str, dict[str, Any]] = {
    "vgg11, loss on full maps": {"loss_grid": [0]},
    "vgg11, loss on 4x4 grids": {"loss_grid": [4]},
    "vgg11, full maps, aligned": {"loss_grid": [0], "head": {"aligned": True}},
    "vgg11, SimCLR": {"objective": "simclr"},
    "vgg11, BYOL": {"objective": "byol"},
    "wide3": {"network": "wide3"},
    "wide3, loss on full maps": {"network": "wide3", "loss_grid": [0]},
    "vgg11, --correlation": {"head": {"correlation": True}},
    "wide3, full maps, --correlation (best-lpl)": {"network": "wide3", "loss_grid": [0], "head": {"correlation": True}},
    "vgg6-wide": {"network": "vgg6-wide"},
}
PAIRS_PER_EPOCH = 50_000  # CIFAR-10's training set, for the 800-epoch estimate
DENSE_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core FLOP/s (spec)


def flops_per_pair(spec: NetworkSpec, size: int = 32) -> float:
    """Forward and backward (about 3x the forward) of both views through the conv blocks."""
    forward, c_in, side = 0.0, spec.in_channels, size
    for block, (c_out, kernel) in enumerate(zip(spec.channels, spec.kernel_sizes), 1):
        forward += 2 * c_in * c_out * kernel * kernel * side * side
        c_in, side = c_out, side // 2 if block in spec.pool_after else side
    return 2 * 3 * forward


def peak_flops(device: torch.device) -> float | None:
    """The GPU's dense bf16 peak, if known."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in DENSE_BF16_PEAK.items() if k in name), None)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step(images: torch.Tensor, warmup: int, steps: int, settings: dict[str, Any]
              ) -> tuple[float, float | None, DeepTrainer]:
    """Pairs/s of the training step alone after ``warmup`` steps, the GPU memory it holds in GiB (CUDA graph
    pools included), and the trainer."""
    config = DeepConfig(output_dir=tempfile.mkdtemp(prefix="bench_deep_"), progress=False, **settings)
    device = torch.device(config.device)
    data = ImageSet(images, torch.zeros(len(images), dtype=torch.long))
    schedule, per_epoch = schedule_for(config, len(data))
    trainer = DeepTrainer(config, data, schedule, per_epoch, 0, 1, device)
    for _ in range(warmup):
        trainer.step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    synchronize(device)
    memory = torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None
    return config.batch_size * steps / (time.perf_counter() - start), memory, trainer


def monitor_seconds(trainer: DeepTrainer, images: torch.Tensor) -> float:
    """Seconds of one ``--monitor-every`` check (features of 5,000 training and 1,000 test images, kNN-20 per
    block), the second of two calls."""
    data = ImageSet(images, torch.arange(len(images)) % 10)
    for _ in range(2):
        synchronize(trainer.device)
        start = time.perf_counter()
        trainer.monitor(knn_monitor, data, data)
        synchronize(trainer.device)
    return time.perf_counter() - start


def default_run(data_file: Path, epochs: int, checkpoint_every: int, settings: dict[str, Any]
                ) -> tuple[float, float, int]:
    """(median pairs/s over the run's epochs after the second, wall seconds, checkpoints written) of
    ``lpl train-deep``."""
    written = []
    save = CheckpointFolder.save

    def counted(folder: CheckpointFolder, state: dict, step: int) -> Path:
        written.append(step)
        return save(folder, state, step)

    with mock.patch.object(CheckpointFolder, "save", counted), tempfile.TemporaryDirectory() as out:
        config = DeepConfig(dataset=str(data_file), epochs=epochs, output_dir=out, checkpoint_every=checkpoint_every,
                            progress=False, evaluate=False, eval_train=1000, num_export=1000, **settings)
        start = time.perf_counter()
        train_deep(config)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(out) / "logs" / "deep_lpl_log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r][2:]
    return statistics.median(rates), wall, len(written)


def anchor(path: str) -> dict[str, float]:
    """Run the prototype and parse its last dict line."""
    out = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=900).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return ast.literal_eval(lines[-1]) if lines else {}


def main(argv: list[str] | None = None) -> None:
    """Measure and print the bare step, the default runs and the anchor (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=8, help="steps before the bare step is timed (compile, graphs)")
    parser.add_argument("--epochs", type=int, default=12, help="length of the default-run measurement (at least 3)")
    parser.add_argument("--anchor", default=None, help="path of peer_deep.py to run beside ours")
    parser.add_argument("--device", default="cuda", help="the figures are for CUDA; cpu runs a smoke test")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager step (no torch.compile)")
    parser.add_argument("--width", type=float, default=1.0, help="multiply VGG-11's channels by this")
    parser.add_argument("--images", type=int, default=62_500, help="random images, the first 80%% for training")
    parser.add_argument("--variants", nargs="*", default=None, choices=list(VARIANTS),
                        help="also the bare step of these networks and settings (no names: all)")
    parser.add_argument("--no-runs", dest="runs", action="store_false", help="skip the default-run measurements")
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (the rate is the median over the epochs after the second)")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_deep.py measures GPU speed; no CUDA device here (--device cpu: a smoke test)")
    settings = {"batch_size": args.batch_size, "device": args.device, "compile": args.compile, "width": args.width}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(f"device: {name}, torch {torch.__version__}", flush=True)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
    train = len(images) * 4 // 5  # the training split of a data file
    bare, memory, trainer = bare_step(images[:train], args.warmup, args.steps, settings)
    flops, peak = flops_per_pair(DeepConfig(width=args.width).spec(3)), peak_flops(device)
    mfu = f"{bare * flops / peak:.1%} of dense bf16 peak" if peak else "peak unknown"
    held = f"GPU memory {memory:.1f} GiB" if memory is not None else "no GPU memory"
    print(f"bare step:        {bare:9.0f} pairs/s  {flops / 1e9:.2f} GFLOP/pair  MFU {mfu}  {held}  "
          f"800 epochs {800 * PAIRS_PER_EPOCH / bare / 60:.1f} min", flush=True)
    check, epoch = monitor_seconds(trainer, images[:train]), PAIRS_PER_EPOCH / bare
    print(f"kNN monitor:      {check:9.2f} s per check = {check / epoch:.1%} of an epoch at the bare step; "
          f"--monitor-every 10: {check / (10 * epoch + check):.1%} of the run", flush=True)
    del trainer
    for label in VARIANTS if args.variants == [] else args.variants or []:
        variant = {**settings, **VARIANTS[label]}
        torch._dynamo.reset()  # each network compiles anew: never past dynamo's limit of 8 versions, eager
        rate, _, _ = bare_step(images[:train], args.warmup, args.steps, variant)
        vflops = flops_per_pair(DeepConfig(**{k: v for k, v in variant.items() if k != "head"}).spec(3))
        vmfu = f"MFU {rate * vflops / peak:.1%}" if peak else ""
        print(f"  {label + ':':28s} {rate:9.0f} pairs/s  {vflops / 1e9:.2f} GFLOP/pair  {vmfu}  "
              f"{rate / bare:.2f} of the default's pairs/s  800 epochs {800 * PAIRS_PER_EPOCH / rate / 60:.1f} min",
              flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "images.pt"
        torch.save({"images": images, "labels": torch.zeros(len(images), dtype=torch.long)}, data_file)
        runs = (("default run", 0), ("checkpoint/epoch", max(1, train // args.batch_size))) if args.runs else ()
        for label, every in runs:
            rate, wall, written = default_run(data_file, args.epochs, every, settings)
            print(f"{label + ':':17s} {rate:9.0f} pairs/s  ({rate / bare:.2f} of the bare step; "
                  f"{args.epochs} epochs in {wall:.0f} s wall incl. compile and exports; "
                  f"{written} checkpoints written)", flush=True)
    if args.anchor:
        figures = anchor(args.anchor)
        print(f"anchor:           {figures}")
        if figures.get("fast_bf16_compiled"):
            print(f"bare step / anchor fast_bf16_compiled: {bare / figures['fast_bf16_compiled']:.2f}x")


if __name__ == "__main__":
    main()
