"""Image folders: ``<root>/train/<class>/...`` and ``<root>/test/<class>/...``, decoded once.

Layout, per split (both splits need the same class folders; labels follow their names in order;
the images of a split come in a fixed random order of whole sequences, see ``interleaved_order``):

- ``<split>/<class>/<image>``: still images, each its own one-image sequence;
- ``<split>/<class>/<sequence>/<frame>``: frames of one sequence (a video clip), in name order;
  consecutive frames form the temporal pairs. Sequences may have different lengths.

Names are ordered as a person reads them (``natural_key``): numbers in names compare by value,
zero-padded or not (``frame_2`` before ``frame_10``), the same for classes, sequences and images.

A class folder holds either images or sequence folders, not both; different classes may differ.
Entries of the root other than ``train/`` and ``test/`` (a README, a licence) are ignored.
Hidden entries (names starting with ``.``, such as ``.DS_Store``) are skipped; any other file
must be an image (``IMAGE_EXTENSIONS``), else loading stops with an error naming it. Images are
decoded with Pillow to uint8, by mode:

- grayscale: ``1`` (0 or 255), ``L``, ``LA`` (alpha dropped); 16-bit ``I;16``, ``I;16B``,
  ``I;16L`` and ``I`` (older Pillow opens 16-bit PNGs as ``I``; 32-bit integers outside
  0..65535 are refused) as value / 257, rounded, so 257 * k gives k as in an 8-bit file (12-bit
  data in 16-bit files come out dark: stretch them to 0..65535); ``F`` (float) on [0, 1] as
  value * 255, rounded (other values are refused);
- RGB: ``RGB``, ``RGBA`` and ``RGBX`` (alpha and padding dropped), ``P`` and ``PA`` (the palette
  colours, transparency dropped), ``CMYK`` and ``YCbCr`` (Pillow's conversions, without colour
  profiles); 16-bit colour files come from Pillow as their high byte (value >> 8, at most one
  level from value / 257). ``LAB`` images and files of several frames (animations, image stacks)
  are refused.

A split is one channel when every image of both splits is grayscale, else RGB (grayscale images
repeated in three channels), so mixed modes and bit depths agree. All images must have one size unless
``image_size`` resizes every one to ``image_size`` x ``image_size`` (bilinear, antialiased).

The decoded splits are cached in ``cache_dir()/image-folders``, keyed by the folder's absolute
path, ``image_size`` and every file's relative path, size and modification time; any change to
the folder decodes it again. Each cached split carries a SHA-256 of its images, checked on every
load: a cache that fails it is decoded again and rewritten, with a warning.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lpl.data.images import ImageSet, tensor_digest
from lpl.io import atomic_torch_save, cache_dir
from lpl.validation import LPLError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test")
CACHE_VERSION = 3  # 2: natural_key order; 3: a checksum with the images
_CHUNK = 256  # images per decoding task
_DIGITS = re.compile(r"([0-9]+)")


@dataclass
class SplitListing:
    """The files of one split, in data set order, with their labels and sequence ids."""

    paths: list[str] = field(default_factory=list)  # relative to the root, '/'-separated
    stats: list[tuple[int, int]] = field(default_factory=list)  # (size, mtime_ns)
    labels: list[int] = field(default_factory=list)
    sequence: list[int] = field(default_factory=list)
    sequence_folders: int = 0  # how many sequences came from sequence folders


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders names as a person reads them: digit runs compare as numbers (``frame_2``
    before ``frame_10``, ``az000`` before ``az022``), ties (``a1``, ``a01``) go by the plain name."""
    parts = _DIGITS.split(name)  # text at even positions, digit runs at odd ones
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), name


