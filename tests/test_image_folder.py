"""Image-folder data sets: layout, sequences, decoding errors, resizing and the decode cache."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpl.data import folder as image_folder
from lpl.data import load_dataset, load_splits
from lpl.data.images import ImageSet
from lpl.data.pairs import PairStream
from lpl.validation import LPLError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LPL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "image-folders"


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def solid(value: int, size: int = 8, gray: bool = False) -> np.ndarray:
    """A uniform image (JPEG keeps these almost exactly)."""
    return np.full((size, size) if gray else (size, size, 3), value, dtype=np.uint8)


def contents(images: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, tuple[int, ...]]]:
    """(label, per-channel pixel value) of every image, sorted: the split's content whatever its order.
    Every channel of every image must be uniform."""
    out = []
    for image, label in zip(images, labels.tolist()):
        values = image.flatten(1)[:, 0]
        assert (image == values[:, None, None]).all(), "image is not uniform per channel"
        out.append((label, tuple(values.tolist())))
    return sorted(out)


def rgb(*values: int) -> tuple[int, int, int]:
    return tuple(values) * 3 if len(values) == 1 else tuple(values)  # type: ignore[return-value]


def uniform_index(data: ImageSet, value: int) -> int:
    """The position of the one image whose every pixel is ``value``."""
    found = [i for i in range(len(data)) if (data.images[i] == value).all()]
    assert len(found) == 1, f"{len(found)} images of value {value}"
    return found[0]


def make_folder(root: Path, ext: str = "png", per_class: dict[str, int] | None = None, gray: bool = False) -> Path:
    """train/ and test/ with the given classes; image k of class c is solid 40 * c + 5 * k."""
    per_class = per_class or {"cat": 3, "ant": 2}
    for split, extra in (("train", 0), ("test", -1)):
        for c, (name, count) in enumerate(sorted(per_class.items())):
            for k in range(count + extra):
                save(root / split / name / f"{k:03d}.{ext}", solid(40 * c + 5 * k, gray=gray))
    return root


def test_png_folder_labels_pixels_and_classes(tmp_path):
    rng = np.random.default_rng(0)
    root = make_folder(tmp_path / "data")
    noisy = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save(root / "train" / "cat" / "002.png", noisy)
    train, test = load_splits(str(root))
    assert train.classes == test.classes == ("ant", "cat")
    assert train.images.shape == (5, 3, 8, 8) and train.images.dtype == torch.uint8
    noisy_at = [i for i in range(5) if torch.equal(train.images[i], torch.from_numpy(noisy).permute(2, 0, 1))]
    assert len(noisy_at) == 1 and train.labels[noisy_at[0]] == 1  # lossless, channel-first, labelled cat
    rest = [i for i in range(5) if i != noisy_at[0]]
    assert contents(train.images[rest], train.labels[rest]) == [(0, rgb(0)), (0, rgb(5)), (1, rgb(40)), (1, rgb(45))]
    assert contents(test.images, test.labels) == [(0, rgb(0)), (1, rgb(40)), (1, rgb(45))]
    assert train.frames == 1 and train.sequence is None and not train.has_sequences
    single = load_dataset(str(root), False)
    assert torch.equal(single.images, test.images) and torch.equal(single.labels, test.labels)


def test_jpeg_folder_and_upper_case_extension(tmp_path):
    root = make_folder(tmp_path / "data", ext="jpg")
    (root / "train" / "ant" / "000.jpg").rename(root / "train" / "ant" / "000.JPEG")
    train, test = load_splits(str(root))
    assert train.images.shape == (5, 3, 8, 8) and len(test) == 3
    means = train.images.float().mean(dim=(1, 2, 3)).tolist()
    found = sorted(zip(train.labels.tolist(), means))
    assert [label for label, _ in found] == [0, 0, 1, 1, 1]
    assert max(abs(mean - value) for (_, mean), value in zip(found, [0, 5, 40, 45, 50])) < 2


def test_grayscale_only_when_every_image_is(tmp_path):
    root = make_folder(tmp_path / "data", gray=True)
    assert load_splits(str(root))[0].images.shape == (5, 1, 8, 8)
    save(root / "test" / "cat" / "009.png", solid(200))  # one RGB image: everything becomes RGB
    train, test = load_splits(str(root))
    assert train.images.shape == (5, 3, 8, 8) and test.images.shape == (4, 3, 8, 8)
    grey = [(0, rgb(0)), (0, rgb(5)), (1, rgb(40)), (1, rgb(45)), (1, rgb(50))]
    assert contents(train.images, train.labels) == grey  # grey replicated to three channels
    assert contents(test.images, test.labels) == [(0, rgb(0)), (1, rgb(40)), (1, rgb(45)), (1, rgb(200))]


def test_other_formats_and_modes(tmp_path):
    root = make_folder(tmp_path / "data", gray=True)
    Image.new("1", (8, 8), 1).save(root / "train" / "ant" / "bilevel.png")  # still grayscale
    assert load_dataset(str(root), True).images.shape == (6, 1, 8, 8)
    Image.new("RGBA", (8, 8), (10, 20, 30, 40)).save(root / "train" / "cat" / "alpha.webp", lossless=True)
    Image.new("P", (8, 8), 3).save(root / "test" / "cat" / "palette.png")
    train, test = load_splits(str(root))
    assert train.images.shape == (7, 3, 8, 8)
    assert contents(train.images, train.labels) == [  # alpha dropped; the bilevel image replicated to RGB
        (0, rgb(0)), (0, rgb(5)), (0, rgb(255)), (1, rgb(10, 20, 30)), (1, rgb(40)), (1, rgb(45)), (1, rgb(50))]


def mode_pixels(mode: str, uniform: bool) -> np.ndarray:
    """Raw (4, 4[, bands]) values for an image of ``mode``: random, with each mode's edge cases in the first
    row (16-bit: 128 -> 0 and 129 -> 1 around a rounding boundary), or one random value everywhere."""
    rng = np.random.default_rng(len(mode))
    bands = len(Image.new(mode, (1, 1)).getbands())
    if mode == "1":
        pixels = rng.integers(0, 2, (4, 4)).astype(bool)
    elif mode.startswith("I"):
        pixels = rng.integers(0, 65536, (4, 4)).astype(">u2" if mode == "I;16B" else "=i4" if mode == "I" else "<u2")
        pixels[0] = [0, 128, 129, 65535]
    elif mode == "F":
        pixels = rng.random((4, 4)).astype(np.float32)
        pixels[0] = [0, 1, 0.5, 1e-3]
    else:
        pixels = rng.integers(0, 8 if mode == "P" else 256, (4, 4, bands)).astype(np.uint8)
        pixels = pixels[..., 0] if bands == 1 else pixels
    return np.broadcast_to(pixels[:1, :1], pixels.shape).copy() if uniform else pixels


def expected_pixels(mode: str, pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """What an image of ``mode`` holding ``pixels`` must decode to (the rules of ``lpl.data.folder``), computed
    here from the definitions: (4, 4) for grayscale modes, (4, 4, 3) for colour ones."""
    x = pixels.astype(np.float64)
    if mode == "1":
        return x * 255
    if mode in ("L", "LA"):
        return x[..., 0] if mode == "LA" else x
    if mode in ("P", "PA"):
        return palette[pixels[..., 0] if mode == "PA" else pixels]
    if mode == "CMYK":  # the usual formula without a colour profile
        return np.rint((255 - x[..., :3]) * (255 - x[..., 3:]) / 255)
    if mode == "YCbCr":  # JFIF (JPEG's YCbCr, full range)
        y, cb, cr = x[..., 0], x[..., 1] - 128, x[..., 2] - 128
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
        return np.clip(np.rint(rgb), 0, 255)
    if mode.startswith("I"):
        return np.rint(x / 257)  # never a tie: 257 is odd
    if mode == "F":
        return np.rint(x * 255)
    return x[..., :3]  # RGB, RGBA and RGBX: alpha and padding dropped


# (mode written, file, save options, modes Pillow opens it as, tolerance). Tolerances: YCbCr is converted in
# fixed point (at most one level from the exact formula, rounded); a uniform RGB JPEG at quality 100 keeps
# every DCT coefficient but goes through 8-bit YCbCr, whose rounding (0.5 + 1.772 * 0.5 < 1.5 levels at most)
# can move a value by one. Uniform images for JPEG: its blocks then hold only their mean, stored exactly.
MODES = [
    ("1", "png", {}, ("1",), 0), ("1", "tif", {}, ("1",), 0), ("1", "bmp", {}, ("1",), 0),
    ("L", "png", {}, ("L",), 0), ("L", "bmp", {}, ("L",), 0), ("L", "jpg", {"quality": 100}, ("L",), 0),
    ("P", "png", {}, ("P",), 0), ("P", "tif", {}, ("P",), 0), ("P", "bmp", {}, ("P",), 0),
    ("P", "png", {"transparency": 3}, ("P",), 0),
    ("P", "png", {"transparency": bytes(range(0, 256, 32))}, ("P",), 0),
    ("PA", "tif", {}, ("PA",), 0), ("LA", "png", {}, ("LA",), 0), ("LA", "tif", {}, ("LA",), 0),
    ("RGB", "webp", {"lossless": True}, ("RGB",), 0), ("RGB", "jpg", {"quality": 100}, ("RGB",), 1),
    ("RGBA", "png", {}, ("RGBA",), 0), ("RGBA", "tif", {}, ("RGBA",), 0),
    ("RGBA", "webp", {"lossless": True, "exact": True}, ("RGBA",), 0),
    ("RGBX", "tif", {}, ("RGB",), 0), ("RGBX", "webp", {"lossless": True}, ("RGB",), 0),
    ("CMYK", "tif", {}, ("CMYK",), 0), ("CMYK", "jpg", {"quality": 100}, ("CMYK",), 0),
    ("YCbCr", "tif", {}, ("YCbCr",), 1),
    ("I;16", "png", {}, ("I;16", "I"), 0), ("I;16B", "png", {}, ("I;16", "I"), 0),  # older Pillow says I
    ("I;16", "tif", {}, ("I;16",), 0), ("I;16B", "tif", {}, ("I;16B",), 0), ("I;16L", "tif", {}, ("I;16",), 0),
    ("I", "tif", {}, ("I",), 0), ("F", "tif", {}, ("F",), 0),
]


@pytest.mark.parametrize("mode, ext, options, opened, tolerance", MODES,
                         ids=[f"{m[0]}-{m[1]}-{i}" for i, m in enumerate(MODES)])
def test_every_image_mode_decodes_to_its_values(mode, ext, options, opened, tolerance, tmp_path):
    pixels = mode_pixels(mode, uniform=ext == "jpg")
    palette = np.random.default_rng(1).integers(0, 256, (256, 3))
    if mode == "1":
        image = Image.fromarray(pixels)
    else:
        image = Image.frombytes(mode, (4, 4), pixels.tobytes())
        if mode in ("P", "PA"):
            image.putpalette(palette.astype(np.uint8).tobytes())
    path = tmp_path / f"image.{ext}"
    image.save(path, **options)
    with Image.open(path) as reopened:
        assert reopened.mode in opened
    decoded = image_folder.decode_image(path)
    expected = expected_pixels(mode, pixels, palette)
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    assert np.abs(decoded.astype(np.int64) - expected).max() <= tolerance


def test_bit_depths_mixed_in_one_set_agree(tmp_path):
    root = tmp_path / "data"
    values = np.arange(0, 256, 17, dtype=np.uint8).reshape(4, 4)  # 0, 17, ..., 255
    wide = values.astype(np.int64) * 257  # the 16-bit value of each; +-128 still rounds back to it
    files = {"eight.png": Image.fromarray(values),
             "sixteen.png": Image.frombytes("I;16", (4, 4), wide.astype("<u2").tobytes()),
             "sixteen.tif": Image.frombytes("I;16B", (4, 4), (wide + 128).clip(0, 65535).astype(">u2").tobytes()),
             "thirty-two.tif": Image.frombytes("I", (4, 4), (wide - 128).clip(0).astype("=i4").tobytes()),
             "float.tif": Image.frombytes("F", (4, 4), (values.astype("=f4") / 255).tobytes()),
             "alpha.png": Image.fromarray(np.stack([values, 255 - values], axis=-1), "LA")}
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        for name, image in files.items():
            image.save(root / split / "a" / name)
    train, test = load_splits(str(root))
    assert train.images.shape == (6, 1, 4, 4)  # every one grayscale
    assert all(torch.equal(image[0], torch.from_numpy(values)) for image in [*train.images, *test.images])
    Image.fromarray(np.stack([values] * 3, axis=-1)).save(root / "test" / "a" / "colour.png")
    train, test = load_splits(str(root))
    assert train.images.shape == (6, 3, 4, 4) and test.images.shape == (7, 3, 4, 4)
    assert all(torch.equal(image, torch.from_numpy(values).expand(3, 4, 4)) for image in [*train.images, *test.images])


def premultiplied_gray(path: Path) -> None:
    """A TIFF of mode La (grey with premultiplied alpha), which Pillow opens but cannot write or convert."""
    Image.new("LA", (4, 4), (100, 200)).save(path)
    data = path.read_bytes()
    extra = (338).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    assert data.count(extra + b"\x02\0") == 1  # ExtraSamples = 2 (unassociated alpha) -> 1 (premultiplied)
    path.write_bytes(data.replace(extra + b"\x02\0", extra + b"\x01\0"))


@pytest.mark.parametrize("write, message", [
    (lambda p: Image.new("LAB", (4, 4), (50, 0, 0)).save(p), "is a CIELAB image.*convert it to sRGB"),
    (lambda p: Image.frombytes("I", (4, 4), np.full(16, -1, "=i4").tobytes()).save(p),
     r"holds integers in \[-1, -1\], outside the 16-bit range 0..65535.*rescale it"),
    (lambda p: Image.frombytes("I", (4, 4), np.full(16, 70000, "=i4").tobytes()).save(p),
     r"holds integers in \[70000, 70000\]"),
    (lambda p: Image.frombytes("F", (4, 4), np.full(16, 2.5, "=f4").tobytes()).save(p),
     r"holds floats in \[2.5, 2.5\]; lpl reads float images on \[0, 1\]: rescale it"),
    (lambda p: Image.frombytes("F", (4, 4), np.full(16, np.nan, "=f4").tobytes()).save(p), r"holds floats in \[nan"),
    (premultiplied_gray, "has image mode La, which lpl cannot convert to grayscale or RGB; save it as"),
    (lambda p: Image.new("L", (4, 4)).save(p, save_all=True, append_images=[Image.new("L", (4, 4), 9)]),
     "holds 2 frames .*save each frame as its own file in a sequence folder"),
], ids=["lab", "negative", "over-16-bit", "float-range", "float-nan", "premultiplied", "stack"])
def test_images_lpl_cannot_read_faithfully_are_refused(write, message, tmp_path):
    write(tmp_path / "image.tif")
    with pytest.raises(LPLError, match=message):
        image_folder.decode_image(tmp_path / "image.tif")


def test_hidden_files_are_skipped(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0junk")
    (root / "train" / ".hidden").mkdir()
    assert len(load_dataset(str(root), True)) == 5


def write_sequences(root: Path, lengths: dict[str, list[int]]) -> dict[int, tuple[str, int, int]]:
    """Sequence folders whose frame pixels encode a unique code -> (class, sequence, frame)."""
    codes, code = {}, 1
    for split in ("train", "test"):
        for name, sequence_lengths in lengths.items():
            for s, length in enumerate(sequence_lengths):
                for t in range(length):
                    save(root / split / name / f"clip{s}" / f"frame{t:02d}.png", solid(code * 4))
                    codes[code * 4] = (name, s, t)
                    code += 1
    return codes


def check_sequences(data: ImageSet, codes: dict[int, tuple[str, int, int]],
                    lengths: dict[tuple[str, int], int]) -> list[tuple[str, int, int]]:
    """Check that ``data`` (frames written by ``write_sequences``, plus still images not in ``codes``)
    holds every frame once, labelled by its class, each sequence contiguous under one id of its own and
    in frame order; returns (class, sequence, frame) of every image (still images: (None, i, 0))."""
    frames = [codes.get(int(v), (None, i, 0)) for i, v in enumerate(data.images[:, 0, 0, 0])]
    ids = data.sequence_ids().tolist()
    assert sorted(f for f in frames if f[0] is not None) == sorted(
        (name, s, t) for (name, s), length in lengths.items() for t in range(length))
    assert all(data.labels[i] == data.classes.index(name) for i, (name, _, _) in enumerate(frames) if name)
    runs = [(ids[i], frames[i][:2]) for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    assert len({run[0] for run in runs}) == len({run[1] for run in runs}) == len(runs)  # contiguous, one id each
    assert all((ids[i] == ids[i + 1]) == (frames[i][:2] == frames[i + 1][:2]) for i in range(len(ids) - 1))
    assert all(frames[i][2] == (frames[i - 1][2] + 1 if i and ids[i] == ids[i - 1] else 0) for i in range(len(ids)))
    return frames


def test_sequences_of_different_lengths_give_within_sequence_pairs(tmp_path):
    root = tmp_path / "videos"
    codes = write_sequences(root, {"b": [3, 1], "a": [2, 4]})
    train = load_dataset(str(root), True)
    assert train.frames == 1 and train.sequence is not None
    values = [int(v) for v in train.images[:, 0, 0, 0]]
    frames = check_sequences(train, codes, {("a", 0): 2, ("a", 1): 4, ("b", 0): 3, ("b", 1): 1})
    starts = [i for i in range(9) if frames[i][:2] == frames[i + 1][:2]]
    assert len(starts) == 6 and train.pair_starts().tolist() == starts
    assert train.pair_starts(limit=4).tolist() == [i for i in starts if i + 1 < 4]
    assert train.head(4).pair_starts().tolist() == [i for i in starts if i + 1 < 4]

    stream = PairStream(train, "auto", seed=0)
    views = stream.next(600)
    first = [codes[round(v * 255)] for v in views[0, :, 0].tolist()]
    second = [codes[round(v * 255)] for v in views[1, :, 0].tolist()]
    assert all(a[:2] == b[:2] and b[2] == a[2] + 1 for a, b in zip(first, second))
    drawn = torch.bincount(torch.tensor([values.index(round(v * 255)) for v in views[0, :, 0].tolist()]),
                           minlength=10)
    assert (drawn[starts] > 60).all() and drawn.sum() == drawn[starts].sum() == 600  # about 100 each


def test_equal_length_sequences_are_fixed_frames(tmp_path):
    root = tmp_path / "videos"
    codes = write_sequences(root, {"a": [3, 3], "b": [3]})
    train, _ = load_splits(str(root))
    assert train.frames == 3 and train.sequence is None
    check_sequences(train, codes, {("a", 0): 3, ("a", 1): 3, ("b", 0): 3})  # blocks of 3 are whole clips
    assert train.pair_starts().tolist() == [0, 1, 3, 4, 6, 7]


def test_names_are_ordered_as_read_numbers_by_value():
    names = ["frame_10", "x", "frame_2", "az022", "a1b", "az000", "a1", "10", "a01", "9", "frame_1"]
    assert sorted(names, key=image_folder.natural_key) == [
        "9", "10", "a01", "a1", "a1b", "az000", "az022", "frame_1", "frame_2", "frame_10", "x"]


def test_frames_sequences_and_classes_come_in_reading_order(tmp_path):
    root = tmp_path / "videos"
    for split in ("train", "test"):
        for c, name in enumerate(["c2", "c10"]):
            for s in (9, 10):
                for t in range(12):  # frame_0 ... frame_11, not zero-padded
                    save(root / split / name / f"clip_{s}" / f"frame_{t}.png", solid(100 * c + 50 * (s - 9) + t))
    _, listings = image_folder.list_image_folder(root)
    assert listings["train"].paths[:3] == [f"train/c2/clip_9/frame_{t}.png" for t in range(3)]
    assert listings["train"].paths[10:13] == [
        "train/c2/clip_9/frame_10.png", "train/c2/clip_9/frame_11.png", "train/c2/clip_10/frame_0.png"]
    train = load_dataset(str(root), True)
    assert train.classes == ("c2", "c10") and train.frames == 12
    codes = train.images[:, 0, 0, 0].long()
    assert torch.equal(train.labels, codes // 100)
    starts = train.pair_starts()
    assert len(starts) == 4 * 11 and torch.equal(codes[starts + 1], codes[starts] + 1)  # frame t, then t + 1


def test_classes_of_stills_and_of_sequences_may_be_mixed(tmp_path):
    root = tmp_path / "mixed"
    codes = write_sequences(root, {"a": [2, 3]})
    for split in ("train", "test"):
        for k in range(3):
            save(root / split / "b" / f"{k}.png", solid(250 - k))
    train = load_dataset(str(root), True)
    assert train.sequence is not None
    frames = check_sequences(train, codes, {("a", 0): 2, ("a", 1): 3})
    stills = [i for i, f in enumerate(frames) if f[0] is None]
    assert sorted(int(train.images[i, 0, 0, 0]) for i in stills) == [248, 249, 250]
    assert (train.labels[stills] == 1).all()
    starts = [i for i in range(7) if frames[i][0] and frames[i][:2] == frames[i + 1][:2]]
    assert len(starts) == 3 and train.pair_starts().tolist() == starts


def sequences_of(lengths: list[int]) -> torch.Tensor:
    """Ascending sequence ids, as a listing gives them: sequence s has lengths[s] frames."""
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))


@pytest.mark.parametrize("lengths", [[1] * 7, [3, 1, 4, 1, 5, 9, 2, 6], [4], [1], [2, 2, 2]])
def test_interleaved_order_keeps_sequences_whole_and_in_frame_order(lengths):
    sequence = sequences_of(lengths)
    order = image_folder.interleaved_order(sequence)
    assert order.dtype == torch.int64 and torch.equal(order.sort().values, torch.arange(len(sequence)))
    ids = sequence[order]
    runs = torch.unique_consecutive(ids)
    assert len(runs) == len(lengths) and len(set(runs.tolist())) == len(lengths)  # each sequence contiguous
    same = ids[1:] == ids[:-1]
    assert torch.equal(order[1:][same], order[:-1][same] + 1)  # consecutive frames, in order
    firsts = order[torch.cat([torch.tensor([True]), ~same])]
    assert torch.equal(firsts.sort().values, torch.cumsum(torch.tensor(lengths), 0) - torch.tensor(lengths))


def test_interleaved_order_is_a_fixed_shuffle():
    rng = torch.Generator().manual_seed(3)
    sequence = sequences_of(torch.randint(1, 5, (40,), generator=rng).tolist())
    order = image_folder.interleaved_order(sequence)
    assert torch.equal(image_folder.interleaved_order(sequence), order)  # deterministic
    assert torch.equal(image_folder.interleaved_order(sequence, seed=0), order)
    assert not torch.equal(order, torch.arange(len(sequence)))  # shuffled
    assert not torch.equal(image_folder.interleaved_order(sequence, seed=1), order)  # the seed picks the order


def test_split_order_samples_every_class(tmp_path):
    root = make_folder(tmp_path / "data", per_class={"ant": 5, "bee": 5, "cat": 5, "dog": 5})
    train, test = load_splits(str(root))
    assert len(set(train.labels[:4].tolist())) > 1 and len(set(test.labels[:4].tolist())) > 1
    _, listings = image_folder.list_image_folder(root.resolve())
    for data, listing in ((train, listings["train"]), (test, listings["test"])):
        order = image_folder.interleaved_order(torch.tensor(listing.sequence))
        assert torch.equal(data.labels, torch.tensor(listing.labels)[order])  # the listing, reordered
        for image, index in zip(data.images, order.tolist()):  # images moved with their labels
            name, file = listing.paths[index].split("/")[1:]
            assert (image == 40 * ["ant", "bee", "cat", "dog"].index(name) + 5 * int(file[:3])).all()
    assert torch.equal(load_splits(str(root))[0].images, train.images)  # the same order from the cache


def test_imageset_sequence_helpers():
    fixed = ImageSet(torch.zeros(8, 1, 2, 2), torch.zeros(8, dtype=torch.long), frames=4)
    assert fixed.pair_starts().tolist() == [0, 1, 2, 4, 5, 6]
    assert fixed.sequence_ids().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert not ImageSet(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long)).has_sequences
    with pytest.raises(ValueError, match="not both"):
        ImageSet(torch.zeros(2, 1, 1, 1), torch.zeros(2), frames=2, sequence=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        ImageSet(torch.zeros(2, 1, 1, 1), torch.zeros(2), sequence=torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("break_it, message", [
    (lambda r: shutil.rmtree(r / "test"), "has no test/ folder"),
    (lambda r: [(r / "train" / "dog").mkdir(), save(r / "test" / "dog" / "0.png", solid(1))],
     "class folder .*train/dog is empty"),
    (lambda r: (r / "train" / "cat" / "notes.txt").write_text("hi"), "notes.txt is not an image"),
    (lambda r: (r / "test" / "ant" / "bad.png").write_bytes(b"not a png"), "bad.png could not be read as an image"),
    (lambda r: save(r / "train" / "cat" / "big.png", solid(1, size=9)), "different sizes.*--image-size N"),
    (lambda r: save(r / "train" / "ant" / "clip" / "0.png", solid(1)), "holds both files and sub-folders"),
    (lambda r: save(r / "train" / "stray.png", solid(1)), "stray.png is not inside a class folder"),
    (lambda r: (r / "test" / "cat").rename(r / "test" / "cow"), r"test/ lacks \['cat'\]; train/ lacks \['cow'\]"),
    (lambda r: save(r / "test" / "emu" / "0.png", solid(1)), r"differ between train/ and test/ \(train/ lacks"),
])
def test_layout_and_decoding_errors(tmp_path, break_it, message):
    root = make_folder(tmp_path / "data")
    break_it(root)
    with pytest.raises(LPLError, match=message):
        load_splits(str(root))


@pytest.mark.parametrize("train, test, message", [
    (["0", "1", "2"], ["0", "1"], r"test/ lacks \['2'\]"),  # digits as classes, one missing
    (["seq_000", "seq_001", "seq_002"], ["seq_000", "seq_001"], r"lacks the class level: .*\(train/seq_002, \.\.\.\)"),
    (["apple1_az0", "car2_az0"], ["apple3_az0"], r"lacks the class level: .*\(train/apple1_az0, test/apple3_az0, "),
    (["cat/clip1", "dog/clip1"], ["cat/clip2"], r"test/ lacks \['dog'\]"),  # classes of sequences, one missing
], ids=["digit-classes", "numbered-sequences", "object-sequences", "classes-of-sequences"])
def test_missing_class_level_is_told_from_a_missing_class(tmp_path, train, test, message):
    for split, folders in (("train", train), ("test", test)):
        for name in folders:
            save(tmp_path / split / name / "0.png", solid(1))
    with pytest.raises(LPLError, match=message):
        load_splits(str(tmp_path))


def test_sequence_folder_errors(tmp_path):
    root = tmp_path / "videos"
    write_sequences(root, {"a": [2]})
    (root / "train" / "a" / "clip9").mkdir()
    with pytest.raises(LPLError, match="sequence folder .*clip9 is empty"):
        load_dataset(str(root), True)
    save(root / "train" / "a" / "clip9" / "inner" / "0.png", solid(1))
    with pytest.raises(LPLError, match="inner is a folder inside sequence folder"):
        load_dataset(str(root), True)


def test_missing_train_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LPLError, match="has no train/ or test/ folder"):
        load_dataset(str(tmp_path / "empty"), True)
    (tmp_path / "empty" / "test").mkdir()
    with pytest.raises(LPLError, match="has no train/ folder"):
        load_dataset(str(tmp_path / "empty"), True)
    with pytest.raises(LPLError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"), True)


def test_cache_is_reused_then_invalidated_by_a_changed_file(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "data", ext="bmp")  # uncompressed: a rewrite keeps the file size
    train, _ = load_splits(str(root))
    assert len(list(cache.glob("*.pt"))) == 2

    def fail(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as patch:
        patch.setattr(image_folder, "decode_image", fail)
        again, _ = load_splits(str(root))
        assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
        changed = root / "train" / "cat" / "000.bmp"
        size = changed.stat().st_size
        save(changed, solid(222))
        stat = changed.stat()
        assert stat.st_size == size  # only the modification time tells the change
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        with pytest.raises(AssertionError, match="decoded although cached"):
            load_splits(str(root))
    fresh, _ = load_splits(str(root))
    at, others = uniform_index(train, 40), torch.arange(5) != uniform_index(train, 40)  # cat/000.bmp
    assert (fresh.images[at] == 222).all() and torch.equal(fresh.images[others], train.images[others])
    assert torch.equal(fresh.labels, train.labels)
    assert len(list(cache.glob("*.pt"))) == 2  # the stale pair was removed


def flip_a_pixel(path: Path) -> None:
    """Change one byte of the images stored in a cache file, as a bad sector would: torch still loads it."""
    stored = torch.load(path, weights_only=True)["images"]
    data = bytearray(path.read_bytes())
    at = data.find(stored.numpy().tobytes())
    assert at > 0 and data.find(stored.numpy().tobytes(), at + 1) == -1
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["images"], stored)


@pytest.mark.parametrize("corrupt", [lambda path: path.write_bytes(b"garbage"), flip_a_pixel],
                         ids=["unreadable", "one-byte"])
def test_corrupt_cache_is_caught_and_rebuilt(tmp_path, cache, corrupt, monkeypatch):
    root = make_folder(tmp_path / "data")
    train, _ = load_splits(str(root))
    (path,) = cache.glob("*-train.pt")
    corrupt(path)
    with pytest.warns(UserWarning) as caught:
        again = load_dataset(str(root), True)
    assert [str(w.message) for w in caught] == [
        f"the decoded-image cache {path} was corrupt; decoding {root} again and rebuilding it"]
    assert torch.equal(again.images, train.images)
    monkeypatch.setattr(image_folder, "decode_image", None)  # rebuilt: read from the cache, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(load_dataset(str(root), True).images, train.images)


def test_image_size_resizes_every_image(tmp_path):
    root = make_folder(tmp_path / "data")
    save(root / "train" / "cat" / "big.png", solid(77, size=20))
    save(root / "test" / "cat" / "wide.png", np.full((6, 12, 3), 99, dtype=np.uint8))
    train, test = load_splits(str(root), image_size=5)
    assert train.images.shape == (6, 3, 5, 5) and test.images.shape == (4, 3, 5, 5)
    assert contents(train.images, train.labels) == [
        (0, rgb(0)), (0, rgb(5)), (1, rgb(40)), (1, rgb(45)), (1, rgb(50)), (1, rgb(77))]
    assert contents(test.images, test.labels) == [(0, rgb(0)), (1, rgb(40)), (1, rgb(45)), (1, rgb(99))]
    gradient = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # resizing averages, not samples
    save(root / "train" / "cat" / "big.png", np.stack([gradient] * 3, axis=-1))
    resized = load_dataset(str(root), True, image_size=4)
    uneven = [i for i in range(6) if not (resized.images[i] == resized.images[i, 0, 0, 0]).all()]
    assert len(uneven) == 1 and resized.labels[uneven[0]] == 1
    small = resized.images[uneven[0], 0]
    assert small[0].tolist() == sorted(small[0].tolist()) and small[0, 0] > 10 and small[0, -1] < 245
    with pytest.raises(LPLError, match="--image-size applies only to image folders"):
        load_dataset("shapes", True, image_size=8)
    with pytest.raises(LPLError, match="positive"):
        load_dataset(str(root), True, image_size=0)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LPL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_folder.cache_dir() == tmp_path / "xdg" / "lpl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert image_folder.cache_dir() == tmp_path / "home" / ".cache" / "lpl"


def test_fixed_length_stream_is_unchanged_and_variable_stream_resumes(tmp_path):
    data = ImageSet(torch.arange(20.0).view(20, 1, 1, 1) / 20, torch.zeros(20, dtype=torch.long), frames=5)
    g = torch.Generator().manual_seed(7)
    seq, step = torch.randint(4, (16,), generator=g), torch.randint(4, (16,), generator=g)
    expected = (seq * 5 + step).float() / 20  # the original two-draw stream
    assert torch.allclose(PairStream(data, "temporal", seed=7).next(16)[0, :, 0], expected)

    root = tmp_path / "videos"
    write_sequences(root, {"a": [2, 5], "b": [3]})
    train = load_dataset(str(root), True)
    a = PairStream(train, "temporal", seed=1)
    a.next(8)
    state, expected_next = a.state_dict(), a.next(8)
    b = PairStream(train, "temporal", seed=2)
    b.load_state_dict(state)
    assert torch.equal(b.next(8), expected_next)
