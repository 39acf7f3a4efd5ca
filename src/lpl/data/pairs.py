"""Batches of temporally correlated pairs, drawn from an ImageSet by a seeded, resumable stream."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lpl.data.augment import StrongAugmentSpec, WeakAugment, WeakAugmentSpec, strong_augment
from lpl.data.images import ImageSet, to_unit_float
from lpl.validation import LPLError

PairMode = Literal["auto", "augment", "temporal", "strong"]


class PairStream:
    """Draws (2, B, D) float32 batches: earlier views ``[0]`` and later views ``[1]``.

    - ``temporal``: consecutive frames ``t`` and ``t + 1`` of the same sequence, uniform over all
      such pairs (``ImageSet.pair_starts``);
    - ``augment``: two independent weak augmentations of the same image;
    - ``strong``: two independent SimCLR/BYOL-style augmentations of the same image (colour ones
      only for 3-channel images);
    - ``auto``: temporal when the data has sequences, else augment.
    The stream owns its random generator; ``state_dict`` makes a run resumable exactly.
    """

    def __init__(self, data: ImageSet, mode: PairMode = "auto", seed: int = 0,
                 augment: WeakAugmentSpec = WeakAugmentSpec(), device: torch.device | str = "cpu"):
        temporal = data.has_sequences
        if mode == "auto":
            mode = "temporal" if temporal else "augment"
        if mode == "temporal" and not temporal:
            raise LPLError("--pairs temporal needs a data set of sequences (such as shapes, or an image folder "
                           "of sequence folders); use --pairs augment")
        self.mode, self.frames, self.device = mode, data.frames, torch.device(device)
        # Sequences of any length: draw uniformly among the first frames of all temporal pairs.
        self.starts = data.pair_starts().to(self.device) if mode == "temporal" and data.frames == 1 else None
        self.images = data.images.to(self.device)
        self.flat = self.images.reshape(len(data), -1)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.augment = WeakAugment(self.images, augment) if mode == "augment" else None
        self.strong = StrongAugmentSpec(color=data.shape[0] == 3)

    def next(self, batch_size: int) -> Tensor:
        """One batch of temporal pairs, (2, batch_size, D) float32 in [0, 1]."""
        if self.mode != "temporal":
            index = torch.randint(len(self.flat), (batch_size,), generator=self.generator, device=self.device)
            if self.augment is not None:
                return self.augment(index.repeat(2), self.generator).view(2, batch_size, -1)
            return strong_augment(self.images[index.repeat(2)], self.strong, self.generator).view(2, batch_size, -1)
        if self.starts is not None:
            pick = torch.randint(len(self.starts), (batch_size,), generator=self.generator, device=self.device)
            first = self.starts[pick]
        else:  # fixed-length sequences: a uniform sequence, then a uniform step (the original stream)
            sequences = len(self.flat) // self.frames
            seq = torch.randint(sequences, (batch_size,), generator=self.generator, device=self.device)
            step = torch.randint(self.frames - 1, (batch_size,), generator=self.generator, device=self.device)
            first = seq * self.frames + step
        return to_unit_float(self.flat[torch.stack((first, first + 1))])

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
