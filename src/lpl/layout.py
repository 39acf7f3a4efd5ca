"""Where a run writes, and what its export files hold: the one layout training and analysis share.

```
<output_dir>/
  activations/<stem>_{before,after}.pt   export: {'<layer>_activations' or 'activations' or
                                          'embeddings': float32 (N, M), 'labels': int64 (N,),
                                          optional 'train': the same for training samples}
  weights/<name>_weights.pt              final weights
  weights/<name>_step<N>.ckpt            checkpoints (checksummed)
  logs/<name>_config.json                config, schedule, git revision, versions, export files
  logs/<name>_log.jsonl                  one diagnostics record per logging interval
  logs/<name>_results.json               per-layer readout of deep runs (lpl.analysis.readout)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from lpl.io import atomic_torch_save, read_json

TAGS = ("before", "after")


@dataclass(frozen=True)
class RunLayout:
    """The files of the run called ``name`` in ``root``; exports are ``<stem>_<tag>.pt``."""

    root: Path
    name: str
    stem: str

    @property
    def activations(self) -> Path:
        return self.root / "activations"

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def activation_file(self, tag: str) -> Path:
        return self.activations / f"{self.stem}_{tag}.pt"

    @property
    def config_file(self) -> Path:
        return self.logs / f"{self.name}_config.json"

    @property
    def log_file(self) -> Path:
        return self.logs / f"{self.name}_log.jsonl"

    @property
    def results_file(self) -> Path:
        return self.logs / f"{self.name}_results.json"

    @property
    def weights_file(self) -> Path:
        return self.weights / f"{self.name}_weights.pt"

    def earlier_results(self) -> list[Path]:
        """Files of an earlier run of this name that a new run would replace."""
        candidates = [self.config_file, *(self.activation_file(tag) for tag in TAGS), self.weights_file]
        return [p for p in candidates if p.exists()]


def layer_key(layer: int | str) -> str:
    """Export key of a layer: ``layer3_activations`` for 3."""
    return f"layer{layer}_activations"


def save_export(path: Path, layers: list[Tensor], labels: Tensor, key: str | None = None,
                train: dict[str, Any] | None = None) -> Path:
    """Write an export: one layer under ``key`` (default ``activations``), several as
    ``layer<k>_activations``; ``train`` optionally holds training-set features for readouts."""
    if len(layers) == 1:
        blob: dict[str, Any] = {key or "activations": layers[0]}
    else:
        blob = {layer_key(i): z for i, z in enumerate(layers, 1)}
    blob["labels"] = labels
    if train is not None:
        blob["train"] = train
    return atomic_torch_save(blob, path)


def run_stem(path: str | Path) -> str:
    """``runname_activations`` for ``.../runname_activations_after.pt`` (or ``_before.pt``)."""
    return Path(path).name.removesuffix(".pt").removesuffix("_before").removesuffix("_after")


def before_after(path: str | Path) -> dict[str, Path]:
    """``{'before': ..., 'after': ...}`` for an export file (those that exist)."""
    path = Path(path)
    pair = {tag: path.with_name(f"{run_stem(path)}_{tag}.pt") for tag in TAGS}
    found = {tag: p for tag, p in pair.items() if p.is_file()}
    return found or {"after": path}


def saved_run(path: str | Path) -> tuple[str, dict[str, Any]] | None:
    """The name and saved ``logs/<name>_config.json`` (config, schedule, run metadata) of the run
    that wrote export ``path``, or None."""
    logs = Path(path).parent.parent / "logs"
    for config_file in sorted(logs.glob("*_config.json")) if logs.is_dir() else []:
        saved = read_json(config_file)
        if saved is not None and Path(path).name in saved.get("activation_files", []):
            return config_file.name.removesuffix("_config.json"), saved
    return None


def run_config(path: str | Path) -> dict[str, Any] | None:
    """The config of the run that wrote export ``path``."""
    found = saved_run(path)
    return None if found is None else found[1]["config"]
