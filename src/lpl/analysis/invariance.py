"""Invariance of a representation to the views of one object: identification across views, similarity
against frame distance, and each unit's object selectivity and view invariance.

Inputs: features ``x`` (N, M), ``sequence`` (N,) integer id of each view (one sequence = the views of one
object, for example one camera elevation of an ETH-80 object) and ``frame`` (N,) integer index of each view
within its sequence (``sequence_frames`` computes it for contiguous sequences in frame order). Sequences may
be rings (``cyclic``: turntable views, the last frame neighbours the first); the frame distance of views i, j
of a ring of n views is then ``min(|i - j|, n - |i - j|)``. ``lengths`` (N,) gives the number of frames of
each view's full sequence when some views are missing; by default it is the number of views present.

Cosine similarities are those of the features centred by their mean over all views, as
``metrics.class_similarity`` and the official code's ``compute_cosine_measures`` take them: without
centring, features that are all positive (ReLU units) look similar whatever they encode.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lpl.validation import LPLError

# Query rows per chunk of the similarity matrix: rows * N stays below this many entries (64 MiB in float32).
CHUNK_ENTRIES = 1 << 24


@dataclass(frozen=True)
class _Views:
    """Validated inputs: sequence index 0..S-1, frame and ring length of every view (each (N,) int64)."""

    sequence: Tensor
    frame: Tensor
    length: Tensor
    counts: Tensor  # views of each sequence present, (S,)
    cyclic: bool

    def distance(self, i: Tensor, j: Tensor) -> Tensor:
        """Frame distance of views ``i`` and ``j`` (index tensors of one shape) of the same sequence."""
        d = (self.frame[i] - self.frame[j]).abs()
        return torch.minimum(d, self.length[i] - d) if self.cyclic else d

    @property
    def max_distance(self) -> int:
        """The largest frame distance any two views of one sequence can have."""
        return int((self.length // 2 if self.cyclic else self.length - 1).max())


def sequence_frames(sequence: Tensor) -> Tensor:
    """Frame index (N,) int64 of each view within its sequence, for ``sequence`` (N,) ids whose equal ids are
    contiguous and in frame order (``ImageSet.sequence_ids()``)."""
    index = torch.arange(len(sequence))
    starts = torch.ones(len(sequence), dtype=torch.bool)
    starts[1:] = sequence[1:] != sequence[:-1]
    return index - torch.where(starts, index, 0).cummax(0).values


def _integer(t: object, name: str, n: int) -> Tensor:
    if not isinstance(t, Tensor) or t.shape != (n,) or t.is_floating_point() or t.dtype == torch.bool:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise LPLError(f"{name} must be an integer tensor of shape ({n},), one entry per row of the features; "
                       f"got {shape}")
    return t.long()


def _features(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or len(x) == 0 or not x.is_floating_point():
        shape = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise LPLError(f"features must be a float tensor of shape (N, M) with N > 0, got {shape}")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise LPLError(f"features contain {bad} NaN or Inf values; drop or recompute those views first")
    return x


def _views(x: Tensor, sequence: Tensor, frame: Tensor, lengths: Tensor | None = None, cyclic: bool = False) -> _Views:
    """Check the inputs of every measure here and index the sequences 0..S-1.

    Raises ``LPLError`` when shapes disagree, a frame is negative or beyond its sequence's length, lengths
    differ within a sequence, or no sequence has two views (nothing to compare views of).
    """
    n = len(_features(x))
    _, sequence = torch.unique(_integer(sequence, "sequence", n), return_inverse=True)
    frame = _integer(frame, "frame", n)
    counts = torch.bincount(sequence)
    length = counts[sequence] if lengths is None else _integer(lengths, "lengths", n)
    if int(counts.max()) < 2:
        raise LPLError("every sequence has a single view, so views of one object cannot be compared; pass "
                       "sequence ids that group the views of each object (ImageSet.sequence_ids())")
    if int(frame.min()) < 0:
        raise LPLError(f"frame indices must be >= 0, got {int(frame.min())}")
    if lengths is not None:
        longest = torch.zeros(len(counts), dtype=torch.long).scatter_reduce(0, sequence, length, "amax")
        if bool((longest[sequence] != length).any()):
            raise LPLError("lengths differ within a sequence; give every view its full sequence's number of frames")
    beyond = torch.nonzero(frame >= length).flatten()
    if len(beyond):
        i = int(beyond[0])
        raise LPLError(f"view {i} is frame {int(frame[i])} of a sequence of {int(length[i])} frames; pass "
                       "lengths= with the number of frames of each view's full sequence")
    return _Views(sequence, frame, length, counts, cyclic)


def _unit_rows(x: Tensor) -> Tensor:
    """Rows of x (N, M) centred by the mean row and scaled to unit length (float32): dot products of them are
    the cosine similarities used here (a row equal to the mean stays zero, similar to nothing)."""
    x = x.double()
    return F.normalize(x - x.mean(dim=0), dim=1).float()


def view_identification(x: Tensor, sequence: Tensor, frame: Tensor, gaps: Iterable[int] = (1,),
                        lengths: Tensor | None = None, cyclic: bool = False, objects: Tensor | None = None
                        ) -> dict[int, dict[str, float]]:
    """Identification of the object from views at least G frames away, for every G in ``gaps``.

    For each query view, its most cosine-similar view among all views of the other sequences and the views
    of its own sequence at least G frames away; correct when that neighbour belongs to the query's sequence
    (a tie with another sequence counts as wrong, so a constant representation scores 0). Queries whose
    sequence has no view G or more frames away are left out. Per G: ``accuracy``, ``queries`` (how many
    counted; accuracy and chance are NaN without any) and ``chance``, the mean over those queries of the
    accuracy of a neighbour drawn uniformly from the candidates. A representation that encodes only the view
    scores below chance: its neighbour is the same view of another object. One similarity matrix for all G,
    in chunks of query rows.

    ``objects`` (N,) groups sequences into objects (ETH-80: one object seen from several camera elevations,
    a sequence each): the other sequences of the query's object are then neither targets nor distractors, so
    the task stays "which object is this, from a view G frames away", not "which elevation".
    """
    v = _views(x, sequence, frame, lengths, cyclic)
    gap_list = sorted({int(g) for g in gaps})
    if not gap_list or gap_list[0] < 1:
        raise LPLError(f"gaps must be frame distances >= 1, got {gap_list}")
    if len(v.counts) < 2:
        raise LPLError("view identification needs views of at least two sequences, got one")
    z, n = _unit_rows(x), len(x)
    if objects is not None:
        objects = _integer(objects, "objects", n)
        if len(torch.unique(objects)) < 2:
            raise LPLError("view identification by object needs views of at least two objects, got one")
    width = v.max_distance + 2  # distances 0..max, and a column that stays empty for gaps beyond them
    columns = torch.tensor(gap_list).clamp(max=width - 1)
    correct, queries, chance = (torch.zeros(len(gap_list), dtype=torch.float64) for _ in range(3))
    rows = max(1, CHUNK_ENTRIES // n)
    for start in range(0, n, rows):
        query = torch.arange(start, min(start + rows, n))
        similarity = z[query] @ z.T
        if objects is not None:  # the query's object's other sequences: left out
            kin = (objects[query, None] == objects[None, :]) & (v.sequence[query, None] != v.sequence[None, :])
            similarity.masked_fill_(kin, -math.inf)
        r, j = torch.nonzero(v.sequence[query, None] == v.sequence[None, :], as_tuple=True)
        own = similarity[r, j]
        best_other = similarity.index_put_((r, j), torch.tensor(-math.inf)).amax(dim=1)
        cell = r * width + v.distance(query[r], j)
        best = torch.full((len(query) * width,), -math.inf).scatter_reduce_(0, cell, own, "amax")
        count = torch.zeros(len(query) * width, dtype=torch.float64).index_add_(0, cell, torch.ones(len(cell)).double())
        # Best similarity and number of own-sequence views at each distance >= d: suffix max / sum over d.
        best = best.view(-1, width).flip(1).cummax(dim=1).values.flip(1)[:, columns]
        count = count.view(-1, width).flip(1).cumsum(dim=1).flip(1)[:, columns]
        valid = count > 0
        others = (n - (v.counts[v.sequence[query]] if objects is None else kin.sum(dim=1) + v.counts[v.sequence[query]])
                  ).double()[:, None]
        queries += valid.sum(dim=0)
        correct += (valid & (best > best_other[:, None])).sum(dim=0)
        chance += torch.where(valid, count / (count + others), 0.0).sum(dim=0)
    return {g: {"accuracy": float(correct[i] / queries[i]) if queries[i] else math.nan,
                "queries": int(queries[i]),
                "chance": float(chance[i] / queries[i]) if queries[i] else math.nan}
            for i, g in enumerate(gap_list)}


@dataclass(frozen=True)
class SimilarityCurve:
    """Mean cosine similarity of two views of one sequence against their frame distance (``distance`` 1..D;
    NaN where no pair has that distance, ``pairs`` counts them), and of two views of different sequences
    (``across``, the reference; NaN with a single sequence)."""

    distance: list[int]
    similarity: list[float]
    pairs: list[int]
    across: float


def similarity_by_distance(x: Tensor, sequence: Tensor, frame: Tensor, lengths: Tensor | None = None,
                           cyclic: bool = False, max_distance: int | None = None) -> SimilarityCurve:
    """``SimilarityCurve`` of x (N, M) up to ``max_distance`` frames (default: the largest possible).

    Within-sequence pairs are visited as (p, p + k) in the views sorted by sequence, k = 1 .. the longest
    sequence - 1: O(sum of squared sequence sizes x M). The across-sequence mean comes from sequence sums
    of the unit rows in O(N M): distinct pairs of a set sum to ``||sum z||^2 - sum ||z||^2``.
    """
    v = _views(x, sequence, frame, lengths, cyclic)
    top = v.max_distance if max_distance is None else int(max_distance)
    if top < 1:
        raise LPLError(f"max_distance must be >= 1, got {top}")
    z = _unit_rows(x)
    order = torch.argsort(v.sequence, stable=True)
    sums, pairs = torch.zeros(top + 1, dtype=torch.float64), torch.zeros(top + 1, dtype=torch.long)
    for k in range(1, int(v.counts.max())):
        i, j = order[:-k], order[k:]
        keep = v.sequence[i] == v.sequence[j]
        i, j = i[keep], j[keep]
        d = v.distance(i, j)
        near = d <= top
        i, j, d = i[near], j[near], d[near]
        sums.index_add_(0, d, (z[i] * z[j]).sum(dim=1).double())
        pairs.index_add_(0, d, torch.ones_like(d))
    per_sequence = torch.zeros(len(v.counts), z.shape[1], dtype=torch.float64).index_add_(0, v.sequence, z.double())
    across_pairs = len(z) ** 2 - float(v.counts.double().square().sum())
    across_sum = per_sequence.sum(0).square().sum() - per_sequence.square().sum()
    across = float(across_sum / across_pairs) if across_pairs else math.nan
    mean = sums / pairs.clamp(min=1)
    return SimilarityCurve(list(range(1, top + 1)),
                           [float(m) if p else math.nan for m, p in zip(mean[1:], pairs[1:])],
                           pairs[1:].tolist(), across)


def _unit_range(x: Tensor) -> Tensor:
    """Each unit's response range (M,), NaN for a constant unit (its tuning is undefined)."""
    spread = x.amax(dim=0) - x.amin(dim=0)
    return torch.where(spread > 0, spread, math.nan)


