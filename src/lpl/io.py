"""Atomic file writes and run metadata: a crash never leaves a half-written output."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lpl.validation import LPLError


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file next to ``path`` for writing, with the mode the user's umask gives new files.

    Created with mode 0666 for the kernel to apply the umask: ``mkstemp`` gives 0600, and reading the
    umask (``os.umask``) sets it for a moment in every thread, a race with the checkpoint thread.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return os.open(tmp, flags, 0o666), tmp


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # name the output in the error, not a file descriptor
        raise
    return path


def atomic_write_bytes(data: bytes, path: Path) -> Path:
    return _atomic_write(path, lambda handle: handle.write(data), "wb")


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    return _atomic_write(path, lambda handle: torch.save(obj, handle), "wb")


def atomic_write_text(text: str, path: Path) -> Path:
    return _atomic_write(path, lambda handle: handle.write(text), "w")


def atomic_write_json(obj: Any, path: Path) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, default=str) + "\n", path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when the file is missing, unreadable or holds something else."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def atomic_write_jsonl(records: list[dict], path: Path) -> Path:
    return atomic_write_text("".join(json.dumps(r, default=str) + "\n" for r in records), path)


def cache_dir() -> Path:
    """Where lpl keeps what it can recompute (decoded image folders, baselines): ``$LPL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/lpl``, else ``~/.cache/lpl``."""
    if os.environ.get("LPL_CACHE_DIR"):
        return Path(os.environ["LPL_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lpl"
    return Path.home() / ".cache" / "lpl"


def load_torch(path: Path, what: str = "file") -> Any:
    """``torch.load`` of our own outputs, with a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise LPLError(f"{what} {path} does not exist; check the path or run the training first")
    with open(path, "rb") as handle:
        start = handle.read(4)
    if not start.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a legacy pickle
        raise LPLError(f"{what} {path} is not a torch file; pass a .pt file that lpl wrote (e.g. "
                       f"<output-dir>/activations/*_after.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise LPLError(f"{what} {path} is corrupt ({type(exc).__name__}): "
                       f"delete it and rerun the step that writes it") from None


def git_revision() -> str:
    """The git commit of the installed package's checkout ('unknown' outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_metadata() -> dict[str, str]:
    """What a run should record next to its results besides its config."""
    return {
        "git_revision": git_revision(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "threads": str(torch.get_num_threads()),
    }
