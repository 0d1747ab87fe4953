"""Configuration: where an installation keeps its files, and its settings.

This module is the configuration's public door and owns the settings model (a TOML file,
overridden by ``WKING_*`` environment variables) and how it is read. Path resolution
(``WKING_HOME`` / ``--home`` or the platform's user directories) and the permission checks are
:mod:`wking_device._config_paths`; the converters and validators of the settings' fields are
:mod:`wking_device._config_values`; every public name is re-exported here. It does not create
keys, databases or ledgers; the layers that own those files create them under the paths given
here.

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
import os
import re
import tomllib

# Sequence is not used here but read at run time: attrs gives each generated __init__ its
# converters' annotations (``_as_tuple``'s ``Sequence[str]``), which typing.get_type_hints resolves
# in this module's namespace (as it does ``os`` for ``_as_path``'s ``os.PathLike[str]``).
from collections.abc import Mapping, Sequence  # noqa: F401 - see above
from pathlib import Path
from typing import Any, ClassVar, Final, Self, TypeVar, cast

import attrs

from wking_device._config_paths import (
    APP_NAME,
    Paths,
    permission_problems,
    resolve_paths,
    warn_loose_permissions,
)
from wking_device._config_values import (
    _LIST,
    _adapter_name,
    _adapter_names,
    _as_bool,
    _as_float,
    _as_int,
    _as_path,
    _as_tuple,
    _boolean,
    _flag,
    _https_endpoint,
    _integer,
    _is_instance,
    _path,
    _region,
    _seconds,
    _spki_pins,
    _stripped,
    _text,
)
from wking_device._public import publish as _publish
from wking_device.errors import ConfigError

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

_publish(__name__, globals(), __all__)

_LOGGER = logging.getLogger(__name__)

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
    takes the one with a free slot and the best RSSI (none free: the first slot freed on any
    that heard the speaker) and fails over when one disappears. Empty: scans and connections
    use ``adapter``."""

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
    writer_process: bool = attrs.field(default=False, converter=_as_bool, validator=_boolean)
    """Seal and commit appends in a child process (about 1.5x the durable appends per second
    with many concurrent producers on a machine with a spare core; one more process)."""


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
    if _dnt_in_environment():
        values["do_not_track"] = True
    return values


def _dnt_in_environment() -> bool:
    """Whether any Do Not Track variable in the environment says on.

    ``DO_NOT_TRACK`` or ``WKING_DO_NOT_TRACK``, names in any letter case, each on its own: on
    when it is set, not blank and not a spelling of off (a malformed value counts as on: fail
    closed). The consent gate asks too, so a gate built in code honours the environment.
    """
    return any(
        name.upper() in _DNT_VARIABLES and raw.strip() and _flag(raw) is not False
        for name, raw in os.environ.items()
    )


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
