"""Augmentations, batched in plain torch (no per-image Python, CPU or GPU).

``WeakAugment`` makes temporal pairs for LPL: small shift, horizontal flip, brightness/contrast.

Batched with no per-image Python. The images are padded once (replicate padding of
``max_shift`` pixels, plus a mirrored copy when flipping), and a strided view exposes every
horizontal window of every padded row. A shifted, possibly flipped crop is then one gather of
whole W-pixel row segments (an index per sample row, not per pixel), followed by one fused
brightness/contrast affine and a clamp. On 2 CPU cores this is about 2x faster than gathering
pixel by pixel through a precomputed index table.

``strong_augment`` makes SimCLR/BYOL-style views: random resized crop, flip, colour jitter,
grayscale and Gaussian blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
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

    def __call__(self, index: Tensor, generator: torch.Generator) -> Tensor:
        """Augment ``images[index]`` -> float32 (n, C*H*W) in [0, 1]."""
        return self.apply(index, *self.draw(index.shape[0], generator, index.device))

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """The random choices of ``n`` views: mirrored copy, shift, brightness/contrast jitter."""
        s = self.spec.max_shift
        copy = torch.randint(self.copies, (n, 1), generator=generator, device=device)
        shift = torch.randint(2 * s + 1, (2, n, 1), generator=generator, device=device)
        jitter = torch.rand(2, n, 1, generator=generator, device=device) * 2 - 1
        return copy, shift, jitter

    def apply(self, index: Tensor, copy: Tensor, shift: Tensor, jitter: Tensor) -> Tensor:
        """The views of ``images[index]`` for the choices of ``draw``."""
        n = index.shape[0]
        pixels = self.windows[copy * self.count + index[:, None], shift[0] + self.rows, shift[1]]
        contrast = 1.0 + self.spec.contrast * jitter[0]
        offset = 0.5 * (1.0 - contrast) + self.spec.brightness * jitter[1]
        return pixels.view(n, -1).float().mul_(contrast * self.scale).add_(offset).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class StrongAugmentSpec:
    """SimCLR/BYOL-style views (the official LPL deep experiment's set by default).

    ``color=False`` keeps the geometric subset (crop and flip), for grayscale data.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True
    color: bool = True
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


STRONG_DRAWS = 13  # uniform numbers per image: crop (4), flip, jitter (5), grayscale, blur (2)


def draw_strong(n: int, generator: torch.Generator, device: torch.device | str) -> Tensor:
    """All random numbers of ``n`` strong augmentations, (n, STRONG_DRAWS) uniform in [0, 1)."""
    return torch.rand(n, STRONG_DRAWS, generator=generator, device=device)


def _between(u: Tensor, low: float, high: float) -> Tensor:
    return u * (high - low) + low


def _per_sample(x: Tensor) -> Tensor:
    return x.view(-1, 1, 1, 1)


def _gray(x: Tensor) -> Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def crop_theta(spec: StrongAugmentSpec, u: Tensor) -> Tensor:
    """The affine maps (n, 2, 3) of random resized crops (area fraction in ``crop_scale``, aspect 3/4..4/3)
    with flips: a view's normalised coordinates (x, y) in [-1, 1] (``affine_grid``'s, corners not aligned)
    to the source image's, ``(a x + cx, b y + cy)``. ``u`` (n, 5): area, aspect, centre x, centre y, flip.
    """
    area = _between(u[:, 0], *spec.crop_scale)
    log_ratio = _between(u[:, 1], math.log(3 / 4), math.log(4 / 3))
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    center_x = (u[:, 2] * 2 - 1) * (1 - width)
    center_y = (u[:, 3] * 2 - 1) * (1 - height)
    sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if spec.flip else torch.ones_like(width)
    zero = torch.zeros_like(width)
    return torch.stack((torch.stack((width * sign, zero, center_x), 1), torch.stack((zero, height, center_y), 1)), 1)


def resized_crop_flip(x: Tensor, spec: StrongAugmentSpec, u: Tensor) -> Tensor:
    """Random resized crop and flip (``crop_theta``), bilinear. ``u`` (n, 5): area, aspect, centre x, centre y,
    flip."""
    theta = crop_theta(spec, u).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(x: Tensor, spec: StrongAugmentSpec, u: Tensor) -> Tensor:
    """Brightness, contrast, saturation and hue jitter with probability ``jitter_probability``.

    ``u`` (n, 5): apply, brightness, contrast, saturation, hue. Applied in that fixed order
    (torchvision draws a random order); hue is a rotation of the chroma plane in YIQ space, a close
    linear stand-in for torchvision's HSV shift.
    """
    b, c, s, h = spec.jitter
    apply = _per_sample(u[:, 0] < spec.jitter_probability)
    out = x * _per_sample(_between(u[:, 1], max(0.0, 1 - b), 1 + b))
    mean = _gray(out).mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * _per_sample(_between(u[:, 2], max(0.0, 1 - c), 1 + c)) + mean
    gray = _gray(out)
    out = (out - gray) * _per_sample(_between(u[:, 3], max(0.0, 1 - s), 1 + s)) + gray
    angle = _between(u[:, 4], -h, h) * (2 * math.pi)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=x.device, dtype=x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack((torch.stack((one, zero, zero), 1), torch.stack((zero, cos, -sin), 1),
                            torch.stack((zero, sin, cos), 1)), 1)
    transform = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (n, 3, 3)
    out = torch.einsum("nij,njhw->nihw", transform, out).clamp(0.0, 1.0)
    return torch.where(apply, out, x)


def gaussian_blur(x: Tensor, spec: StrongAugmentSpec, u: Tensor) -> Tensor:
    """Per-sample Gaussian blur (kernel ~10% of the image, sigma in ``blur_sigma``), probability p.

    ``u`` (n, 2): apply, sigma. Separable, as a per-sample weighted sum of shifted slices of the
    reflect-padded image: a few elementwise kernels instead of a grouped convolution with one
    group per image and channel.
    """
    n, _, h, w = x.shape
    size = max(3, (int(0.1 * min(h, w)) // 2) * 2 + 1)
    pad = size // 2
    apply, sigma = u[:, 0] < spec.blur_probability, _between(u[:, 1], *spec.blur_sigma)
    offsets = torch.arange(size, device=x.device, dtype=x.dtype) - pad
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = torch.where(apply[:, None], kernel, (offsets[None] == 0).to(x.dtype))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).view(n, size, 1, 1, 1)
    padded = F.pad(x, (pad, pad, 0, 0), mode="reflect")
    x = cast(Tensor, sum(kernel[:, i] * padded[..., i:i + w] for i in range(size)))  # size >= 3 terms
    padded = F.pad(x, (0, 0, pad, pad), mode="reflect")
    return cast(Tensor, sum(kernel[:, i] * padded[..., i:i + h, :] for i in range(size)))


def apply_strong(images: Tensor, spec: StrongAugmentSpec, u: Tensor) -> Tensor:
    """Augment a batch (n, C, H, W), uint8 or float in [0, 1], with the random numbers ``u``
    (n, STRONG_DRAWS) of ``draw_strong`` -> float32 in [0, 1]. A pure function: it compiles."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x * (1.0 / 255.0)
    x = resized_crop_flip(x, spec, u[:, 0:5])
    if spec.color and x.shape[1] == 3:
        x = color_jitter(x, spec, u[:, 5:10])
        x = torch.where(_per_sample(u[:, 10] < spec.grayscale_probability), _gray(x).expand_as(x), x)
        x = gaussian_blur(x, spec, u[:, 11:13])
    return x.clamp(0.0, 1.0)


def strong_augment(images: Tensor, spec: StrongAugmentSpec, generator: torch.Generator) -> Tensor:
    """Augment a batch (n, C, H, W), uint8 or float in [0, 1] -> float32 in [0, 1], on its device."""
    return apply_strong(images, spec, draw_strong(images.shape[0], generator, images.device))
