"""Deep layer-local LPL (VGG-11, batch 1024): our pipeline vs an official-style baseline, same GPU run.

- ours: ``DeepLPLTask.step`` — uint8 data on the GPU, batched augmentation there, both views in
  one forward pass, bf16 autocast, channels_last, torch.compile;
- baseline (as the official code does it): PIL transforms (RandomResizedCrop, flip, colour jitter
  0.8/0.8/0.8/0.2 p=0.8, grayscale p=0.2, blur p=0.5) in DataLoader workers, fp32, one forward per
  view, the same per-layer losses and Adam. Needs torchvision; skipped without it.

Images are random uint8 (CIFAR-10 sized: 50,000 x 3 x 32 x 32); speed does not depend on content.
Prints image pairs/s, the ratio, peak memory, the time of one 50,000-pair epoch and the projected
wall time of the 800-epoch schedule.

    python benchmarks/bench_deep.py [--steps 30] [--workers 16] [--no-baseline]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lpl.train.deep import DeepLPLConfig, DeepLPLTask

PAIRS_PER_EPOCH = 50_000


def timed_steps(step, steps: int, warmup: int) -> float:
    """Seconds per step after ``warmup`` steps (CUDA-synchronised)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def ours(data_file: Path, batch: int, steps: int, compile: bool) -> tuple[float, float]:
    config = DeepLPLConfig(dataset=str(data_file), batch_size=batch, device="cuda", compile=compile,
                           output_dir=tempfile.mkdtemp(), progress=False)
    task = DeepLPLTask(config)
    torch.cuda.reset_peak_memory_stats()
    seconds = timed_steps(task.step, steps, warmup=5)
    return batch / seconds, torch.cuda.max_memory_allocated() / 2**30


def baseline(images: torch.Tensor, batch: int, steps: int, workers: int) -> float | None:
    try:
        from torchvision import transforms
    except ImportError:
        print("baseline skipped: torchvision is not installed")
        return None
    from PIL import Image

    augment = transforms.Compose([
        transforms.RandomResizedCrop(32), transforms.RandomHorizontalFlip(),
        transforms.RandomApply([transforms.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomApply([transforms.GaussianBlur(3, (0.1, 2.0))], p=0.5), transforms.ToTensor()])
    arrays = images.permute(0, 2, 3, 1).numpy()

    class Pairs(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(arrays)

        def __getitem__(self, i):
            image = Image.fromarray(arrays[i])
            return augment(image), augment(image)

    loader = torch.utils.data.DataLoader(Pairs(), batch_size=batch, shuffle=True, num_workers=workers,
                                         pin_memory=True, drop_last=True, persistent_workers=True)
    config = DeepLPLConfig(device="cuda", compile=False)
    from lpl.deep import DeepLPLNet

    net = DeepLPLNet(3).cuda()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1.5e-6)
    loss_fn = config.loss()
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            a, b = next(batches)
        except StopIteration:
            batches = iter(loader)
            a, b = next(batches)
        a, b = a.cuda(non_blocking=True), b.cuda(non_blocking=True)
        maps_a, maps_b = net(a), net(b)  # the official code runs the network once per view
        total, _ = loss_fn([torch.cat(pair) for pair in zip(maps_a, maps_b)])
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return batch / timed_steps(step, steps, warmup=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_deep.py measures GPU speed; no CUDA device here")
    images = torch.randint(0, 256, (62_500, 3, 32, 32), dtype=torch.uint8)  # 80% = 50,000 train
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "images.pt"
        torch.save({"images": images, "labels": torch.zeros(len(images), dtype=torch.long)}, data_file)
        fast, memory = ours(data_file, args.batch_size, args.steps, args.compile)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    epoch = PAIRS_PER_EPOCH / fast
    print(f"ours:     {fast:10.0f} pairs/s  peak memory {memory:.1f} GiB  epoch of 50,000 pairs {epoch:.2f} s  "
          f"800 epochs {800 * epoch / 60:.1f} min")
    if args.baseline:
        slow = baseline(images[:50_000], args.batch_size, max(5, args.steps // 3), args.workers)
        if slow is not None:
            print(f"baseline: {slow:10.0f} pairs/s  ({args.workers} workers, fp32, PIL)  "
                  f"800 epochs {800 * PAIRS_PER_EPOCH / slow / 3600:.1f} h")
            print(f"speed-up: {fast / slow:.1f}x")


if __name__ == "__main__":
    main()
