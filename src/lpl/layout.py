"""Where a run writes, and what its files hold: the one layout training, loading and analysis share.

```
<output_dir>/
  activations/<stem>_{before,after}.pt   export: {'layer<k>_activations': float32 (N, M_k) for every layer k
                                          (one for single-layer runs), 'labels': int64 (N,), for sequence data
                                          'sequence', 'frame' (N,) and 'sequence_names'; deep runs 'train': the
                                          same for training samples}
  weights/<name>_{before,after}.safetensors   the network at initialisation and trained (tensors only)
  weights/<name>_weights.pt              final weights with the objective's heads (torch format)
  weights/<name>_step<N>.ckpt            checkpoints (checksummed)
  logs/<name>_run.json                   the run record: what wrote the run, with which network, objective,
                                          data and config (``RECORD_FORMAT``; ``read_record``)
  logs/<name>_log.jsonl                  one diagnostics record per logging interval
  logs/<name>_results.json               per-layer readout of deep runs (lpl.analysis.readout)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from lpl.data.images import ImageSet
from lpl.io import atomic_torch_save, atomic_write_bytes, atomic_write_json, read_json
from lpl.validation import LPLError

TAGS = ("before", "after")
RECORD_FORMAT = "lpl-run/1"


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
    def record_file(self) -> Path:
        return self.logs / f"{self.name}_run.json"

    def network_file(self, tag: str) -> Path:
        return self.weights / f"{self.name}_{tag}.safetensors"

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
        candidates = [self.record_file, *(self.activation_file(tag) for tag in TAGS), self.weights_file]
        return [p for p in candidates if p.exists()]


def write_record(layout: RunLayout, record: dict[str, Any]) -> Path:
    """Write the run record (``record`` plus its format tag) atomically."""
    return atomic_write_json({"format": RECORD_FORMAT, **record}, layout.record_file)


def read_record(path: str | Path) -> dict[str, Any]:
    """The run record in ``path`` (a ``logs/<name>_run.json``); a clear error for anything else."""
    path = Path(path)
    record = read_json(path)
    if record is None:
        raise LPLError(f"{path} is missing or not a run record; pass an output folder written by lpl")
    if record.get("format") != RECORD_FORMAT:
        raise LPLError(f"{path} was written by an older lpl (no {RECORD_FORMAT} record); retrain the run with this "
                       f"version, or read its files directly")
    return record


def run_records(output_dir: str | Path) -> dict[str, Path]:
    """{run name: record file} of the runs in ``output_dir``; a clear error where there is none."""
    root = Path(output_dir)
    found = {p.name.removesuffix("_run.json"): p for p in sorted((root / "logs").glob("*_run.json"))}
    if not found:
        old = sorted((root / "logs").glob("*_config.json"))
        hint = (" (it holds runs of an older lpl without run records: retrain them with this version)" if old else
                "; pass the --output-dir of a training run")
        raise LPLError(f"{root} holds no run record (logs/<name>_run.json){hint}")
    return found


def describe_data(dataset: str, train: ImageSet, test: ImageSet) -> dict[str, Any]:
    """Name (or resolved path), image shape, classes and sequences of a data set, for run records."""
    path = Path(dataset).expanduser()
    return {"dataset": dataset, "path": str(path.resolve()) if path.exists() else None,
            "shape": list(train.shape), "classes": list(train.classes), "train_images": len(train),
            "test_images": len(test),
            "sequences": {split: int(data.sequence_ids().unique().numel()) if data.has_sequences else 0
                          for split, data in (("train", train), ("test", test))}}


def save_tensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """``tensors`` as a safetensors file (no code inside, safe to load from anyone), written atomically."""
    from safetensors.torch import save

    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write_bytes(save(plain, metadata), path)


def load_tensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file, on the CPU; a clear error for a missing or damaged one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise LPLError(f"weights file {path} does not exist; the run may not have finished")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LPLError(f"weights file {path} is damaged ({exc}); retrain the run or restore the file") from None


def layer_key(layer: int | str) -> str:
    """Export key of a layer: ``layer3_activations`` for 3."""
    return f"layer{layer}_activations"


def save_export(path: Path, layers: list[Tensor], labels: Tensor, train: dict[str, Any] | None = None,
                rows: ImageSet | None = None) -> Path:
    """Write an export, one schema for every trainer: each layer k (1-based; a single-layer run has layer 1)
    under ``layer<k>_activations``, and ``labels``; ``train`` optionally holds training-set features for
    readouts. ``rows``: the exported images; where they form sequences, each row's ``sequence`` id and ``frame``
    index (int64 (N,)) and the ``sequence_names`` (indexed by id, when known) are saved too."""
    blob: dict[str, Any] = {layer_key(i): z for i, z in enumerate(layers, 1)}
    blob["labels"] = labels
    if rows is not None and rows.has_sequences:
        blob.update(sequence=rows.sequence_ids().clone(), frame=rows.frame_index(), sequence_names=list(rows.names))
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
    """The name and run record (``logs/<name>_run.json``: config, schedule, run metadata, network, data) of
    the run that wrote export ``path``, or None."""
    logs = Path(path).parent.parent / "logs"
    for record_file in sorted(logs.glob("*_run.json")) if logs.is_dir() else []:
        saved = read_json(record_file)
        if saved is not None and Path(path).name in saved.get("activation_files", []):
            return record_file.name.removesuffix("_run.json"), saved
    return None


def run_config(path: str | Path) -> dict[str, Any] | None:
    """The config of the run that wrote export ``path``."""
    found = saved_run(path)
    return None if found is None else found[1]["config"]
