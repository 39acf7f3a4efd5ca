"""``lpl analyze`` of one 10,000 x 128 export with its baselines: this implementation vs the old one.

- new: ``lpl analyze FILE`` end to end in a subprocess (interpreter, imports, loading included),
  once with an empty baseline cache (cold) and ``--warm-repeats`` times with it filled (warm, best);
- reference: the old implementation re-done here in-process (sklearn ``LogisticRegression`` lbfgs,
  float64 SVD for PCA and participation ratio, float64 ``corrcoef``, the N x N similarity matrix,
  one similarity matrix per kNN k) on the same file and images.

Prints wall and CPU seconds, speed-ups and every figure of both, with the probe accuracies' differences
in points, and the load average (other work on the machine inflates wall times, especially multi-threaded).
Without ``--file`` it builds a run folder (``activations/``, ``logs/*_run.json``, a CIFAR-10
``test_batch``) from the CIFAR-10 test JPEGs in ``--jpegs`` if given, else from synthetic images;
the export is a fixed random two-layer squashed network of the images (128 units).
``--samples 100 --width 8 --threads 1 --warm-repeats 0`` runs every part in seconds (a smoke test).

    python benchmarks/bench_analysis.py [--jpegs CIFAR10/test | --file RUN/activations/x_after.pt] [--threads 2 1]
                                        [--no-reference]
"""

from __future__ import annotations

import argparse
import csv
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lpl.analysis.evaluate import inputs_of, load_representations
from lpl.layers import DenseLPLLayer
from lpl.layout import RunLayout, run_config, save_export, write_record

PROBES = ("linear_probe", "knn20", "knn200")
LABELS = ("representation", "run", "layer", "stage")  # the CSV's non-numeric columns