def _entries(folder: Path) -> list[os.DirEntry]:
    """Visible entries of ``folder``, in ``natural_key`` order."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: natural_key(e.name))


def _add_images(files: list[os.DirEntry], prefix: str, label: int, ids: list[int], out: SplitListing) -> None:
    """Append image files with their sequence ``ids`` (``prefix``: their folder relative to the root)."""
    bad = next((e for e in files if not e.name.lower().endswith(IMAGE_EXTENSIONS)), None)
    if bad is not None:
        raise LPLError(f"{bad.path} is not an image (accepted: {', '.join(IMAGE_EXTENSIONS)}); "
                       f"remove it from the data set folder or rename it if it is one")
    stats = [e.stat() for e in files]
    out.paths += [prefix + e.name for e in files]
    out.stats += [(s.st_size, s.st_mtime_ns) for s in stats]
    out.labels += [label] * len(files)
    out.sequence += ids


def _list_split(root: Path, split: str, classes: list[str]) -> SplitListing:
    out, next_id = SplitListing(), 0
    for label, name in enumerate(classes):
        folder = root / split / name
        entries = _entries(folder)
        files = [e for e in entries if not e.is_dir()]
        folders = [e for e in entries if e.is_dir()]
        if not entries:
            raise LPLError(f"class folder {folder} is empty; add images (or sequence folders of frames) "
                           f"or remove the class from both train/ and test/")
        if files and folders:
            raise LPLError(f"class folder {folder} holds both files and sub-folders; a class holds either images "
                           f"or sequence folders of frames: move {files[0].name} into a sequence folder or out")
        _add_images(files, f"{split}/{name}/", label, list(range(next_id, next_id + len(files))), out)
        next_id += len(files)  # still images: one sequence each
        for sequence in folders:
            frames = _entries(Path(sequence.path))
            if not frames:
                raise LPLError(f"sequence folder {sequence.path} is empty; add its frames or remove it")
            nested = next((e for e in frames if e.is_dir()), None)
            if nested is not None:
                raise LPLError(f"{nested.path} is a folder inside sequence folder {sequence.path}; a sequence "
                               f"folder holds only its frames (<split>/<class>/<sequence>/<frame>)")
            _add_images(frames, f"{split}/{name}/{sequence.name}/", label, [next_id] * len(frames), out)
            next_id += 1
            out.sequence_folders += 1
    return out


def _sequences_as_classes(root: Path, classes: dict[str, list[str]]) -> bool:
    """Whether the differing class folders of the splits look like sequence folders put where classes belong:
    they hold only files and either share no name or are named alike but for numbers (``seq_000``, ...)."""
    templates = {_DIGITS.sub("#", name) for name in [*classes["train"], *classes["test"]]}
    numbered = len(templates) == 1 and any(c.isalpha() for c in min(templates))  # not "0".."9": digit classes
    if not numbered and set(classes["train"]) & set(classes["test"]):
        return False
    return not any(e.is_dir() for split in SPLITS for name in classes[split] for e in _entries(root / split / name))


def list_image_folder(root: Path) -> tuple[list[str], dict[str, SplitListing]]:
    """Class names and the listing of both splits; raises ``LPLError`` for a malformed layout."""
    missing = [f"{split}/" for split in SPLITS if not (root / split).is_dir()]
    if missing:
        fix = (f"it looks like a split itself: pass the folder above it, {root.parent}" if root.name in SPLITS
               else f"put images in {root / 'train'}/<class>/ and {root / 'test'}/<class>/")
        raise LPLError(f"image folder {root} has no {' or '.join(missing)} folder; {fix}")
    classes: dict[str, list[str]] = {}
    for split in SPLITS:
        folder = root / split
        entries = _entries(folder)
        stray = next((e for e in entries if not e.is_dir()), None)
        if stray is not None:
            raise LPLError(f"{stray.path} is not inside a class folder; move it into {folder}/<class>/")
        if not entries:
            raise LPLError(f"{folder} has no class folders; put images in {folder}/<class>/")
        classes[split] = [e.name for e in entries]
    if classes["train"] != classes["test"]:
        train, test = set(classes["train"]), set(classes["test"])
        if _sequences_as_classes(root, classes):
            examples = [f"{split}/{next(n for n in classes[split] if n not in other)}"
                        for split, other in (("train", test), ("test", train)) if set(classes[split]) - other]
            raise LPLError(f"{root} lacks the class level: train/ and test/ hold different folders of images "
                           f"({', '.join(examples)}, ...), as sequence folders would be; put them in class "
                           f"folders, <split>/<class>/<sequence>/<frame>, the same classes in train/ and test/")
        problems = [f"{split}/ lacks {sorted(other - own)}" for split, own, other in
                    (("test", test, train), ("train", train, test)) if other - own]
        raise LPLError(f"class folders of {root} differ between train/ and test/ ({'; '.join(problems)}); "
                       f"both splits need the same class folders")
    return classes["train"], {split: _list_split(root, split, classes["train"]) for split in SPLITS}


def _from_16_bit(values: np.ndarray, path: Path) -> np.ndarray:
    """16-bit values (0..65535) to uint8, value / 257 rounded: 257 * k -> k, as 8-bit files hold them."""
    if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
        raise LPLError(f"{path} holds integers in [{values.min()}, {values.max()}], outside the 16-bit range "
                       f"0..65535 that lpl reads integer images on; rescale it and save it as a 16-bit PNG")
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _from_unit_float(values: np.ndarray, path: Path) -> np.ndarray:
    """Floats in [0, 1] to uint8, value * 255 rounded."""
    if not np.isfinite(values).all() or values.min(initial=0) < 0 or values.max(initial=0) > 1:
        raise LPLError(f"{path} holds floats in [{values.min()}, {values.max()}]; lpl reads float images on "
                       f"[0, 1]: rescale it to [0, 1] (or save it as a 16-bit PNG)")
    return np.rint(values.astype(np.float64) * 255).astype(np.uint8)


def _eight_bit(image: Image.Image, path: Path) -> Image.Image:
    """``image`` as uint8 grayscale (``L``) or ``RGB``, whatever its mode (see the module docstring)."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode in ("1", "LA"):
        return image.convert("L")
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, and I (16-bit PNGs open as I with older Pillow)
        return Image.fromarray(_from_16_bit(np.asarray(image), path))
    if mode == "F":
        return Image.fromarray(_from_unit_float(np.asarray(image), path))
    if mode in ("P", "PA"):
        return image.convert("RGBA").convert("RGB")  # via RGBA: the palette colours, transparency dropped
    if mode == "LAB":
        raise LPLError(f"{path} is a CIELAB image, whose RGB values depend on colour management; convert it "
                       f"to sRGB (e.g. with PIL.ImageCms) and save it as PNG")
    try:
        return image.convert("RGB")  # RGBA, RGBX, RGBa, CMYK, YCbCr, HSV
    except ValueError:
        raise LPLError(f"{path} has image mode {mode}, which lpl cannot convert to grayscale or RGB; save it "
                       f"as an 8- or 16-bit grayscale or RGB PNG") from None


