"""Configuration: where an installation keeps its files, and its settings.

This module owns path resolution (``WKING_HOME`` / ``--home`` or the platform's user directories
from ``platformdirs``) and the settings model (a TOML file, overridden by ``WKING_*`` environment
variables). It does not create keys, databases or ledgers; the layers that own those files create
them under the paths given here.

Precedence, highest first: environment (``WKING_SECTION__KEY``; an empty variable counts as
unset), the TOML file (``<config dir>/config.toml``), defaults. Do Not Track is the exception: it
is on when any of ``DO_NOT_TRACK``, ``WKING_DO_NOT_TRACK`` (any letter case) or the file's
``do_not_track`` says so, in any usual spelling (DESIGN §3), so no source can switch off what
another switched on. Every number has a finite, bounded range. A ``WKING_*`` variable no setting
reads is ignored with one warning naming the closest known one. A malformed file raises
:class:`~wking_device.errors.ConfigError` naming the file, the line and the key; a malformed
variable raises it naming the variable.

The settings (:class:`Settings` and its sections :class:`BleSettings`, :class:`StorageSettings`,
:class:`UploadSettings`) are frozen, slotted ``attrs`` classes validated when they are built: a
bad value raises ``ConfigError`` naming its dotted key (``ble.connect_attempts``), and
``replace(**changes)`` makes a validated copy. They are not pydantic models, so loading the
configuration imports neither pydantic nor ``importlib.metadata``/``email`` (issue 11).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, NoReturn, Self, TypeVar, cast

import attrs
import platformdirs

from wking_device.errors import ConfigError, StorageError

__all__ = [
    "APP_NAME",
    "BleSettings",
    "Paths",
    "Settings",
    "StorageSettings",
    "UploadSettings",
    "load_settings",
    "permission_problems",
    "resolve_paths",
    "warn_loose_permissions",
]

_LOGGER = logging.getLogger(__name__)

APP_NAME = "wking"


@dataclass(frozen=True, slots=True)
class Paths:
    """The directories of one installation.

    Attributes:
        home: The ``WKING_HOME`` directory, or ``None`` when platform directories are used.
        config_dir: Holds ``config.toml`` and device bindings.
        data_dir: Holds the consent ledger, the encrypted store and (lowest key-store level) keys.
    """

    home: Path | None
    config_dir: Path
    data_dir: Path

    @property
    def config_file(self) -> Path:
        """The TOML settings file."""
        return self.config_dir / "config.toml"

    def ensure(self) -> None:
        """Create the directories, private to the user (0700).

        Raises:
            StorageError: A directory cannot be created (a file in the way, no permission, a
                read-only file system).
        """
        directories: tuple[Path, ...] = (self.config_dir, self.data_dir)
        if self.home is not None:
            directories = (self.home, *directories)
        for directory in directories:
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                if directory is not self.home:
                    directory.chmod(0o700)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the directory {directory}: {exc.strerror or exc}",
                    remedy="choose another --home (or WKING_HOME), or fix that path",
                ) from exc


def resolve_paths(home: str | os.PathLike[str] | None = None) -> Paths:
    """Resolve the installation's directories.

    Args:
        home: An explicit home (``--home``); defaults to ``$WKING_HOME``, then platform dirs.

    Returns:
        The paths; nothing is created.

    Raises:
        ConfigError: The home cannot be resolved (``~user`` of an unknown user, a symlink loop),
            or is empty (``--home ""``, ``WKING_HOME=""``).
    """
    chosen = home if home is not None else os.environ.get("WKING_HOME")
    if chosen is not None and not os.fspath(chosen).strip():
        # `--home ""` or `WKING_HOME=` would otherwise mean the current directory (Path("")).
        raise ConfigError(
            "the home directory is empty",
            remedy="give --home (or WKING_HOME) a directory, or unset WKING_HOME",
        )
    if chosen is not None:
        try:
            root = Path(chosen).expanduser().resolve()
        except (RuntimeError, OSError) as exc:  # unknown ~user, symlink loop
            raise ConfigError(
                f"cannot use {os.fspath(chosen)!r} as the home directory: {exc}",
                remedy="give --home (or WKING_HOME) an existing or creatable directory",
            ) from exc
        return Paths(home=root, config_dir=root / "config", data_dir=root / "data")
    return Paths(
        home=None,
        config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
    )


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


def _region(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A validator: ``None`` or a region code (``EU``, ``US``, ``US-CA``...)."""
    if value is None:
        return
    if not isinstance(value, str):
        _invalid(instance, attribute, "Input should be a valid string")
    elif not _REGION.fullmatch(value):
        _invalid(
            instance,
            attribute,
            "a region is a short code such as EU, US or US-CA (ASCII letters, digits and "
            "hyphens, at most 32)",
        )


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


