"""The convolutional networks of the deep experiments: stacks of conv blocks, described by a ``NetworkSpec``.

Each block is Conv(k x k, same padding) -> ReLU (-> MaxPool 2x2). ``forward`` returns every block's
feature map; with ``local=True`` each block's input is detached (``lpl.locality``), so a loss on
block k trains block k alone. ``NETWORKS`` names the specs the library ships (the paper's VGG-11 and
wider, shallower networks like those of the layer-local frontier); the per-layer objectives that
train them live in ``lpl.heads``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lpl.locality import layerwise_outputs
from lpl.validation import LPLError


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that fixes a conv network's shape: blocks' output channels, kernel sizes, which 1-based
    blocks are followed by 2x2 max-pooling, whether convolutions have biases, and the input channels."""

    channels: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    pool_after: tuple[int, ...]
    bias: bool = True
    in_channels: int = 3

    def __post_init__(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise LPLError(f"a network needs at least one block of positive width, got channels {list(self.channels)}")
        if len(self.kernel_sizes) != len(self.channels) or min(self.kernel_sizes) < 1:
            raise LPLError(f"--kernel-sizes needs one positive size per block ({len(self.channels)}), got "
                           f"{list(self.kernel_sizes)}")
        if not all(1 <= p <= len(self.channels) for p in self.pool_after):
            raise LPLError(f"--pool-after names blocks 1..{len(self.channels)}, got {list(self.pool_after)}")

    def output_sizes(self, size: int) -> list[int]:
        """The side of every block's output map for ``size`` x ``size`` inputs."""
        sides = []
        for block in range(1, len(self.channels) + 1):
            size = size // 2 if block in self.pool_after else size
            sides.append(size)
        return sides

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def network_spec(name: str, in_channels: int = 3, channels: Sequence[int] | None = None,
                 kernel_sizes: Sequence[int] | None = None, pool_after: Sequence[int] | None = None,
                 width: float = 1.0, bias: bool = True) -> NetworkSpec:
    """The named network of ``NETWORKS`` with any of its settings replaced; ``width`` multiplies every block's
    channels (rounded, at least 1)."""
    if name not in NETWORKS:
        raise LPLError(f"unknown --network {name!r}; choose one of {', '.join(NETWORKS)}")
    base = NETWORKS[name]
    chosen = tuple(channels) if channels else base.channels
    if not chosen or min(chosen) < 1:
        raise LPLError(f"--channels needs positive sizes, got {list(chosen)}")
    if len(chosen) != len(base.channels) and pool_after is None:
        raise LPLError(f"--channels gives {len(chosen)} blocks, the {name} network has {len(base.channels)}: give "
                       f"--pool-after for them too")
    if kernel_sizes:
        kernels = tuple(kernel_sizes) * (len(chosen) if len(kernel_sizes) == 1 else 1)
    else:
        kernels = base.kernel_sizes if len(chosen) == len(base.channels) else (3,) * len(chosen)
    pools = tuple(pool_after) if pool_after is not None else base.pool_after
    if width <= 0:
        raise LPLError(f"--width must be positive, got {width}")
    return NetworkSpec(tuple(max(1, round(c * width)) for c in chosen), kernels, pools, bias, in_channels)


NETWORKS: dict[str, NetworkSpec] = {
    # the paper's network (official code): VGG-11 without batch norm
    "vgg11": NetworkSpec((64, 128, 256, 256, 512, 512, 512, 512), (3,) * 8, (1, 2, 4, 6, 8)),
    # the layer-local frontier's shallow, wide networks (reference notes, "The layer-local frontier")
    "vgg6-wide": NetworkSpec((128, 256, 256, 512, 1024, 1024), (3,) * 6, (2, 4, 5, 6)),
    "wide3": NetworkSpec((96, 384, 1536), (5, 3, 3), (1, 2, 3)),
}


def conv_block(in_channels: int, out_channels: int, kernel_size: int, pool: bool, bias: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2) if pool else nn.Identity())


class ConvNet(nn.Module):
    """A stack of conv blocks; ``forward`` returns every block's feature map."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        sizes = (spec.in_channels, *spec.channels)
        self.channels = spec.channels
        self.blocks = nn.ModuleList(conv_block(sizes[i], sizes[i + 1], spec.kernel_sizes[i], i + 1 in spec.pool_after,
                                               spec.bias) for i in range(len(spec.channels)))

    def forward(self, x: Tensor, local: bool = True) -> list[Tensor]:
        """(B, C, H, W) -> [(B, C_k, H_k, W_k)] for every block; inputs detached when ``local``."""
        return layerwise_outputs(self.blocks, x, local)

    @torch.no_grad()
    def pooled_features(self, x: Tensor, grid: int = 1) -> list[Tensor]:
        """Every block's output average-pooled to at most ``grid`` x ``grid`` positions and flattened,
        [(B, C_k * g_k^2)] in float32; ``grid=1``: global average pooling (the paper's readout)."""
        return [grid_pool(full_precision(fm), grid).flatten(1) for fm in self(x)]


def grid_pool(maps: Tensor, grid: int) -> Tensor:
    """Average pooling of (N, C, H, W) to (N, C, g, g) with g = min(grid, H); ``grid=0`` or g = H: ``maps``.

    The cells are adaptive-pooling cells (equal when ``grid`` divides H): grid 1 is global average pooling.
    """
    side = maps.shape[-1]
    if grid == 0 or grid >= side:
        return maps
    if grid == 1:
        return maps.mean(dim=(2, 3), keepdim=True)
    return F.adaptive_avg_pool2d(maps, grid)


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


def gather_views(stacked: Tensor) -> Tensor:
    """Stacked views (2, S, K) with every process's rows of each view (``gather_batch``); ``stacked`` itself
    outside ``torchrun``, without a copy."""
    return torch.stack([gather_batch(v) for v in stacked.unbind(0)]) if distributed() else stacked


def full_precision(x: Tensor) -> Tensor:
    """``x`` as float32 for the objectives' statistics (bf16 and fp16 are widened); float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()
