"""Checkpoints that are written atomically, carry a checksum, are pruned to the last K, and are
written by a background thread from a CPU snapshot so the accelerator never waits for the disk."""

from __future__ import annotations

import hashlib
import io
import re
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lpl.io import atomic_write_bytes
from lpl.validation import LPLError

MAGIC = b"LPLCKPT1"


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """``MAGIC + sha256(payload) + payload``, where payload is the ``torch.save`` of ``state``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).digest()
    return atomic_write_bytes(MAGIC + digest + payload, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint; a truncated or altered file raises ``LPLError``."""
    data = Path(path).read_bytes()
    header = len(MAGIC) + 32
    if len(data) < header or not data.startswith(MAGIC):
        raise LPLError(f"checkpoint {path} is truncated or not an lpl checkpoint")
    if hashlib.sha256(data[header:]).digest() != data[len(MAGIC):header]:
        raise LPLError(f"checkpoint {path} is corrupt (checksum mismatch)")
    return torch.load(io.BytesIO(data[header:]), map_location="cpu", weights_only=False)


class CheckpointFolder:
    """The checkpoints of one run: ``<folder>/<name>_step<NNNNNNN>.ckpt``, newest K kept."""

    def __init__(self, folder: Path, name: str, keep: int = 3):
        self.folder, self.name, self.keep = Path(folder), name, keep
        self.pattern = re.compile(re.escape(name) + r"_step(\d+)\.ckpt$")

    def paths(self) -> list[Path]:
        """Existing checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := self.pattern.match(p.name))]
        return [p for _, p in sorted(found)]

    def path(self, step: int) -> Path:
        return self.folder / f"{self.name}_step{step:07d}.ckpt"

    def save(self, state: dict[str, Any], step: int) -> Path:
        path = save_checkpoint(state, self.path(step))
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that verifies; each corrupt one is skipped with a line on stderr."""
        for path in reversed(self.paths()):
            try:
                return load_checkpoint(path), path
            except LPLError as exc:
                tqdm.write(f"{exc}; trying the previous checkpoint", file=sys.stderr)
        return None

    def clear(self) -> None:
        for path in self.paths():
            path.unlink()


def snapshot(state: Any) -> Any:
    """A copy of ``state`` (nested dicts, lists, tensors) with every tensor cloned to the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: snapshot(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(snapshot(value) for value in state)
    return state


class CheckpointWriter:
    """Writes checkpoints of a ``CheckpointFolder`` in a background thread, one at a time.

    ``submit`` takes a CPU snapshot at once (so training may go on changing the state) and returns
    after waiting for the previous write, if any (``busy`` tells whether it would wait); ``wait``
    blocks until the last one is on disk and re-raises its error.
    """

    def __init__(self, folder: CheckpointFolder):
        self.folder = folder
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self.pending: Future[Path] | None = None

    def submit(self, state: dict[str, Any], step: int) -> Path:
        """Snapshot ``state`` and write it in the background; returns the path it will have."""
        copy = snapshot(state)
        self.wait()
        self.pending = self.executor.submit(self.folder.save, copy, step)
        return self.folder.path(step)

    def busy(self) -> bool:
        """Whether the last write is still in progress."""
        return self.pending is not None and not self.pending.done()

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write now (after any pending write): for the end of a run, signals and NaN stops."""
        self.submit(state, step)
        return self.wait() or self.folder.path(step)

    def wait(self) -> Path | None:
        if self.pending is None:
            return None
        pending, self.pending = self.pending, None
        return pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.executor.shutdown(wait=True)
