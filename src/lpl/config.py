"""Typed dataclass configs as command lines: every field a flag, unknown keys rejected."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from lpl.validation import LPLError

C = TypeVar("C")


def option(default: Any, help: str, positional: bool = False) -> Any:
    """A dataclass field with help text for ``--help``; lists take ``default`` as a factory.

    ``positional=True`` makes it a positional argument instead of a ``--flag``.
    """
    metadata = {"help": help, "positional": positional}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _flag_kwargs(tp: Any, default: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        (inner,) = [a for a in args if a is not type(None)]
        return _flag_kwargs(inner, default)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if origin is list:
        return {"nargs": "+", "type": args[0]}
    return {"type": tp}


def build_parser(config_cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        default = (field.default_factory() if field.default_factory is not dataclasses.MISSING
                   else field.default)
        kwargs = _flag_kwargs(hints[field.name], default)
        if field.metadata.get("positional"):
            parser.add_argument(field.name, help=field.metadata.get("help", ""), **kwargs)
            continue
        parser.add_argument(
            "--" + field.name.replace("_", "-"), dest=field.name, default=default,
            help=field.metadata.get("help", ""), **kwargs,
        )
    return parser


def parse_config(config_cls: type[C], argv: Sequence[str] | None, prog: str, description: str) -> C:
    """Parse ``argv`` into ``config_cls``; a bad flag or value exits with one clear error line."""
    parser = build_parser(config_cls, prog, description)
    namespace = parser.parse_args(argv)
    try:
        return config_cls(**vars(namespace))
    except LPLError as exc:
        parser.error(str(exc))


def config_from_dict(config_cls: type[C], values: dict[str, Any]) -> C:
    """Build a config from a saved dict, rejecting keys the config does not have."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise LPLError(f"unknown config keys {unknown} for {config_cls.__name__}; valid keys: {sorted(names)}")
    return config_cls(**values)


def require(condition: bool, message: str) -> None:
    """Raise ``LPLError(message)`` unless ``condition`` holds (for configs' ``__post_init__``)."""
    if not condition:
        raise LPLError(message)
