"""Configuration values: reading what a file or a variable gives, and refusing what is invalid.

This module owns the converters (numbers written as text, a list for a tuple, a Do Not Track
flag in any usual spelling) and the validators of the settings' fields, each of which raises
:class:`~wking_device.errors.ConfigError` naming the field's dotted key. It does not define the
settings classes, read the file or the environment, or resolve paths: those are
:mod:`wking_device.config` and :mod:`wking_device._config_paths`. Like them it imports neither
pydantic nor ``importlib.metadata`` (issue 11).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, cast

from wking_device._redact import MAC_RE
from wking_device.errors import ConfigError

if TYPE_CHECKING:
    import attrs

# The settings are attrs classes, not pydantic models: defining or validating the first pydantic
# model imports importlib.metadata and email to look for plugins (~20 ms of every command's
# start-up), and pydantic itself is most of the rest (issue 11). Each class is frozen and slotted;
# converters accept what a file or a variable gives (numbers as text, a list for a tuple, a table
# for a section) and validators, run by ``__init__``, refuse the rest with a ConfigError naming the
# dotted key. Every number has a finite, bounded range: `scan_timeout = inf` (or nan, or 1e300)
# would make a command wait forever or overflow a timer (issue 7).

_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")
_FLOAT_TEXT = re.compile(
    r"[+-]?(?:[0-9]+(?:_[0-9]+)*(?:\.(?:[0-9]+(?:_[0-9]+)*)?)?|\.[0-9]+(?:_[0-9]+)*)"
    r"(?:[eE][+-]?[0-9]+(?:_[0-9]+)*)?"
)
_NOT_FINITE_TEXT = frozenset(
    sign + word for sign in ("", "+", "-") for word in ("inf", "infinity", "nan")
)
_ADAPTER_NAME = re.compile(r"hci[0-9]{1,3}")
_REGION = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,31}")
_HEX_PIN = re.compile(r"[0-9A-Fa-f]{64}")
_B64_PIN = re.compile(r"[A-Za-z0-9+/]{43}=")
_LIST: Final = {"wking_list": True}
"""Field metadata: the field is a list (written as JSON in a variable)."""


def _number_text(value: str) -> float | None:
    """A number written as text (ASCII digits, ``inf``, ``nan``), or ``None``."""
    text = value.strip()
    if _FLOAT_TEXT.fullmatch(text) or text.lower() in _NOT_FINITE_TEXT:
        try:
            return float(text)
        except ValueError:  # pragma: no cover - the pattern admits only what float() reads
            return None
    return None


def _as_int(value: int) -> int:
    """An integer from what a file or a variable gives (``"7"``, ``7.0``); the rest unchanged.

    Booleans stay as they are (the validator refuses them): ``max_connections = true`` is a
    mistake, not 1.
    """
    candidate: object = value
    if isinstance(candidate, str):
        text = candidate.strip()
        if _INT_TEXT.fullmatch(text):
            try:
                return int(text)
            except ValueError:  # more digits than int() reads (sys.get_int_max_str_digits)
                return value
        number = _number_text(text)
        candidate = value if number is None else number
    if isinstance(candidate, float) and math.isfinite(candidate) and candidate.is_integer():
        return int(candidate)
    return value


def _as_float(value: float) -> float:
    """A float from an integer or from text (``"2.5"``, ``"3"``); the rest unchanged."""
    candidate: object = value
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        try:
            return float(candidate)
        except OverflowError:
            return value
    if isinstance(candidate, str):
        number = _number_text(candidate)
        return value if number is None else number
    return value


def _as_bool(value: bool) -> bool:
    """A boolean from ``0``/``1`` or text (``"yes"``, ``"off"``...); the rest unchanged."""
    flag = _flag(value)
    return value if flag is None else flag


def _as_tuple(value: Sequence[str]) -> tuple[str, ...]:
    """A tuple from a list; the rest unchanged (a text is not a list of its letters)."""
    return tuple(value) if isinstance(value, list) else cast("tuple[str, ...]", value)


def _as_path(value: str | os.PathLike[str] | None) -> Path | None:
    """A path from non-empty text or a path-like object; the rest unchanged."""
    if (isinstance(value, str) and value) or isinstance(value, os.PathLike):
        return Path(value)
    return cast("Path | None", value)


def _stripped(value: str | None) -> str | None:
    """Text without surrounding whitespace; the rest unchanged."""
    return value.strip() if isinstance(value, str) else value


def _key(instance: object, attribute: attrs.Attribute[Any], *index: int) -> str:
    """The dotted key of a field (``ble.scan_timeout``), with a list item's index."""
    section = getattr(type(instance), "_SECTION", "")
    parts = ([section] if section else []) + [attribute.name] + [str(i) for i in index]
    return ".".join(parts)


