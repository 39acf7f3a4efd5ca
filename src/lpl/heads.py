"""Per-layer objectives of the deep network, in one registry: views in, loss and logged terms out.

A head sees one block's feature maps for both views stacked, ``(2B, C, H, W)`` (the first B rows are
the first view), and returns its loss and a dict of detached terms to log. ``DeepModel`` puts a head
on every block (layer-local, inputs detached) or on the last block only (end-to-end); the trainer never
looks inside. Every head declares what the rest of the library needs to know about it:

- ``name`` (the ``--objective`` value) and ``summary`` (how reports describe it);
- ``Options``: a dataclass of its settings, whose fields become ``lpl train-deep`` flags;
- ``terms``: each logged term with what it means and what it should do during training;
- ``after_step``: anything it does after an optimiser step (BYOL moves its target network).

Every head takes a loss grid: 1 pools a block's output globally before the loss (the paper), g > 1
average-pools it to g x g positions and treats the positions as samples of the same units, 0 keeps
the full map. Adding an objective is a new module with a ``LayerHead`` subclass decorated with
``@register``; nothing else changes::

    @register
    class Whitening(LayerHead):
        name, summary = "whiten", "decorrelation only"
        terms = {"decorr": Term("squared off-diagonal covariance", "falls")}

        def forward(self, maps, target=None, geometry=None):
            z = self.samples(maps)
            decorr = rules.decorrelation_loss(z, "mean")
            return decorr, {"decorr": decorr.detach()}
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpl import rules
from lpl.config import field_names, flag, option, require
from lpl.convnet import ConvNet, distributed, full_precision, gather_batch, gather_views, grid_pool
from lpl.objective import LPLObjective
from lpl.terms import LPL_TERMS, Term
from lpl.validation import LPLError

Terms = dict[str, Tensor]


@dataclass(frozen=True)
class NoOptions:
    """A head without settings of its own."""


class LayerHead(nn.Module):
    """A per-layer objective (see the module docstring); subclasses set the class attributes."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    terms: ClassVar[Mapping[str, Term]] = {}
    uses_target: ClassVar[bool] = False  # needs the EMA target network's output of its block

    def __init__(self, channels: int, options: Any = None, grid: int = 1):
        super().__init__()
        self.channels, self.grid = channels, grid
        self.options = self.Options() if options is None else options

    def forward(self, maps: Tensor, target: Tensor | None = None, geometry: Tensor | None = None
                ) -> tuple[Tensor, Terms]:
        """``maps`` (2B, C, H, W) of both views; ``target`` (2B, ...) from ``target_embedding``; ``geometry``
        (2B, 2, 3): where each view lies in its image (``PairStream.geometry``), None for whole frames."""
        raise NotImplementedError

    def target_embedding(self, maps: Tensor) -> Tensor:
        """What this head's EMA copy makes of the target network's ``maps`` (heads with a target)."""
        raise NotImplementedError

    @classmethod
    def after_step(cls, model: DeepModel, step: int, total_steps: int) -> None:
        """Called after every optimiser step of a model with these heads (nothing by default)."""

    def pooled(self, maps: Tensor) -> Tensor:
        """``maps`` in float32 pooled to this head's loss grid: (2B, C, g, g)."""
        return grid_pool(full_precision(maps), self.grid)

    def samples(self, maps: Tensor) -> Tensor:
        """The pooled maps' channel vectors as samples, (2, B * g * g, C): view, (image, position), channel."""
        z = self.pooled(maps)
        return z.permute(0, 2, 3, 1).reshape(2, -1, z.shape[1])


HEADS: dict[str, type[LayerHead]] = {}


def register(cls: type[LayerHead]) -> type[LayerHead]:
    """Class decorator: make ``cls`` available as ``--objective <cls.name>``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a name to be registered")
    HEADS[cls.name] = cls
    return cls


def head_class(name: str) -> type[LayerHead]:
    if name not in HEADS:
        raise LPLError(f"unknown --objective {name!r}; choose one of {', '.join(HEADS)}")
    return HEADS[name]


def head_options(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The ``Options`` of head ``name`` with ``values`` set; one clear error for a setting it does not have."""
    cls = head_class(name)
    known = field_names(cls.Options)
    unknown = sorted(set(values or {}) - known)
    if unknown:
        owners = {k: [n for n, h in HEADS.items() if k in field_names(h.Options)] for k in unknown}
        detail = "; ".join(f"{flag(k)} belongs to {', '.join(v) or 'no objective'}"
                           for k, v in owners.items())
        raise LPLError(f"--objective {name} has no such setting: {detail}")
    return cls.Options(**(values or {}))