_S = TypeVar("_S", "BleSettings", "StorageSettings", "UploadSettings")


def _section_of(cls: type[_S], value: object, key: str) -> _S:
    """A section from a table (a ``dict``), checked for unknown keys; an instance as it is."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"Input should be a valid dictionary or instance of {cls.__name__}", key=key
        )
    unknown: tuple[str | int, ...] | None = _unknown_key(cls, value)
    if unknown is not None:
        raise ConfigError("Extra inputs are not permitted", key=f"{key}.{_dotted(unknown)}")
    return cls(**value)


class _Group:
    """What every settings class has: its section's name and validated copies."""

    __slots__ = ()
    _SECTION: ClassVar[str] = ""

    def replace(self, **changes: Any) -> Self:
        """A validated copy with some values changed (``settings.replace(max_connections=3)``).

        Raises:
            ConfigError: A changed value is invalid (naming its key).
            TypeError: A name that is not a setting.
        """
        return attrs.evolve(cast("Any", self), **changes)  # type: ignore[no-any-return]


@attrs.frozen
class BleSettings(_Group):
    """Bluetooth behaviour."""

    _SECTION: ClassVar[str] = "ble"

    max_connections: int = attrs.field(default=5, converter=_as_int, validator=_integer(1, 64))
    """Concurrent connections per adapter (real adapters manage 5-10)."""
    scan_timeout: float = attrs.field(default=5.0, converter=_as_float, validator=_seconds)
    connect_timeout: float = attrs.field(default=10.0, converter=_as_float, validator=_seconds)
    connect_attempts: int = attrs.field(default=3, converter=_as_int, validator=_integer(1, 10))
    command_timeout: float = attrs.field(default=5.0, converter=_as_float, validator=_seconds)
    slot_timeout: float = attrs.field(default=60.0, converter=_as_float, validator=_seconds)
    """Seconds a first connection waits for a connection slot of its adapter while none comes
    free: every slot granted or given back on that adapter restarts the wait, so a queue that
    moves (``read_all`` of 100 speakers through 5 slots) is waited out; past it, the connect
    raises :class:`~wking_device.errors.ConnectionFailed` (``too_many_connections``). 60 s is
    about twice what a first connection that fails every attempt takes with the defaults
    (3 attempts of 10 s, plus backoff): a fleet's queue stands still that long only when the
    session on every slot takes that long at once. A reconnect is bounded by its own total
    (``reconnect_timeout``) instead."""
    adapter: str | None = attrs.field(default=None, validator=_adapter_name)
    """The adapter to use on Linux (``hci0``, ``hci1``, ...); ``None``: BlueZ's default."""
    adapters: tuple[str, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_adapter_names, metadata=_LIST
    )
    """Several adapters (``["hci0", "hci1"]``): scans listen on all of them, every connection
    takes the one with a free slot and the best RSSI and fails over when one disappears.
    Empty: scans and connections use ``adapter``."""

    def __attrs_post_init__(self) -> None:
        if self.adapters and self.adapter is not None and self.adapter not in self.adapters:
            raise ConfigError(
                f"adapter {self.adapter!r} is not one of adapters {list(self.adapters)!r}",
                key=self._SECTION,
            )


@attrs.frozen
class StorageSettings(_Group):
    """The encrypted local store."""

    _SECTION: ClassVar[str] = "storage"

    max_bytes: int = attrs.field(
        default=256 * 1024 * 1024, converter=_as_int, validator=_integer(1024 * 1024, 1024**4)
    )
    """Size cap (1 MiB to 1 TiB); past it the lowest-priority records are evicted and counted."""
    dek_rotation_days: int = attrs.field(default=30, converter=_as_int, validator=_integer(1, 3650))


