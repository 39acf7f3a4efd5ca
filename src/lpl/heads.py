"""Per-layer objectives for the deep network: views in, loss and monitored terms out.

A head sees one block's feature maps for both views stacked, ``(2B, C, H, W)`` (the first B rows
are the first view), and returns its loss and a dict of detached terms to log. The deep trainer
(``lpl.train.deep``) puts a head on every block (layer-local, inputs detached) or on the last
block only (end-to-end) and never looks inside, so a new objective is a new head here.

- ``LPLHead``: the LPL objective (``lpl.objective``) on the pooled (or full) feature map.
- ``BYOLHead``: projector and predictor MLPs with BatchNorm; the target is an exponential moving
  average of the network and the projector (``DeepModel.update_target``), symmetric loss.
- ``SimCLRHead``: projector MLP and InfoNCE (NT-Xent) with a temperature over the global batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpl.convnet import ConvNet, distributed, full_precision, gather_batch
from lpl.objective import LPLObjective

ObjectiveName = Literal["lpl", "byol", "simclr"]
Terms = dict[str, Tensor]


class LayerHead(nn.Module):
    """Interface of a per-layer objective."""

    uses_target: ClassVar[bool] = False  # needs the EMA target network's output of its block

    def forward(self, maps: Tensor, target: Tensor | None = None) -> tuple[Tensor, Terms]:
        """``maps`` (2B, C, H, W) of both views; ``target`` (2B, D) from ``target_embedding``."""
        raise NotImplementedError

    def target_embedding(self, maps: Tensor) -> Tensor:
        """What this head's EMA copy makes of the target network's ``maps`` (heads with a target)."""
        raise NotImplementedError


def pooled(maps: Tensor) -> Tensor:
    """Global average pooling in float32 (or float64): (N, C, H, W) -> (N, C)."""
    return full_precision(maps).mean(dim=(2, 3))


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch under ``torchrun``
    (so N processes with batch B train exactly as one with batch N*B); plain BatchNorm1d otherwise."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and distributed()):
            return super().forward(x)
        full = gather_batch(x)
        mean, var = full.mean(0), full.var(0, unbiased=False)
        # mlp() builds it with the defaults: running statistics kept, a fixed momentum
        running_mean, running_var, count = self.running_mean, self.running_var, self.num_batches_tracked
        assert running_mean is not None and running_var is not None and count is not None
        assert self.momentum is not None
        with torch.no_grad():
            n = full.shape[0]
            running_mean.lerp_(mean.detach(), self.momentum)
            running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
            count.add_(1)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Linear (BYOL's and SimCLR's heads)."""
    return nn.Sequential(nn.Linear(in_features, hidden), GlobalBatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_features))


class LPLHead(LayerHead):
    """LPL on one block: on its pooled output, or with ``pooling=False`` on the full map (the
    decorrelation term then takes the channel vectors of every position as its samples)."""

    def __init__(self, objective: LPLObjective, pooling: bool = True):
        super().__init__()
        self.objective, self.pooling = objective, pooling

    def forward(self, maps: Tensor, target: Tensor | None = None) -> tuple[Tensor, Terms]:
        maps = full_precision(maps)
        z_prev, z_now = (pooled(maps) if self.pooling else maps.flatten(1)).chunk(2)
        decorr_views = None
        if not self.pooling:
            decorr_views = maps.permute(0, 2, 3, 1).reshape(2, -1, maps.shape[1]).unbind(0)
        terms = self.objective.terms(z_prev, z_now, gather_batch, decorr_views)
        return self.objective.weighted(terms), {k: v.detach() for k, v in terms.items()}


def byol_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """Symmetric BYOL loss of (2B, D) predictions and targets: ``sum over both directions of
    2 - 2 cos(p_view1, t_view2)``, batch mean; 0 for perfect predictions, 4 for orthogonal ones."""
    p_a, p_b = F.normalize(full_precision(predictions), dim=1).chunk(2)
    t_a, t_b = F.normalize(full_precision(targets.detach()), dim=1).chunk(2)
    return (2 - 2 * (p_a * t_b).sum(1)).mean() + (2 - 2 * (p_b * t_a).sum(1)).mean()


class BYOLHead(LayerHead):
    """BYOL on one block's pooled output (solo-learn's CIFAR sizes: 4096 hidden, 256 out)."""

    uses_target = True

    def __init__(self, channels: int, hidden: int = 4096, out: int = 256):
        super().__init__()
        self.projector = mlp(channels, hidden, out)
        self.predictor = mlp(out, hidden, out)

    def forward(self, maps: Tensor, target: Tensor | None = None) -> tuple[Tensor, Terms]:
        assert target is not None, "BYOLHead needs the target network's embedding"
        loss = byol_loss(self.predictor(self.projector(pooled(maps))), target)
        return loss, {"byol": loss.detach()}

    def target_embedding(self, maps: Tensor) -> Tensor:
        return self.projector(pooled(maps))


