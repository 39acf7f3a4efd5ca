"""The on-disk baselines are keyed by every input they are computed from, not by a sample of them."""

from __future__ import annotations

import torch

from lpl.analysis import evaluate
from lpl.data.images import ImageSet


def test_baseline_entry_changes_with_any_image_label_or_setting():
    images = torch.randint(0, 256, (200, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(200) % 10
    config = {"dataset": "/data/clips"}

    def entry(data: ImageSet, width: int = 16, probes: bool = True) -> str:
        return evaluate.baseline_cache_file(config, data, [width], probes).name

    first = entry(ImageSet(images, labels))
    assert first.startswith("clips-200-16-") and entry(ImageSet(images.clone(), labels.clone())) == first
    for i in range(len(images)):  # one pixel of any image: a new entry (a sample of images missed most)
        changed = images.clone()
        changed[i, 1, 2, 3] ^= 1
        assert entry(ImageSet(changed, labels)) != first, i
    relabelled = labels.clone()
    relabelled[150] = 3
    others = [ImageSet(images, relabelled), ImageSet(images, labels, frames=2), ImageSet(images.float() / 255, labels)]
    assert len({first, entry(ImageSet(images, labels), width=8), entry(ImageSet(images, labels), probes=False),
                *map(entry, others)}) == 6
