"""Read the exports training writes and evaluate every representation in them, beside baselines: statistics,
probes, similarity by class and, for exports of sequences (``sequence``, ``frame``), view invariance."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lpl.analysis import invariance, metrics
from lpl.analysis.probes import probe_scores, probe_split
from lpl.data import load_dataset
from lpl.data.images import ImageSet, tensor_digest
from lpl.io import atomic_write_json, cache_dir, load_torch
from lpl.layout import before_after, run_stem
from lpl.validation import LPLError

REPRESENTATION_KEYS = ("activations", "embeddings")
# Part of every baseline cache key: bump it when a baseline's figures change meaning or method (4: kNN only
# below the number of fitting images, baselines of every layer width, invariance measures).
BASELINE_CACHE_VERSION = 4
KNN = (20, 200)
GAPS = (1, 2, 4)


@dataclass(frozen=True)
class Views:
    """Settings of the invariance measures: frame gaps, rings, and a regular expression whose first group,
    searched in a sequence's name, names its object (``invariance.view_identification``'s ``objects``)."""

    gaps: tuple[int, ...] = GAPS
    cyclic: bool = False
    objects: str | None = None


@dataclass
class Representations:
    """One file's representations (name -> (N, M)) with labels (N,) and, for sequences, each row's sequence id
    and frame index and the sequences' names."""

    path: Path
    layers: dict[str, Tensor]
    labels: Tensor
    sequence: Tensor | None = None
    frame: Tensor | None = None
    names: list[str] = field(default_factory=list)


def load_representations(path: str | Path) -> Representations:
    """Load and check an activation/embedding file (any schema the training scripts write)."""
    path = Path(path)
    blob = load_torch(path, "representation file")
    if not isinstance(blob, dict) or "labels" not in blob:
        raise LPLError(f"{path} is not a representation file: expected a dict with 'labels' and "
                       f"'activations', 'embeddings' or 'layer<k>_activations'")
    layers = {k.removesuffix("_activations"): v for k, v in blob.items()
              if k in REPRESENTATION_KEYS or k.endswith("_activations")}
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
    return Representations(path, {k: v.float() for k, v in layers.items()}, labels.long(), blob.get("sequence"),
                           blob.get("frame"), list(blob.get("sequence_names", [])))


@dataclass(frozen=True)
class Sequences:
    """The views of an export: each row's sequence id, frame index and object id (None: one per sequence)."""

    sequence: Tensor
    frame: Tensor
    objects: Tensor | None
    views: Views


def sequences_of(reps: Representations, views: Views) -> Sequences | None:
    """The views of ``reps`` (None without sequences), grouped into objects by ``views.objects``."""
    if reps.sequence is None or reps.frame is None:
        return None
    objects = None
    if views.objects is not None:
        pattern = re.compile(views.objects)
        found = [pattern.search(name) for name in reps.names]
        if not reps.names or pattern.groups < 1:
            raise LPLError(f"--objects {views.objects!r} " + ("has no group; write the object's part in parentheses, "
                           "e.g. '(.*)_elev'" if reps.names else f"has nothing to match: {reps.path} does not name "
                           "its sequences; retrain with this version or leave out --objects"))
        if (missing := next((n for n, m in zip(reps.names, found) if m is None), None)) is not None:
            raise LPLError(f"--objects {views.objects!r} does not match the sequence name {missing!r}")
        ids: dict[str, int] = {}
        objects = torch.tensor([ids.setdefault(m.group(1), len(ids)) for m in found if m])[reps.sequence.long()]
    return Sequences(reps.sequence.long(), reps.frame.long(), objects, views)


def invariance_values(x: Tensor, s: Sequences) -> dict[str, float]:
    """View identification at each gap that fits (accuracy, chance), the similarity of two views of a sequence
    per frame distance and across sequences, the mean unit selectivity (to objects) and view invariance."""
    found = invariance.view_identification(x, s.sequence, s.frame, s.views.gaps, cyclic=s.views.cyclic,
                                           objects=s.objects)
    out = {f"view_{k}_{g}": r[key] for g, r in found.items() if r["queries"]
           for k, key in (("identification", "accuracy"), ("chance", "chance"))}
    curve = invariance.similarity_by_distance(x, s.sequence, s.frame, cyclic=s.views.cyclic)
    out |= {f"similarity_at_{d}": v for d, v in zip(curve.distance, curve.similarity) if not math.isnan(v)}
    groups = s.sequence if s.objects is None else s.objects
    return out | {"similarity_across": curve.across,
                  "unit_selectivity": float(invariance.unit_selectivity(x, groups).nanmean()),
                  "unit_invariance": float(invariance.unit_invariance(x, s.sequence).nanmean())}


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


