"""Input checks that fail early with one clear line naming the problem and the fix."""

from __future__ import annotations

import torch
from torch import Tensor


class LPLError(Exception):
    """A user-facing error: the command line prints its message alone and exits with status 2."""


def validate_inputs(x: Tensor, expected_features: int | None = None, name: str = "inputs") -> None:
    """Check that ``x`` (N, features...) is float32, finite, in [0, 1] and of the expected size."""
    if not isinstance(x, Tensor):
        raise LPLError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise LPLError(
            f"{name} have dtype {x.dtype}, expected torch.float32 with values in [0, 1] "
            f"(convert with x.float() / 255 for 8-bit images)"
        )
    if x.ndim < 2 or x.shape[0] == 0:
        raise LPLError(f"{name} have shape {tuple(x.shape)}, expected (N, features) with N > 0")
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
        raise LPLError(f"{name} contain {bad} NaN or Inf values; clean or drop those samples first")
    low, high = x.min().item(), x.max().item()
    if low < 0.0 or high > 1.0:
        raise LPLError(
            f"{name} have values in [{low:.4g}, {high:.4g}], expected [0, 1]; rescale them "
            f"(for example (x - x.min()) / (x.max() - x.min()))"
        )
    features = x[0].numel()
    if expected_features is not None and features != expected_features:
        raise LPLError(
            f"{name} have {features} features per sample, the first layer expects "
            f"{expected_features}; change --dims or the data"
        )