def cifar_jpegs(folder: Path, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """uint8 (count, 3072) images and labels from ``folder/<class>/*.jpg``, in a fixed shuffled order."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    files = [(c, f) for c, d in enumerate(classes) for f in sorted(d.glob("*.jpg"))]
    if len(files) < count:
        return None
    from PIL import Image

    picked = [files[i] for i in np.random.default_rng(0).permutation(len(files))[:count]]
    data = np.stack([np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).reshape(-1) for _, f in picked])
    return data, np.array([c for c, _ in picked])


def synthetic(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent colour and a class-dependent stripe under noise: learnable, not trivial."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, count)
    colour = rng.integers(0, 255, (10, 3, 1, 1))
    stripes = (np.arange(32)[None, :] % (labels[:, None] + 2) == 0)[:, None, None, :] * 60
    noise = rng.normal(0, 60, (count, 3, 32, 32))
    data = (colour[labels] * 0.4 + stripes + noise + 80).clip(0, 255).astype(np.uint8).reshape(count, -1)
    return data, labels


def build_run(root: Path, count: int, width: int, jpegs: Path | None) -> Path:
    """A run folder the analysis recognises; returns its export file."""
    found = None if jpegs is None else cifar_jpegs(jpegs, count)
    data, labels = found if found is not None else synthetic(count)
    print(f"images: {'CIFAR-10 test JPEGs from ' + str(jpegs) if found is not None else 'synthetic'} ({count})")
    batches = root / "data" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    with open(batches / "test_batch", "wb") as handle:
        pickle.dump({b"data": data, b"labels": labels.tolist()}, handle, protocol=2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        hidden = DenseLPLLayer(3072, 512, generator)(torch.from_numpy(data).float() / 255)
        activations = DenseLPLLayer(512, width, generator)(hidden)
    layout = RunLayout(root, "bench", "bench_activations")
    export = layout.activation_file("after")
    save_export(export, [activations], torch.from_numpy(labels).long())
    config = {"dataset": "cifar10", "data_dir": str(root / "data"), "num_export": count}
    write_record(layout, {"config": config, "activation_files": [export.name]})
    return export


# ---------------------------------------------------------------- the old implementation

def old_unit_statistics(x: torch.Tensor) -> dict[str, float]:
    std = x.std(dim=0)
    corr = torch.corrcoef(x.T.double())
    off = corr[~torch.eye(x.shape[1], dtype=torch.bool)]

    def sparsity(r: torch.Tensor, dim: int) -> torch.Tensor:
        r = r.abs().double()
        ratio = r.mean(dim).square() / r.square().mean(dim).clamp_min(1e-12)
        return (1 - ratio) / (1 - 1 / r.shape[dim])

    xc = x.double() - x.double().mean(dim=0)
    eig = torch.linalg.svdvals(xc).square()
    return {"mean_unit_std": float(std.mean()), "lifetime_sparsity": float(sparsity(x, 0).mean()),
            "population_sparsity": float(sparsity(x, 1).mean()),
            "mean_abs_correlation": float(torch.nan_to_num(off).abs().mean()),
            "participation_ratio": float(eig.sum().square() / eig.square().sum())}


def old_probes(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cut = int(round(len(y) * 0.7))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x[:cut].double().numpy(), y[:cut].numpy())
    scores = {"linear_probe": float(model.score(x[cut:].double().numpy(), y[cut:].numpy()))}
    train = torch.nn.functional.normalize(x[:cut].double(), dim=1)
    test = torch.nn.functional.normalize(x[cut:].double(), dim=1)
    for k in (20, 200):
        neighbours = (test @ train.T).topk(min(k, len(train)), dim=1).indices
        votes = torch.nn.functional.one_hot(y[:cut][neighbours], int(y[:cut].max()) + 1).sum(dim=1)
        scores[f"knn{k}"] = float((votes.argmax(dim=1) == y[cut:]).double().mean())
    return scores


def old_class_similarity(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    z = torch.nn.functional.normalize(x.double() - x.double().mean(dim=0), dim=1)
    sim = z @ z.T
    same = y[:, None] == y[None, :]
    distinct = ~torch.eye(len(y), dtype=torch.bool)
    return {"within_class_similarity": float(sim[same & distinct].mean()),
            "across_class_similarity": float(sim[~same].mean())}


def old_evaluate(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return old_unit_statistics(x) | old_probes(x, y) | old_class_similarity(x, y)


def reference(path: Path) -> tuple[float, float, dict[str, dict[str, float]]]:
    """The old ``analyze`` of one export and its three baselines: (wall s, CPU s, name -> figures)."""
    import warnings

    warnings.filterwarnings("ignore", module="sklearn")  # lbfgs stops at max_iter on the pixels
    start, cpu = time.perf_counter(), cpu_seconds()
    run = load_representations(path)
    inputs = inputs_of(run_config(path))
    assert inputs is not None, f"no run config or images found for {path}"
    results = {f"{name}/after" if len(run.layers) > 1 else "after": old_evaluate(x, run.labels)
               for name, x in run.layers.items()}
    pixels, width = inputs.flat_float(), next(iter(run.layers.values())).shape[1]
    results["baseline/pixels"] = old_evaluate(pixels, inputs.labels)
    with torch.no_grad():
        projected = DenseLPLLayer(3072, width, torch.Generator().manual_seed(0))(pixels)
    results[f"baseline/random{width}"] = old_evaluate(projected, inputs.labels)
    xc = pixels.double() - pixels.double().mean(dim=0)
    v = torch.linalg.svd(xc, full_matrices=False)[2]
    results[f"baseline/pca{width}"] = old_evaluate((xc @ v[:width].T).float(), inputs.labels)
    return time.perf_counter() - start, cpu_seconds() - cpu, results


# ---------------------------------------------------------------- the new one, end to end

def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def lpl_analyze(path: Path, cache: Path, threads: int) -> tuple[float, float, dict[str, dict[str, float]]]:
    """``lpl analyze PATH --csv`` in a fresh interpreter: (wall s, CPU s, name less the run's stem -> figures)."""
    table = cache.parent / "table.csv"
    env = dict(os.environ, LPL_CACHE_DIR=str(cache), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "lpl.cli", "analyze", str(path), "--csv", str(table)], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    seconds, cpu = time.perf_counter() - start, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    with table.open() as rows:
        return seconds, cpu, {figure_name(row): {k: float(v) for k, v in row.items() if k not in LABELS and v}
                              for row in csv.DictReader(rows)}


def figure_name(row: dict[str, str]) -> str:
    """The reference's name of one CSV row: ``after`` or ``<layer>/after``, ``baseline/pixels``, ``baseline/pca128``."""
    if row["stage"] == "baseline":
        kind = row["representation"].split()[0].strip(",").lower()
        return f"baseline/{kind}" if kind == "pixels" else f"baseline/{kind}{row['units']}"
    return f"{row['layer']}/{row['stage']}" if row["layer"] else row["stage"]


def main(argv: list[str] | None = None) -> None:
    """Time ``lpl analyze`` cold and warm at each thread count, then the old analysis, and print every figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="an export whose run config leads to its images")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--jpegs", type=Path, default=None,
                        help="CIFAR-10 test images by class, e.g. <cifar10-folder>/test (default: synthetic images)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="thread counts to time the new path with; the first also runs the reference")
    parser.add_argument("--warm-repeats", type=int, default=3,
                        help="report the best of this many warm runs (0: cold only)")
    parser.add_argument("--no-reference", action="store_true", help="skip the old implementation (minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or build_run(Path(tmp) / "run", args.samples, args.width, args.jpegs)
        new: dict[str, dict[str, float]] = {}
        cold, warm = 0.0, None
        for i, threads in enumerate(args.threads):
            print(f"load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
            cache = Path(tmp) / f"cache{threads}"
            seconds, cpu, figures = lpl_analyze(path, cache, threads)
            line = f"new  `lpl analyze` (subprocess, {threads} threads): cold cache {seconds:.1f} s (CPU {cpu:.1f} s)"
            best = None
            if args.warm_repeats:
                best, best_cpu, _ = min((lpl_analyze(path, cache, threads) for _ in range(args.warm_repeats)),
                                        key=lambda result: result[0])
                line += f", warm {best:.1f} s (CPU {best_cpu:.1f} s)"
            print(line)
            if i == 0:
                new, cold, warm = figures, seconds, best
        if args.no_reference:
            return
        print(f"load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        old_seconds, old_cpu, old = reference(path)
    speedup = f"{old_seconds / cold:.1f}x cold" + ("" if warm is None else f", {old_seconds / warm:.1f}x warm")
    print(f"old analyze (in-process, {args.threads[0]} threads): {old_seconds:.1f} s (CPU {old_cpu:.1f} s) -> "
          f"speed-up {speedup} ({args.threads[0]} threads)")
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"\n{'representation':<22} {'figure':<24} {'old':>9} {'new':>9} {'diff':>9}")
    for name, values in old.items():
        for key, before in values.items():
            after = new.get(name, {}).get(key)
            if after is None:  # e.g. kNN-200 with 200 or fewer fitting images: the new analysis leaves it out
                print(f"{name:<22} {key:<24} {before:>9.4f} {'-':>9}")
                continue
            diff = f"{100 * (after - before):+.2f} pt" if key in PROBES else f"{after - before:+.1e}"
            print(f"{name:<22} {key:<24} {before:>9.4f} {after:>9.4f} {diff:>9}")


if __name__ == "__main__":
    main()