@attrs.frozen
class UploadSettings(_Group):
    """The OTLP/HTTP uploader (docs/upload.md). Nothing is uploaded without an ``endpoint``."""

    _SECTION: ClassVar[str] = "upload"

    endpoint: str | None = attrs.field(default=None, converter=_stripped, validator=_https_endpoint)
    """The collector's OTLP/HTTP logs URL; ``https://`` only (``/v1/logs`` added to a bare
    origin)."""
    ca_bundle: Path | None = attrs.field(default=None, converter=_as_path, validator=_path)
    """A PEM bundle of the CAs to trust instead of the system's (a private collector)."""
    spki_pins: tuple[str, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_spki_pins, metadata=_LIST
    )
    """SHA-256 pins of the collector's public key (``sha256//BASE64``, base64 or hex)."""
    client_cert: Path | None = attrs.field(default=None, converter=_as_path, validator=_path)
    """A PEM client certificate for mutual TLS (may hold the key)."""
    client_key: Path | None = attrs.field(default=None, converter=_as_path, validator=_path)
    """Its private key, when in a separate file."""
    token_file: Path | None = attrs.field(default=None, converter=_as_path, validator=_path)
    """A file (mode 0600) holding a bearer token; never the token itself."""
    collector_region: str | None = attrs.field(default=None, converter=_stripped, validator=_region)
    """The collector's region; when it differs from ``region`` and ``cross_border_transfer``
    is not granted, records are de-identified (or kept) before they leave."""
    batch_size: int = attrs.field(default=2000, converter=_as_int, validator=_integer(1, 10_000))
    """Records per request."""
    concurrency: int = attrs.field(default=2, converter=_as_int, validator=_integer(1, 8))
    """Requests in flight."""
    interval: float = attrs.field(default=30.0, converter=_as_float, validator=_seconds)
    """Seconds between uploads of ``wking agent run``."""

    def __attrs_post_init__(self) -> None:
        if self.client_key is not None and self.client_cert is None:
            raise ConfigError("client_key is set without client_cert", key=self._SECTION)


def _as_ble(value: BleSettings) -> BleSettings:
    return _section_of(BleSettings, value, "ble")


def _as_storage(value: StorageSettings) -> StorageSettings:
    return _section_of(StorageSettings, value, "storage")


def _as_upload(value: UploadSettings) -> UploadSettings:
    return _section_of(UploadSettings, value, "upload")


