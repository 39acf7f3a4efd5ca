"""Load what a run trained and compute its features, from the run record and safetensors alone.

    import lpl
    net = lpl.load("outputs")                      # the trained network, eval mode, on the CPU
    feats = lpl.features(net, images)              # one (N, C_k) tensor per block, as the exports hold them
    feats = lpl.features(net, images, grid=4)      # each block average-pooled to at most 4 x 4, flattened

``load`` reads only JSON and safetensors files, so loading a network somebody shared never runs
code from it. Images are (N, C, H, W), uint8 in [0, 255] or float in [0, 1], scaled as in training
(the record's ``network.input.scaling``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpl.convnet import ConvNet, NetworkSpec
from lpl.data.images import to_unit_float
from lpl.layout import TAGS, RunLayout, load_tensors, read_record, run_records
from lpl.small_byol import Backbone
from lpl.validation import LPLError


def load(run_dir: str | Path, name: str | None = None, stage: str = "after",
         device: torch.device | str = "cpu") -> nn.Module:
    """The network of run ``name`` (default: the folder's only run) in ``run_dir``, trained (``stage='after'``)
    or at initialisation (``'before'``), in eval mode. Its run record is ``model.record``."""
    if stage not in TAGS:
        raise LPLError(f"stage must be one of {', '.join(TAGS)}, got {stage!r}")
    records = run_records(run_dir)
    if name is None:
        if len(records) > 1:
            raise LPLError(f"{run_dir} holds several runs ({', '.join(records)}); pass name=")
        name = next(iter(records))
    if name not in records:
        raise LPLError(f"{run_dir} holds no run {name!r}; it holds {', '.join(records)}")
    record = read_record(records[name])
    model = build_network(record["network"])
    layout = RunLayout(Path(run_dir), name, "")
    state = load_tensors(layout.network_file(stage))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise LPLError(f"{layout.network_file(stage)} does not fit the network its record describes "
                       f"({str(exc).splitlines()[0]}); was the file replaced?") from None
    model.record = record  # type: ignore[assignment]
    return model.to(device).eval()


def build_network(description: dict[str, Any]) -> nn.Module:
    """An untrained network of the kind a run record describes."""
    kind = description.get("kind")
    if kind == "conv":
        return ConvNet(NetworkSpec(tuple(description["channels"]), tuple(description["kernel_sizes"]),
                                   tuple(description["pool_after"]), description["bias"], description["in_channels"]))
    if kind == "dense":
        from lpl.layers import DenseLPLStack

        return DenseLPLStack(description["dims"], seed=0)
    if kind == "small-byol":  # lpl train-byol: the online backbone, whose L2-normalised output is exported
        return Backbone(description["input"]["channels"])
    raise LPLError(f"a run record describes a network of kind {kind!r}, which lpl.load does not know")


@torch.no_grad()
def features(model: nn.Module, images: Tensor, layers: Sequence[int] | None = None, grid: int = 1,
             batch_size: int = 1024, on_device: bool = False,
             memory_format: torch.memory_format = torch.contiguous_format) -> list[Tensor]:
    """Features of ``images`` (N, C, H, W) for every layer (or the 1-based ``layers``), float32 on the CPU
    (``on_device``: on the model's device), computed ``batch_size`` images at a time.

    Conv networks: each block's output average-pooled to at most ``grid`` x ``grid`` positions and flattened
    (``grid=1``: global pooling, as the exports and the paper's readout); dense stacks: each layer's output;
    the seed's BYOL (``lpl train-byol``): its backbone's L2-normalised output, one layer. ``memory_format``: that
    of the images a conv network sees (the deep trainer's channels-last on a GPU).
    """
    if images.ndim != 4:
        raise LPLError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    device = next(model.parameters()).device
    chunks = []
    for part in images.split(batch_size):
        x = to_unit_float(part.to(device))
        if isinstance(model, ConvNet):
            out = model.pooled_features(x.contiguous(memory_format=memory_format), grid)
        elif isinstance(model, Backbone):
            out = [F.normalize(model(x), dim=1)]
        else:
            out = model.representations(x.flatten(1))  # type: ignore[operator]
        chunks.append([f.float() if on_device else f.float().cpu() for f in out])
    every = [torch.cat(layer) for layer in zip(*chunks)]
    if layers is None:
        return every
    bad = [k for k in layers if not 1 <= k <= len(every)]
    if bad:
        raise LPLError(f"layers {bad} do not exist; this network has layers 1..{len(every)}")
    return [every[k - 1] for k in layers]