def info_nce_loss(z: Tensor, temperature: float) -> Tensor:
    """NT-Xent of (2B, D) embeddings whose rows i and i + B are positives; the other 2B - 2 rows
    of the (global) batch are the negatives. Identical views of mutually orthogonal samples give
    ``log(1 + (2B - 2) exp(-1 / temperature))``."""
    z_a, z_b = F.normalize(full_precision(z), dim=1).chunk(2)
    z = torch.cat((gather_batch(z_a), gather_batch(z_b)))
    n = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -math.inf)
    positives = torch.cat((torch.arange(n, 2 * n), torch.arange(n))).to(z.device)
    return F.cross_entropy(logits, positives)


_info_nce_uncompiled: Callable[[Tensor, float], Tensor] | None = None


def info_nce_outside_graphs() -> Callable[[Tensor, float], Tensor]:
    """``info_nce_loss`` kept out of compiled graphs (triton 3.6 failed to compile its fused kernel on an
    H100; it is small). Wrapped at first use, not at import: importing dynamo takes about a second."""
    global _info_nce_uncompiled
    if _info_nce_uncompiled is None:
        _info_nce_uncompiled = torch.compiler.disable(info_nce_loss)
    return _info_nce_uncompiled


class SimCLRHead(LayerHead):
    """SimCLR on one block's pooled output: projector MLP and InfoNCE with a temperature."""

    def __init__(self, channels: int, hidden: int = 2048, out: int = 128, temperature: float = 0.2):
        super().__init__()
        self.projector = mlp(channels, hidden, out)
        self.temperature = temperature

    def forward(self, maps: Tensor, target: Tensor | None = None) -> tuple[Tensor, Terms]:
        loss = info_nce_outside_graphs()(self.projector(pooled(maps)), self.temperature)
        return loss, {"infonce": loss.detach()}


def byol_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """Target momentum from ``base`` at step 0 to 1 at the last step, on a cosine (BYOL, solo-learn)."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2


class DeepModel(nn.Module):
    """A ConvNet with heads on its blocks: on every block (layer-local) or on the last (end-to-end).

    ``forward`` takes both views stacked (2B, C, H, W) and returns the summed loss and each head's
    terms, keyed by 1-based block number. Heads with ``uses_target`` get the block's output in an
    EMA copy of the network and heads (``update_target``), which never receives gradients.
    """

    def __init__(self, net: ConvNet, heads: dict[int, LayerHead], local: bool = True):
        super().__init__()
        self.net, self.local = net, local
        self.heads = nn.ModuleDict({str(k): head for k, head in heads.items()})
        self.target: nn.ModuleDict | None = None
        if any(head.uses_target for head in heads.values()):
            self.target = copy.deepcopy(nn.ModuleDict({"net": net, "heads": self.heads})).requires_grad_(False)

    def forward(self, views: Tensor) -> tuple[Tensor, dict[int, Terms]]:
        maps = self.net(views, local=self.local)
        target_maps: list[Tensor] = []
        if self.target is not None:
            with torch.no_grad():
                target_maps = self.target["net"](views)
        losses, terms = [], {}
        for key, head in self.heads.items():
            block = int(key) - 1
            target = None
            if head.uses_target:
                with torch.no_grad():
                    target = self.target["heads"][key].target_embedding(target_maps[block])  # type: ignore[index]
            loss, terms[int(key)] = head(maps[block], target)
            losses.append(loss)
        # A plain sum, not zeros + losses: under torch.compile (2.13) a zero-initialised total beside
        # detached terms lost its gradient.
        return sum(losses[1:], losses[0]), terms

    def update_target(self, momentum: float) -> None:
        """Move the target network toward the online one (``ema_update``)."""
        if self.target is not None:
            ema_update(self.target, nn.ModuleDict({"net": self.net, "heads": self.heads}), momentum)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online for parameters; buffers copied."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - momentum)
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers()):
        target_buffer.copy_(online_buffer)


def build_model(objective: ObjectiveName, net: ConvNet, local: bool, lpl: LPLObjective = LPLObjective(),
                pooling: bool = True, temperature: float = 0.2) -> DeepModel:
    """The network with the chosen objective's heads: on every block when ``local``, else the last."""
    blocks = range(1, len(net.channels) + 1) if local else [len(net.channels)]

    def head(block: int) -> LayerHead:
        channels = net.channels[block - 1]
        if objective == "lpl":
            return LPLHead(lpl, pooling)
        if objective == "byol":
            return BYOLHead(channels)
        return SimCLRHead(channels, temperature=temperature)

    return DeepModel(net, {block: head(block) for block in blocks}, local)
