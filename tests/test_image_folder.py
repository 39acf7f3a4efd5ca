"""Image-folder data sets: layout, sequences, decoding errors, resizing and the decode cache."""

from __future__ import annotations

import os
import shutil
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
    assert train.labels.tolist() == [0, 0, 1, 1, 1] and test.labels.tolist() == [0, 1, 1]
    assert torch.equal(train.images[4], torch.from_numpy(noisy).permute(2, 0, 1))  # lossless, channel-first
    assert train.images[3].unique().tolist() == [40 + 5]
    assert train.frames == 1 and train.sequence is None and not train.has_sequences
    single = load_dataset(str(root), False)
    assert torch.equal(single.images, test.images) and torch.equal(single.labels, test.labels)


def test_jpeg_folder_and_upper_case_extension(tmp_path):
    root = make_folder(tmp_path / "data", ext="jpg")
    (root / "train" / "ant" / "000.jpg").rename(root / "train" / "ant" / "000.JPEG")
    train, test = load_splits(str(root))
    assert train.images.shape == (5, 3, 8, 8) and len(test) == 3
    expected = torch.tensor([0, 5, 40, 45, 50], dtype=torch.float32)
    assert (train.images.float().mean(dim=(1, 2, 3)) - expected).abs().max() < 2


def test_grayscale_only_when_every_image_is(tmp_path):
    root = make_folder(tmp_path / "data", gray=True)
    assert load_splits(str(root))[0].images.shape == (5, 1, 8, 8)
    save(root / "test" / "cat" / "009.png", solid(200))  # one RGB image: everything becomes RGB
    train, test = load_splits(str(root))
    assert train.images.shape == (5, 3, 8, 8) and test.images.shape == (4, 3, 8, 8)
    assert (train.images[2] == 40).all()  # grey replicated to three channels


def test_other_formats_and_modes(tmp_path):
    root = make_folder(tmp_path / "data", gray=True)
    Image.new("1", (8, 8), 1).save(root / "train" / "ant" / "bilevel.png")  # still grayscale
    assert load_dataset(str(root), True).images.shape == (6, 1, 8, 8)
    Image.new("RGBA", (8, 8), (10, 20, 30, 40)).save(root / "train" / "cat" / "alpha.webp", lossless=True)
    Image.new("P", (8, 8), 3).save(root / "test" / "cat" / "palette.png")
    train, test = load_splits(str(root))
    assert train.images.shape == (7, 3, 8, 8)
    assert train.images[6, :, 0, 0].tolist() == [10, 20, 30]  # alpha dropped
    assert (train.images[2] == 255).all()  # the bilevel image, replicated to RGB


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


def test_sequences_of_different_lengths_give_within_sequence_pairs(tmp_path):
    root = tmp_path / "videos"
    codes = write_sequences(root, {"b": [3, 1], "a": [2, 4]})
    train = load_dataset(str(root), True)
    assert train.frames == 1 and train.sequence is not None
    assert train.sequence.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 3]  # a/clip0, a/clip1, b/clip0, b/clip1
    assert train.labels.tolist() == [0] * 6 + [1] * 4
    values = [int(v) for v in train.images[:, 0, 0, 0]]
    assert [codes[v][2] for v in values] == [0, 1, 0, 1, 2, 3, 0, 1, 2, 0]  # frames in file-name order
    assert train.pair_starts().tolist() == [0, 2, 3, 4, 6, 7]
    assert train.pair_starts(limit=4).tolist() == [0, 2]
    assert train.head(4).pair_starts().tolist() == [0, 2]

    stream = PairStream(train, "auto", seed=0)
    views = stream.next(600)
    first = [codes[round(v * 255)] for v in views[0, :, 0].tolist()]
    second = [codes[round(v * 255)] for v in views[1, :, 0].tolist()]
    assert all(a[:2] == b[:2] and b[2] == a[2] + 1 for a, b in zip(first, second))
    drawn = torch.bincount(torch.tensor([values.index(round(v * 255)) for v in views[0, :, 0].tolist()]),
                           minlength=10)
    assert (drawn[[0, 2, 3, 4, 6, 7]] > 60).all() and drawn.sum() == 600  # about 100 each


def test_equal_length_sequences_are_fixed_frames(tmp_path):
    root = tmp_path / "videos"
    write_sequences(root, {"a": [3, 3], "b": [3]})
    train, _ = load_splits(str(root))
    assert train.frames == 3 and train.sequence is None
    assert train.pair_starts().tolist() == [0, 1, 3, 4, 6, 7]


def test_classes_of_stills_and_of_sequences_may_be_mixed(tmp_path):
    root = tmp_path / "mixed"
    write_sequences(root, {"a": [2, 3]})
    for split in ("train", "test"):
        for k in range(2):
            save(root / split / "b" / f"{k}.png", solid(250 - k))
    train = load_dataset(str(root), True)
    assert train.sequence.tolist() == [0, 0, 1, 1, 1, 2, 3]
    assert train.pair_starts().tolist() == [0, 2, 3]


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
    assert (fresh.images[2] == 222).all() and torch.equal(fresh.images[3:], train.images[3:])
    assert len(list(cache.glob("*.pt"))) == 2  # the stale pair was removed


def test_corrupt_cache_is_rebuilt(tmp_path, cache):
    root = make_folder(tmp_path / "data")
    train, _ = load_splits(str(root))
    for path in cache.glob("*-train.pt"):
        path.write_bytes(b"garbage")
    assert torch.equal(load_dataset(str(root), True).images, train.images)


def test_image_size_resizes_every_image(tmp_path):
    root = make_folder(tmp_path / "data")
    save(root / "train" / "cat" / "big.png", solid(77, size=20))
    save(root / "test" / "cat" / "wide.png", np.full((6, 12, 3), 99, dtype=np.uint8))
    train, test = load_splits(str(root), image_size=5)
    assert train.images.shape == (6, 3, 5, 5) and test.images.shape == (4, 3, 5, 5)
    assert (train.images[5] == 77).all() and (test.images[3] == 99).all()
    gradient = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # resizing averages, not samples
    save(root / "train" / "cat" / "big.png", np.stack([gradient] * 3, axis=-1))
    small = load_dataset(str(root), True, image_size=4).images[5, 0]
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
