"""Command configs: plain dataclasses whose fields are the flags, with documented defaults.

``option`` attaches the help text to a field; ``parse_config`` (used only by ``lpl.cli``) turns a
command line into a config, with a preset of other defaults where a command needs them.
``TrainConfig`` holds the fields every trainer shares; each trainer adds its own.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import torch

from lpl.data import DATASET_HELP
from lpl.validation import LPLError

C = TypeVar("C")


def option(default: Any, help: str, positional: bool = False, **extra: Any) -> Any:
    """A dataclass field with help text for ``--help``; lists take ``default`` as a factory.

    ``positional=True`` makes it a positional argument instead of a ``--flag``; ``extra`` goes into the
    field's metadata (``hidden=True``: no flag; set by ``parse_config``).
    """
    metadata = {"help": help, "positional": positional, **extra}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_default(field: dataclasses.Field) -> Any:
    """A dataclass field's default value (a fresh one where it has a factory)."""
    return field.default_factory() if callable(field.default_factory) else field.default


def _field_of(source: type, name: str, default: Any, help: str | None, **extra: Any) -> Any:
    """An option like ``source``'s field ``name``: its default and help unless given."""
    field = next((f for f in dataclasses.fields(source) if f.name == name), None)
    if field is None:
        raise TypeError(f"{source.__name__} has no field {name!r}")
    return option(field_default(field) if default is dataclasses.MISSING else default,
                  help or field.metadata["help"], **extra)


def inherited(source: type, name: str, default: Any = dataclasses.MISSING, help: str | None = None) -> Any:
    """Field ``name`` of the config class ``source``, for a command that passes its value on to a
    ``source`` config: the default and help live there (unless given), and ``passed_on(config, source)``
    collects every such field."""
    return _field_of(source, name, default, help, passed_to=source)


def with_default(base: type, name: str, default: Any) -> Any:
    """A subclass's own default for the field ``name`` of its config base class (same flag, same help)."""
    return _field_of(base, name, default, None)


def passed_on(config: Any, source: type) -> dict[str, Any]:
    """The values of ``config``'s fields declared with ``inherited(source, ...)`` (lists copied)."""
    return {f.name: copy.copy(getattr(config, f.name))
            for f in dataclasses.fields(config) if f.metadata.get("passed_to") is source}


def require(condition: bool, message: str) -> None:
    """Raise ``LPLError(message)`` unless ``condition`` holds (for configs' ``__post_init__``)."""
    if not condition:
        raise LPLError(message)


