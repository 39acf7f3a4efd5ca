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
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch

from lpl.data import DATASET_HELP
from lpl.io import read_json
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
    """Each named field (not None) must be > 0; the error names the flag (integers: worded as ``check_fields``)."""
    for name in names:
        value = getattr(config, name)
        kind = "integer" if isinstance(value, int) else "number"
        require(value is None or value > 0, f"{flag(name)} must be a positive {kind}, got {value}")


def field_names(config: Any) -> set[str]:
    """The names of a dataclass's fields (a class or an instance)."""
    return {f.name for f in dataclasses.fields(config)}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# The least value of an integer flag (or of each value of a list of integers), wherever the flag occurs; any
# other integer flag is a count >= 0. One bound per flag, so that every value below it gets the same message.
MINIMUM = {**dict.fromkeys(("steps", "epochs", "log_every", "keep_checkpoints", "num_export", "lpl_steps",
                            "byol_steps", "features", "units", "eval_train", "eval_epochs", "ablation_epochs",
                            "dims", "channels", "kernel_sizes", "pool_after", "max_offset", "pairs", "readout_steps",
                            "exposures"), 1),
           "readout_images": 2,
           "batch_size": 2,  # the objectives need batch statistics
           "image_size": 2}


def _below_minimum(name: str, value: Any) -> str:
    least = MINIMUM.get(name, 0)
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(least, f"an integer >= {least}")
    return f"{'each value of ' if isinstance(value, list) else ''}{flag(name)} must be {kind}, got {value}"