def _is_instance(cls: type[Any]) -> _Validator:
    """A validator: an instance of a section's class."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, cls):
            _invalid(instance, attribute, f"Input should be an instance of {cls.__name__}")

    return check


@attrs.frozen(init=False)
class Settings(_Group):
    """All settings of one installation.

    Build it with :func:`load_settings`, which reads the TOML file and the environment. Built
    directly, ``Settings(**values)`` reads the environment too: ``WKING_*`` variables override the
    values given (``WKING_SECTION__KEY`` for a key of a section; tables and lists as JSON; an
    empty variable counts as unset), and any Do Not Track variable saying on switches it on.
    :meth:`from_mapping` validates the values alone, and :meth:`replace` makes a validated copy
    (without reading the environment again).

    Every class of settings is frozen; a section is given as its class or as a ``dict``
    (``Settings(ble={"scan_timeout": 2.0})``). Numbers may be given as text (``"7"``), as a file
    or a variable gives them; an invalid value raises :class:`~wking_device.errors.ConfigError`
    naming its dotted key (``ble.scan_timeout``).
    """

    do_not_track: bool = attrs.field(default=False, converter=_as_bool, validator=_boolean)
    minor: bool = attrs.field(default=False, converter=_as_bool, validator=_boolean)
    """The profile belongs to a minor: sensitive categories need a guardian grant."""
    region: str = attrs.field(default="EU", converter=_stripped, validator=_region)
    """The user's region (compared with the collector's for cross-border transfer)."""
    location: str | None = attrs.field(default=None, validator=_text(optional=True))
    """A coarse location the user chose to report (collected only under a ``location`` grant)."""
    simulate: int = attrs.field(default=0, converter=_as_int, validator=_integer(0, 1000))
    ble: BleSettings = attrs.field(
        factory=BleSettings, converter=_as_ble, validator=_is_instance(BleSettings)
    )
    storage: StorageSettings = attrs.field(
        factory=StorageSettings, converter=_as_storage, validator=_is_instance(StorageSettings)
    )
    upload: UploadSettings = attrs.field(
        factory=UploadSettings, converter=_as_upload, validator=_is_instance(UploadSettings)
    )

    def __init__(self, **values: Any) -> None:
        _refuse_unknown(values)
        self.__attrs_init__(**_merged(values, _from_environment()))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Validate values alone, as a file gives them (tables for sections); no environment.

        Raises:
            ConfigError: A key is unknown or has a bad value (naming it).
        """
        _refuse_unknown(values)
        settings = object.__new__(cls)
        settings.__attrs_init__(**values)
        return settings

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with some values changed; the environment is not read again.

        Raises:
            ConfigError: A changed value is invalid (naming its key).
            TypeError: A name that is not a setting.
        """
        settings = object.__new__(Settings)
        settings.__attrs_init__(**{**_values_of(self), **changes})
        return settings


_SECTIONS: Final[dict[str, type[BleSettings | StorageSettings | UploadSettings]]] = {
    "ble": BleSettings,
    "storage": StorageSettings,
    "upload": UploadSettings,
}
"""The sections of :class:`Settings`, by name."""


def _values_of(instance: _Group) -> dict[str, Any]:
    """The fields of a settings object, by name (sections as objects)."""
    fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(cast("Any", type(instance)))
    return {field.name: getattr(instance, field.name) for field in fields}


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _unknown_key(cls: type[Any], values: Mapping[Any, Any]) -> tuple[str | int, ...] | None:
    """The first key in ``values`` that no field of ``cls`` (or of its sections) has."""
    names = attrs.fields_dict(cls)
    for key, value in values.items():
        if key not in names:
            return (key,)
        section = _SECTIONS.get(key) if cls is Settings else None
        if section is not None and isinstance(value, Mapping):
            inner = _unknown_key(section, value)
            if inner is not None:
                return (key, *inner)
    return None


def _refuse_unknown(values: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first key no setting has.

    Raises:
        ConfigError: A key no setting has (naming it).
    """
    unknown = _unknown_key(Settings, values)
    if unknown is not None:
        raise ConfigError("Extra inputs are not permitted", key=_dotted(unknown))


def _reason(error: ConfigError) -> str:
    """What a ConfigError raised by a validator says, without the ``[key]`` it names."""
    return error.message.removeprefix(f"[{error.key}]: ")


def _loc_of(key: str | None) -> tuple[str | int, ...]:
    """A validator's dotted key as a path (its parts are field names and list indices)."""
    if not key:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in key.split("."))


def _is_complex(section: str | None, name: str) -> bool:
    """Whether a setting's value is written as JSON in a variable (a table or a list)."""
    if section is None:
        return name in _SECTIONS
    field = attrs.fields_dict(_SECTIONS[section]).get(name)
    return field is not None and bool(field.metadata.get("wking_list"))


def _decoded(name: str, raw: str, key: str) -> Any:
    """Decode a variable holding a table or a list (JSON).

    Raises:
        ConfigError: The value is not JSON (naming the variable).
    """
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(
            "not valid JSON in an environment variable",
            key=key,
            remedy=f'check {name}; lists and tables are written as JSON there, e.g. \'["a", "b"]\'',
        ) from exc


