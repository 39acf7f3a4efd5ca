import pytest
import torch

from lpl.data.augment import WeakAugment, WeakAugmentSpec, replicate_pad
from lpl.data.images import ImageSet
from lpl.data.pairs import PairStream
from lpl.validation import LPLError


def _reference(image, shift_y, shift_x, flip, s):
    padded = replicate_pad(image[None], s)[0]
    if flip:
        padded = padded.flip(-1)
    h, w = image.shape[-2:]
    return padded[:, shift_y:shift_y + h, shift_x:shift_x + w]


def test_views_are_shifted_flipped_crops_of_the_same_image():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    spec = WeakAugmentSpec(max_shift=2, flip=True, brightness=0.0, contrast=0.0)
    augment = WeakAugment(images, spec)
    out = augment(torch.tensor([0, 3, 3, 4]), torch.Generator().manual_seed(0)).view(4, 3, 8, 8)
    for view, index in zip(out, [0, 3, 3, 4]):
        candidates = [_reference(images[index], dy, dx, f, 2).float() / 255
                      for dy in range(5) for dx in range(5) for f in (False, True)]
        assert any(torch.allclose(view, c) for c in candidates)


def test_views_stay_in_unit_range_and_are_seeded():
    images = torch.rand(10, 1, 6, 6)
    augment = WeakAugment(images, WeakAugmentSpec(brightness=0.5, contrast=0.5))
    a = augment(torch.arange(10), torch.Generator().manual_seed(1))
    b = augment(torch.arange(10), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and a.dtype == torch.float32


def test_augment_pairs_differ_but_come_from_one_image():
    images = torch.nn.functional.interpolate(torch.rand(50, 1, 2, 2), size=8)  # smooth images
    stream = PairStream(ImageSet(images, torch.zeros(50, dtype=torch.long)), "augment", seed=0)
    views = stream.next(32)
    assert views.shape == (2, 32, 64)
    assert not torch.equal(views[0], views[1])
    same_image = (views[0] - views[1]).abs().mean()
    other_image = (views[0] - views[1].roll(1, 0)).abs().mean()
    assert same_image < other_image


def test_temporal_pairs_are_consecutive_frames():
    frames = torch.arange(4 * 5, dtype=torch.float32).view(20, 1, 1, 1) / 20
    data = ImageSet(frames, torch.zeros(20, dtype=torch.long), frames=5)
    views = PairStream(data, "auto", seed=0).next(64)
    assert torch.allclose(views[1] - views[0], torch.full_like(views[0], 1 / 20))
    assert ((views[0] * 20).round().long() % 5 != 4).all()  # never crosses a sequence boundary


def test_stream_resumes_exactly_from_its_state():
    images = torch.rand(30, 1, 8, 8)
    data = ImageSet(images, torch.zeros(30, dtype=torch.long))
    a = PairStream(data, seed=3)
    a.next(4)
    state = a.state_dict()
    expected = a.next(4)
    b = PairStream(data, seed=99)
    b.load_state_dict(state)
    assert torch.equal(b.next(4), expected)


def test_strong_pairs_are_two_augmentations_of_the_same_images():
    images = torch.nn.functional.interpolate(torch.rand(50, 3, 2, 2), size=16)  # smooth images
    data = ImageSet((images * 255).to(torch.uint8), torch.zeros(50, dtype=torch.long))
    a = PairStream(data, "strong", seed=4)
    views = a.next(32)
    assert views.shape == (2, 32, 3 * 16 * 16) and views.min() >= 0 and views.max() <= 1
    assert not torch.equal(views[0], views[1])
    state = a.state_dict()
    expected = a.next(8)
    b = PairStream(data, "strong", seed=0)
    b.load_state_dict(state)
    assert torch.equal(b.next(8), expected)


def _sequences() -> ImageSet:
    """Three sequences of 5, 2 and 4 frames; every pixel of frame t of sequence s holds 10 s + t."""
    ids = torch.tensor([0] * 5 + [1] * 2 + [2] * 4)
    frames = torch.cat([torch.arange(n) for n in (5, 2, 4)])
    images = (10 * ids + frames).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    return ImageSet(images, torch.zeros(11, dtype=torch.long), sequence=ids)


def test_frame_positions_count_from_each_end_of_a_sequence():
    data = _sequences()
    assert data.frame_index().tolist() == [0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3]
    assert data.frames_after().tolist() == [4, 3, 2, 1, 0, 1, 0, 3, 2, 1, 0]


def test_temporal_pairs_at_several_offsets_stay_in_their_sequence():
    views = PairStream(_sequences(), "temporal", seed=0, max_offset=3).next(4000)[:, :, 0] * 255
    earlier, later = views.round().long()
    assert torch.equal(earlier // 10, later // 10)  # the same sequence
    offsets = later - earlier
    assert set(offsets.unique().tolist()) == {1, 2, 3}
    assert int(offsets[earlier == 22].max()) == 1 and int(offsets[earlier == 10].max()) == 1  # cut at the last frame
    assert not bool(((earlier % 10 == 4) | (earlier == 11) | (earlier == 23)).any())  # last frames start no pair
    single = PairStream(_sequences(), "temporal", seed=0).next(500)[:, :, 0].mul(255).round().long()
    assert bool((single[1] - single[0] == 1).all())


@pytest.mark.parametrize("mode", ["temporal+augment", "temporal+strong"])
def test_augmented_temporal_pairs_augment_each_frame_on_its_own(mode):
    data = _sequences()
    stream = PairStream(data, mode, seed=1)
    drawn = stream.draw(64)
    index = drawn[0]
    assert torch.equal(index[64:] - index[:64], torch.ones(64, dtype=torch.long))  # consecutive frames
    assert (stream.geometry(drawn) is not None) == (mode == "temporal+strong")
    assert stream.views(drawn).shape == (2, 64, 16)
    with pytest.raises(LPLError, match="needs a data set of sequences"):
        PairStream(ImageSet(data.images, data.labels), mode)
