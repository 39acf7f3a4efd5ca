"""Shared fixtures: tiny CIFAR-10 folders in the exact pickle format, small run configs, small generated
shapes and small BYOL/SimCLR heads for runs whose checks do not depend on their size."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import lpl.data
import lpl.heads
from lpl.convnet import ConvNet, NetworkSpec
from lpl.data.shapes import load_shapes

# One intra-op thread: the tensors here are small, and on a busy machine two threads on two cores wait for each
# other at every operation (a 1.5 s test took 28 s under load with two). Subprocesses started by tests get the
# same through OMP_NUM_THREADS.
torch.set_num_threads(1)

SMALL_SHAPES = 16  # sequences of 8 frames a split: 128 images each


def shrink_shapes(patch: pytest.MonkeyPatch, sequences: int = SMALL_SHAPES, test_sequences: int | None = None) -> None:
    """``--dataset shapes`` with ``sequences`` training and ``test_sequences`` (default: as many) test sequences
    instead of 2000 and 1000 (same generator, splits still disjoint): runs on it take a fraction of a second.
    ``patch``: a ``MonkeyPatch``, so that fixtures of any scope can use it."""
    sizes = {True: sequences, False: sequences if test_sequences is None else test_sequences}
    patch.setattr(lpl.data, "load_shapes", lambda train=True: load_shapes(train, num_sequences=sizes[train]))


@pytest.fixture
def small_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 sequences of shapes a split (see ``shrink_shapes``)."""
    shrink_shapes(monkeypatch)


def tiny_net(*channels: int, pool_after: tuple[int, ...] = (1,), in_channels: int = 1) -> ConvNet:
    """A small conv network with 3x3 kernels (tests' stand-in for VGG-11)."""
    return ConvNet(NetworkSpec(channels, (3,) * len(channels), pool_after, in_channels=in_channels))


@dataclass(frozen=True)
class SmallBYOLOptions(lpl.heads.BYOLOptions):
    hidden: int = 64
    out: int = 32


@dataclass(frozen=True)
class SmallSimCLROptions(lpl.heads.SimCLROptions):
    projector_hidden: int = 64
    projector_out: int = 32


class SmallBYOLHead(lpl.heads.BYOLHead):
    """``BYOLHead`` with 64 hidden and 32 output units instead of 4096 and 256 by default (same code)."""

    Options = SmallBYOLOptions


class SmallSimCLRHead(lpl.heads.SimCLRHead):
    """``SimCLRHead`` with 64 hidden and 32 output units instead of 2048 and 128 by default (same code)."""

    Options = SmallSimCLROptions


@pytest.fixture
def small_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry (and so ``train-deep``) with ``SmallBYOLHead`` and ``SmallSimCLRHead``: a step of the deep
    BYOL run on shapes takes milliseconds instead of a second."""
    monkeypatch.setitem(lpl.heads.HEADS, "byol", SmallBYOLHead)
    monkeypatch.setitem(lpl.heads.HEADS, "simclr", SmallSimCLRHead)


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


@pytest.fixture(scope="session", autouse=True)
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches (decoded image folders, analysis baselines) in the session's temporary folder, never in the
    user's: every session starts cold, as on a fresh machine (tests may point ``LPL_CACHE_DIR`` elsewhere).
    Subprocesses run on one intra-op thread, as this process does."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LPL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


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