def _from_environment() -> dict[str, Any]:
    """The settings given by ``WKING_*`` variables (names in any letter case; empty ones unset).

    Do Not Track comes out ``True`` when any variable naming it says on (or is malformed: fail
    closed; :func:`load_settings` reports it), and is left out otherwise, so a variable saying
    off never switches off a value given in code or the file (DESIGN §3).

    Raises:
        ConfigError: A variable meant as a table or list is not JSON (naming it).
    """
    env: dict[str, tuple[str, str]] = {}
    for name, raw in os.environ.items():
        if raw:
            env[name.upper()] = (name, raw)
    values: dict[str, Any] = {}
    for field in attrs.fields(Settings):
        if field.name == "do_not_track":
            continue
        variable = f"WKING_{field.name.upper()}"
        if variable in env:
            name, raw = env[variable]
            complex_value = _is_complex(None, field.name)
            values[field.name] = _decoded(name, raw, field.name) if complex_value else raw
        if field.name not in _SECTIONS:
            continue
        nested: dict[str, Any] = {}
        for upper, (name, raw) in env.items():
            if not upper.startswith(variable + "__"):
                continue
            key = upper[len(variable) + 2 :].lower()
            complex_value = _is_complex(field.name, key)
            nested[key] = _decoded(name, raw, f"{field.name}.{key}") if complex_value else raw
        if nested:
            whole = values.get(field.name, {})
            values[field.name] = _merged(whole, nested) if isinstance(whole, dict) else whole
    for upper, (_, raw) in env.items():
        if upper in _DNT_VARIABLES and raw.strip() and _flag(raw) is not False:
            values["do_not_track"] = True
    return values


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, tables merged key by key (environment over file).

    A section given as an object is merged as its values, so a variable overriding one of its
    keys keeps the others.
    """
    result = dict(base)
    for key, value in override.items():
        below = result.get(key)
        if isinstance(value, dict) and isinstance(below, _Group):
            below = _values_of(below)
        if isinstance(below, dict) and isinstance(value, dict):
            result[key] = _merged(below, value)
        else:
            result[key] = value
    return result


def _line_of(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Find the line defining a dotted key in TOML text (best effort, for error messages)."""
    keys = [str(part) for part in loc if isinstance(part, str)]
    if not keys:
        return None
    table, key = keys[:-1], keys[-1]
    in_table = not table
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = stripped.strip("[] ") == ".".join(table)
            if not table:
                in_table = False
            if table and in_table and len(keys) == 1:
                return number
            continue
        if in_table and key_re.match(line):
            return number
    return None


