"""The one container every data source returns: images, labels and how they form sequences."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ImageSet:
    """Images (N, C, H, W), uint8 in [0, 255] or float32 in [0, 1], with int64 labels (N,).

    Images may be frames of sequences (one object over time), so consecutive frames are natural
    temporal pairs. Two ways to say so, at most one per set:

    - ``frames > 1``: fixed-length sequences, image ``s * frames + t`` is frame ``t`` of sequence
      ``s`` (synthetic shapes, ``.pt`` files);
    - ``sequence``: int64 (N,) sequence id of every image, for sequences of any length; images of
      one sequence are contiguous and in frame order (image folders of videos).

    Without either, every image is a sequence of its own. ``sequence_ids``, ``frame_index`` and
    ``pair_starts`` read both forms alike. ``names`` optionally names the sequences (a sequence
    folder's ``<class>/<sequence>``), indexed by sequence id.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...] = ()
    frames: int = 1
    sequence: Tensor | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sequence is not None:
            if self.frames != 1:
                raise ValueError("an ImageSet takes frames > 1 or a sequence tensor, not both")
            if self.sequence.shape != (len(self),):
                raise ValueError(f"sequence must have shape ({len(self)},), got {tuple(self.sequence.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def features(self) -> int:
        return self.images[0].numel()

    @property
    def has_sequences(self) -> bool:
        """Whether any image has a next frame of the same sequence (temporal pairs exist)."""
        return len(self.pair_starts()) > 0

    def sequence_ids(self) -> Tensor:
        """The sequence id of every image, int64 (N,), equal ids contiguous."""
        if self.sequence is not None:
            return self.sequence
        return torch.arange(len(self)) // max(self.frames, 1)

    def frame_index(self) -> Tensor:
        """Every image's position in its sequence, int64 (N,): 0 for the first frame."""
        return _positions_in_runs(self.sequence_ids())

    def frames_after(self) -> Tensor:
        """How many frames follow each image in its sequence, int64 (N,): 0 for the last frame."""
        return _positions_in_runs(self.sequence_ids().flip(0)).flip(0)

    def pair_starts(self, limit: int | None = None) -> Tensor:
        """Indices ``i`` (ascending, int64) among the first ``limit`` images whose image ``i + 1``
        is the next frame of the same sequence: the temporal pairs are ``(i, i + 1)``."""
        ids = self.sequence_ids()[:limit]
        return torch.nonzero(ids[1:] == ids[:-1]).flatten()

    def head(self, count: int) -> ImageSet:
        """The first ``count`` images, keeping labels, classes and sequences."""
        sequence = None if self.sequence is None else self.sequence[:count]
        return ImageSet(self.images[:count], self.labels[:count], self.classes, self.frames, sequence, self.names)

    def flat_float(self, limit: int | None = None) -> Tensor:
        """The first ``limit`` images as float32 (N, C*H*W) in [0, 1]."""
        x = self.images[:limit].reshape(min(len(self), limit or len(self)), -1)
        return to_unit_float(x)


def _positions_in_runs(ids: Tensor) -> Tensor:
    """Each entry's position in its run of equal, contiguous ``ids`` (N,): 0 for a run's first entry."""
    first = torch.ones(len(ids), dtype=torch.bool)
    first[1:] = ids[1:] != ids[:-1]
    positions = torch.arange(len(ids))
    return positions - torch.where(first, positions, 0).cummax(0).values


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float tensors are returned as float32 unchanged."""
    return x.float().mul_(1.0 / 255.0) if x.dtype == torch.uint8 else x.float()


def tensor_digest(*tensors: Tensor) -> str:
    """SHA-256 (hex) of the tensors' dtypes, shapes and every byte, in order: equal digests, equal contents."""
    digest = hashlib.sha256()
    for x in tensors:
        x = x.detach().cpu().contiguous()
        digest.update(f"{x.dtype} {tuple(x.shape)}\n".encode())
        digest.update(x.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()
