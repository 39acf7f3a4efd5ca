"""Read-outs of a frozen representation: linear probe and kNN (the deep network's per-layer readout is
``lpl.analysis.readout``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# Above this many features the probe runs in float32 (memory-bound passes over the data), below in float64.
FLOAT32_FEATURES = 512
# The probe passes over its samples in chunks of about this many bytes (cache-sized).
CHUNK_BYTES = 8 << 20
# kNN takes the similarities of this many test samples at a time (one job each).
KNN_CHUNK = 1024


def probe_split(n: int, test_fraction: float = 0.3) -> tuple[Tensor, Tensor]:
    """First 70% of the samples for fitting a probe, the rest for scoring it.

    Contiguous, not shuffled: exported samples keep their data set order, so frames of one
    sequence never end up on both sides (a shuffled split lets kNN match a frame to its neighbour).
    """
    cut = int(round(n * (1 - test_fraction)))
    return torch.arange(cut), torch.arange(cut, n)


def standardise(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Both scaled by the train mean and population std (as sklearn's StandardScaler; std 0 -> 1), and that std."""
    mean = train.mean(0)
    train = train - mean
    std = train.square().mean(0).sqrt_()  # torch's std(0) is several times slower on wide inputs
    std = torch.where(std > 1e-12 * mean.abs().clamp_min(1), std, torch.ones_like(std))
    return train.div_(std), (test - mean).div_(std), std


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the block on ``count`` threads (many short steps and LAPACK factorisations of these sizes lose
    more to thread hand-offs than they gain, badly so on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def concurrently(*jobs: Callable[[], Any]) -> list[Any]:
    """The jobs' results, the jobs run side by side on as many threads as torch may use, each on one intra-op
    thread (sequentially when torch may use one). Independent jobs then share the cores without waiting for
    each other, where one job on several threads waits for them at every operation (milliseconds each on a busy
    machine); and each job computes exactly as it does alone on one thread."""
    workers = min(len(jobs), torch.get_num_threads())
    with threads(1):
        if workers <= 1:
            return [job() for job in jobs]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda job: job(), jobs))


def _lbfgs(objective: Callable[[Tensor], tuple[float, Tensor, float]], x: Tensor, max_iter: int, tol: float,
           ftol: float, memory: int = 20) -> Tensor:
    """Minimise a smooth strongly convex function by L-BFGS with a backtracking (Armijo) line search.

    ``objective(x) -> (value, gradient, residual)``; stops once ``residual <= tol``, the value no longer
    drops by ``ftol`` relative, or after ``max_iter`` steps. Strong convexity keeps every ``s.y > 0``.
    """
    def dot(a: Tensor, b: Tensor) -> float:
        return float(torch.dot(a.reshape(-1), b.reshape(-1)))

    value, grad, residual = objective(x)
    history: list[tuple[Tensor, Tensor, float]] = []
    for _ in range(max_iter):
        if residual <= tol:
            break
        direction, alphas = -grad, []
        for s, y, rho in reversed(history):
            alphas.append(rho * dot(s, direction))
            direction = direction.sub(y, alpha=alphas[-1])
        if history:
            direction = direction.mul(dot(history[-1][0], history[-1][1]) / dot(history[-1][1], history[-1][1]))
        for (s, y, rho), alpha in zip(history, reversed(alphas)):
            direction = direction.add(s, alpha=alpha - rho * dot(y, direction))
        slope, step = dot(grad, direction), 1.0
        while True:
            candidate = x.add(direction, alpha=step)
            new_value, new_grad, new_residual = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                break
            step /= 2
            if step < 1e-10:
                return x
        s, y = candidate - x, new_grad - grad
        if (sy := dot(s, y)) > 0:
            history = [*history[-memory + 1:], (s, y, 1 / sy)]
        stalled = value - new_value <= ftol * max(abs(value), abs(new_value), 1.0)
        x, value, grad, residual = candidate, new_value, new_grad, new_residual
        if stalled:
            break
    return x