def decode_image(path: Path, image_size: int | None = None) -> np.ndarray:
    """One image as uint8 (H, W) when grayscale or (H, W, 3), resized to a square if asked."""
    try:
        with Image.open(path) as opened:
            frames = getattr(opened, "n_frames", 1)
            if frames > 1:
                raise LPLError(f"{path} holds {frames} frames (an animation or image stack) and lpl reads one "
                               f"image a file; save each frame as its own file in a sequence folder "
                               f"<split>/<class>/<sequence>/<frame>")
            opened.load()
            image = _eight_bit(opened, path)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise LPLError(f"{path} could not be read as an image ({type(exc).__name__}: {exc}); "
                       f"replace or remove it") from None
    if image_size is not None and image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def _decode_many(paths: list[Path], image_size: int | None) -> list[np.ndarray]:
    return [decode_image(path, image_size) for path in paths]


def _describe(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def decode_splits(root: Path, listings: dict[str, SplitListing],
                  image_size: int | None = None) -> dict[str, torch.Tensor]:
    """Decode every split's images (a few threads) into uint8 (N, C, H, W) tensors of one size."""
    paths = [(split, root / rel) for split in SPLITS for rel in listings[split].paths]
    chunks = [[p for _, p in paths[i:i + _CHUNK]] for i in range(0, len(paths), _CHUNK)]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        try:
            arrays = [a for chunk in pool.map(_decode_many, chunks, [image_size] * len(chunks)) for a in chunk]
        except BaseException:  # a bad file: stop at once rather than decode the rest
            pool.shutdown(cancel_futures=True)
            raise
    first = arrays[0]
    odd = next((i for i, a in enumerate(arrays) if a.shape[:2] != first.shape[:2]), None)
    if odd is not None:
        raise LPLError(f"images in {root} have different sizes: {paths[0][1]} is {_describe(first)} but "
                       f"{paths[odd][1]} is {_describe(arrays[odd])}; pass --image-size N to resize every "
                       f"image to N x N")
    channels = 1 if all(a.ndim == 2 for a in arrays) else 3
    height, width = first.shape[:2]
    out, start = {}, 0
    for split in SPLITS:
        count = len(listings[split].paths)
        images = np.empty((count, height, width, channels), dtype=np.uint8)
        for i, array in enumerate(arrays[start:start + count]):
            images[i] = array[..., None] if array.ndim == 2 else array
        out[split] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        start += count
    return out


def _cache_key(root: Path, listings: dict[str, SplitListing], image_size: int | None) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}\n{root}\n{image_size}\n".encode())
    for split in SPLITS:
        listing = listings[split]
        digest.update(f"{split}\n".encode())
        digest.update("".join(f"{p}\t{s}\t{m}\n" for p, (s, m) in zip(listing.paths, listing.stats)).encode())
    return digest.hexdigest()[:24]


