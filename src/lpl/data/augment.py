"""Weak augmentations for temporal pairs: small shift, horizontal flip, brightness/contrast.

Batched with no per-image Python. The images are padded once (replicate padding of
``max_shift`` pixels, plus a mirrored copy when flipping), and a strided view exposes every
horizontal window of every padded row. A shifted, possibly flipped crop is then one gather of
whole W-pixel row segments (an index per sample row, not per pixel), followed by one fused
brightness/contrast affine and a clamp. On 2 CPU cores this is about 2x faster than gathering
pixel by pixel through a precomputed index table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class WeakAugmentSpec:
    max_shift: int = 3          # pixels, each direction
    flip: bool = True
    brightness: float = 0.1     # additive, uniform in [-b, b]
    contrast: float = 0.1       # multiplicative around 0.5, uniform in [1 - c, 1 + c]


def replicate_pad(images: Tensor, pad: int) -> Tensor:
    """Pad (N, C, H, W) images of any dtype by repeating their border pixels."""
    h, w = images.shape[-2:]
    rows = torch.arange(-pad, h + pad, device=images.device).clamp(0, h - 1)
    cols = torch.arange(-pad, w + pad, device=images.device).clamp(0, w - 1)
    return images[:, :, rows][:, :, :, cols]


class WeakAugment:
    """Draws augmented views of ``images`` (N, C, H, W), uint8 or float in [0, 1]."""

    def __init__(self, images: Tensor, spec: WeakAugmentSpec = WeakAugmentSpec()):
        self.spec = spec
        n, c, h, w = images.shape
        s = spec.max_shift
        padded = replicate_pad(images, s)
        bank = torch.cat((padded, padded.flip(-1))) if spec.flip else padded
        self.copies, self.count, self.scale = bank.shape[0] // n, n, 1 / 255 if images.dtype == torch.uint8 else 1.0
        hp, wp = h + 2 * s, w + 2 * s
        bank = bank.contiguous()
        # windows[i, c * hp + row, x0, :] == bank[i, c, row, x0 : x0 + w]
        self.windows = bank.as_strided((bank.shape[0], c * hp, 2 * s + 1, w), (c * hp * wp, wp, 1, 1))
        self.rows = (torch.arange(c, device=images.device)[:, None] * hp
                     + torch.arange(h, device=images.device)[None, :]).view(1, -1)
        self.features = c * h * w

    def __call__(self, index: Tensor, generator: torch.Generator) -> Tensor:
        """Augment ``images[index]`` -> float32 (n, C*H*W) in [0, 1]."""
        n, device, s = index.shape[0], index.device, self.spec.max_shift
        copy = torch.randint(self.copies, (n, 1), generator=generator, device=device)
        shift = torch.randint(2 * s + 1, (2, n, 1), generator=generator, device=device)
        jitter = torch.rand(2, n, 1, generator=generator, device=device) * 2 - 1
        pixels = self.windows[copy * self.count + index[:, None], shift[0] + self.rows, shift[1]]
        contrast = 1.0 + self.spec.contrast * jitter[0]
        offset = 0.5 * (1.0 - contrast) + self.spec.brightness * jitter[1]
        return pixels.view(n, -1).float().mul_(contrast * self.scale).add_(offset).clamp_(0.0, 1.0)
