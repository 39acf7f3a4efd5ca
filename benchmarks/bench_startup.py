"""Time to the first epoch of a deep run, with torch.compile's caches empty (a fresh machine) and filled
(a later run on the same machine), each in a fresh process.

Both runs find the data already decoded (the image-folder cache is filled first, with the same
``--image-size`` and ``--data-dir``) and the compiler's modules already read once from disk, so the
difference is the work ``train-deep`` keeps in ``$LPL_CACHE_DIR/compile`` (``keep_compile_caches``):
inductor's code generation and Triton's kernels (dynamo traces again in every process). A run is stopped,
with its compile workers, once its first epoch is logged.

    python benchmarks/bench_startup.py --dataset /path/to/cifar10-folder [--network vgg11 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch


def first_epoch_seconds(argv: list[str], env: dict[str, str], limit: float = 900) -> float:
    """Seconds from starting ``lpl train-deep argv`` in a new process to its first logged record; the process
    and its children (compile workers) are killed then, or after ``limit`` seconds."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "lpl.cli", "train-deep", *argv], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    timer = threading.Timer(limit, os.killpg, (process.pid, signal.SIGKILL))
    timer.start()
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("step "):
                return time.perf_counter() - start
    finally:
        timer.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    raise RuntimeError(f"the run logged no step within {limit:.0f} s:\n" + "".join(lines[-20:]))


def tiny_data(folder: Path) -> str:
    """A .pt data set of 64 random 8x8 grayscale images (the smoke test's)."""
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    path = folder / "tiny.pt"
    torch.save({"images": images, "labels": torch.arange(64) % 4}, path)
    return str(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="data set (default: a tiny generated one, for a smoke test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-compile", action="store_true", help="measure without torch.compile")
    parser.add_argument("--image-size", type=int, default=None, help="image folders: resize to N x N")
    parser.add_argument("--data-dir", default=None, help="as train-deep's")
    args, flags = parser.parse_known_args(argv)  # the rest goes to train-deep as it is
    flags += [*(["--image-size", str(args.image_size)] if args.image_size else []),
              *(["--data-dir", args.data_dir] if args.data_dir else [])]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = args.dataset or tiny_data(root)
        env = {**os.environ, "LPL_CACHE_DIR": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
        for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
            env.pop(name, None)  # the run's own choice: $LPL_CACHE_DIR/compile
        common = ["--dataset", dataset, "--device", args.device, "--no-evaluate", "--no-progress",
                  "--checkpoint-minutes", "0", *(["--no-compile"] if args.no_compile else []), *flags]
        if args.dataset is None:
            common += ["--channels", "4", "--pool-after", "1", "--batch-size", "16", "--eval-train", "16",
                       "--num-export", "16"]
        warm_up = (f"from lpl.data import load_splits; load_splits({dataset!r}, {args.data_dir!r}, "
                   f"image_size={args.image_size!r}); import torch._inductor.codecache\n"
                   "try:\n    import triton\nexcept ImportError:\n    pass")
        subprocess.run([sys.executable, "-c", warm_up], env=env, check=True)  # decoding, reading the compiler
        # from disk: neither run pays for them
        cold = first_epoch_seconds([*common, "--output-dir", str(root / "cold")], env)
        warm = first_epoch_seconds([*common, "--output-dir", str(root / "warm")], env)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()})"
    print(f"device: {device}; torch {torch.__version__}; flags: {' '.join(flags) or '(defaults)'}")
    print(f"first epoch after: cold caches {cold:6.1f} s   warm caches {warm:6.1f} s   saved {cold - warm:5.1f} s")


if __name__ == "__main__":
    main()
