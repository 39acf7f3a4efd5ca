"""Speed of the single-layer LPL step (3072 -> 128) against its roofline, on this machine.

Roofline: the matmuls a step cannot avoid, timed alone in the same run: the forward of both views
(2B x 3072 @ 3072 x 128) and the weight-gradient matmul (3072 x 2B @ 2B x 128, the
layout the step uses because it is the faster one here).
- step: one plasticity step on views already in memory;
- end to end: drawing a batch of weakly augmented pairs from CIFAR-sized uint8 images
  (50,000 x 3 x 32 x 32, random content: augmentation cost does not depend on it) plus the step.
Targets (issue 3): step >= 0.8 of the roofline at B = 256 and >= 0.9 at B = 1024; end to end
>= 0.5 at B = 256.

    python benchmarks/bench_lpl_step.py [--batch-sizes 64 256 1024] [--seconds 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from lpl.data.images import ImageSet
from lpl.data.pairs import PairStream
from lpl.layers import DENSE_RATES, DenseLPLStack, Plasticity


def seconds_per_call(fns: dict[str, Callable[[], object]], seconds: float, calls: int = 5) -> dict[str, float]:
    """Median time of one call of each function, measured in interleaved rounds.

    Interleaving (roofline, step, ... in every round) keeps the ratios honest on a machine whose
    speed drifts: each ratio compares measurements taken moments apart.
    """
    for fn in fns.values():
        fn()
        fn()
    rounds: dict[str, list[float]] = {name: [] for name in fns}
    deadline = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < deadline or len(rounds[next(iter(fns))]) < 5:
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            rounds[name].append((time.perf_counter() - start) / calls)
    return {name: sorted(times)[len(times) // 2] for name, times in rounds.items()}


def main(argv: list[str] | None = None) -> None:
    """Print the table of pairs/s and ratios for each batch size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per measurement")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--images", type=int, default=50_000, help="CIFAR-sized uint8 images to draw pairs from")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    stream = PairStream(ImageSet(images, torch.zeros(args.images, dtype=torch.long)), "augment", seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; pairs/s (B pairs = 2B images per step)")
    print(f"{'B':>5} {'roofline':>10} {'step':>10} {'ratio':>6} {'end2end':>10} {'ratio':>6} {'augment':>10}")
    for batch in args.batch_sizes:
        print(measure(batch, stream, args.seconds, generator))


def measure(batch: int, stream: PairStream, seconds: float, generator: torch.Generator) -> str:
    """One table row for batch size ``batch``."""
    x = torch.rand(2 * batch, 3072, generator=generator)
    weight = torch.randn(128, 3072, generator=generator) * 0.02
    delta = torch.randn(2 * batch, 128, generator=generator)
    stack, plasticity = DenseLPLStack([3072, 128]), Plasticity()
    views = x.view(2, batch, 3072)
    t = seconds_per_call({
        "roofline": lambda: (x @ weight.T, x.T @ delta),
        "step": lambda: stack.plasticity_step(views, DENSE_RATES, plasticity),
        "augment": lambda: stream.next(batch),
        "end_to_end": lambda: stack.plasticity_step(stream.next(batch), DENSE_RATES, plasticity),
    }, seconds)
    return (f"{batch:>5} {batch / t['roofline']:>10.0f} {batch / t['step']:>10.0f} "
            f"{t['roofline'] / t['step']:>6.2f} {batch / t['end_to_end']:>10.0f} "
            f"{t['roofline'] / t['end_to_end']:>6.2f} {batch / t['augment']:>10.0f}")

if __name__ == "__main__":
    main()
