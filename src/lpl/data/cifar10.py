"""CIFAR-10 from the standard ``cifar-10-batches-py`` pickle files (download + md5 where possible)."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from lpl.data.images import ImageSet
from lpl.validation import LPLError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` if given, else ``$LPL_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get("LPL_DATA_DIR") or "data")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts, lists, numpy arrays) and refuses any other object."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = f"delete {path.parent} and download or extract CIFAR-10 again"
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError) as exc:
        raise LPLError(f"corrupt CIFAR-10 file {path} ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise LPLError(f"{path} is not a CIFAR-10 batch (no b'data'/b'labels' entries); {fix}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise LPLError(f"{path} holds data {data.dtype} {data.shape} and {len(labels)} labels, "
                       f"expected uint8 (N, 3072) and N labels; {fix}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise LPLError(f"{path} has labels outside 0..9; {fix}")
    return data, labels.astype(np.int64)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_cifar10(root: Path, url: str = URL, md5: str = MD5, timeout: float = 20.0) -> Path:
    """Download the official archive into ``root``, check its md5 and extract it atomically."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise LPLError(
                f"CIFAR-10 is not in {root} and could not be downloaded ({exc}); put the extracted "
                f"'{FOLDER}' folder there, or pass --data-dir / set LPL_DATA_DIR to where it is"
            ) from None
        if _md5(archive) != md5:
            raise LPLError(f"downloaded CIFAR-10 archive from {url} fails its md5 check; try again")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(Path(tmp) / FOLDER, root / FOLDER)
    return root / FOLDER


def find_cifar10(data_dir: str | os.PathLike | None, download: bool = True) -> Path:
    """The folder holding the batch files: ``<dir>/cifar-10-batches-py`` or ``<dir>`` itself."""
    root = resolve_data_dir(data_dir)
    for candidate in (root / FOLDER, root):
        if (candidate / TEST_FILES[0]).is_file() or (candidate / TRAIN_FILES[0]).is_file():
            return candidate
    if download:
        return download_cifar10(root)
    raise LPLError(
        f"CIFAR-10 not found in {root}: put the extracted '{FOLDER}' folder there, or pass "
        f"--data-dir / set LPL_DATA_DIR to where it is (or allow --download)"
    )


def load_cifar10(data_dir: str | os.PathLike | None = None, train: bool = True,
                 download: bool = True) -> ImageSet:
    """CIFAR-10 images as uint8 (N, 3, 32, 32) with int64 labels (N,)."""
    folder = find_cifar10(data_dir, download)
    parts = []
    for name in TRAIN_FILES if train else TEST_FILES:
        if not (folder / name).is_file():
            raise LPLError(f"CIFAR-10 file {folder / name} is missing; extract the full archive there")
        parts.append(_read_batch(folder / name))
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    return ImageSet(torch.from_numpy(data), torch.from_numpy(labels), classes=CLASSES)
