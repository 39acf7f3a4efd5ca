"""Data sources, all returned as ``ImageSet``: CIFAR-10, synthetic shapes, scikit-learn digits,
a user's own ``.pt`` file or a folder of images (``lpl.data.folder``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lpl.data.cifar10 import load_cifar10
from lpl.data.folder import load_image_folder
from lpl.data.images import ImageSet
from lpl.data.shapes import load_shapes
from lpl.io import load_torch
from lpl.validation import LPLError, validate_inputs

DATASET_HELP = ("cifar10, shapes (generated), digits (scikit-learn, 8x8), a .pt file {'images', 'labels'[, 'frames']} "
                "or a folder with train/<class>/ and test/<class>/ holding images or sequence folders of frames")


def load_digits_set(train: bool) -> ImageSet:
    """scikit-learn's 8x8 handwritten digits (1797 images), a fixed 75/25 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.75 * len(labels))
    keep = order[:cut] if train else order[cut:]
    return ImageSet(images[keep], labels[keep], tuple(str(i) for i in range(10)))


def load_file_set(path: Path, train: bool) -> ImageSet:
    """A user's file: images (N, C, H, W) uint8 or float32 in [0, 1]; last 20% is the test split.

    With ``frames`` > 1, images are consecutive frames of sequences and the split keeps whole
    sequences together.
    """
    blob = load_torch(path, "data file")
    if not isinstance(blob, dict) or "images" not in blob or "labels" not in blob:
        raise LPLError(f"data file {path} must hold a dict with 'images' (N, C, H, W) and 'labels' (N,)")
    images, labels, frames = blob["images"], blob["labels"], int(blob.get("frames", 1))
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise LPLError(f"'images' in {path} must be a (N, C, H, W) tensor, got "
                       f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.dtype != torch.uint8:
        validate_inputs(images, name=f"images in {path}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),):
        raise LPLError(f"'labels' in {path} must be a tensor of shape ({len(images)},)")
    if len(images) % frames:
        raise LPLError(f"{len(images)} images in {path} do not split into sequences of {frames} frames")
    cut = (len(images) // frames) * 4 // 5 * frames
    part = slice(0, cut) if train else slice(cut, None)
    return ImageSet(images[part], labels[part].long(), frames=frames)


def load_dataset(name: str, train: bool, data_dir: str | None = None, download: bool = True,
                 image_size: int | None = None) -> ImageSet:
    """One split of a named data set, a ``.pt`` file or an image folder (see ``DATASET_HELP``).

    The names cifar10, shapes and digits win over a folder of that name (write ``./shapes``).
    ``image_size`` resizes image folders' images to a square; for any other data set it is an error.
    """
    if _is_folder(name):
        return load_image_folder(name, image_size, ("train" if train else "test",))["train" if train else "test"]
    if image_size is not None:
        raise LPLError(f"--image-size applies only to image folders, not to {name!r}; leave it out")
    if name == "cifar10":
        return load_cifar10(data_dir, train=train, download=download)
    if name == "shapes":
        return load_shapes(train=train)
    if name == "digits":
        return load_digits_set(train)
    if name.endswith(".pt"):
        return load_file_set(Path(name), train)
    if Path(name).expanduser().exists():
        raise LPLError(f"data set {name} is a file, not a folder; pass a folder with train/<class>/ and "
                       f"test/<class>/ of images, a .pt file or one of cifar10, shapes, digits")
    if os.sep in name or "/" in name:
        raise LPLError(f"data folder {name} does not exist; check the path (it needs train/<class>/ and "
                       f"test/<class>/ folders of images)")
    raise LPLError(f"unknown data set {name!r}; choose {DATASET_HELP}")


def _is_folder(name: str) -> bool:
    return name not in ("cifar10", "shapes", "digits") and Path(name).expanduser().is_dir()


def load_splits(name: str, data_dir: str | None = None, download: bool = True,
                features: int | None = None, image_size: int | None = None) -> tuple[ImageSet, ImageSet]:
    """Train and test splits, both checked for ``features`` values per image (default: the train
    split's) and, when float, for dtype, finiteness and range. An image folder is listed once."""
    if _is_folder(name):
        both = load_image_folder(name, image_size)
        train, test = both["train"], both["test"]
    else:
        train, test = (load_dataset(name, split, data_dir, download, image_size) for split in (True, False))
    features = features or train.features
    validate_image_set(train, features, f"{name} training images")
    validate_image_set(test, features, f"{name} test images")
    return train, test


def validate_image_set(data: ImageSet, expected_features: int, name: str) -> None:
    """Float images are checked in full (dtype, finite, [0, 1], size); uint8 ones for size."""
    if data.images.dtype == torch.uint8:
        validate_inputs(data.flat_float(1), expected_features, name)
    else:
        validate_inputs(data.images.reshape(len(data), -1), expected_features, name)
