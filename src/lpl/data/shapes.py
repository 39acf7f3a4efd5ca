"""Synthetic shapes: 32x32 grayscale objects that move, rotate and scale smoothly over time.

Rendering is vectorised over all frames (signed distance functions on a pixel grid, anti-aliased
edges), so thousands of frames take well under a second. What stays the same within a sequence is
the object's class, fill style and contrast; position, angle and scale drift from frame to frame.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from lpl.data.images import ImageSet

CLASSES = ("circle", "square", "triangle", "cross", "star", "bar")


@dataclass(frozen=True)
class ShapesSpec:
    """Generator settings; per-frame motion is bounded as in the planning prototype."""

    size: int = 32
    frames: int = 8
    max_step_px: float = 2.0       # translation per frame, pixels
    max_rotation: float = 0.2      # rotation per frame, radians
    max_rescale: float = 0.05      # relative scale change per frame
    noise: float = 0.05            # std of per-frame pixel noise
    max_offset: float = 0.3        # initial centre, fraction of the half-width
    stroke_probability: float = 0.25  # outlined rather than filled objects
    max_background: float = 0.2    # background grey level in [0, max]
    contrast: tuple[float, float] = (0.5, 0.8)  # object minus background


def _box(q: Tensor, half_w: float, half_h: float) -> Tensor:
    return torch.maximum(q[..., 0].abs() - half_w, q[..., 1].abs() - half_h)


def _polygon(q: Tensor, sides: int, apothem: float) -> Tensor:
    angles = torch.arange(sides, dtype=q.dtype) * (2 * math.pi / sides) + math.pi / 2
    normals = torch.stack((torch.cos(angles), torch.sin(angles)), dim=1)  # (sides, 2)
    return (q @ normals.T).amax(dim=-1) - apothem


def _circle(q: Tensor) -> Tensor:
    return q.norm(dim=-1) - 0.8


def _square(q: Tensor) -> Tensor:
    return _box(q, 0.7, 0.7)


def _triangle(q: Tensor) -> Tensor:
    return _polygon(q, 3, 0.45)


def _cross(q: Tensor) -> Tensor:
    return torch.minimum(_box(q, 0.85, 0.25), _box(q, 0.25, 0.85))


def _star(q: Tensor) -> Tensor:
    theta = torch.atan2(q[..., 1], q[..., 0])
    return (q.norm(dim=-1) - (0.6 + 0.3 * torch.cos(5 * theta))) * 0.6


def _bar(q: Tensor) -> Tensor:
    return ((q / torch.tensor([0.95, 0.35])).norm(dim=-1) - 1.0) * 0.35


# Signed distance (negative inside) of each class's shape at object coordinates q (..., 2).
SIGNED_DISTANCES = (_circle, _square, _triangle, _cross, _star, _bar)


def _bounce(x: Tensor, low: float, high: float) -> Tensor:
    """Reflect a trajectory back into [low, high] (a triangle wave), keeping it smooth."""
    span = high - low
    folded = torch.remainder(x - low, 2 * span)
    return low + torch.where(folded > span, 2 * span - folded, folded)


def render(labels: Tensor, center: Tensor, angle: Tensor, scale: Tensor, stroke: Tensor,
           foreground: Tensor, background: Tensor, size: int = 32) -> Tensor:
    """Render N objects into (N, size, size) images in [0, 1] (all per-object arguments (N,...))."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), dim=-1)  # (H, W, 2): x, y
    p = grid[None] - center[:, None, None, :]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    q = torch.stack((cos * p[..., 0] + sin * p[..., 1], -sin * p[..., 0] + cos * p[..., 1]), -1)
    q = q / scale[:, None, None, None]
    sdf = torch.empty(q.shape[:-1])
    for label, distance in enumerate(SIGNED_DISTANCES):
        chosen = labels == label
        sdf[chosen] = distance(q[chosen])
    sdf_px = sdf * scale[:, None, None] * (size / 2.0)
    edge = torch.where(stroke[:, None, None], sdf_px.abs() - 1.0, sdf_px)
    coverage = (0.5 - edge).clamp(0.0, 1.0)
    return background[:, None, None] + (foreground - background)[:, None, None] * coverage


def generate_shapes(num_sequences: int, spec: ShapesSpec = ShapesSpec(), seed: int = 0,
                    chunk: int = 2048) -> ImageSet:
    """``num_sequences`` sequences of ``spec.frames`` frames: float32 (S*T, 1, H, W) in [0, 1].

    Classes are balanced (they differ by at most one sequence) and the result is a deterministic
    function of the arguments.
    """
    g = torch.Generator().manual_seed(seed)
    S, T = num_sequences, spec.frames

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return torch.rand(*shape, generator=g) * (high - low) + low

    labels = (torch.arange(S) % len(CLASSES))[torch.randperm(S, generator=g)]
    steps = torch.arange(T, dtype=torch.float32)[None, :, None]
    step_size = spec.max_step_px * 2.0 / spec.size
    start = uniform(-spec.max_offset, spec.max_offset, S, 1, 2)
    center = _bounce(start + steps * uniform(-step_size, step_size, S, 1, 2), -0.45, 0.45)
    angle = uniform(0, 2 * math.pi, S, 1) + steps[..., 0] * uniform(-spec.max_rotation, spec.max_rotation, S, 1)
    log_scale = math.log(0.45) + uniform(-0.25, 0.25, S, 1)
    log_scale = _bounce(log_scale + steps[..., 0] * uniform(-spec.max_rescale, spec.max_rescale, S, 1),
                        math.log(0.33), math.log(0.6))
    stroke = torch.rand(S, generator=g) < spec.stroke_probability
    background = uniform(0.0, spec.max_background, S)
    foreground = background + uniform(*spec.contrast, S)

    def per_frame(x: Tensor) -> Tensor:
        return x[:, None].expand(S, T, *x.shape[1:]).reshape(S * T, *x.shape[1:])

    frame_labels = per_frame(labels)
    args = (frame_labels, center.reshape(S * T, 2), angle.reshape(-1), log_scale.exp().reshape(-1),
            per_frame(stroke), per_frame(foreground), per_frame(background))

    def render_rows(i: int) -> Tensor:  # unpacked so that no argument can land on ``size``
        lab, cen, ang, sca, strk, fg, bg = (a[i:i + chunk] for a in args)
        return render(lab, cen, ang, sca, strk, fg, bg, size=spec.size)

    images = torch.cat([render_rows(i) for i in range(0, S * T, chunk)])
    images += torch.randn(images.shape, generator=g) * spec.noise
    images = images.clamp_(0.0, 1.0).unsqueeze(1)
    return ImageSet(images, frame_labels.long(), CLASSES, frames=T)


@functools.lru_cache(maxsize=4)
def load_shapes(train: bool = True, num_sequences: int | None = None, seed: int = 0,
                spec: ShapesSpec = ShapesSpec()) -> ImageSet:
    """The train (2000 sequences) or test (1000 sequences) split; the splits share no sequence."""
    split = "train" if train else "test"
    count = num_sequences or (2000 if train else 1000)
    return generate_shapes(count, spec, seed=zlib.crc32(f"shapes/{split}/{seed}".encode()))
