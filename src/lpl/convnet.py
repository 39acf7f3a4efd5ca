"""The convolutional network of the paper's main experiment: a VGG-11-style stack of conv blocks.

Each block is Conv3x3(pad 1) -> ReLU (-> MaxPool 2x2). ``forward`` returns every block's
feature map; with ``local=True`` each block's input is detached (``lpl.locality``), so a loss on
block k trains block k alone. The per-layer objectives that train it live in ``lpl.heads``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lpl.locality import layerwise_outputs

VGG11_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
VGG11_POOL_AFTER = (1, 2, 4, 6, 8)  # 1-based blocks followed by 2x2 max-pooling


def conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2) if pool else nn.Identity())


class ConvNet(nn.Module):
    """A stack of conv blocks; ``forward`` returns every block's feature map."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = VGG11_CHANNELS,
                 pool_after: tuple[int, ...] = VGG11_POOL_AFTER):
        super().__init__()
        sizes = (in_channels, *channels)
        self.channels = tuple(channels)
        self.blocks = nn.ModuleList(conv_block(sizes[i], sizes[i + 1], i + 1 in pool_after)
                                    for i in range(len(channels)))

    def forward(self, x: Tensor, local: bool = True) -> list[Tensor]:
        """(B, C, H, W) -> [(B, C_k, H_k, W_k)] for every block; inputs detached when ``local``."""
        return layerwise_outputs(self.blocks, x, local)

    @torch.no_grad()
    def pooled_features(self, x: Tensor) -> list[Tensor]:
        """Globally average-pooled output of every block, [(B, C_k)], in float32."""
        return [full_precision(fm).mean(dim=(2, 3)) for fm in self(x)]


def distributed() -> bool:
    """Whether this process is one of several under ``torchrun``."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_batch(z: Tensor) -> Tensor:
    """All processes' rows of z, concatenated (differentiable); z itself outside ``torchrun``.

    Every process then computes the same global-batch statistic; the backward pass sums each
    process's gradient for this process's rows, and DDP's average turns that into the gradient of
    the global objective.
    """
    if not distributed():
        return z
    from torch.distributed import _functional_collectives as collectives

    world = dist.group.WORLD
    assert world is not None  # distributed() saw the default process group
    # torch >= 2.12 names it all_gather_single_autograd (the old name warns); 2.11 has only the old one
    gather = getattr(collectives, "all_gather_single_autograd", None) or collectives.all_gather_tensor_autograd
    return gather(z.contiguous(), gather_dim=0, group=world)


def full_precision(x: Tensor) -> Tensor:
    """``x`` as float32 for the objectives' statistics (bf16 and fp16 are widened); float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()