# ---------------------------------------------------------------- shared pieces

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


# ---------------------------------------------------------------- LPL

@dataclass(frozen=True)
class LPLOptions:
    pred: float = option(LPLObjective.pred, "LPL predictive coefficient; 0 switches the term off")
    hebb: float = option(LPLObjective.hebb, "LPL Hebbian coefficient; 0 switches the term off")
    decorr: float = option(LPLObjective.decorr, "LPL decorrelation coefficient; 0 switches the term off")
    stop_gradient: bool = option(True, "LPL: stop the gradient of the earlier view (paper); off = official code")
    correlation: bool = option(False, "LPL: scale-free decorrelation: units whose standard deviation is below 1 are "
                               "decorrelated by their correlation coefficients (covariances divided by the detached "
                               "deviations), whose pull does not fade with the features' scale as the covariances' "
                               "does; units with deviations of 1 or more keep the covariance form, which limits "
                               "their growth")
    shared_variance: bool = option(False, "LPL on a loss grid: one variance per channel over images and "
                                   "positions (--no-shared-variance: one per channel and position, as the official "
                                   "code for full maps)")
    projector: int = option(0, "LPL: hidden width of a projector MLP (ReLU, 256 out, as the official code's) "
                            "applied at every grid position before the loss; 0 = none")
    aligned: bool = option(False, "LPL on a loss grid of crops: compare each position of the later view with the "
                           "same place of the image in the earlier view (resampled; positions only one view "
                           "sees are left out), instead of the same position of both crops")
    pred_grid: int | None = option(None, "LPL: the predictive term's own grid (1: compare globally pooled outputs "
                                   "while the Hebbian and decorrelation terms see the loss grid; default: the loss "
                                   "grid)")
    stale_estimates: bool = option(False, "LPL on pooled outputs (loss grid 1): the Hebbian term takes each unit's "
                                   "mean and variance from the previous batch, as an option of the official code "
                                   "does (a neuron's running estimates rather than this batch's statistics)")

    def __post_init__(self) -> None:
        require(self.projector >= 0, f"--projector must be >= 0, got {self.projector}")
        require(self.pred_grid is None or self.pred_grid >= 0, f"--pred-grid must be >= 0, got {self.pred_grid}")

    def objective(self) -> LPLObjective:
        return LPLObjective(self.pred, self.hebb, self.decorr, "mean", stop_gradient=self.stop_gradient,
                            correlation=self.correlation)


