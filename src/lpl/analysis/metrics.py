"""Statistics of a representation ``x`` (N, M) with labels ``y`` (N,): units, similarity, projections.

The probes live in ``lpl.analysis.probes``; ``probe_split`` and ``knn_accuracy`` are re-exported here
for code that imports them from this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lpl.analysis.probes import knn_accuracy, probe_split, threads
from lpl.collapse import COLLAPSE_STD, collapsed_units

# Above this many units (or samples, for the Gram matrix) the covariance is taken in float32.
FLOAT64_UNITS = 1024
# Above this many elements, O(N M) statistics run in float32 (with float64 sums where it matters).
FLOAT64_ELEMENTS = 4_000_000

__all__ = ["COLLAPSE_STD", "class_similarity", "collapsed_units", "covariance", "knn_accuracy", "pair_similarity",
           "participation_ratio", "pca_projection", "probe_split", "random_projection", "top_eigenvectors",
           "unit_statistics"]


def _centred(x: Tensor, size: int) -> Tensor:
    """x minus its column means, in float64 unless ``size`` (the Gram side) is large."""
    x = x.double() if size <= FLOAT64_UNITS else x.float()
    return x - x.mean(dim=0)


def covariance(x: Tensor, block: int = 768) -> Tensor:
    """Unnormalised covariance ``xc^T xc`` (M, M) of the centred x (N, M).

    Wide x block by block, each off-diagonal block computed once and mirrored (2/3 of the work at M = 3072).
    """
    xc = _centred(x, x.shape[1])
    if xc.shape[1] <= 2 * block:
        return xc.T @ xc
    cov = xc.new_empty(xc.shape[1], xc.shape[1])
    starts = range(0, xc.shape[1], block)
    for i in starts:
        for j in starts[i // block:]:
            cov[i:i + block, j:j + block] = part = xc[:, i:i + block].T @ xc[:, j:j + block]
            cov[j:j + block, i:i + block] = part.T
    return cov


def _participation_ratio(gram: Tensor) -> float:
    """``(sum eig)^2 / sum eig^2 = trace^2 / ||gram||_F^2`` of a symmetric PSD matrix (no decomposition)."""
    total = gram.double().square().sum()
    return float(torch.diagonal(gram).double().sum().square() / total) if total > 0 else 0.0


def participation_ratio(x: Tensor, cov: Tensor | None = None) -> float:
    """Effective dimensionality ``(sum eig)^2 / sum eig^2`` of the centred covariance of x (N, M).

    From whichever of ``xc^T xc`` and ``xc xc^T`` is smaller (same non-zero eigenvalues), or ``cov``.
    """
    if cov is None and len(x) < x.shape[1]:
        xc = _centred(x, len(x))
        return _participation_ratio(xc @ xc.T)
    return _participation_ratio(covariance(x) if cov is None else cov)


def _work(x: Tensor) -> Tensor:
    """x in float64, or float32 when it is large (pixels): O(N M) statistics are memory-bound there."""
    return x.double() if x.numel() <= FLOAT64_ELEMENTS else x.float()


def _sparsities(x: Tensor) -> tuple[float, float]:
    """Treves-Rolls sparsity of |x|, averaged over units (lifetime) and over samples (population): 0 for a flat
    response, 1 for a single peak. One |x| and one |x|^2 serve both."""
    r = _work(x).abs()
    squares = r.square()

    def mean_over(dim: int) -> float:
        ratio = r.mean(dim).double().square() / squares.mean(dim).double().clamp_min(1e-12)
        return float(((1 - ratio) / (1 - 1 / r.shape[dim])).mean())

    return mean_over(0), mean_over(1)


def _mean_abs_correlation(cov: Tensor) -> float:
    """Mean |Pearson correlation| over distinct unit pairs; a constant unit correlates 0 (as nan_to_num)."""
    std = torch.diagonal(cov).sqrt()
    corr = torch.nan_to_num((cov / std[:, None] / std[None, :]).clamp_(-1, 1))
    off = corr.abs().sum(dtype=torch.float64) - torch.diagonal(corr).abs().sum(dtype=torch.float64)
    return float(off / (len(cov) * (len(cov) - 1)))


def unit_statistics(x: Tensor, normalised: bool = False, cov: Tensor | None = None) -> dict[str, float]:
    """Per-unit summary of x (N, M): activity, collapse (std < 0.1), sparsity, correlation.

    ``normalised``: rows of x are L2-normalised embeddings, whose units have std ~ 1/sqrt(M) even
    when healthy; collapse is then judged on std * sqrt(M). ``cov``: ``covariance(x)`` if already known.
    """
    cov = covariance(x) if cov is None else cov
    std = (torch.diagonal(cov) / (len(x) - 1)).sqrt().float()  # x.std(dim=0), without another pass
    judged = std * (x.shape[1] ** 0.5 if normalised else 1.0)
    collapsed = collapsed_units(judged)
    lifetime, population = _sparsities(x)
    return {
        "units": x.shape[1],
        "mean_activation": float(x.mean()),
        "mean_unit_std": float(std.mean()),
        "min_unit_std": float(std.min()),
        "collapsed_units": collapsed,
        "collapsed_fraction": collapsed / x.shape[1],
        "lifetime_sparsity": lifetime,
        "population_sparsity": population,
        "mean_abs_correlation": _mean_abs_correlation(cov),
        "participation_ratio": participation_ratio(x, cov),
    }


def class_similarity(x: Tensor, y: Tensor) -> dict[str, float]:
    """Mean cosine similarity of distinct same-class pairs and of different-class pairs.

    From class sums of the unit-normalised centred rows z, in O(N M): the distinct pairs of class c
    sum to ``||sum_c z||^2 - sum_c ||z||^2``, all pairs to ``||sum z||^2``. z is never formed: its class sums
    are the centred rows weighted by their inverse norms (as ``F.normalize``: norms below 1e-12 count as 1e-12).
    """
    x = _work(x)
    xc = x - x.mean(dim=0)
    norms = torch.linalg.vector_norm(xc, dim=1)
    scales = 1 / norms.clamp_min(1e-12)
    _, classes = torch.unique(y, return_inverse=True)
    sums = ((F.one_hot(classes).to(xc.dtype) * scales[:, None]).T @ xc).double()  # (classes, M)
    counts = torch.bincount(classes).double()
    same = sums.square().sum()
    within = (same - (norms.double() * scales.double()).square().sum()) / (counts * (counts - 1)).sum()
    across = (sums.sum(0).square().sum() - same) / (counts.sum().square() - counts.square().sum())
    return {"within_class_similarity": float(within), "across_class_similarity": float(across),
            "similarity_gap": float(within - across)}


def pair_similarity(first: Tensor, second: Tensor, seed: int = 0) -> dict[str, float]:
    """Cosine similarity of matched pairs (consecutive frames) vs of randomly re-paired samples."""
    a = F.normalize(first.double() - first.double().mean(0), dim=1)
    b = F.normalize(second.double() - second.double().mean(0), dim=1)
    shuffled = b[torch.randperm(len(b), generator=torch.Generator().manual_seed(seed))]
    return {"consecutive_similarity": float((a * b).sum(1).mean()),
            "random_pair_similarity": float((a * shuffled).sum(1).mean())}


def random_projection(x: Tensor, width: int, seed: int = 0) -> Tensor:
    """Baseline: a random dense layer of ``width`` units (LPL's initialisation and squashing)."""
    from lpl.layers import DenseLPLLayer

    with torch.no_grad():
        return DenseLPLLayer(x.shape[1], width, torch.Generator().manual_seed(seed))(x.float())


def top_eigenvectors(sym: Tensor, k: int, iterations: int = 8, seed: int = 0) -> Tensor:
    """The k leading eigenvectors (M, k) of a symmetric PSD matrix, largest first.

    ``eigh`` for small matrices; otherwise subspace iteration on 2k vectors, then Rayleigh-Ritz: the
    error shrinks as (eig_{2k} / eig_k)^iterations: to float32 precision on CIFAR-10 pixels.
    """
    k = min(k, len(sym))
    # LAPACK on these sizes loses to thread hand-offs, badly so on a busy machine; the products use every thread
    if len(sym) <= FLOAT64_UNITS or 4 * k >= len(sym):
        with threads(1):
            return torch.linalg.eigh(sym.double())[1].flip(1)[:, :k].to(sym.dtype)
    basis = torch.randn(len(sym), 2 * k, generator=torch.Generator().manual_seed(seed), dtype=sym.dtype)
    for _ in range(iterations):
        product = sym @ basis
        with threads(1):
            basis = torch.linalg.qr(product).Q
    projected = basis.T @ sym @ basis
    with threads(1):
        rotation = torch.linalg.eigh(projected.double())[1]
    return basis @ rotation.flip(1)[:, :k].to(sym.dtype)


def pca_projection(x: Tensor, width: int, cov: Tensor | None = None) -> Tensor:
    """Baseline: the top ``width`` principal components of x (``cov``: ``covariance(x)`` if known).

    With fewer samples than units, from the eigenvectors u of the Gram matrix: ``xc v = u s``.
    """
    width = min(width, *x.shape)
    if len(x) < x.shape[1]:
        xc = _centred(x, len(x))
        gram = (xc @ xc.T).double()
        with threads(1):
            eig, vectors = torch.linalg.eigh(gram)
        return (vectors[:, -width:] * eig[-width:].clamp_min(0).sqrt()).flip(1).float()
    cov = covariance(x) if cov is None else cov
    xc = x.to(cov.dtype) - x.to(cov.dtype).mean(dim=0)
    return (xc @ top_eigenvectors(cov, width)).float()
