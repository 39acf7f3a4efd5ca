"""Shared fixtures: tiny CIFAR-10 folders in the exact pickle format, small run configs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def write_cifar_batch(path: Path, count: int, seed: int) -> None:
    """One batch file as the official archive has it: a dict of bytes keys, uint8 rows."""
    rng = np.random.default_rng(seed)
    labels = [int(i % 10) for i in range(count)]
    # Structured images: class-dependent colour so that learning has something to find.
    base = np.array(labels)[:, None] * 20 + rng.integers(0, 40, size=(count, 3072))
    batch = {b"batch_label": b"testing batch", b"labels": labels,
             b"data": base.clip(0, 255).astype(np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(count)]}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    """``<tmp>/cifar-10-batches-py`` with five 40-image training batches and a test batch."""
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 40, seed=i)
    write_cifar_batch(folder / "test_batch", 50, seed=0)
    return folder.parent


@pytest.fixture
def quick_args(tmp_path: Path) -> list[str]:
    """Flags for a short, quiet training run into a fresh output folder."""
    return ["--steps", "20", "--batch-size", "16", "--log-every", "10", "--checkpoint-every", "10",
            "--num-export", "64", "--output-dir", str(tmp_path / "out"), "--no-progress"]