def _row_space(z: Tensor, z_test: Tensor) -> tuple[Tensor, Tensor]:
    """Both in an orthonormal basis of the span of z's rows (n < d): the fitted weights lie there, and the
    penalty ||W||^2 is the same in any orthonormal basis, so the problem is unchanged but n-dimensional."""
    eig, vectors = torch.linalg.eigh(z.double() @ z.double().T)
    keep = eig > eig.max() * 1e-10 * len(z)
    if not keep.any():  # every feature constant: only the intercept can be fitted
        return z.new_zeros(len(z), 1), z_test.new_zeros(len(z_test), 1)
    basis = z.double().T @ (vectors[:, keep] / eig[keep].sqrt())
    dtype = torch.float32 if basis.shape[1] > FLOAT32_FEATURES else torch.float64
    return (z.double() @ basis).to(dtype), (z_test.double() @ basis).to(dtype)


@threads(1)  # many short steps: on more threads each waits for the others (milliseconds each on a busy machine)
def linear_probe_accuracy(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, c: float = 1.0,
                          max_iter: int = 500, tol: float = 1e-4, feature_cov: Tensor | None = None,
                          helper: Executor | None = None) -> float:
    """Multinomial logistic regression on standardised features; fitted on train only, scored on test.

    The objective is sklearn's ``LogisticRegression(C=c)``: mean log-loss + ||W||^2 / (2 c n), intercept
    unpenalised, binomial for two classes; fitted until every gradient entry is below ``tol`` (sklearn's). Solved
    full-batch by L-BFGS in variables ``G = L^T W``, where ``L L^T = Z^T Z / 4n + penalty`` bounds the loss
    Hessian: the problem is then well conditioned however correlated the features. ``feature_cov``: the
    features' covariance (M, M) if already known (e.g. over all samples), used for ``Z^T Z / n`` instead
    of another pass; it only shapes the path to the optimum, not the optimum. ``helper``: an executor that takes
    the pass over the second half of the samples while this thread does the first (same result either way).
    """
    classes, y = torch.unique(y_train, return_inverse=True)
    if len(classes) < 2:
        return float((y_test == classes[0]).double().mean())
    dtype = torch.float32 if x_train.shape[1] > FLOAT32_FEATURES else torch.float64
    z, z_test, std = standardise(x_train.to(dtype), x_test.to(dtype))
    if 2 * len(z) <= z.shape[1]:
        z, z_test = _row_space(z, z_test)
        feature_cov = None
    (n, d), k, dtype = z.shape, len(classes), z.dtype
    # Two classes: a softmax over two weight vectors with the same penalty is the binomial model at half of it.
    penalty = (2.0 if k == 2 else 1.0) / (c * n)
    onehot = F.one_hot(y, k).to(dtype).T.contiguous()  # (k, n), as the logits
    if feature_cov is None:
        hessian = (z.T @ z).mul_(0.25 / n)
    else:
        hessian = feature_cov.to(dtype) / (4 * std[:, None] * std[None, :])
    hessian.diagonal().add_(penalty)
    lower = torch.linalg.cholesky(hessian)
    del hessian
    rows = max(1, CHUNK_BYTES // (d * z.element_size()))
    chunks = list(zip(z.split(rows), onehot.split(rows, dim=1)))
    halves = chunks[:(len(chunks) + 1) // 2], chunks[(len(chunks) + 1) // 2:]

    # Everything per class is a (k, .) row block: the passes over the data are then (k, d) @ (d, m) and
    # (k, m) @ (m, d), BLAS's fastest layouts for so few rows, each chunk of m samples read for both while in
    # cache; the change of variables is two triangular solves of k columns instead of an explicit inverse.
    def weights(x: Tensor) -> Tensor:
        """W^T (k, d) = (L^-T G)^T of x = [G^T | intercept] (k, d + 1)."""
        return torch.linalg.solve_triangular(lower.T, x[:, :-1].T, upper=True).T

    def passes(x: Tensor, w: Tensor, part_chunks: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """Summed log-loss, dL/dW^T and dL/d intercept (mean over all n) of the samples in ``part_chunks``."""
        loss, grad_w, grad_b = torch.zeros((), dtype=dtype), torch.zeros_like(w), x.new_zeros(k, 1)
        for part, hot in part_chunks:
            logits = torch.addmm(x[:, -1:], w, part.T)
            loss += (logits.logsumexp(0) - (logits * hot).sum(0)).sum()
            residual = logits.softmax(0).sub_(hot).div_(n)
            grad_b += residual.sum(1, keepdim=True)
            grad_w.addmm_(residual, part)
        return loss, grad_w, grad_b

    def objective(x: Tensor) -> tuple[float, Tensor, float]:
        """The value at x, its gradient and the largest gradient entry in (W, intercept)."""
        w = weights(x)
        second = helper.submit(passes, x, w, halves[1]) if helper and halves[1] else None
        loss, grad_w, grad_b = passes(x, w, halves[0])
        more = second.result() if second else passes(x, w, halves[1])
        loss, grad_b = loss + more[0], grad_b + more[2]
        grad_w.add_(more[1]).add_(w, alpha=penalty)
        grad = torch.cat((torch.linalg.solve_triangular(lower, grad_w.T, upper=False).T, grad_b), 1)
        value = float(loss) / n + 0.5 * penalty * float(w.square().sum())
        return value, grad, float(torch.cat((grad_w, grad_b), 1).abs().max())

    x = _lbfgs(objective, torch.zeros(k, d + 1, dtype=dtype), max_iter, tol, 10 * torch.finfo(dtype).eps)
    predicted = classes[torch.addmm(x[:, -1:], weights(x), z_test.T).argmax(0)]
    return float((predicted == y_test).double().mean())


def _knn_correct(train: Tensor, y_train: Tensor, test: Tensor, y_test: Tensor, ks: tuple[int, ...],
                 classes: int) -> dict[int, int]:
    """For every k in ``ks``: how many ``test`` rows the vote of their k most similar ``train`` rows gets right."""
    kmax = min(max(ks), len(train))
    neighbours = y_train[(test @ train.T).topk(kmax, dim=1).indices]
    return {k: int((F.one_hot(neighbours[:, :min(k, kmax)], classes).sum(dim=1).argmax(dim=1) == y_test).sum())
            for k in ks}


def _knn_jobs(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, ks: tuple[int, ...],
              chunk: int) -> list[Callable[[], dict[int, int]]]:
    """``_knn_correct`` of each chunk of test samples, as jobs for ``concurrently``."""
    train = F.normalize(x_train.float(), dim=1)
    test = F.normalize(x_test.float(), dim=1)
    classes = int(y_train.max()) + 1
    return [partial(_knn_correct, train, y_train, part, labels, ks, classes)
            for part, labels in zip(test.split(chunk), y_test.split(chunk))]


def _knn_scores(counts: list[dict[int, int]], ks: tuple[int, ...], total: int) -> dict[int, float]:
    """Accuracy for every k from the chunks' ``_knn_correct`` counts over ``total`` test samples."""
    return {k: sum(c[k] for c in counts) / max(total, 1) for k in ks}


def knn_accuracies(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                   ks: tuple[int, ...] = (20,), chunk: int = KNN_CHUNK) -> dict[int, float]:
    """Majority vote of the k most cosine-similar training samples, for every k in ``ks`` at once."""
    return _knn_scores(concurrently(*_knn_jobs(x_train, y_train, x_test, y_test, ks, chunk)), ks, len(x_test))


def knn_accuracy(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, k: int = 20) -> float:
    """Majority vote of the k most cosine-similar training samples."""
    return knn_accuracies(x_train, y_train, x_test, y_test, (k,))[k]


def probe_scores(x: Tensor, y: Tensor, ks: tuple[int, ...] = (20, 200), cov: Tensor | None = None) -> dict[str, float]:
    """Linear-probe and kNN accuracies on the fixed split of (x, y); ``cov``: ``metrics.covariance(x)`` if known.

    The probe and kNN's chunks of test samples run side by side (``concurrently``), the probe first, with a
    helper thread for half of its passes that runs once kNN leaves a core free (the threads share the cores)."""
    cut = len(probe_split(len(y))[0])  # a contiguous split: views, not copies
    parts = x[:cut], y[:cut], x[cut:], y[cut:]
    feature_cov = None if cov is None else cov / len(x)
    with ThreadPoolExecutor(1) as helper:
        linear, *counts = concurrently(
            partial(linear_probe_accuracy, *parts, feature_cov=feature_cov,
                    helper=helper if torch.get_num_threads() > 1 else None),
            *_knn_jobs(*parts, ks, KNN_CHUNK))
    knn = _knn_scores(counts, ks, len(y) - cut)
    return {"linear_probe": linear} | {f"knn{k}": knn[k] for k in ks}
