"""The one container every data source returns: images, labels and how they form sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ImageSet:
    """Images (N, C, H, W), uint8 in [0, 255] or float32 in [0, 1], with int64 labels (N,).

    ``frames > 1`` means the images are sequences of that many consecutive frames of one object
    (image ``s * frames + t`` is frame ``t`` of sequence ``s``), so consecutive frames are
    natural temporal pairs.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...] = ()
    frames: int = 1

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def features(self) -> int:
        return self.images[0].numel()

    def flat_float(self, limit: int | None = None) -> Tensor:
        """The first ``limit`` images as float32 (N, C*H*W) in [0, 1]."""
        x = self.images[:limit].reshape(min(len(self), limit or len(self)), -1)
        return to_unit_float(x)


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float tensors are returned as float32 unchanged."""
    return x.float().mul_(1.0 / 255.0) if x.dtype == torch.uint8 else x.float()