def _cache_prefix(root: Path, image_size: int | None) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", root.name) or "root"
    where = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return f"{name}-{where}-{image_size or 'native'}"


def interleaved_order(sequence: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A fixed random order of whole sequences (a still image is a one-frame sequence), frames kept
    together and in order: the first N images of a split are then a sample of every class, as in
    CIFAR-10's own files, and not the first classes only."""
    _, lengths = torch.unique_consecutive(sequence, return_counts=True)
    starts = torch.cumsum(lengths, 0) - lengths
    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed))
    first, count = starts[perm], lengths[perm]
    offsets = torch.arange(int(count.sum())) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    return torch.repeat_interleave(first, count) + offsets


def _image_set(images: torch.Tensor, listing: SplitListing, classes: list[str]) -> ImageSet:
    labels = torch.tensor(listing.labels, dtype=torch.int64)
    sequence = torch.tensor(listing.sequence, dtype=torch.int64)
    order = interleaved_order(sequence)
    images, labels, sequence = images[order], labels[order], sequence[order]
    if listing.sequence_folders == 0:
        return ImageSet(images, labels, tuple(classes))
    # a sequence's name: its folder, <class>/<sequence> (a still image's: <class>/<file>)
    names = {i: path.split("/", 1)[1].rsplit("/", 1)[0] if path.count("/") > 2 else path.split("/", 1)[1]
             for path, i in zip(listing.paths, listing.sequence)}
    lengths = torch.bincount(sequence)
    if listing.sequence_folders == len(lengths) and (lengths == lengths[0]).all() and lengths[0] > 1:
        in_order = torch.unique_consecutive(sequence).tolist()  # fixed-length sequences, renumbered in order
        return ImageSet(images, labels, tuple(classes), frames=int(lengths[0]), names=tuple(names[i] for i in in_order))
    return ImageSet(images, labels, tuple(classes), sequence=sequence, names=tuple(names[i] for i in range(len(names))))


def _read_cache(path: Path, key: str, count: int) -> torch.Tensor | None:
    """The ``count`` images cached at ``path`` if they match their checksum, else None."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        images = blob["images"]
        if blob["key"] == key and len(images) == count and blob["sha256"] == tensor_digest(images):
            return images
    except Exception:  # missing, unreadable or foreign: decode again and overwrite it
        pass
    return None


def _write_cache(folder: Path, prefix: str, key: str, images: dict[str, torch.Tensor]) -> None:
    try:
        for split in SPLITS:
            atomic_torch_save({"key": key, "images": images[split], "sha256": tensor_digest(images[split])},
                              folder / f"{prefix}-{key}-{split}.pt")
        for stale in folder.glob(f"{prefix}-*.pt"):
            if not stale.name.startswith(f"{prefix}-{key}-"):
                stale.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not cache decoded images in {folder} ({exc}); set LPL_CACHE_DIR to a writable "
                      f"folder to avoid decoding them again", stacklevel=3)


def load_image_folder(root: str | os.PathLike, image_size: int | None = None,
                      splits: tuple[str, ...] = SPLITS) -> dict[str, ImageSet]:
    """The requested splits of an image folder (see the module docstring), via the decode cache."""
    if image_size is not None and image_size < 1:
        raise LPLError(f"--image-size must be a positive number of pixels, got {image_size}")
    root = Path(root).expanduser().resolve()
    classes, listings = list_image_folder(root)
    key = _cache_key(root, listings, image_size)
    folder, prefix = cache_dir() / "image-folders", _cache_prefix(root, image_size)
    paths = {split: folder / f"{prefix}-{key}-{split}.pt" for split in splits}
    cached = {split: _read_cache(path, key, len(listings[split].paths)) for split, path in paths.items()}
    images = {split: x for split, x in cached.items() if x is not None}
    if len(images) < len(cached):
        corrupt = [str(path) for split, path in paths.items() if split not in images and path.exists()]
        if corrupt:
            warnings.warn(f"the decoded-image cache {' and '.join(corrupt)} was corrupt; decoding {root} again "
                          f"and rebuilding it", stacklevel=2)
        decoded = decode_splits(root, listings, image_size)
        _write_cache(folder, prefix, key, decoded)
        images = {split: decoded[split] for split in splits}
    return {split: _image_set(images[split], listings[split], classes) for split in splits}
