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
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

import platformdirs
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from wking_device.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from collections.abc import Mapping

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


# Every number has a finite, bounded range: `scan_timeout = inf` (or nan, or 1e300) would make a
# command wait forever or overflow a timer (issue 7).
_Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
"""A duration in seconds: more than 0, at most an hour."""
_AdapterName = Annotated[str, Field(pattern=r"^hci[0-9]{1,3}$")]
"""A Linux adapter name (``hci0``, ``hci1``, ...)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BleSettings(_Section):
    """Bluetooth behaviour."""

    max_connections: int = Field(default=5, ge=1, le=64)
    """Concurrent connections per adapter (real adapters manage 5-10)."""
    scan_timeout: _Seconds = 5.0
    connect_timeout: _Seconds = 10.0
    connect_attempts: int = Field(default=3, ge=1, le=10)
    command_timeout: _Seconds = 5.0
    adapter: str | None = Field(default=None, pattern=r"^hci[0-9]{1,3}$")
    """The adapter to use on Linux (``hci0``, ``hci1``, ...); ``None``: BlueZ's default."""
    adapters: tuple[_AdapterName, ...] = Field(default=(), max_length=16)
    """Several adapters to connect through (``["hci0", "hci1"]``): every connection takes the
    one with a free slot and the best RSSI and fails over when one disappears; scans use
    ``adapter``. Empty: connections use ``adapter``."""

    @field_validator("adapters")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("an adapter is listed twice")
        return value

    @model_validator(mode="after")
    def _adapter_among_adapters(self) -> BleSettings:
        if self.adapters and self.adapter is not None and self.adapter not in self.adapters:
            raise ValueError(
                f"adapter {self.adapter!r} is not one of adapters {list(self.adapters)!r}"
            )
        return self


class StorageSettings(_Section):
    """The encrypted local store."""

    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024, le=1024**4)
    """Size cap (1 MiB to 1 TiB); past it the lowest-priority records are evicted and counted."""
    dek_rotation_days: int = Field(default=30, ge=1, le=3650)


class UploadSettings(_Section):
    """The OTLP/HTTP uploader (docs/upload.md). Nothing is uploaded without an ``endpoint``."""

    endpoint: str | None = None
    """The collector's OTLP/HTTP logs URL; ``https://`` only (``/v1/logs`` added to a bare
    origin)."""
    ca_bundle: Path | None = None
    """A PEM bundle of the CAs to trust instead of the system's (a private collector)."""
    spki_pins: tuple[str, ...] = ()
    """SHA-256 pins of the collector's public key (``sha256//BASE64``, base64 or hex)."""
    client_cert: Path | None = None
    """A PEM client certificate for mutual TLS (may hold the key)."""
    client_key: Path | None = None
    """Its private key, when in a separate file."""
    token_file: Path | None = None
    """A file (mode 0600) holding a bearer token; never the token itself."""
    collector_region: str | None = Field(default=None, min_length=1, max_length=32)
    """The collector's region; when it differs from ``region`` and ``cross_border_transfer``
    is not granted, records are de-identified (or kept) before they leave."""
    batch_size: int = Field(default=2000, ge=1, le=10_000)
    """Records per request."""
    concurrency: int = Field(default=2, ge=1, le=8)
    """Requests in flight."""
    interval: _Seconds = 30.0
    """Seconds between uploads of ``wking agent run``."""

    @field_validator("endpoint")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.lower().startswith("https://") or len(value) <= len("https://"):
            raise ValueError(
                "the endpoint must be an https:// URL (records are only sent over TLS)"
            )
        return value

    @field_validator("spki_pins")
    @classmethod
    def _pins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pin in value:
            text = pin.strip()
            text = text[len("sha256//") :] if text.lower().startswith("sha256//") else text
            if not (_HEX_PIN.fullmatch(text.replace(":", "")) or _B64_PIN.fullmatch(text)):
                raise ValueError(
                    f"{pin!r} is not a SHA-256 SPKI pin (sha256//BASE64, base64 or 64 hex digits)"
                )
        return value

    @model_validator(mode="after")
    def _key_needs_cert(self) -> UploadSettings:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key is set without client_cert")
        return self


