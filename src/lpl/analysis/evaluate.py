"""Read the files training writes and evaluate every representation in them, with baselines."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lpl.analysis import metrics
from lpl.analysis.probes import probe_scores
from lpl.data import load_dataset
from lpl.data.images import ImageSet, tensor_digest
from lpl.io import atomic_write_json, cache_dir, load_torch
from lpl.layout import before_after, run_config, run_stem
from lpl.validation import LPLError

REPRESENTATION_KEYS = ("activations", "embeddings")
# Part of every baseline cache key: bump it when a baseline's figures change meaning or method (3: keyed by
# a hash of all inputs instead of a sample).
BASELINE_CACHE_VERSION = 3


@dataclass
class Representations:
    """The representations of one file: name -> (N, M) tensor, with labels (N,)."""

    path: Path
    layers: dict[str, Tensor]
    labels: Tensor


def _layer_name(key: str) -> str:
    return key.removesuffix("_activations")


def load_representations(path: str | Path) -> Representations:
    """Load and check an activation/embedding file (any schema the training scripts write)."""
    path = Path(path)
    blob = load_torch(path, "representation file")
    if not isinstance(blob, dict) or "labels" not in blob:
        raise LPLError(f"{path} is not a representation file: expected a dict with 'labels' and "
                       f"'activations', 'embeddings' or 'layer<k>_activations'")
    layers = {_layer_name(k): v for k, v in blob.items() if k in REPRESENTATION_KEYS or k.endswith("_activations")}
    if not layers:
        raise LPLError(f"{path} holds {sorted(blob)}: no 'activations', 'embeddings' or 'layer<k>_activations'")
    labels = blob["labels"]
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.dtype not in (torch.int64, torch.int32):
        raise LPLError(f"'labels' in {path} must be an integer tensor (N,)")
    for name, x in layers.items():
        if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
            raise LPLError(f"'{name}' in {path} must be a float tensor (N, M)")
        if len(x) != len(labels):
            raise LPLError(f"'{name}' in {path} has {len(x)} rows but there are {len(labels)} labels")
        if not torch.isfinite(x).all():
            raise LPLError(f"'{name}' in {path} contains NaN or Inf: the run that wrote it diverged")
    return Representations(path, {k: v.float() for k, v in layers.items()}, labels.long())


def inputs_of(config: dict[str, Any] | None) -> ImageSet | None:
    """The test images a run exported, when its config is known and its data can be loaded."""
    if config is None or "dataset" not in config:
        return None
    try:
        data = load_dataset(config["dataset"], False, config.get("data_dir"), download=False,
                            image_size=config.get("image_size"))
    except LPLError:
        return None
    return data.head(config.get("num_export", len(data)))


def consecutive_pairs(count: int, frames: int) -> tuple[Tensor, Tensor]:
    """Indices (i, i + 1) of consecutive frames among the first ``count`` samples."""
    first = torch.arange(count - 1)
    first = first[(first % frames) != frames - 1]
    return first, first + 1


@dataclass
class Evaluation:
    """Every figure for one representation."""

    name: str
    values: dict[str, float] = field(default_factory=dict)


def evaluate(name: str, x: Tensor, labels: Tensor, frames: int = 1, probes: bool = True,
             cov: Tensor | None = None) -> Evaluation:
    """Statistics, probes and invariance of one representation x (N, M); ``cov``: its covariance if known."""
    normalised = bool(torch.allclose(x.norm(dim=1), torch.ones(len(x)), atol=1e-4))
    cov = metrics.covariance(x) if cov is None else cov
    values: dict[str, float] = dict(metrics.unit_statistics(x, normalised, cov))
    if probes:
        values.update(probe_scores(x, labels, cov=cov))
    values.update(metrics.class_similarity(x, labels))
    if frames > 1:
        first, second = consecutive_pairs(len(x), frames)
        values.update(metrics.pair_similarity(x[first], x[second]))
    return Evaluation(name, values)


def baselines(inputs: ImageSet, width: int, probes: bool = True) -> list[Evaluation]:
    """Raw pixels, a random squashed projection of ``width`` units, and PCA to ``width``."""
    pixels = inputs.flat_float()
    labels = inputs.labels
    cov = metrics.covariance(pixels)  # shared by the pixels' statistics and PCA
    return [
        evaluate("pixels", pixels, labels, inputs.frames, probes, cov),
        evaluate(f"random{width}", metrics.random_projection(pixels, width), labels, inputs.frames, probes),
        evaluate(f"pca{width}", metrics.pca_projection(pixels, width, cov), labels, inputs.frames, probes),
    ]


def baseline_cache_file(config: dict[str, Any], inputs: ImageSet, width: int, probes: bool) -> Path:
    """Where the baselines of these inputs live on disk: keyed by what they are computed from, a hash of
    every input image and label (``tensor_digest``), ``frames``, ``width`` and ``probes``, so inputs that
    change in any pixel (a rebuilt image cache, an edited data set) never reuse a stale entry."""
    key = {"version": BASELINE_CACHE_VERSION, "width": width, "probes": probes, "frames": inputs.frames,
           "content": tensor_digest(inputs.labels, inputs.images)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "baselines" / f"{Path(str(config['dataset'])).stem}-{len(inputs)}-{width}-{digest}.json"


def cached_baselines(config: dict[str, Any], inputs: ImageSet, width: int, probes: bool = True) -> list[Evaluation]:
    """``baselines``, computed once per data set and kept in ``cache_dir()`` (an unreadable entry is redone)."""
    path = baseline_cache_file(config, inputs, width, probes)
    try:
        saved = json.loads(path.read_text())
        rows = [Evaluation(e["name"], dict(e["values"])) for e in saved]
        numbers = all(isinstance(v, int | float) for r in rows for v in r.values.values())
        if numbers and [r.name for r in rows] == ["pixels", f"random{width}", f"pca{width}"]:
            return rows
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    rows = baselines(inputs, width, probes)
    try:
        atomic_write_json([asdict(r) for r in rows], path)
    except OSError:
        pass  # a read-only cache only costs the next run the time again
    return rows


def analyze_file(path: str | Path, with_baselines: bool = True, probes: bool = True,
                 cache: dict[tuple, list[Evaluation]] | None = None) -> list[Evaluation]:
    """Evaluate every representation of a file, before and after training when both exist.

    Baselines are computed on the run's own exported test images, once per data set (kept on disk,
    see ``cached_baselines``); ``cache`` also shares them in memory between files of runs on the same inputs.
    """
    files = before_after(path)
    runs = {tag: load_representations(p) for tag, p in files.items()}
    stem = run_stem(path)
    config = run_config(next(iter(files.values())))
    inputs = inputs_of(config)
    frames = inputs.frames if inputs is not None else 1
    results = [evaluate(f"{stem}/{layer}/{tag}" if len(run.layers) > 1 else f"{stem}/{tag}", x, run.labels,
                        frames, probes)
               for tag, run in runs.items() for layer, x in run.layers.items()]
    if with_baselines and inputs is not None and config is not None:
        reference = next(iter(runs.values()))
        if len(inputs) == len(reference.labels) and torch.equal(inputs.labels, reference.labels):
            width = next(iter(reference.layers.values())).shape[1]
            key = (config["dataset"], config.get("data_dir"), len(inputs), width, probes)
            cache = {} if cache is None else cache
            if key not in cache:
                cache[key] = cached_baselines(config, inputs, width, probes)
            results += [Evaluation(f"{stem}/baseline/{b.name}", b.values) for b in cache[key]]
    return results
