"""Config helpers: fields declared once and passed on, per-class defaults, field checks."""

import dataclasses
import typing
from dataclasses import dataclass

import pytest

from lpl.cli import COMMANDS
from lpl.config import check_fields, field_default, flag, inherited, option, passed_on, with_default
from lpl.validation import LPLError


@dataclass
class Source:
    seed: int = option(0, "random seed")
    sizes: list[int] = option([1, 2], "layer sizes")
    rate: float = option(0.5, "a rate")


@dataclass
class Passer:
    seed: int = inherited(Source, "seed")
    sizes: list[int] = inherited(Source, "sizes")
    rate: float = inherited(Source, "rate", 0.1, "its own rate")
    own: int = option(3, "not passed on")


@dataclass
class Child(Source):
    rate: float = with_default(Source, "rate", 0.9)


def test_inherited_fields_keep_the_source_default_and_help_unless_given():
    fields = Passer.__dataclass_fields__
    assert Passer().seed == 0 and Passer().sizes == [1, 2] and Passer().rate == 0.1
    assert fields["seed"].metadata["help"] == "random seed" and fields["rate"].metadata["help"] == "its own rate"


def test_passed_on_collects_exactly_the_inherited_fields_with_copied_lists():
    passer = Passer(seed=7, sizes=[4])
    passed = passed_on(passer, Source)
    assert passed == {"seed": 7, "sizes": [4], "rate": 0.1}
    assert passed["sizes"] is not passer.sizes
    assert Source(**passed).seed == 7


def test_with_default_changes_only_the_default_and_is_not_passed_on():
    assert Child().rate == 0.9 and Source().rate == 0.5
    assert Child.__dataclass_fields__["rate"].metadata["help"] == "a rate"
    assert passed_on(Child(), Source) == {}


def test_list_defaults_are_fresh_per_instance():
    first = Passer()
    first.sizes.append(9)
    assert Passer().sizes == [1, 2] and Source().sizes == [1, 2]


def test_a_misspelled_source_field_fails_at_definition():
    with pytest.raises(TypeError, match="Source has no field 'sead'"):
        inherited(Source, "sead")


def test_check_fields_names_the_flag():
    with pytest.raises(LPLError, match="--rate must be a finite number"):
        check_fields(Source(rate=float("nan")))
    with pytest.raises(LPLError, match="--seed must be a non-negative integer, got -1"):
        check_fields(Source(seed=-1))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_bad_value_of_a_numeric_flag_gets_the_same_message(command):
    """``--steps 0`` and ``--steps -3`` (or ``--batch-size 1`` and ``-3``) fail with one message naming the flag,
    whichever check catches them."""
    config_cls = COMMANDS[command].config
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        default, tp = field_default(field), hints[field.name]
        if field.metadata.get("positional") or tp not in (int, int | None, float, list[int]):
            continue
        messages = set()
        for bad in (-3, -1, 0, 1):
            value = [*default[:-1], bad] if tp == list[int] else float(bad) if tp is float else bad
            try:
                config_cls(**{field.name: value})
            except LPLError as exc:
                assert str(exc).startswith(flag(field.name)) or str(exc).startswith(f"each value of {flag(field.name)}")
                messages.add(str(exc).replace(f"got {value}", "got <value>"))
        assert len(messages) <= 1, messages