def check_fields(config: Any) -> None:
    """Every float field finite, every int field (and each value of a list of ints) at least its ``MINIMUM``
    (else 0): one error naming the flag, the same for every bad value."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value, tp, least = getattr(config, field.name), hints[field.name], MINIMUM.get(field.name, 0)
        if tp in (float, float | None) and value is not None:
            require(math.isfinite(value), f"{flag(field.name)} must be a finite number, got {value}")
        if tp in (int, int | None) and value is not None:
            require(value >= least, _below_minimum(field.name, value))
        if tp == list[int]:
            require(all(v >= least for v in value), _below_minimum(field.name, value))


def resolve_device(device: str) -> str:
    """The device a run uses: for ``auto`` CUDA when there is a CUDA device, else the CPU (not Apple's MPS,
    which is not supported); any other value as given, once ``check_device`` accepts it."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def check_device(device: str) -> None:
    """A device torch knows and that exists here."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise LPLError(f"--device {device!r} is not a torch device; use auto, cpu, cuda or cuda:<index>") from None
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
                         "keep_checkpoints", "stop_after_minutes", "progress", "evaluate", "tensorboard"})
# Where a run happens: hardware, compilation and file locations (results equal up to floating-point order).
PLACEMENT = frozenset({"device", "compile", "download", "data_dir", "output_dir"})
# Settings that name files or folders, relative to the working folder of the run given them (a data set may
# instead be a name: cifar10, shapes, digits).
PATHS = frozenset({"dataset", "data_dir", "output_dir"})


def setting_meaning(name: str, value: Any, cwd: str | None = None) -> Any:
    """What setting ``name`` = ``value`` means, to compare runs' settings: a path made absolute against ``cwd``
    (the working folder of the run it was given to; default the current one), ``~`` expanded, without trailing
    slashes; a data set given as a bare word naming no folder there (cifar10, shapes) and any other value as is."""
    if name not in PATHS or not isinstance(value, str):
        return value
    path = Path(cwd or os.getcwd(), os.path.expanduser(value))
    bare = not ({"/", os.sep} & set(value)) and not value.startswith("~") and not value.endswith(".pt")
    if name == "dataset" and bare and not path.is_dir():
        return value
    return os.path.normpath(path)


@dataclass
class RunOptions:
    """Fields of every command that trains: where it writes and how it survives faults."""

    seed: int = option(0, "random seed (weights, data order, augmentations)")
    device: str = option("auto", "torch device: auto (CUDA when there is a CUDA device, else cpu), cpu, cuda, "
                         "cuda:1; the run's config records the device it used")
    output_dir: str = option("outputs", "folder for activations/, weights/ and logs/")
    checkpoint_minutes: float = option(5.0, "minutes between checkpoints (0: only at the end, on a signal "
                                       "and on a NaN stop)")
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep")
    stop_after_minutes: float = option(0.0, "stop with a checkpoint after this many minutes of training (a job's "
                                       "time limit; exit 75), to continue with --resume; 0: no limit")
    resume: bool = option(False, "continue from the latest good checkpoint of this run")
    overwrite: bool = option(False, "replace the outputs of an earlier run of the same name")
    progress: bool = option(True, "show a progress bar (when stderr is a terminal)")
    tensorboard: bool = option(False, "also write the log records as TensorBoard events to "
                               "<output-dir>/tensorboard/<name> (needs pip install 'lpl[tensorboard]')")

    def __post_init__(self) -> None:
        check_fields(self)
        require(not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one")
        require(self.stop_after_minutes >= 0, f"--stop-after-minutes must be >= 0 (0: no limit), "
                f"got {self.stop_after_minutes}")
        require(not self.tensorboard or find_spec("tensorboard") is not None, "--tensorboard needs the "
                "tensorboard package, which is not installed; pip install 'lpl[tensorboard]', or leave it out")
        self.device = resolve_device(self.device)


@dataclass
class TrainConfig(RunOptions):
    """``RunOptions`` and the data every trainer reads (each adds steps, batch size and its own)."""

    dataset: str = option("cifar10", DATASET_HELP)
    data_dir: str | None = option(None, "CIFAR-10 folder (default $LPL_DATA_DIR, else ./data)")
    download: bool = option(True, "download CIFAR-10 when it is not in --data-dir")
    image_size: int | None = option(None, "image folders: resize every image to N x N")
    num_export: int = option(10000, "test samples whose activations are exported (at most as many as there are)")
    checkpoint_every: int = option(0, "steps between checkpoints besides --checkpoint-minutes (0: none); one "
                                   "falling due while the last is still being written follows once it is on disk")


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


SAVED_CONFIG = "saved_config"  # argparse dest of --config FILE


def build_parser(config_cls: type, prog: str, description: str, preset: Mapping[str, Any] | None = None,
                 explicit: bool = False) -> argparse.ArgumentParser:
    """A parser with a flag per field (and ``--config`` for commands that train); ``preset`` replaces some
    defaults. ``explicit``: a parser that returns only the flags given, without defaults.

    A config class may declare ``option_groups()``: {owner: dataclass} of settings that belong to a part chosen
    at run time (the objective's head). Their flags are listed per owner and, when given, collected into the
    config's ``options_field`` dict (checked by the config, which knows the chosen owner).
    """
    parser = _Parser(prog=prog, description=description)
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if field.metadata.get("hidden"):
            continue
        default = argparse.SUPPRESS if explicit else (preset or {}).get(field.name, field_default(field))
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
            kwargs = _flag_kwargs(option_hints[field.name])
            if "action" not in kwargs:  # argparse would name the value after the prefixed dest
                kwargs["metavar"] = field.name.upper()
            group.add_argument(flag(field.name), dest=f"{OPTION_PREFIX}{field.name}", default=argparse.SUPPRESS,
                               help=_with_default(field.metadata.get("help", ""), field_default(field)), **kwargs)
    if issubclass(config_cls, RunOptions):
        parser.add_argument("--config", dest=SAVED_CONFIG, metavar="FILE", default=argparse.SUPPRESS if explicit
                            else None, help="the settings of a saved run (<output-dir>/logs/<name>_run.json) as "
                            "the defaults of every flag but --resume and --overwrite")
    return parser


OPTION_PREFIX = "option:"  # argparse dest of an option-group flag


def _with_default(text: str, default: Any) -> str:
    """Help text with its default, unless it says the default itself (as ``_HelpFormatter`` does)."""
    return text if "default" in text else f"{text} (default: {default})"


def parse_config(config_cls: type[C], argv: Sequence[str], prog: str, description: str,
                 preset: Mapping[str, Any] | None = None, commands: Mapping[str, type] | None = None) -> C:
    """Parse ``argv`` into ``config_cls``; a bad flag or value exits with one clear error line.

    A config class with ``PRESETS`` ({name: defaults}) takes ``--preset NAME``: the named defaults replace the
    class's, and flags given on the command line replace both. ``--config FILE`` and ``--resume`` take the
    settings of a saved run (``saved_settings``) as defaults above those (a ``--preset`` given beside them
    wins over the file); ``--resume`` finds the run it continues in ``--output-dir`` (``resumed_run``) and
    sets ``overwrite`` off unless it is given. ``commands`` ({name: config class}) name a foreign file's owner.
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
    options = {k.removeprefix(OPTION_PREFIX): values.pop(k) for k in list(values) if k.startswith(OPTION_PREFIX)}
    options_field = getattr(config_cls, "options_field", None)
    path = values.pop(SAVED_CONFIG, None)
    try:
        layers: list[Mapping[str, Any]] = [chosen]  # defaults above the class's, lowest first
        if path is not None or values.get("resume"):
            given = {k: v for k, v in vars(build_parser(config_cls, prog, description, explicit=True)
                                           .parse_args(argv)).items()
                     if k != SAVED_CONFIG and not k.startswith(OPTION_PREFIX)}
            if path is None and hasattr(config_cls, "layout"):
                path = resumed_run(config_cls(**values))
            saved = saved_settings(config_cls, Path(path), commands) if path is not None else {}
            layers += [saved, presets.get(given.get("preset", ""), {}), given]
            values.update({k: v for layer in layers[1:] for k, v in layer.items()})
            if values["resume"] and "overwrite" not in given:
                values["overwrite"] = False
        if options_field:  # settings from a preset or a saved run that the chosen owner has; those typed, all
            accepted = _owned_options(config_cls, values)
            values[options_field] = {k: v for layer in layers for k, v in layer.get(options_field, {}).items()
                                     if accepted is None or k in accepted}
            values[options_field].update(options)
        return config_cls(**values)
    except LPLError as exc:
        parser.error(str(exc))


def _owned_options(config_cls: type, values: Mapping[str, Any]) -> set[str] | None:
    """The settings of the owner chosen in ``values`` (``config_cls.option_owner``, e.g. the objective), or None
    when the class has no owners or the owner is unknown (the config's own check then says so)."""
    owner = values.get(getattr(config_cls, "option_owner", ""))
    groups = config_cls.option_groups() if hasattr(config_cls, "option_groups") else {}
    return field_names(groups[owner]) if owner in groups else None


def saved_settings(config_cls: type, path: Path, commands: Mapping[str, type] | None = None) -> dict[str, Any]:
    """The settings saved in ``path`` (a run record's key "config") as values of ``config_cls``'s
    fields: all but ``resume`` and ``overwrite``, paths made absolute against the run's working folder, and
    ``output_dir`` the folder that holds the file's logs/ folder (where the run is, even if moved)."""
    saved = read_json(path) if path.is_file() else None
    settings = saved.get("config") if saved else None
    if saved is None or not isinstance(settings, dict):
        raise LPLError(f"--config {path} is not a saved run config (a run's <output-dir>/logs/<name>_run.json); "
                       f"check the path")
    names = field_names(config_cls)
    foreign = sorted(set(settings) - names)
    if foreign:
        owners = [f"lpl {name}" for name, cls in (commands or {}).items()
                  if set(settings) <= field_names(cls)]
        raise LPLError(f"--config {path} holds the settings of {' or '.join(owners) or 'another command'}, not of "
                       f"this one ({', '.join(flag(k) for k in foreign[:3])} are not its flags); pass it to "
                       f"{'that command' if owners else 'the command that wrote it'}")
    values = {k: setting_meaning(k, v, saved.get("cwd")) for k, v in settings.items()
              if k not in ("resume", "overwrite")}
    if path.parent.name == "logs":
        values["output_dir"] = str(path.parent.parent)
    return values


def resumed_run(config: Any) -> Path | None:
    """The run record of the run ``config`` would resume: its own, else that of the only run in its
    output folder whose settings are all fields of ``config`` (None if there is none)."""
    layout = config.layout()
    if layout.record_file.is_file():
        return layout.record_file
    names = field_names(config)
    suffix = layout.record_file.name.removeprefix(layout.name)
    found = [p for p in sorted(layout.logs.glob(f"*{suffix}"))
             if isinstance(settings := (read_json(p) or {}).get("config"), dict) and set(settings) <= names]
    if len(found) > 1:
        runs = ", ".join(p.name.removesuffix(suffix) for p in found)
        raise LPLError(f"--resume: {layout.root} holds several runs of this command ({runs}); name the one to "
                       f"continue: --config {layout.logs / ('<name>' + suffix)} --resume")
    return found[0] if found else None