_HEX_PIN = re.compile(r"[0-9A-Fa-f]{64}")
_B64_PIN = re.compile(r"[A-Za-z0-9+/]{43}=")


class Settings(BaseModel):
    """All settings of one installation.

    Build it with :func:`load_settings`, which reads the TOML file and the environment. Built
    directly, ``Settings(**values)`` reads the environment too: ``WKING_*`` variables override the
    values given (``WKING_SECTION__KEY`` for a key of a section; tables and lists as JSON; an
    empty variable counts as unset), and any Do Not Track variable saying on switches it on.
    ``Settings.model_validate`` validates the values alone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    do_not_track: bool = Field(
        default=False,
        validation_alias=AliasChoices("do_not_track", "WKING_DO_NOT_TRACK", "DO_NOT_TRACK"),
    )
    minor: bool = False
    """The profile belongs to a minor: sensitive categories need a guardian grant."""
    region: str = "EU"
    """The user's region (compared with the collector's for cross-border transfer)."""
    location: str | None = None
    """A coarse location the user chose to report (collected only under a ``location`` grant)."""
    simulate: int = Field(default=0, ge=0, le=1000)
    ble: BleSettings = BleSettings()
    storage: StorageSettings = StorageSettings()
    upload: UploadSettings = UploadSettings()

    def __init__(self, **values: Any) -> None:
        super().__init__(**_merged(values, _from_environment()))


def _is_complex(annotation: Any) -> bool:
    """Whether a field's value is written as JSON in a variable (a table or a list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return get_origin(annotation) in (tuple, list, dict, set, frozenset) or any(
        _is_complex(arg) for arg in get_args(annotation) if arg is not type(None)
    )


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
    for field, info in Settings.model_fields.items():
        if field == "do_not_track":
            continue
        variable = f"WKING_{field.upper()}"
        if variable in env:
            name, raw = env[variable]
            values[field] = _decoded(name, raw, field) if _is_complex(info.annotation) else raw
        section = info.annotation
        if not (isinstance(section, type) and issubclass(section, _Section)):
            continue
        nested: dict[str, Any] = {}
        for upper, (name, raw) in env.items():
            if not upper.startswith(variable + "__"):
                continue
            key = upper[len(variable) + 2 :].lower()
            inner = section.model_fields.get(key)
            complex_value = inner is not None and _is_complex(inner.annotation)
            nested[key] = _decoded(name, raw, f"{field}.{key}") if complex_value else raw
        if nested:
            whole = values.get(field, {})
            values[field] = _merged(whole, nested) if isinstance(whole, dict) else whole
    for upper, (_, raw) in env.items():
        if upper in _DNT_VARIABLES and raw.strip() and _flag(raw) is not False:
            values["do_not_track"] = True
    return values


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, tables merged key by key (environment over file)."""
    result = dict(base)
    for key, value in override.items():
        below = result.get(key)
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
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        key = ".".join(str(part) for part in loc)
        variable = _variable_of(loc)
        from_file = variable is None and _lookup(data, loc)
        raise ConfigError(
            first["msg"],
            file=str(file) if from_file else None,
            line=_line_of(text, loc) if from_file else None,
            key=key,
            remedy=None if from_file else f"check the environment variable {variable or 'WKING_*'}",
        ) from exc
    if do_not_track:
        settings = settings.model_copy(update={"do_not_track": True})
    return settings


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
    for name, info in Settings.model_fields.items():
        known.add(f"WKING_{name.upper()}")
        section = info.annotation
        if isinstance(section, type) and issubclass(section, _Section):
            known.update(f"WKING_{name.upper()}__{key.upper()}" for key in section.model_fields)
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
        if isinstance(node, dict) and part in node:
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
