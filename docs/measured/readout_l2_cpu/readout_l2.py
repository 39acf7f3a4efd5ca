"""Does the frontier readout (every block average-pooled to at most 4x4, and all blocks concatenated) gain from
L2 on the readout weights, chosen on a validation split of the training images? For one trained wide3 run and its
initialisation (the same protocol for both), on the CPU. The readout's Adam is swapped for AdamW with the decay.

    python readout_l2.py RUN_DIR RUN_NAME [STAGE ...]   (after, before; the CIFAR-10 folder at /work/data/cifar10)
"""
import functools
import json
import sys
import time

import torch

from lpl.analysis import readout
from lpl.data import load_splits
from lpl.load import features, load

DECAYS = [0.0, 0.5, 5.0, 50.0]
ADAM = torch.optim.Adam


def linear_readouts(*args, weight_decay: float, **kwargs) -> list[float]:
    """``readout.linear_readouts`` with decoupled L2 (AdamW) on the readouts' weights."""
    torch.optim.Adam = functools.partial(torch.optim.AdamW, weight_decay=weight_decay)
    try:
        return readout.linear_readouts(*args, **kwargs)
    finally:
        torch.optim.Adam = ADAM


run, name = sys.argv[1], sys.argv[2]
train, test = load_splits("/work/data/cifar10")
y, y_test = train.labels, test.labels
out = {}
for stage in sys.argv[3:] or ["after", "before"]:
    t0 = time.time()
    net = load(run, name, stage)
    with torch.inference_mode():
        tr, te = features(net, train.images, grid=4), features(net, test.images, grid=4)
    print(stage, "features", [x.shape[1] for x in tr], f"{time.time() - t0:.0f} s", flush=True)
    fit, val = slice(0, 45000), slice(45000, 50000)
    validation = {wd: linear_readouts([x[fit] for x in tr], y[fit], [x[val] for x in tr], y[val], combined=True,
                                      weight_decay=wd) for wd in DECAYS}
    print(stage, "validation", {wd: [round(100 * a, 1) for a in v] for wd, v in validation.items()}, flush=True)
    chosen = [max(DECAYS, key=lambda wd: validation[wd][k]) for k in range(len(tr) + 1)]
    tests = {wd: linear_readouts(tr, y, te, y_test, combined=True, weight_decay=wd)
             for wd in sorted(set(chosen) | {0.0})}
    out[stage] = {"validation": validation, "chosen": chosen, "test": tests,
                  "test_at_chosen": [tests[wd][k] for k, wd in enumerate(chosen)]}
    print(stage, "test", {wd: [round(100 * a, 1) for a in v] for wd, v in tests.items()}, "chosen", chosen,
          f"{time.time() - t0:.0f} s", flush=True)
    del tr, te
json.dump(out, open(f"readout_l2_{name}.json", "w"), indent=1)
