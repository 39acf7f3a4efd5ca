"""Measures of a representation ``x`` (N, M) with labels ``y`` (N,): statistics, probes, invariance."""

from __future__ import annotations

import torch
from torch import Tensor

COLLAPSE_STD = 0.1


def collapsed_units(std: Tensor) -> int:
    """How many units have a standard deviation below the collapse threshold (0.1)."""
    return int((std < COLLAPSE_STD).sum())


def participation_ratio(x: Tensor) -> float:
    """Effective dimensionality ``(sum eig)^2 / sum eig^2`` of the centred covariance of x (N, M)."""
    xc = x.double() - x.double().mean(dim=0)
    eig = torch.linalg.svdvals(xc).square()
    total = eig.square().sum()
    return float(eig.sum().square() / total) if total > 0 else 0.0


def _sparsity(r: Tensor, dim: int) -> Tensor:
    """Treves-Rolls sparsity of |r| along ``dim``: 0 for a flat response, 1 for a single peak."""
    r = r.abs().double()
    n = r.shape[dim]
    ratio = r.mean(dim).square() / r.square().mean(dim).clamp_min(1e-12)
    return (1 - ratio) / (1 - 1 / n)


def unit_statistics(x: Tensor, normalised: bool = False) -> dict[str, float]:
    """Per-unit summary of x (N, M): activity, collapse (std < 0.1), sparsity, correlation.

    ``normalised``: rows of x are L2-normalised embeddings, whose units have std ~ 1/sqrt(M) even
    when healthy; collapse is then judged on std * sqrt(M).
    """
    std = x.std(dim=0)
    judged = std * (x.shape[1] ** 0.5 if normalised else 1.0)
    corr = torch.corrcoef(x.T.double())
    off = corr[~torch.eye(x.shape[1], dtype=torch.bool)]
    collapsed = collapsed_units(judged)
    return {
        "units": x.shape[1],
        "mean_activation": float(x.mean()),
        "mean_unit_std": float(std.mean()),
        "min_unit_std": float(std.min()),
        "collapsed_units": collapsed,
        "collapsed_fraction": collapsed / x.shape[1],
        "lifetime_sparsity": float(_sparsity(x, 0).mean()),
        "population_sparsity": float(_sparsity(x, 1).mean()),
        "mean_abs_correlation": float(torch.nan_to_num(off).abs().mean()),
        "participation_ratio": participation_ratio(x),
    }


def probe_split(n: int, test_fraction: float = 0.3) -> tuple[Tensor, Tensor]:
    """First 70% of the samples for fitting a probe, the rest for scoring it.

    Contiguous, not shuffled: exported samples keep their data set order, so frames of one
    sequence never end up on both sides (a shuffled split lets kNN match a frame to its neighbour).
    """
    cut = int(round(n * (1 - test_fraction)))
    return torch.arange(cut), torch.arange(cut, n)


def linear_probe_accuracy(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                          max_iter: int = 1000) -> float:
    """Logistic regression on standardised features; fitted on train only, scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    model.fit(x_train.double().numpy(), y_train.numpy())
    return float(model.score(x_test.double().numpy(), y_test.numpy()))


def knn_accuracy(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, k: int = 20) -> float:
    """Majority vote of the k most cosine-similar training samples."""
    train = torch.nn.functional.normalize(x_train.double(), dim=1)
    test = torch.nn.functional.normalize(x_test.double(), dim=1)
    k = min(k, len(train))
    neighbours = (test @ train.T).topk(k, dim=1).indices
    votes = torch.nn.functional.one_hot(y_train[neighbours], int(y_train.max()) + 1).sum(dim=1)
    return float((votes.argmax(dim=1) == y_test).double().mean())


def class_similarity(x: Tensor, y: Tensor) -> dict[str, float]:
    """Mean cosine similarity of distinct same-class pairs and of different-class pairs."""
    z = torch.nn.functional.normalize(x.double() - x.double().mean(dim=0), dim=1)
    sim = z @ z.T
    same = y[:, None] == y[None, :]
    distinct = ~torch.eye(len(y), dtype=torch.bool)
    within, across = float(sim[same & distinct].mean()), float(sim[~same].mean())
    return {"within_class_similarity": within, "across_class_similarity": across,
            "similarity_gap": within - across}


def pair_similarity(first: Tensor, second: Tensor, seed: int = 0) -> dict[str, float]:
    """Cosine similarity of matched pairs (consecutive frames) vs of randomly re-paired samples."""
    a = torch.nn.functional.normalize(first.double() - first.double().mean(0), dim=1)
    b = torch.nn.functional.normalize(second.double() - second.double().mean(0), dim=1)
    shuffled = b[torch.randperm(len(b), generator=torch.Generator().manual_seed(seed))]
    return {"consecutive_similarity": float((a * b).sum(1).mean()),
            "random_pair_similarity": float((a * shuffled).sum(1).mean())}


def probe_scores(x: Tensor, y: Tensor, ks: tuple[int, ...] = (20, 200)) -> dict[str, float]:
    """Linear-probe and kNN accuracies on the fixed split of (x, y)."""
    train, test = probe_split(len(y))
    scores = {"linear_probe": linear_probe_accuracy(x[train], y[train], x[test], y[test])}
    for k in ks:
        scores[f"knn{k}"] = knn_accuracy(x[train], y[train], x[test], y[test], k)
    return scores


def random_projection(x: Tensor, width: int, seed: int = 0) -> Tensor:
    """Baseline: a random dense layer of ``width`` units (LPL's initialisation and squashing)."""
    from lpl.layers import DenseLPLLayer

    with torch.no_grad():
        return DenseLPLLayer(x.shape[1], width, torch.Generator().manual_seed(seed))(x.float())


def pca_projection(x: Tensor, width: int) -> Tensor:
    """Baseline: the top ``width`` principal components of x."""
    xc = x.double() - x.double().mean(dim=0)
    _, _, v = torch.linalg.svd(xc, full_matrices=False)
    return (xc @ v[: min(width, v.shape[0])].T).float()
