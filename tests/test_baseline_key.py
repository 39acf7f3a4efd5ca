"""The on-disk baselines are keyed by every input they are computed from, not by a sample of them."""

from __future__ import annotations

from dataclasses import replace

import torch

from lpl.analysis import evaluate
from lpl.data.images import ImageSet


def test_baseline_entry_changes_with_any_image_label_or_setting():
    images = torch.randint(0, 256, (200, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(200) % 10
    config = {"dataset": "/data/clips"}

    def entry(data: ImageSet, widths: tuple[int, ...] = (16,), views: evaluate.Sequences | None = None) -> str:
        return evaluate.baseline_cache_file(config, data, list(widths), views).name

    first = entry(ImageSet(images, labels))
    assert first.startswith("clips-200-16-") and entry(ImageSet(images.clone(), labels.clone())) == first
    for i in range(len(images)):  # one pixel of any image: a new entry (a sample of images missed most)
        changed = images.clone()
        changed[i, 1, 2, 3] ^= 1
        assert entry(ImageSet(changed, labels)) != first, i
    relabelled = labels.clone()
    relabelled[150] = 3
    others = [ImageSet(images, relabelled), ImageSet(images, labels, frames=2), ImageSet(images.float() / 255, labels)]
    sequences = evaluate.Sequences(torch.arange(200) // 4, torch.arange(200) % 4, None, evaluate.Views())
    views = (sequences, replace(sequences, frame=sequences.frame.flip(0)),
             replace(sequences, views=evaluate.Views(cyclic=True)))  # the views of a sequence and their settings
    variants = [entry(ImageSet(images, labels), (8,)), entry(ImageSet(images, labels), (8, 16)),
                *(entry(ImageSet(images, labels), views=v) for v in views)]
    assert len({first, *variants, *map(entry, others)}) == 9
