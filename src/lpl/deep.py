"""Deep layer-local convolutional LPL: a VGG-11-style network whose blocks each learn from their
own LPL loss on their own (detached) input, as in the paper's main experiment.

Each block is Conv3x3(pad 1) -> ReLU (-> MaxPool 2x2). Its loss is computed on its globally
average-pooled output (``no_pooling``: on the full feature maps, with decorrelation over the
spatially stacked channel vectors, as the official code does). Under ``torchrun`` the batch
statistics (variance, covariance) are computed over the global batch with a differentiable
all-gather, so N processes with batch B learn exactly as one process with batch N*B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lpl import rules
from lpl.locality import layerwise_outputs

VGG11_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
VGG11_POOL_AFTER = (1, 2, 4, 6, 8)  # 1-based blocks followed by 2x2 max-pooling


def conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2) if pool else nn.Identity())


class DeepLPLNet(nn.Module):
    """A stack of conv blocks; ``forward`` returns every block's feature map."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = VGG11_CHANNELS,
                 pool_after: tuple[int, ...] = VGG11_POOL_AFTER):
        super().__init__()
        sizes = (in_channels, *channels)
        self.blocks = nn.ModuleList(conv_block(sizes[i], sizes[i + 1], i + 1 in pool_after)
                                    for i in range(len(channels)))

    def forward(self, x: Tensor, local: bool = True) -> list[Tensor]:
        """(B, C, H, W) -> [(B, C_k, H_k, W_k)] for every block; inputs detached when ``local``."""
        return layerwise_outputs(self.blocks, x, local)

    @torch.no_grad()
    def pooled_features(self, x: Tensor) -> list[Tensor]:
        """Globally average-pooled output of every block, [(B, C_k)], in float32."""
        return [fm.float().mean(dim=(2, 3)) for fm in self(x)]


def gather_batch(z: Tensor) -> Tensor:
    """All processes' rows of z, concatenated (differentiable); z itself outside ``torchrun``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed._functional_collectives import all_gather_tensor_autograd

    # Backward sums every process's gradient for this process's rows (a reduce-scatter).
    return all_gather_tensor_autograd(z.contiguous(), gather_dim=0, group=dist.group.WORLD)


@dataclass(frozen=True)
class DeepLPLLoss:
    """The per-layer LPL objective of the deep network (official coefficients 1, 1, 10, means)."""

    pred: float = 1.0
    hebb: float = 1.0
    decorr: float = 10.0
    stop_gradient: bool = True
    no_pooling: bool = False
    end_to_end: bool = False

    def __call__(self, feature_maps: list[Tensor],
                 shuffle: Tensor | None = None) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """Total loss and each trained layer's unweighted terms (detached) for both views stacked.

        ``feature_maps[k]`` is (2B, C, H, W): the B earlier views, then the B later views.
        ``shuffle`` (B,) pairs each earlier view with another image's later view (ablation).
        End-to-end training has a loss on the last block only.
        """
        total = feature_maps[0].new_zeros((), dtype=torch.float32)
        terms = []
        for fm in feature_maps[-1:] if self.end_to_end else feature_maps:
            fm = fm.float()
            z = fm.flatten(1) if self.no_pooling else fm.mean(dim=(2, 3))
            z_prev, z_now = z.chunk(2)
            if shuffle is not None:
                z_now = z_now[shuffle]
            layer = {"pred": rules.predictive_loss(z_now, z_prev, "mean", self.stop_gradient)}
            views = torch.stack((gather_batch(z_prev), gather_batch(z_now)))
            layer["hebb"] = 0.5 * rules.hebbian_loss(views, "mean")
            if self.no_pooling:  # channel vectors of every position are the samples
                stacked = fm.permute(0, 2, 3, 1).reshape(2, -1, fm.shape[1])
                views = torch.stack((gather_batch(stacked[0]), gather_batch(stacked[1])))
            layer["decorr"] = 0.5 * rules.decorrelation_loss(views, "mean")
            total = total + self.pred * layer["pred"] + self.hebb * layer["hebb"] + self.decorr * layer["decorr"]
            terms.append({k: v.detach() for k, v in layer.items()})
        return total, terms
