"""Checkpoints that are written atomically, carry a checksum, and are pruned to the last K."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

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

    def save(self, state: dict[str, Any], step: int) -> Path:
        path = save_checkpoint(state, self.folder / f"{self.name}_step{step:07d}.ckpt")
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that verifies; corrupt ones are skipped with a warning."""
        for path in reversed(self.paths()):
            try:
                return load_checkpoint(path), path
            except LPLError as exc:
                warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=2)
        return None

    def clear(self) -> None:
        for path in self.paths():
            path.unlink()