def load_settings(
    paths: Paths | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings of an installation.

    Args:
        paths: The installation's paths; defaults to :func:`resolve_paths`.
        environ: Accepted for symmetry with tests; the process environment is always read, so
            pass overrides by setting variables.

    Returns:
        The validated settings.

    Raises:
        ConfigError: The file is not valid TOML, a key is unknown or has a bad value, or a
            ``WKING_*`` / ``DO_NOT_TRACK`` variable has a bad value (named in the message).
    """
    del environ
    paths = paths or resolve_paths()
    file = paths.config_file
    data: dict[str, Any] = {}
    text = ""
    if file.exists():
        try:
            text = file.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            raise ConfigError(
                f"not valid TOML: {exc}",
                file=str(file),
                line=int(match.group(1)) if match else None,
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", file=str(file)) from exc
    _warn_unknown_variables()
    do_not_track = _do_not_track(data, text, file)
    data.pop("do_not_track", None)
    values = _merged(data, _from_environment())
    loc = _unknown_key(Settings, values)
    reason = "Extra inputs are not permitted"
    if loc is None:
        try:
            settings = Settings.from_mapping(values)
        except ConfigError as exc:
            loc, reason = _loc_of(exc.key), _reason(exc)
        else:
            return settings.replace(do_not_track=True) if do_not_track else settings
    variable = _variable_of(loc)
    from_file = variable is None and _lookup(data, loc)
    raise ConfigError(
        reason,
        file=str(file) if from_file else None,
        line=_line_of(text, loc) if from_file else None,
        key=_dotted(loc),
        remedy=None if from_file else f"check the environment variable {variable or 'WKING_*'}",
    )


_DNT_VARIABLES = ("DO_NOT_TRACK", "WKING_DO_NOT_TRACK")
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


def _do_not_track(data: Mapping[str, Any], text: str, file: Path) -> bool:
    """Whether any source asks for Do Not Track: the file's key or any spelling of a variable.

    Every source is read and checked, so a malformed one is an error even when another says on,
    and a source saying off never switches off another saying on (DESIGN §3).

    Raises:
        ConfigError: A source holds something that is neither on nor off (named in the error).
    """
    wanted = False
    if "do_not_track" in data:
        value = _flag(data["do_not_track"])
        if value is None:
            raise ConfigError(
                f"do_not_track must be true or false, not {data['do_not_track']!r}",
                file=str(file),
                line=_line_of(text, ("do_not_track",)),
                key="do_not_track",
            )
        wanted |= value
    # Every spelling of the variables (names in any letter case), each one on its own.
    for name, raw in sorted(os.environ.items()):
        if name.upper() not in _DNT_VARIABLES or not raw.strip():
            continue  # an empty variable counts as unset
        value = _flag(raw)
        if value is None:
            raise ConfigError(
                f"{name}={raw!r} is not a Do Not Track value",
                key="do_not_track",
                remedy=f"set {name} to 1 (on) or 0 (off), or unset it",
            )
        wanted |= value
    return wanted


_OTHER_VARIABLES = frozenset({"WKING_HOME", "WKING_LOG_FORMAT", "WKING_TEST_ADDRESS"})
"""``WKING_*`` variables read outside the settings model."""
_warned: set[str] = set()


def _known_variables() -> set[str]:
    known = set(_OTHER_VARIABLES)
    for field in attrs.fields(Settings):
        known.add(f"WKING_{field.name.upper()}")
        section = _SECTIONS.get(field.name)
        if section is not None:
            known.update(
                f"WKING_{field.name.upper()}__{inner.name.upper()}"
                for inner in attrs.fields(section)
            )
    return known


def _warn_unknown_variables() -> None:
    """Warn, once per variable and process, about a ``WKING_*`` variable no setting reads.

    A typo (``WKING_BLE_SCAN_TIMEOUT`` for ``WKING_BLE__SCAN_TIMEOUT``) would otherwise be
    ignored without a word. Unknown keys inside a section (``WKING_BLE__X``) are errors already.
    """
    known = _known_variables()
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith("WKING_") or upper in known or name in _warned:
            continue
        if "__" in upper and upper.split("__", 1)[0] in known:
            continue  # a key of a known section: validated (and refused if unknown) by the model
        _warned.add(name)
        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        _LOGGER.warning("ignoring the unknown environment variable %s%s", name, hint)


def _environment() -> dict[str, str]:
    """The non-empty environment variables, names upper-cased (they are read in any case)."""
    return {name.upper(): value for name, value in os.environ.items() if value}


def _variable_of(loc: tuple[str | int, ...]) -> str | None:
    """Name the set environment variable that gave the value at ``loc``, if one did."""
    env = _environment()
    keys = [str(part).upper() for part in loc if isinstance(part, str)]
    for end in range(len(keys), 0, -1):
        name = "WKING_" + "__".join(keys[:end])
        if name in env:
            return name
    return None


def _lookup(data: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    """Tell whether a location exists in the parsed file (to blame the file or the environment)."""
    node: Any = data
    for part in loc:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_list or (isinstance(node, dict) and part in node):
            node = node[part]
        else:
            return False
    return True


# Files that hold secrets or personal data, relative to the data (d) or config (c) directory.
_PRIVATE_FILES = (
    ("d", "records.sqlite3"),
    ("d", "records.sqlite3-wal"),
    ("d", "records.sqlite3-shm"),
    ("d", "consent/ledger.jsonl"),
    ("d", "consent/ledger.jsonl.head"),
    ("d", "keys/keystore.json"),
    ("d", "keys/master.key"),
    ("d", "keys/master.key.sealed"),
    ("c", "devices.bin"),
)
_warned_permissions: set[str] = set()


def permission_problems(paths: Paths) -> list[str]:
    """List what others could read or change among an installation's directories and files.

    Directories (the home, the config and data directories, ``consent/``, ``keys/``) writable
    by group or others, and private files (records, ledger, key store, key file, bindings)
    readable or writable by group or others. Nothing is created or changed.

    Returns:
        One line per problem (empty when every existing path is private).
    """
    problems: list[str] = []
    directories = [paths.config_dir, paths.data_dir, paths.data_dir / "consent"]
    directories.append(paths.data_dir / "keys")
    if paths.home is not None:
        directories.insert(0, paths.home)
    for directory in directories:
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except OSError:
            continue
        if mode & 0o022:
            problems.append(f"{directory} is writable by others ({mode:04o}; chmod 700 it)")
    for base, name in _PRIVATE_FILES:
        file = (paths.data_dir if base == "d" else paths.config_dir) / name
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            problems.append(f"{file} is open to others ({mode:04o}; chmod 600 it)")
    return problems


def warn_loose_permissions(paths: Paths) -> list[str]:
    """Log each permission problem of :func:`permission_problems` once per process (WARNING).

    Refusals are elsewhere: a key file open to group or others is refused by the key store.

    Returns:
        The problems found.
    """
    problems = permission_problems(paths)
    for problem in problems:
        if problem not in _warned_permissions:
            _warned_permissions.add(problem)
            _LOGGER.warning("loose permissions: %s", problem)
    return problems
