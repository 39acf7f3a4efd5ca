"""Read the files training writes and evaluate every representation in them, with baselines: statistics,
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
    """Settings of the invariance measures: the frame gaps of view identification, whether sequences are rings
    (``cyclic``) and ``objects``, a regular expression whose first group, searched in a sequence's name, names
    its object (sequences of one object are then neither targets nor distractors of each other)."""

    gaps: tuple[int, ...] = GAPS
    cyclic: bool = False
    objects: str | None = None


@dataclass
class Representations:
    """The representations of one file: name -> (N, M) tensor, with labels (N,) and, for sequences, each row's
    sequence id and frame index (N,) and the sequences' names."""

    path: Path
    layers: dict[str, Tensor]
    labels: Tensor
    sequence: Tensor | None = None
    frame: Tensor | None = None
    names: list[str] = field(default_factory=list)


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
    return Representations(path, {k: v.float() for k, v in layers.items()}, labels.long(), blob.get("sequence"),
                           blob.get("frame"), list(blob.get("sequence_names", [])))


@dataclass(frozen=True)
class Sequences:
    """The views of an export: each row's sequence id, frame index and object id (None: one per sequence)."""

    sequence: Tensor
    frame: Tensor
    objects: Tensor | None
    views: Views


def sequences_of(reps: Representations, views: Views, asked: bool = False) -> Sequences | None:
    """The sequences of ``reps`` for the invariance measures, None when it has none; ``asked``: a measure was
    asked for, so an export without sequences is an error. ``views.objects`` groups them by object name."""
    if reps.sequence is None or reps.frame is None:
        if asked:
            raise LPLError(f"{reps.path} has no sequences (no 'sequence' and 'frame' keys), so view invariance "
                           f"cannot be measured; export a data set of sequences, or leave out --cyclic, --objects "
                           f"and --gaps")
        return None
    objects = None
    if views.objects is not None:
        if not reps.names:
            raise LPLError(f"{reps.path} does not name its sequences ('sequence_names'), so --objects has nothing to "
                           f"match; retrain with this version or leave out --objects")
        pattern = re.compile(views.objects)
        if pattern.groups < 1:
            raise LPLError(f"--objects {views.objects!r} has no group; write the object's part in parentheses, "
                           f"e.g. '(.*)_elev'")
        found = [pattern.search(name) for name in reps.names]
        if (missing := next((n for n, m in zip(reps.names, found) if m is None), None)) is not None:
            raise LPLError(f"--objects {views.objects!r} does not match the sequence name {missing!r}")
        ids: dict[str, int] = {}
        objects = torch.tensor([ids.setdefault(m.group(1), len(ids)) for m in found if m])[reps.sequence.long()]
    return Sequences(reps.sequence.long(), reps.frame.long(), objects, views)


def invariance_values(x: Tensor, s: Sequences) -> dict[str, float]:
    """View identification at each gap that fits (accuracy and chance), the similarity of two views of one
    sequence per frame distance and across sequences, and the mean unit selectivity (to objects) and view
    invariance (``lpl.analysis.invariance``)."""
    out: dict[str, float] = {}
    found = invariance.view_identification(x, s.sequence, s.frame, s.views.gaps, cyclic=s.views.cyclic,
                                           objects=s.objects)
    for gap, result in found.items():
        if result["queries"]:
            out |= {f"view_identification_{gap}": result["accuracy"], f"view_chance_{gap}": result["chance"]}
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


def evaluate(name: str, x: Tensor, labels: Tensor, frames: int = 1, probes: bool = True,
             cov: Tensor | None = None, sequences: Sequences | None = None) -> Evaluation:
    """Statistics, probes, similarity and invariance of one representation x (N, M); ``cov``: its covariance if
    known. kNN-k is left out unless k is below the number of fitting images (else every vote is the same)."""
    normalised = bool(torch.allclose(x.norm(dim=1), torch.ones(len(x)), atol=1e-4))
    cov = metrics.covariance(x) if cov is None else cov
    values: dict[str, float] = {"samples": len(x), "classes": len(torch.unique(labels)),
                                **metrics.unit_statistics(x, normalised, cov)}
    if probes:
        fit = len(probe_split(len(x))[0])
        values.update({k: v for k, v in probe_scores(x, labels, KNN, cov=cov).items()
                       if not k.startswith("knn") or int(k[3:]) < fit})
    values.update(metrics.class_similarity(x, labels))
    if frames > 1:
        first, second = consecutive_pairs(len(x), frames)
        values.update(metrics.pair_similarity(x[first], x[second]))
    if sequences is not None:
        values.update(invariance_values(x, sequences))
    return Evaluation(name, values)


