"""Linear readouts of a deep run, at initialisation (random convolutions read out spatially are a strong
baseline) and trained, with two protocols:

- **paper** (the LPL paper's): for each block, a logistic regression (Adam 1e-3, 20 epochs, batch 512,
  standardised frozen features) fitted on the exported globally pooled features of ``--eval-train`` training
  images and scored on those of the test images; the participation ratio and mean activation beside it.
- **spatial** (the layer-local frontier's): every block's output average-pooled to at most g x g positions and
  flattened, alone and all blocks concatenated, the same regression; computed from the saved networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lpl.analysis.metrics import participation_ratio
from lpl.data import load_splits
from lpl.data.images import ImageSet
from lpl.io import atomic_write_json, load_torch
from lpl.layout import RunLayout, layer_key, read_record
from lpl.validation import LPLError

STAGES = {"before": "initialisation", "after": "trained"}


def _seeded_linear(in_features: int, out_features: int, seed: int) -> torch.nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Linear(in_features, out_features)


@torch.no_grad()
def linear_readouts(train_layers: list[torch.Tensor], train_y: torch.Tensor, test_layers: list[torch.Tensor],
                    test_y: torch.Tensor, epochs: int = 20, batch: int = 512, lr: float = 1e-3,
                    seed: int = 0, combined: bool = False) -> list[float]:
    """Test accuracy of a logistic-regression readout of each layer's standardised frozen features (Adam,
    ``epochs`` passes in minibatches of ``batch``), and with ``combined`` one more of all layers concatenated
    (last). All readouts train in one loop on the same minibatches: with their own parameters and a
    per-parameter Adam, that is exactly one readout each, in fewer steps. Features are standardised a minibatch
    at a time, so no copy of them is made (the spatial protocol's are gigabytes)."""
    device = train_layers[0].device
    classes = int(max(train_y.max(), test_y.max())) + 1
    stats = [(x.mean(0), x.std(0) + 1e-6) for x in train_layers]

    def inputs(layers: list[torch.Tensor], index: torch.Tensor | slice) -> list[torch.Tensor]:
        parts = [(x[index] - m) / s for x, (m, s) in zip(layers, stats)]
        return [*parts, torch.cat(parts, 1)] if combined else parts

    widths = [x.shape[1] for x in train_layers]
    widths += [sum(widths)] * combined
    heads = torch.nn.ModuleList(_seeded_linear(width, classes, seed) for width in widths).to(device)
    optimizer = torch.optim.Adam(heads.parameters(), lr=lr)
    generator = torch.Generator(device).manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(train_y), generator=generator, device=device).split(batch):
            with torch.enable_grad():
                batch_x = inputs(train_layers, index)
                loss = sum(F.cross_entropy(head(x), train_y[index]) for head, x in zip(heads, batch_x))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[union-attr]
            optimizer.step()
    correct = torch.zeros(len(heads), device=device)
    for start in range(0, len(test_y), 4096):
        rows = slice(start, start + 4096)
        for k, (head, x) in enumerate(zip(heads, inputs(test_layers, rows))):
            correct[k] += (head(x).argmax(1) == test_y[rows]).sum()
    return (correct / len(test_y)).tolist()


def layer_readouts(export: dict[str, Any], epochs: int = 20, device: torch.device | str = "cpu",
                   seed: int = 0) -> list[dict[str, float]]:
    """Readout, participation ratio and mean activation of every layer of one deep export."""
    if "train" not in export:
        raise LPLError("this export holds no training features for a readout; rerun the deep training "
                       "(it exports them with --eval-train > 0)")
    train = export["train"]
    test = [export[layer_key(i)] for i in range(1, len(train["layers"]) + 1)]
    accuracies = linear_readouts([x.float().to(device) for x in train["layers"]], train["labels"].to(device),
                                 [x.float().to(device) for x in test], export["labels"].to(device), epochs, seed=seed)
    return [{"layer": i, "readout": accuracy, "participation_ratio": participation_ratio(x),
             "mean_activation": float(x.mean())} for i, (accuracy, x) in enumerate(zip(accuracies, test), 1)]


def pixel_readout(train: ImageSet, test: ImageSet, count: int, epochs: int = 20,
                  device: torch.device | str = "cpu") -> float:
    """The same readout on raw pixels of ``count`` training images (the paper's pixel row)."""
    (accuracy,) = linear_readouts([train.flat_float(count).to(device)], train.labels[:count].to(device),
                                  [test.flat_float().to(device)], test.labels.to(device), epochs)
    return accuracy


def spatial_readouts(layout: RunLayout, config: dict[str, Any], grid: int, epochs: int = 20,
                     device: torch.device | str = "cpu") -> dict[str, Any]:
    """The spatial protocol (module docstring) for the network before and after training: per layer and all
    layers concatenated, fitted on ``eval_train`` training images and scored on ``num_export`` test images."""
    from lpl.load import features, load  # lpl.load imports the networks; only this protocol needs them

    train, test = load_splits(config["dataset"], config.get("data_dir"), False, image_size=config.get("image_size"))
    train_count, test_count = min(config["eval_train"], len(train)), min(config["num_export"], len(test))
    out: dict[str, Any] = {"grid": grid}
    for tag, stage in STAGES.items():
        if not layout.network_file(tag).is_file():
            continue
        net = load(layout.root, layout.name, tag, device)
        train_x, test_x = ([x.to(device) for x in features(net, images, grid=grid)]
                           for images in (train.images[:train_count], test.images[:test_count]))
        accuracies = linear_readouts(train_x, train.labels[:train_count].to(device), test_x,
                                     test.labels[:test_count].to(device), epochs, combined=True)  # and all blocks
        widths = [x.shape[1] for x in test_x]
        out[stage] = {"layers": accuracies[:-1], "all": accuracies[-1], "features": [*widths, sum(widths)]}
        del train_x, test_x
    return out


def write_readouts(layout: RunLayout, epochs: int = 20, device: torch.device | str = "cpu", grid: int = 0) -> Path:
    """``logs/<name>_results.json``: per-layer readouts at initialisation and after training, with the paper's
    protocol and, for ``grid`` > 0, the spatial one."""
    record = read_record(layout.record_file)
    results: dict[str, Any] = {"config": record["config"]}
    for tag, stage in STAGES.items():
        path = layout.activation_file(tag)
        if not path.is_file():
            continue
        export = load_torch(path, "export")  # both exports hold the same images and labels
        if int(torch.unique(export["labels"]).numel()) < 2:
            note = "the exported images are of one class: a readout would be trivially right; none fitted"
            return atomic_write_json({"config": record["config"], "note": note}, layout.results_file)
        results[stage] = layer_readouts(export, epochs, device)
        del export
    if grid:
        results["spatial"] = spatial_readouts(layout, record["config"], grid, epochs, device)
    return atomic_write_json(results, layout.results_file)