@register
class LPLHead(LayerHead):
    """LPL on one block's output pooled to the loss grid. The predictive term compares every unit and
    position; the decorrelation term takes the channel vectors of every position as its samples; the
    Hebbian term keeps each channel's variance per position (or, with ``shared_variance``, over images
    and positions). With grid 1 this is the paper's loss on globally pooled outputs."""

    name = "lpl"
    summary = ("LPL: a predictive, a Hebbian (variance) and a decorrelation term on each block's own output, "
               "no negatives, no target network")
    Options = LPLOptions
    terms = LPL_TERMS
    options: LPLOptions
    stale: Tensor  # buffers
    stale_ready: Tensor

    def __init__(self, channels: int, options: LPLOptions | None = None, grid: int = 1):
        super().__init__(channels, options, grid)
        if self.options.stale_estimates and (grid != 1 or self.options.projector):
            raise LPLError("--stale-estimates works on pooled outputs (--loss-grid 1) without --projector, as in "
                           "the official code")
        self.objective = self.options.objective()
        # the previous batch's mean and variance of each unit (--stale-estimates), and whether there was one
        self.register_buffer("stale", torch.zeros(2, channels), persistent=self.options.stale_estimates)
        self.register_buffer("stale_ready", torch.zeros((), dtype=torch.bool), persistent=self.options.stale_estimates)
        hidden = self.options.projector
        self.projector = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 256, 1),
                                       nn.ReLU(inplace=True)) if hidden else None

    def forward(self, maps: Tensor, target: Tensor | None = None, geometry: Tensor | None = None
                ) -> tuple[Tensor, Terms]:
        z = self.pooled(maps)
        if self.projector is not None:
            z = self.projector(z)
        rows = z.permute(0, 2, 3, 1)  # (2B, g, g, C): channels-last memory order, so the views below copy nothing
        views = rows.reshape(2, z.shape[0] // 2, -1)  # (2, B, g * g * C): units in any order, the terms sum over them
        positions = rows.reshape(2, -1, z.shape[1])  # (2, B * g * g, C): every position's channel vector a sample
        terms = self.objective.terms(views, gather_views, decorr_views=positions,
                                     hebb_views=positions if self.options.shared_variance else None,
                                     pred_views=self._pred_views(maps, z, geometry))
        if self.options.stale_estimates and self.training:
            terms["hebb"] = self._stale_hebbian(gather_views(views))
        return self.objective.weighted(terms), {k: v.detach() for k, v in terms.items()}

    def _stale_hebbian(self, views: Tensor) -> Tensor:
        """The Hebbian term of ``views`` (2, B, C) with the previous batch's estimates (this batch's the first
        time), which it then replaces by this batch's: the mean and unbiased variance over images, averaged
        over the two views, as the official code keeps them."""
        current = torch.stack((views.detach().mean(dim=1).mean(0), views.detach().var(dim=1).mean(0)))
        mean, variance = torch.where(self.stale_ready, self.stale, current)
        with torch.no_grad():
            self.stale.copy_(current)
            self.stale_ready.fill_(True)
        return 0.5 * rules.hebbian_loss_stale(views, mean, variance, self.objective.reduction, self.objective.eps)

    def _pred_views(self, maps: Tensor, z: Tensor, geometry: Tensor | None) -> tuple[Tensor, ...] | None:
        """The predictive term's (earlier, later[, mask]) where they differ from the loss grid's views: on the
        term's own grid, and with ``aligned`` crops compared place by place."""
        grid, aligned = self.options.pred_grid, self.options.aligned and geometry is not None
        if grid is not None and grid != self.grid:
            z = grid_pool(full_precision(maps), grid)
            if self.projector is not None:
                z = self.projector(z)
        elif not aligned:
            return None
        if aligned and z.shape[-1] > 1:
            assert geometry is not None
            earlier, later = z.chunk(2)
            resampled, mask = resample_at(earlier, *geometry.chunk(2))
            return resampled.flatten(1), later.flatten(1), mask.expand_as(later).flatten(1)
        return tuple(z.flatten(1).chunk(2))


def resample_at(earlier: Tensor, theta_earlier: Tensor, theta_later: Tensor) -> tuple[Tensor, Tensor]:
    """``earlier`` (B, C, s, s) resampled at the image places of the later view's grid positions: bilinear, in
    normalised coordinates (``augment.crop_theta``'s affine maps (B, 2, 3), view to image); and the mask
    (B, 1, s, s) of positions that the earlier view sees too (1) or not (0)."""
    side = earlier.shape[-1]
    centres = (torch.arange(side, device=earlier.device, dtype=earlier.dtype) * 2 + 1) / side - 1
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    later_xy = torch.stack((x, y), -1).view(1, side, side, 2, 1)  # (1, s, s, 2, 1)
    later, first = theta_later.to(earlier.dtype)[:, None, None], theta_earlier.to(earlier.dtype)[:, None, None]
    image_xy = (later[..., :2] @ later_xy).squeeze(-1) + later[..., 2]  # (B, s, s, 2); the maps are diagonal
    earlier_xy = (image_xy - first[..., 2]) / torch.diagonal(first[..., :2], dim1=-2, dim2=-1)
    resampled = F.grid_sample(earlier, earlier_xy, mode="bilinear", padding_mode="border", align_corners=False)
    mask = (earlier_xy.abs() <= 1).all(-1).to(earlier.dtype)[:, None]
    return resampled, mask


# ---------------------------------------------------------------- BYOL

def byol_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """Symmetric BYOL loss of (2B, D) predictions and targets: ``sum over both directions of
    2 - 2 cos(p_view1, t_view2)``, batch mean; 0 for perfect predictions, 4 for orthogonal ones."""
    p_a, p_b = F.normalize(full_precision(predictions), dim=1).chunk(2)
    t_a, t_b = F.normalize(full_precision(targets.detach()), dim=1).chunk(2)
    return (2 - 2 * (p_a * t_b).sum(1)).mean() + (2 - 2 * (p_b * t_a).sum(1)).mean()


def byol_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """Target momentum from ``base`` at step 0 to 1 at the last step, on a cosine (BYOL, solo-learn)."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2


@dataclass(frozen=True)
class BYOLOptions:
    momentum: float = option(0.99, "BYOL: initial target momentum, raised to 1 on a cosine schedule")
    hidden: int = option(4096, "BYOL: hidden width of the projector and predictor MLPs")
    out: int = option(256, "BYOL: width of the projection")

    def __post_init__(self) -> None:
        require(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        require(self.hidden >= 1 and self.out >= 1, "--hidden and --out must be positive")


@register
class BYOLHead(LayerHead):
    """BYOL on one block's output pooled to the loss grid (solo-learn's CIFAR sizes by default): a projector
    and a predictor MLP; the target is an exponential moving average of the network and the projector
    (``DeepModel.update_target``); symmetric loss. On a grid, every position of one view predicts the
    same position of the other."""

    name = "byol"
    summary = ("BYOL: a projector and predictor MLP per block predict an EMA target network's projection of the "
               "other view (cosine loss), no negatives")
    Options = BYOLOptions
    terms = {"byol": Term("BYOL loss: 2 - 2 cos(prediction, target), summed over both directions (0 to 4)", "falls")}
    uses_target = True
    options: BYOLOptions

    def __init__(self, channels: int, options: BYOLOptions | None = None, grid: int = 1):
        super().__init__(channels, options, grid)
        self.projector = mlp(channels, self.options.hidden, self.options.out)
        self.predictor = mlp(self.options.out, self.options.hidden, self.options.out)

    def _rows(self, maps: Tensor) -> Tensor:
        """(2 * B * g * g, C): both views' samples, the first view's first."""
        return self.samples(maps).flatten(0, 1)

    def forward(self, maps: Tensor, target: Tensor | None = None, geometry: Tensor | None = None
                ) -> tuple[Tensor, Terms]:
        assert target is not None, "BYOLHead needs the target network's embedding"
        loss = byol_loss(self.predictor(self.projector(self._rows(maps))), target)
        return loss, {"byol": loss.detach()}

    def target_embedding(self, maps: Tensor) -> Tensor:
        return self.projector(self._rows(maps))

    @classmethod
    def after_step(cls, model: DeepModel, step: int, total_steps: int) -> None:
        head = next(iter(model.heads.values()))
        assert isinstance(head, BYOLHead)
        model.update_target(byol_momentum(step, total_steps, head.options.momentum))


# ---------------------------------------------------------------- SimCLR

def info_nce_loss(z: Tensor, temperature: float, groups: int = 1) -> Tensor:
    """NT-Xent of (2B, D) embeddings whose rows i and i + B are positives; the other 2B - 2 rows
    of the (global) batch are the negatives. Identical views of mutually orthogonal samples give
    ``log(1 + (2B - 2) exp(-1 / temperature))``. With ``groups`` > 1 the rows of each view are
    ``groups`` interleaved sets (row r belongs to set r % groups), and each set is its own InfoNCE
    (negatives only within the set), averaged."""
    z_a, z_b = F.normalize(full_precision(z), dim=1).chunk(2)
    z_a, z_b = gather_batch(z_a), gather_batch(z_b)
    dim = z_a.shape[1]
    z = torch.stack((z_a.reshape(-1, groups, dim), z_b.reshape(-1, groups, dim))).permute(2, 0, 1, 3)
    z = z.reshape(groups, -1, dim)  # (groups, 2n, D): a set's first view, then its second
    n = z.shape[1] // 2
    logits = z @ z.mT / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -math.inf)
    positives = torch.cat((torch.arange(n, 2 * n), torch.arange(n))).to(z.device).repeat(groups)
    return F.cross_entropy(logits.reshape(-1, 2 * n), positives)


_info_nce_uncompiled: Callable[..., Tensor] | None = None


def info_nce_outside_graphs() -> Callable[..., Tensor]:
    """``info_nce_loss`` kept out of compiled graphs (triton 3.6 failed to compile its fused kernel on an
    H100; it is small). Wrapped at first use, not at import: importing dynamo takes about a second."""
    global _info_nce_uncompiled
    if _info_nce_uncompiled is None:
        _info_nce_uncompiled = torch.compiler.disable(info_nce_loss)
    return _info_nce_uncompiled


@dataclass(frozen=True)
class SimCLROptions:
    temperature: float = option(0.2, "SimCLR: InfoNCE temperature")
    projector_hidden: int = option(2048, "SimCLR: hidden width of the projector MLP")
    projector_out: int = option(128, "SimCLR: width of the projection")

    def __post_init__(self) -> None:
        require(self.temperature > 0, f"--temperature must be positive, got {self.temperature}")
        require(self.projector_hidden >= 1 and self.projector_out >= 1,
                "--projector-hidden and --projector-out must be positive")


@register
class SimCLRHead(LayerHead):
    """SimCLR on one block's output pooled to the loss grid: a projector MLP and InfoNCE with a temperature
    over the global batch. On a grid, a position's positive is the same position of the other view and its
    negatives are that position in the other images."""

    name = "simclr"
    summary = "SimCLR: a projector MLP per block and InfoNCE against the other images of the batch (negatives)"
    Options = SimCLROptions
    terms = {"infonce": Term("InfoNCE: cross-entropy of finding the other view among the batch", "falls")}
    options: SimCLROptions

    def __init__(self, channels: int, options: SimCLROptions | None = None, grid: int = 1):
        super().__init__(channels, options, grid)
        self.projector = mlp(channels, self.options.projector_hidden, self.options.projector_out)

    def forward(self, maps: Tensor, target: Tensor | None = None, geometry: Tensor | None = None
                ) -> tuple[Tensor, Terms]:
        samples = self.samples(maps)  # (2, B * positions, C)
        positions = samples.shape[1] * 2 // maps.shape[0]
        loss = info_nce_outside_graphs()(self.projector(samples.flatten(0, 1)), self.options.temperature, positions)
        return loss, {"infonce": loss.detach()}


# ---------------------------------------------------------------- the model

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
        self.objective = type(next(iter(heads.values())))
        self.target: nn.ModuleDict | None = None
        if self.objective.uses_target:
            self.target = copy.deepcopy(nn.ModuleDict({"net": net, "heads": self.heads})).requires_grad_(False)

    def forward(self, views: Tensor, geometry: Tensor | None = None) -> tuple[Tensor, dict[int, Terms]]:
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
            loss, terms[int(key)] = head(maps[block], target, geometry)
            losses.append(loss)
        # A plain sum, not zeros + losses: under torch.compile (2.13) a zero-initialised total beside
        # detached terms lost its gradient.
        return sum(losses[1:], losses[0]), terms

    def after_step(self, step: int, total_steps: int) -> None:
        """The objective's work after optimiser step ``step`` (``LayerHead.after_step``)."""
        self.objective.after_step(self, step, total_steps)

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


def per_block(values: Sequence[int], blocks: int, flag: str = "--loss-grid") -> list[int]:
    """One value per block: a single value applies to every block."""
    values = list(values)
    if len(values) == 1:
        return values * blocks
    if len(values) != blocks:
        raise LPLError(f"{flag} takes one value or one per block ({blocks}), got {len(values)}")
    return values


def build_model(objective: str, net: ConvNet, local: bool = True, options: Any = None,
                loss_grid: Sequence[int] = (1,)) -> DeepModel:
    """The network with heads of ``objective`` (``options``: its ``Options``, a dict of them, or None for the
    defaults): on every block when ``local``, else on the last; ``loss_grid``: one value or one per block."""
    cls = head_class(objective)
    if not isinstance(options, cls.Options):
        options = head_options(objective, options)
    grids = per_block(loss_grid, len(net.channels))
    blocks = range(1, len(net.channels) + 1) if local else [len(net.channels)]
    return DeepModel(net, {b: cls(net.channels[b - 1], options, grids[b - 1]) for b in blocks}, local)


def options_dict(options: Any) -> dict[str, Any]:
    """A head's options as a plain dict (for configs and run records)."""
    return asdict(options)
