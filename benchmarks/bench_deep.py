"""Deep layer-local LPL on one GPU (VGG-11, batch 1024, full SimCLR augmentation), in one run:

- bare step: ``DeepTrainer.step`` alone (uint8 data on the GPU, batched augmentation, both views
  in one forward, bf16, channels_last, CUDA graphs), in image pairs/s and as model FLOPs
  utilisation against the GPU's dense bf16 peak;
- default run: ``lpl train-deep`` with its default logging and checkpointing (by wall time) on
  CIFAR-sized data, from its own log, and the same with a checkpoint every epoch (worst case for
  the background writer: one falling due while the last is being written waits for it, so the
  number written is printed too); each as a ratio to the bare step;
- anchor (``--anchor PATH``): the prototype ``peer_deep.py`` run in the same process tree, and
  our bare step as a ratio to its ``fast_bf16_compiled``.

Images are random uint8 (50,000 x 3 x 32 x 32); speed does not depend on content.

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
from unittest import mock

import torch

from lpl.convnet import VGG11_CHANNELS, VGG11_POOL_AFTER
from lpl.data.images import ImageSet
from lpl.train.checkpoint import CheckpointFolder
from lpl.train.deep import DeepConfig, DeepTrainer, schedule_for, train_deep

PAIRS_PER_EPOCH = 50_000
DENSE_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core FLOP/s (spec)


def flops_per_pair(size: int = 32, channels=VGG11_CHANNELS, pool_after=VGG11_POOL_AFTER) -> float:
    """Forward and backward (about 3x the forward) of both views through the conv blocks."""
    forward, c_in, side = 0.0, 3, size
    for block, c_out in enumerate(channels, 1):
        forward += 2 * c_in * c_out * 9 * side * side
        c_in, side = c_out, side // 2 if block in pool_after else side
    return 2 * 3 * forward


def peak_flops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in DENSE_BF16_PEAK.items() if k in name), None)


def bare_step(images: torch.Tensor, batch: int, steps: int) -> tuple[float, float]:
    """Pairs/s of the training step alone and the GPU memory it holds in GiB (CUDA graph pools included)."""
    config = DeepConfig(batch_size=batch, device="cuda", output_dir=tempfile.mkdtemp(), progress=False)
    data = ImageSet(images, torch.zeros(len(images), dtype=torch.long))
    schedule, per_epoch = schedule_for(config, len(data))
    trainer = DeepTrainer(config, data, schedule, per_epoch, 0, 1, torch.device("cuda"))
    for _ in range(8):
        trainer.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start), torch.cuda.max_memory_reserved() / 2**30


def default_run(data_file: Path, epochs: int, checkpoint_every: int = 0) -> tuple[float, float, int]:
    """(median pairs/s over the run's epochs after the second, wall seconds, checkpoints written) of
    ``lpl train-deep``."""
    written = []
    save = CheckpointFolder.save

    def counted(folder: CheckpointFolder, state: dict, step: int) -> Path:
        written.append(step)
        return save(folder, state, step)

    with mock.patch.object(CheckpointFolder, "save", counted), tempfile.TemporaryDirectory() as out:
        config = DeepConfig(dataset=str(data_file), device="cuda", epochs=epochs, output_dir=out,
                            checkpoint_every=checkpoint_every, progress=False, evaluate=False,
                            eval_train=1000, num_export=1000)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=12, help="length of the default-run measurement")
    parser.add_argument("--anchor", default=None, help="path of peer_deep.py to run beside ours")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_deep.py measures GPU speed; no CUDA device here")
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    images = torch.randint(0, 256, (62_500, 3, 32, 32), dtype=torch.uint8)  # 80% = 50,000 train
    bare, memory = bare_step(images[:50_000], args.batch_size, args.steps)
    peak = peak_flops()
    mfu = f"{bare * flops_per_pair() / peak:.1%} of dense bf16 peak" if peak else "peak unknown"
    print(f"bare step:        {bare:9.0f} pairs/s  {flops_per_pair() / 1e9:.2f} GFLOP/pair  MFU {mfu}  "
          f"GPU memory {memory:.1f} GiB  800 epochs {800 * PAIRS_PER_EPOCH / bare / 60:.1f} min", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "images.pt"
        torch.save({"images": images, "labels": torch.zeros(len(images), dtype=torch.long)}, data_file)
        for label, every in (("default run", 0), ("checkpoint/epoch", PAIRS_PER_EPOCH // args.batch_size)):
            rate, wall, written = default_run(data_file, args.epochs, every)
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