def baseline_names(inputs: ImageSet, widths: list[int]) -> list[str]:
    """Pixels, and a random projection and PCA of every width (PCA only up to its rank: the images' number
    and width)."""
    rank = min(len(inputs), inputs.flat_float(1).shape[1])
    return ["pixels", *(f"{kind}{w}" for w in widths for kind in ("random", "pca") if kind == "random" or w <= rank)]


def baselines(inputs: ImageSet, widths: list[int], probes: bool = True,
              sequences: Sequences | None = None) -> list[Evaluation]:
    """``baseline_names``: raw pixels, random squashed projections and PCA of each of ``widths``."""
    pixels = inputs.flat_float()
    cov = metrics.covariance(pixels)  # shared by the pixels' statistics and PCA
    out = [evaluate("pixels", pixels, inputs.labels, inputs.frames, probes, cov, sequences)]
    for name in baseline_names(inputs, widths)[1:]:
        width = int(name.removeprefix("random").removeprefix("pca"))
        x = metrics.random_projection(pixels, width) if name.startswith("random") else \
            metrics.pca_projection(pixels, width, cov)
        out.append(evaluate(name, x, inputs.labels, inputs.frames, probes, sequences=sequences))
    return out


def baseline_cache_file(config: dict[str, Any], inputs: ImageSet, widths: list[int], probes: bool,
                        sequences: Sequences | None = None) -> Path:
    """Where the baselines of these inputs live on disk: keyed by what they are computed from, a hash of
    every input image and label (``tensor_digest``), ``frames``, ``widths``, ``probes`` and the sequences with
    their settings, so inputs that change in any pixel (a rebuilt image cache, an edited data set) never reuse
    a stale entry."""
    views = None if sequences is None else [asdict(sequences.views), tensor_digest(
        sequences.sequence, sequences.frame, *([] if sequences.objects is None else [sequences.objects]))]
    key = {"version": BASELINE_CACHE_VERSION, "widths": widths, "probes": probes, "frames": inputs.frames,
           "content": tensor_digest(inputs.labels, inputs.images), "views": views}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "baselines" / (f"{Path(str(config['dataset'])).stem}-{len(inputs)}-"
                                        f"{'-'.join(map(str, widths))}-{digest}.json")


def cached_baselines(config: dict[str, Any], inputs: ImageSet, widths: list[int], probes: bool = True,
                     sequences: Sequences | None = None) -> list[Evaluation]:
    """``baselines``, computed once per data set and kept in ``cache_dir()`` (an unreadable entry is redone)."""
    path = baseline_cache_file(config, inputs, widths, probes, sequences)
    try:
        saved = json.loads(path.read_text())
        rows = [Evaluation(e["name"], dict(e["values"])) for e in saved]
        numbers = all(isinstance(v, int | float) for r in rows for v in r.values.values())
        if numbers and [r.name for r in rows] == baseline_names(inputs, widths):
            return rows
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    rows = baselines(inputs, widths, probes, sequences)
    try:
        atomic_write_json([asdict(r) for r in rows], path)
    except OSError:
        pass  # a read-only cache only costs the next run the time again
    return rows


def analyze_file(path: str | Path, config: dict[str, Any] | None = None, with_baselines: bool = True,
                 probes: bool = True, views: Views = Views(), asked: bool = False,
                 cache: dict[tuple, list[Evaluation]] | None = None) -> list[Evaluation]:
    """Evaluate every representation of a file, before and after training when both exist.

    Baselines are computed on the run's own exported test images (its ``config`` says which), once per data
    set (kept on disk, see ``cached_baselines``); ``cache`` also shares them in memory between files of runs on
    the same inputs. ``views``: the invariance measures' settings, for exports of sequences (``asked``: an
    export without sequences is an error).
    """
    files = before_after(path)
    runs = {tag: load_representations(p) for tag, p in files.items()}
    stem = run_stem(path)
    reference = next(iter(runs.values()))
    sequences = sequences_of(reference, views, asked)
    inputs = inputs_of(config)
    frames = inputs.frames if inputs is not None else 1
    results = [evaluate(f"{stem}/{layer}/{tag}" if len(run.layers) > 1 else f"{stem}/{tag}", x, run.labels,
                        frames, probes, sequences=sequences)
               for tag, run in runs.items() for layer, x in run.layers.items()]
    if with_baselines and inputs is not None and config is not None:
        if len(inputs) == len(reference.labels) and torch.equal(inputs.labels, reference.labels):
            widths = sorted({x.shape[1] for x in reference.layers.values()})
            key = (config["dataset"], config.get("data_dir"), len(inputs), tuple(widths), probes, views)
            cache = {} if cache is None else cache
            if key not in cache:
                cache[key] = cached_baselines(config, inputs, widths, probes, sequences)
            results += [Evaluation(f"{stem}/baseline/{b.name}", b.values) for b in cache[key]]
    return results
