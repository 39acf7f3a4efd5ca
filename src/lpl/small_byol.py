"""BYOL baseline (Grill et al. 2020) under the mission's local constraint: only conv1 learns.

Online and target networks share one architecture: three 3x3 convolutions (64, 128, 256
channels, ReLU, 2x2 max-pooling after the first two), global average pooling to a 256-d
feature, and a projector 256 -> 512 -> 128; the online network adds a predictor 128 -> 512 ->
128. Everything but the first convolution stays at its initialisation (``requires_grad=False``);
the target follows the online network by an exponential moving average and never by gradients.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpl.heads import ema_update, mlp


class Backbone(nn.Module):
    """conv(64) -> pool -> conv(128) -> pool -> conv(256) -> global average pool: (B, C, H, W) -> (B, 256)."""

    def __init__(self, in_channels: int, channels: tuple[int, int, int] = (64, 128, 256)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, padding=1)
        self.conv3 = nn.Conv2d(channels[1], channels[2], 3, padding=1)
        self.features = channels[2]

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.conv3(x)).mean(dim=(2, 3))


class BYOL(nn.Module):
    def __init__(self, in_channels: int, projection: int = 128, hidden: int = 512, tau: float = 0.99):
        super().__init__()
        self.tau = tau
        self.backbone = Backbone(in_channels)
        self.projector = mlp(self.backbone.features, hidden, projection)
        self.predictor = mlp(projection, hidden, projection)
        self.target_backbone = copy.deepcopy(self.backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for module in (self.backbone, self.projector, self.predictor):
            module.requires_grad_(False)
        self.backbone.conv1.requires_grad_(True)  # the only trained layer
        for module in (self.target_backbone, self.target_projector):
            module.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def loss(self, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, Tensor]:
        """Symmetrised negative cosine, in [-2, 2]; also returns the online features of ``view_a``."""
        both = torch.cat((view_a, view_b))
        features = self.backbone(both)
        predictions = self.predictor(self.projector(features))
        with torch.no_grad():
            targets = self.target_projector(self.target_backbone(both))
        half = view_a.shape[0]
        swapped = torch.cat((targets[half:], targets[:half]))  # prediction of a vs target of b, and b vs a
        loss = -2 * F.cosine_similarity(predictions, swapped.detach(), dim=1).mean()
        return loss, features[:half]

    @torch.no_grad()
    def update_target(self) -> None:
        """target <- tau * target + (1 - tau) * online, for backbone and projector."""
        ema_update(self.target_backbone, self.backbone, self.tau)
        ema_update(self.target_projector, self.projector, self.tau)

    @torch.no_grad()
    def embed(self, x: Tensor, batch: int = 1024) -> Tensor:
        """L2-normalised backbone features (N, 256) of images x (N, C, H, W) in [0, 1]."""
        return torch.cat([F.normalize(self.backbone(chunk), dim=1) for chunk in x.split(batch)])