def evaluate(name: str, x: Tensor, labels: Tensor, frames: int = 1, cov: Tensor | None = None,
             sequences: Sequences | None = None) -> Evaluation:
    """Statistics, probes, similarity and invariance of one representation x (N, M); ``cov``: its covariance if
    known. kNN-k only where k is below the number of fitting images (else every vote is the same)."""
    normalised = bool(torch.allclose(x.norm(dim=1), torch.ones(len(x)), atol=1e-4))
    cov = metrics.covariance(x) if cov is None else cov
    fit = len(probe_split(len(x))[0])
    values: dict[str, float] = {"samples": len(x), "classes": len(torch.unique(labels)),
                                **metrics.unit_statistics(x, normalised, cov), **metrics.class_similarity(x, labels),
                                **{k: v for k, v in probe_scores(x, labels, KNN, cov=cov).items()
                                   if not k.startswith("knn") or int(k[3:]) < fit}}
    if frames > 1:
        first, second = consecutive_pairs(len(x), frames)
        values.update(metrics.pair_similarity(x[first], x[second]))
    return Evaluation(name, values | (invariance_values(x, sequences) if sequences else {}))


def baseline_names(inputs: ImageSet, widths: list[int]) -> list[str]:
    """Pixels, and a random projection and PCA of every width (PCA up to the images' number and width)."""
    rank = min(len(inputs), inputs.flat_float(1).shape[1])
    return ["pixels", *(f"{kind}{w}" for w in widths for kind in ("random", "pca") if kind == "random" or w <= rank)]


def baselines(inputs: ImageSet, widths: list[int], sequences: Sequences | None = None) -> list[Evaluation]:
    """``baseline_names``: raw pixels, random squashed projections and PCA of each of ``widths``."""
    pixels = inputs.flat_float()
    cov = metrics.covariance(pixels)  # shared by the pixels' statistics and PCA
    out = [evaluate("pixels", pixels, inputs.labels, inputs.frames, cov, sequences)]
    for name in baseline_names(inputs, widths)[1:]:
        width = int(name.removeprefix("random").removeprefix("pca"))
        x = metrics.random_projection(pixels, width) if name.startswith("random") else \
            metrics.pca_projection(pixels, width, cov)
        out.append(evaluate(name, x, inputs.labels, inputs.frames, sequences=sequences))
    return out


def baseline_cache_file(config: dict[str, Any], inputs: ImageSet, widths: list[int],
                        sequences: Sequences | None = None) -> Path:
    """Where the baselines of these inputs live on disk, keyed by all they are computed from (every image and
    label, ``frames``, ``widths``, the sequences and their settings): changed inputs never reuse a stale entry."""
    views = None if sequences is None else [asdict(sequences.views), tensor_digest(
        sequences.sequence, sequences.frame, *([] if sequences.objects is None else [sequences.objects]))]
    key = {"version": BASELINE_CACHE_VERSION, "widths": widths, "frames": inputs.frames,
           "content": tensor_digest(inputs.labels, inputs.images), "views": views}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "baselines" / (f"{Path(str(config['dataset'])).stem}-{len(inputs)}-"
                                        f"{'-'.join(map(str, widths))}-{digest}.json")


def cached_baselines(config: dict[str, Any], inputs: ImageSet, widths: list[int],
                     sequences: Sequences | None = None) -> list[Evaluation]:
    """``baselines``, computed once per data set and kept in ``cache_dir()`` (an unreadable entry is redone)."""
    path = baseline_cache_file(config, inputs, widths, sequences)
    try:
        rows = [Evaluation(e["name"], dict(e["values"])) for e in json.loads(path.read_text())]
        if all(isinstance(v, int | float) for r in rows for v in r.values.values()) and \
                [r.name for r in rows] == baseline_names(inputs, widths):
            return rows
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    rows = baselines(inputs, widths, sequences)
    try:
        atomic_write_json([asdict(r) for r in rows], path)
    except OSError:
        pass  # a read-only cache only costs the next run the time again
    return rows


def analyze_file(path: str | Path, config: dict[str, Any] | None = None, with_baselines: bool = True,
                 views: Views = Views(), cache: dict[tuple, list[Evaluation]] | None = None) -> list[Evaluation]:
    """Evaluate every representation of a file, before and after training, and the baselines on the run's own
    exported test images (``config`` says which; computed once per data set: ``cached_baselines``, ``cache``)."""
    runs = {tag: load_representations(p) for tag, p in before_after(path).items()}
    stem, reference = run_stem(path), next(iter(runs.values()))
    sequences, inputs = sequences_of(reference, views), inputs_of(config)
    results = [evaluate(f"{stem}/{layer}/{tag}" if len(run.layers) > 1 else f"{stem}/{tag}", x, run.labels,
                        inputs.frames if inputs is not None else 1, sequences=sequences)
               for tag, run in runs.items() for layer, x in run.layers.items()]
    if with_baselines and inputs is not None and config is not None and len(inputs) == len(reference.labels) \
            and torch.equal(inputs.labels, reference.labels):
        widths = sorted({x.shape[1] for x in reference.layers.values()})
        key = (config["dataset"], config.get("data_dir"), len(inputs), tuple(widths), views)
        cache = {} if cache is None else cache
        if key not in cache:
            cache[key] = cached_baselines(config, inputs, widths, sequences)
        results += [Evaluation(f"{stem}/baseline/{b.name}", b.values) for b in cache[key]]
    return results