def _invalid(
    instance: object, attribute: attrs.Attribute[Any], reason: str, *index: int
) -> NoReturn:
    """Raise a ConfigError naming the field's dotted key."""
    raise ConfigError(reason, key=_key(instance, attribute, *index))


_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _integer(low: int, high: int) -> _Validator:
    """A validator: an integer (not a boolean) from ``low`` to ``high``."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            _invalid(instance, attribute, "Input should be a finite number")
        if isinstance(value, float) and not value.is_integer():
            _invalid(
                instance,
                attribute,
                "Input should be a valid integer, got a number with a fractional part",
            )
        if isinstance(value, str):
            _invalid(
                instance,
                attribute,
                "Input should be a valid integer, unable to parse string as an integer",
            )
        if not isinstance(value, int) or isinstance(value, bool):
            _invalid(instance, attribute, "Input should be a valid integer")
        if value < low:
            _invalid(instance, attribute, f"Input should be greater than or equal to {low}")
        if value > high:
            _invalid(instance, attribute, f"Input should be less than or equal to {high}")

    return check


def _seconds(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: a duration in seconds, more than 0 and at most an hour."""
    if isinstance(value, str):
        _invalid(
            instance,
            attribute,
            "Input should be a valid number, unable to parse string as a number",
        )
    if not isinstance(value, int | float) or isinstance(value, bool):
        _invalid(instance, attribute, "Input should be a valid number")
    if isinstance(value, float) and not math.isfinite(value):
        _invalid(instance, attribute, "Input should be a finite number")
    if value <= 0:
        _invalid(instance, attribute, "Input should be greater than 0")
    if value > 3600:
        _invalid(instance, attribute, "Input should be less than or equal to 3600")


