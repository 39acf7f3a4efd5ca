"""Batches of temporally correlated pairs, drawn from an ImageSet by a seeded, resumable stream."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lpl.data.augment import (
    StrongAugmentSpec,
    WeakAugment,
    WeakAugmentSpec,
    apply_strong,
    crop_theta,
    draw_strong,
)
from lpl.data.images import ImageSet, to_unit_float
from lpl.validation import LPLError

PairMode = Literal["auto", "augment", "temporal", "strong", "temporal+augment", "temporal+strong"]


class PairStream:
    """Draws (2, B, D) float32 batches: earlier views ``[0]`` and later views ``[1]``.

    - ``temporal``: frames ``t`` and ``t + k`` of the same sequence, uniform over all frames that
      have a next frame (``ImageSet.pair_starts``); ``k`` = 1, or with ``max_offset`` K uniform in
      1..K (cut at the sequence's last frame);
    - ``augment``: two independent weak augmentations of the same image;
    - ``strong``: two independent SimCLR/BYOL-style augmentations of the same image (colour ones
      only for 3-channel images);
    - ``temporal+augment``, ``temporal+strong``: temporal pairs, each frame augmented on its own
      (weakly, or SimCLR-style): what changes over time plus what augmentation changes;
    - ``auto``: temporal when the data has sequences, else augment.
    The stream owns its random generator; ``state_dict`` makes a run resumable exactly.
    """

    def __init__(self, data: ImageSet, mode: PairMode = "auto", seed: int = 0,
                 augment: WeakAugmentSpec = WeakAugmentSpec(), device: torch.device | str = "cpu",
                 max_offset: int = 1):
        if mode == "auto":
            mode = "temporal" if data.has_sequences else "augment"
        self.temporal = mode.startswith("temporal")
        if self.temporal and not data.has_sequences:
            raise LPLError(f"--pairs/--views {mode} needs a data set of sequences (such as shapes, or an image "
                           "folder of sequence folders); use augment (dense) or simclr (deep) views")
        if max_offset < 1:
            raise LPLError(f"--max-offset must be a positive integer, got {max_offset}")
        self.mode, self.frames, self.device, self.max_offset = mode, data.frames, torch.device(device), max_offset
        self.kind = mode.removeprefix("temporal").removeprefix("+") or None  # the augmentation: augment, strong
        # Sequences of any length (or several frame offsets): draw among the first frames of all temporal pairs.
        self.starts = None
        if self.temporal and (data.frames == 1 or max_offset > 1):
            self.starts = data.pair_starts().to(self.device)
            self.room = data.frames_after().to(self.device)
        self.images = data.images.to(self.device)
        self.flat = self.images.reshape(len(data), -1)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.augment = WeakAugment(self.images, augment) if self.kind == "augment" else None
        self.strong = StrongAugmentSpec(color=data.shape[0] == 3)

    def next(self, batch_size: int) -> Tensor:
        """One batch of temporal pairs, (2, batch_size, D) float32 in [0, 1]."""
        return self.views(self.draw(batch_size))

    def draw(self, batch_size: int) -> tuple[Tensor, ...]:
        """The random choices of one batch (images, augmentations) from the stream's generator."""
        g, device = self.generator, self.device
        if not self.temporal:
            index = torch.randint(len(self.flat), (batch_size,), generator=g, device=device).repeat(2)
        elif self.starts is not None:
            first = self.starts[torch.randint(len(self.starts), (batch_size,), generator=g, device=device)]
            later = first + 1
            if self.max_offset > 1:
                offset = torch.randint(1, self.max_offset + 1, (batch_size,), generator=g, device=device)
                later = first + torch.minimum(offset, self.room[first])
            index = torch.cat((first, later))
        else:  # fixed-length sequences: a uniform sequence, then a uniform step (the original stream)
            seq = torch.randint(len(self.flat) // self.frames, (batch_size,), generator=g, device=device)
            first = seq * self.frames + torch.randint(self.frames - 1, (batch_size,), generator=g, device=device)
            index = torch.cat((first, first + 1))
        if self.augment is not None:
            return (index, *self.augment.draw(2 * batch_size, g, device))
        if self.kind == "strong":
            return index, draw_strong(2 * batch_size, g, device)
        return (index,)

    def views(self, drawn: tuple[Tensor, ...]) -> Tensor:
        """The (2, B, D) views for the choices of ``draw``: a pure function of them (it compiles)."""
        index = drawn[0]
        if self.augment is not None:
            out = self.augment.apply(*drawn)
        elif self.kind == "strong":
            out = apply_strong(self.images[index], self.strong, drawn[1])
        else:
            out = to_unit_float(self.flat[index])
        return out.view(2, index.shape[0] // 2, -1)

    def geometry(self, drawn: tuple[Tensor, ...]) -> Tensor | None:
        """Where each view of ``draw``'s choices lies in its source image: (2B, 2, 3) affine maps from the view's
        normalised coordinates to the image's (``augment.crop_theta``); None where views are not crops
        (temporal and weak pairs: whole frames, shifted by a few pixels at most)."""
        if self.kind != "strong":
            return None
        return crop_theta(self.strong, drawn[1][:, 0:5])

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