def unit_selectivity(x: Tensor, groups: Tensor) -> Tensor:
    """Selectivity (M,) of each unit of x (N, M) to ``groups`` (N,) ids (objects: sequence ids; or classes).

    The paper's single-unit measure (toy notebooks of Fig. 2 and Supplementary Fig. 2):
    ``|mean(r | a) - mean(r | b)| / (max r - min r)`` for two groups a, b; for more groups, the range of the
    unit's group means over the range of its responses. 1: the groups' mean responses span everything the
    unit does; 0: every group drives it alike on average. NaN for a constant unit.
    """
    x = _features(x).double()
    _, index = torch.unique(_integer(groups, "groups", len(x)), return_inverse=True)
    counts = torch.bincount(index).double()[:, None]
    means = torch.zeros(len(counts), x.shape[1], dtype=torch.float64).index_add_(0, index, x) / counts
    return ((means.amax(dim=0) - means.amin(dim=0)) / _unit_range(x)).float()


def unit_invariance(x: Tensor, sequence: Tensor) -> Tensor:
    """View invariance (M,) of each unit of x (N, M): 1 minus the mean, over sequences with two or more views,
    of the unit's response range over one sequence's views divided by its range over all views.

    The within-object counterpart of ``unit_selectivity``: 1 when every view of an object drives the unit
    alike, 0 when the views of each object span its whole range (a unit tuned to the view alone). NaN for a
    constant unit.
    """
    x = _features(x).double()
    _, index = torch.unique(_integer(sequence, "sequence", len(x)), return_inverse=True)
    counts = torch.bincount(index)
    if int(counts.max()) < 2:
        raise LPLError("every sequence has a single view, so view invariance is undefined; pass sequence ids "
                       "that group the views of each object (ImageSet.sequence_ids())")
    shape, expanded = (len(counts), x.shape[1]), index[:, None].expand_as(x)
    high = torch.zeros(shape, dtype=x.dtype).scatter_reduce_(0, expanded, x, "amax", include_self=False)
    low = torch.zeros(shape, dtype=x.dtype).scatter_reduce_(0, expanded, x, "amin", include_self=False)
    within = (high - low)[counts > 1].mean(dim=0)
    return (1 - within / _unit_range(x)).float()