def require_positive(config: Any, *names: str) -> None:
    """Each named field (not None) must be > 0; the error names the flag."""
    for name in names:
        value = getattr(config, name)
        require(value is None or value > 0, f"{flag(name)} must be positive, got {value}")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_fields(config: Any) -> None:
    """Every float field finite, every int field a count (>= 0): one error naming the flag."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value, tp = getattr(config, field.name), hints[field.name]
        if tp in (float, float | None) and value is not None:
            require(math.isfinite(value), f"{flag(field.name)} must be a finite number, got {value}")
        if tp in (int, int | None) and value is not None:
            require(value >= 0, f"{flag(field.name)} must be >= 0, got {value}")
        if tp == list[int]:
            require(all(v >= 0 for v in value), f"{flag(field.name)} takes values >= 0, got {value}")


def check_device(device: str) -> None:
    """A device torch knows and that exists here."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise LPLError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:<index>") from None
    if parsed.type == "cuda":
        require(torch.cuda.is_available(), f"--device {device} was asked for but CUDA is not available "
                "here; use --device cpu")
        require(parsed.index is None or parsed.index < torch.cuda.device_count(),
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    else:
        require(parsed.type == "cpu", f"--device {device}: only cpu and cuda are supported")


# Settings that say how a run is carried out, not what it computes: a run may resume under other
# values, and comparisons of runs do not list them as differences.
RUN_CONTROL = frozenset({"resume", "overwrite", "log_every", "checkpoint_every", "checkpoint_minutes",
                         "keep_checkpoints", "progress", "evaluate"})
# Where a run happens: hardware, compilation and file locations (results equal up to floating-point order).
PLACEMENT = frozenset({"device", "compile", "download", "data_dir", "output_dir"})


@dataclass
class RunOptions:
    """Fields of every command that trains: where it writes and how it survives faults."""

    seed: int = option(0, "random seed (weights, data order, augmentations)")
    device: str = option("cpu", "torch device: cpu, cuda, cuda:1")
    output_dir: str = option("outputs", "folder for activations/, weights/ and logs/")
    checkpoint_minutes: float = option(5.0, "minutes between checkpoints (0: only at the end, on a signal "
                                       "and on a NaN stop)")
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep")
    resume: bool = option(False, "continue from the latest good checkpoint of this run")
    overwrite: bool = option(False, "replace the outputs of an earlier run of the same name")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        check_fields(self)
        require(self.keep_checkpoints >= 1, "--keep-checkpoints must be positive")
        require(not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one")
        check_device(self.device)


@dataclass
class TrainConfig(RunOptions):
    """``RunOptions`` and the data every trainer reads (each adds steps, batch size and its own)."""

    dataset: str = option("cifar10", DATASET_HELP)
    data_dir: str | None = option(None, "CIFAR-10 folder (default $LPL_DATA_DIR, else ./data)")
    download: bool = option(True, "download CIFAR-10 when it is not in --data-dir")
    image_size: int | None = option(None, "image folders: resize every image to N x N")
    num_export: int = option(10000, "test samples whose activations are exported")
    checkpoint_every: int = option(0, "steps between checkpoints besides --checkpoint-minutes (0: none); one "
                                   "falling due while the last is still being written follows once it is on disk")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_export >= 1, "--num-export must be positive")
        require(self.image_size is None or self.image_size >= 2, "--image-size must be at least 2")


class _Parser(argparse.ArgumentParser):
    """Prints one error line and where to look, not the whole usage; takes no abbreviated flags."""

    def __init__(self, **kwargs: Any):
        super().__init__(allow_abbrev=False, formatter_class=_HelpFormatter, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds each flag's default to its help, unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        return text if "default" in text else super()._get_help_string(action)


def _flag_kwargs(tp: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        (inner,) = [a for a in args if a is not type(None)]
        return _flag_kwargs(inner)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if origin is list:
        return {"nargs": "+", "type": args[0]}
    return {"type": tp}


def build_parser(config_cls: type, prog: str, description: str,
                 preset: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """A parser with a flag per field; ``preset`` replaces some defaults.

    A config class may declare ``option_groups()``: {owner: dataclass} of settings that belong to a part chosen
    at run time (the objective's head). Their flags are listed per owner and, when given, collected into the
    config's ``options_field`` dict (checked by the config, which knows the chosen owner).
    """
    parser = _Parser(prog=prog, description=description)
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if field.metadata.get("hidden"):
            continue
        default = (preset or {}).get(field.name, field_default(field))
        kwargs, help_text = _flag_kwargs(hints[field.name]), field.metadata.get("help", "")
        if field.metadata.get("positional"):
            parser.add_argument(field.name, help=help_text, **kwargs)
        else:
            parser.add_argument(flag(field.name), dest=field.name, default=default, help=help_text, **kwargs)
    added: set[str] = set()
    for owner, options in getattr(config_cls, "option_groups", dict)().items():
        group = parser.add_argument_group(f"{owner} settings")
        option_hints = typing.get_type_hints(options)
        for field in dataclasses.fields(options):
            if field.name in added:
                continue
            added.add(field.name)
            group.add_argument(flag(field.name), dest=f"{OPTION_PREFIX}{field.name}", default=argparse.SUPPRESS,
                               help=_with_default(field.metadata.get("help", ""), field_default(field)),
                               **_flag_kwargs(option_hints[field.name]))
    return parser


OPTION_PREFIX = "option:"  # argparse dest of an option-group flag


def _with_default(text: str, default: Any) -> str:
    """Help text with its default, unless it says the default itself (as ``_HelpFormatter`` does)."""
    return text if "default" in text else f"{text} (default: {default})"


def parse_config(config_cls: type[C], argv: Sequence[str], prog: str, description: str,
                 preset: Mapping[str, Any] | None = None) -> C:
    """Parse ``argv`` into ``config_cls``; a bad flag or value exits with one clear error line.

    A config class with ``PRESETS`` ({name: defaults}) takes ``--preset NAME``: the named defaults replace the
    class's, and flags given on the command line replace both.
    """
    presets: Mapping[str, Mapping[str, Any]] = getattr(config_cls, "PRESETS", {})
    chosen = dict(preset or {})
    if presets and "--preset" in argv[:-1]:
        name = argv[list(argv).index("--preset") + 1]
        if name not in presets:
            _Parser(prog=prog).error(f"argument --preset: invalid choice: {name!r} (choose from "
                                     f"{', '.join(map(repr, presets))})")
        chosen.update(presets[name])
    parser = build_parser(config_cls, prog, description, chosen)
    values = vars(parser.parse_args(argv))
    given = {k.removeprefix(OPTION_PREFIX): values.pop(k) for k in list(values) if k.startswith(OPTION_PREFIX)}
    options_field = getattr(config_cls, "options_field", None)
    if options_field:
        values[options_field] = {**chosen.get(options_field, {}), **given}
    try:
        return config_cls(**values)
    except LPLError as exc:
        parser.error(str(exc))