def _boolean(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: ``True`` or ``False``."""
    if not isinstance(value, bool):
        _invalid(instance, attribute, "Input should be a valid boolean, unable to interpret input")


def _text(
    *, optional: bool = False, min_length: int = 0, max_length: int | None = None
) -> _Validator:
    """A validator: a string (or ``None`` when ``optional``) of a bounded length."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str):
            _invalid(instance, attribute, "Input should be a valid string")
            return
        if len(value) < min_length:
            _invalid(instance, attribute, f"String should have at least {min_length} character")
        if max_length is not None and len(value) > max_length:
            _invalid(instance, attribute, f"String should have at most {max_length} characters")

    return check


def _region_problem(value: object) -> str | None:
    """What is wrong with a region code (``EU``, ``US``, ``US-CA``...), or ``None``.

    The region is recorded in plaintext with every consent ledger entry, so a MAC-shaped value
    (``AA-BB-CC-DD-EE-FF`` fits the pattern) is refused as well.
    """
    if not isinstance(value, str):
        return "Input should be a valid string"
    if not _REGION.fullmatch(value) or MAC_RE.search(value):
        return (
            "a region is a short code such as EU, US or US-CA (ASCII letters, digits and "
            "hyphens, at most 32, not MAC-shaped)"
        )
    return None


def _region(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: ``None`` or a region code (see :func:`_region_problem`)."""
    if value is None:
        return
    problem = _region_problem(value)
    if problem is not None:
        _invalid(instance, attribute, problem)


def _adapter_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: ``None`` or a Linux adapter name (``hci0``, ``hci1``, ...)."""
    if value is None:
        return
    if not isinstance(value, str):
        _invalid(instance, attribute, "Input should be a valid string")
    elif not _ADAPTER_NAME.fullmatch(value):
        _invalid(instance, attribute, f"String should match pattern '^{_ADAPTER_NAME.pattern}$'")


def _texts(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: a tuple of strings."""
    if not isinstance(value, tuple):
        _invalid(instance, attribute, "Input should be a valid tuple")
        return
    for index, item in enumerate(value):
        if not isinstance(item, str):
            _invalid(instance, attribute, "Input should be a valid string", index)


def _adapter_names(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: at most 16 distinct adapter names."""
    _texts(instance, attribute, value)
    names = cast("tuple[str, ...]", value)
    for index, name in enumerate(names):
        if not _ADAPTER_NAME.fullmatch(name):
            pattern = f"'^{_ADAPTER_NAME.pattern}$'"
            _invalid(instance, attribute, f"String should match pattern {pattern}", index)
    if len(names) > 16:
        _invalid(
            instance,
            attribute,
            f"Tuple should have at most 16 items after validation, not {len(names)}",
        )
    if len(set(names)) != len(names):
        _invalid(instance, attribute, "an adapter is listed twice")


def _path(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: ``None`` or a path (an empty text is not the current directory)."""
    if value == "":
        _invalid(instance, attribute, "Input should be a non-empty path")
    elif value is not None and not isinstance(value, Path):
        _invalid(instance, attribute, "Input should be a valid path")


def _https_endpoint(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: ``None`` or an ``https://`` URL (no spaces, control characters, credentials)."""
    if value is None:
        return
    if not isinstance(value, str):
        _invalid(instance, attribute, "Input should be a valid string")
        return
    if not value.lower().startswith("https://") or len(value) <= len("https://"):
        _invalid(
            instance,
            attribute,
            "the endpoint must be an https:// URL (records are only sent over TLS)",
        )
    if any(char.isspace() or not char.isprintable() for char in value):
        _invalid(instance, attribute, "the endpoint must not hold spaces or control characters")
    authority = re.split(r"[/?#]", value[len("https://") :], maxsplit=1)[0]
    if "@" in authority:  # the value is not repeated: it holds a secret
        _invalid(
            instance,
            attribute,
            "the endpoint must not hold credentials (user:password@): put the collector's token "
            "in a file and set upload.token_file (or pass --token-file)",
        )


def _spki_pins(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: SHA-256 SPKI pins (``sha256//BASE64``, base64 or 64 hex digits)."""
    _texts(instance, attribute, value)
    for pin in cast("tuple[str, ...]", value):
        text = pin.strip()
        text = text[len("sha256//") :] if text.lower().startswith("sha256//") else text
        if not (_HEX_PIN.fullmatch(text.replace(":", "")) or _B64_PIN.fullmatch(text)):
            _invalid(
                instance,
                attribute,
                f"{pin[:80]!r} is not a SHA-256 SPKI pin (sha256//BASE64, base64 or 64 hex digits)",
            )


def _is_instance(cls: type[Any]) -> _Validator:
    """A validator: an instance of a section's class."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, cls):
            _invalid(instance, attribute, f"Input should be an instance of {cls.__name__}")

    return check


_DNT_ON = frozenset({"1", "true", "yes", "on", "y", "t"})
_DNT_OFF = frozenset({"0", "false", "no", "off", "n", "f"})


def _flag(value: object) -> bool | None:
    """Read a Do Not Track value: ``True``/``False``, or ``None`` when it is malformed.

    ``true``/``1``/``"1"``/``"yes"``/``"true"``/``"on"`` (any case, surrounding whitespace)
    mean on; ``false``/``0`` and ``"no"``/``"false"``/``"off"`` mean off.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _DNT_ON:
            return True
        if text in _DNT_OFF:
            return False
    return None
