import time

import torch

from lpl.data.shapes import CLASSES, ShapesSpec, generate_shapes, load_shapes


def test_shape_range_dtype_and_determinism():
    a = generate_shapes(24, seed=1)
    b = generate_shapes(24, seed=1)
    assert a.images.shape == (24 * 8, 1, 32, 32) and a.images.dtype == torch.float32
    assert a.images.min() >= 0 and a.images.max() <= 1
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, generate_shapes(24, seed=2).images)


def test_classes_are_balanced_and_constant_within_a_sequence():
    data = generate_shapes(60)
    counts = torch.bincount(data.labels, minlength=len(CLASSES))
    assert counts.max() - counts.min() <= data.frames
    assert (data.labels.view(60, 8) == data.labels.view(60, 8)[:, :1]).all()


def test_sequences_change_smoothly():
    spec = ShapesSpec(noise=0.0)
    data = generate_shapes(60, spec).images.view(60, 8, -1)
    consecutive = (data[:, 1:] - data[:, :-1]).abs().mean()
    random_pairs = (data[:, 1:] - data.roll(1, 0)[:, :-1]).abs().mean()
    assert consecutive < 0.5 * random_pairs


def test_train_and_test_splits_share_no_sequence():
    train, test = load_shapes(True, 60), load_shapes(False, 20)
    first_train = train.images.view(60, 8, -1)[:, 0]
    first_test = test.images.view(20, 8, -1)[:, 0]
    assert torch.cdist(first_test, first_train).min() > 1.0


def test_ten_thousand_pairs_take_seconds():
    start = time.perf_counter()
    generate_shapes(1430)  # 1430 sequences x 7 consecutive pairs = 10,010 pairs
    assert time.perf_counter() - start < 20
