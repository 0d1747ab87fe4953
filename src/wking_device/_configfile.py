"""The config file as a document: its commented template, edits, and where each setting comes from.

This module owns *writing* ``config.toml``: the commented template of ``wking config init``, the
one-key edit of ``wking config set`` (the whole resulting file validated before it is saved,
comments and layout kept with tomlkit, the file replaced atomically and private), and the source
(environment, file or default) of each effective setting for ``wking config show``. Reading and
validating the settings a command uses is :mod:`wking_device.config`; this module does not change
how they are read.

Secrets are never written here: a key that names a token, password or secret is refused before
its value is looked at (the value would also be in the shell's history); the uploader's bearer
token is read from a private file (``upload.token_file``).
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import tomlkit
from tomlkit.exceptions import TOMLKitError

from wking_device._atomic import atomic_write
from wking_device._config_values import _flag
from wking_device.config import _SECTIONS, Settings, _reason
from wking_device.errors import ConfigError, StorageError, UsageError

if TYPE_CHECKING:
    from wking_device.config import Paths

__all__ = [
    "TEMPLATE",
    "SettingSource",
    "effective_settings",
    "set_value",
    "setting_keys",
    "unset_value",
    "write_template",
]

_LOGGER = logging.getLogger(__name__)

TEMPLATE: Final = """\
# wking settings (docs/cli.md, "Configuration"). Every key is optional: a commented line shows
# the default. A WKING_* environment variable overrides a key (WKING_BLE__SCAN_TIMEOUT for
# ble.scan_timeout); `wking config show` prints each effective value and where it comes from;
# `wking config set KEY VALUE` changes one key after validating the whole file.

# Collect nothing and connect to no speaker (DO_NOT_TRACK=1 in the environment does the same;
# any source saying on wins).
# do_not_track = false

# The profile belongs to a minor: sensitive categories need a guardian's grant.
# minor = false

# Your region (a short code: EU, US, US-CA...), compared with the collector's for
# cross-border transfers.
# region = "EU"

# A coarse location you choose to report (collected only under a `location` grant).
# location = "Berlin"

# Run against N simulated speakers instead of a Bluetooth adapter (0: a real adapter).
# simulate = 0

[ble]
# Concurrent connections per adapter (1-64; real adapters manage 5-10).
# max_connections = 5
# Seconds of a scan, of a connection attempt, and of a command (each > 0, at most 3600).
# scan_timeout = 5.0
# connect_timeout = 10.0
# command_timeout = 5.0
# Seconds a connection waits for a free connection slot of its adapter (> 0, at most 3600);
# every slot that comes free restarts the wait; past it the connection fails.
# slot_timeout = 60.0
# Connection attempts before a speaker counts as unreachable (1-10).
# connect_attempts = 3
# The adapter on Linux (hci0, hci1, ...); unset: BlueZ's default.
# adapter = "hci0"
# Several adapters: scans listen on all of them; each connection takes the one with a free
# slot and the best RSSI (none free: the first slot freed on any that heard the speaker), and
# fails over when one disappears.
# adapters = ["hci0", "hci1"]

[storage]
# Size cap of the encrypted store in bytes (1 MiB to 1 TiB); past it the lowest-priority
# records are evicted and counted.
# max_bytes = 268435456
# Days between rotations of the data keys (1-3650).
# dek_rotation_days = 30
# Seal and commit appends in a child process: about 1.5x the durable appends per second with
# many concurrent producers, where the machine has a spare core; one more process (~40 MiB).
# writer_process = false

[upload]
# The collector's OTLP/HTTP logs URL, https:// only; unset: nothing is uploaded.
# endpoint = "https://collector.example.org/v1/logs"
# A PEM bundle of the CAs to trust instead of the system's (a private collector).
# ca_bundle = "/etc/wking/collector-ca.pem"
# SHA-256 pins of the collector's public key (sha256//BASE64, base64 or hex).
# spki_pins = ["sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
# A PEM client certificate for mutual TLS (may hold the key), and its key when separate.
# client_cert = "/etc/wking/client.pem"
# client_key = "/etc/wking/client.key"
# A file readable by you only (chmod 600) holding a bearer token; never the token itself.
# token_file = "/etc/wking/collector.token"
# The collector's region; when it differs from `region` and cross_border_transfer is not
# granted, records are de-identified (or kept) before they leave.
# collector_region = "EU"
# Records per request (1-10000), requests in flight (1-8), seconds between uploads of
# `wking agent run` (> 0, at most 3600).
# batch_size = 2000
# concurrency = 2
# interval = 30.0
"""
"""The file ``wking config init`` writes: every key, commented out, at its default."""

_SECRET_WORDS = ("token", "password", "passwd", "secret", "api_key", "apikey", "credential")
_SECRET_FILE_KEYS = frozenset({"upload.token_file"})
_DNT_VARIABLES = ("DO_NOT_TRACK", "WKING_DO_NOT_TRACK")


@dataclass(frozen=True, slots=True)
class SettingSource:
    """One effective setting and where its value comes from.

    Attributes:
        key: The dotted key (``ble.scan_timeout``).
        value: The effective value, as JSON (paths as strings, tuples as lists).
        source: ``"env"``, ``"file"`` or ``"default"``.
        variable: The environment variable that set it, when ``source`` is ``"env"``.
    """

    key: str
    value: Any
    source: str
    variable: str | None = None


def setting_keys() -> list[str]:
    """Every dotted key of the settings, in the model's order."""
    keys: list[str] = []
    for field in attrs.fields(Settings):
        section = _SECTIONS.get(field.name)
        if section is not None:
            keys.extend(f"{field.name}.{inner.name}" for inner in attrs.fields(section))
        else:
            keys.append(field.name)
    return keys


def _field_type(key: str) -> str:
    """A setting's annotation, as written in :mod:`wking_device.config` (``"str | None"``)."""
    section, _, name = key.rpartition(".")
    model: type[Any] = _SECTIONS[section] if section else Settings
    return str(attrs.fields_dict(model)[name].type)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return value


def _read_file(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except FileNotFoundError:
        return "", {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from exc


def effective_settings(paths: Paths, settings: Settings) -> list[SettingSource]:
    """Each setting's effective value and its source (environment, file or default).

    Args:
        paths: The installation's paths (for its config file).
        settings: The settings as :func:`~wking_device.config.load_settings` read them.

    Returns:
        One entry per key of :func:`setting_keys`. Nothing is created.
    """
    _, data = _read_file(paths.config_file)
    env = {name.upper(): name for name, value in os.environ.items() if value.strip()}
    result: list[SettingSource] = []
    for key in setting_keys():
        parts = key.split(".")
        value: Any = settings
        for part in parts:
            value = getattr(value, part)
        in_file: Any = data
        for part in parts:
            in_file = in_file.get(part) if isinstance(in_file, dict) else None
        if key == "do_not_track":
            # any source saying on wins (config.py): name the one that did
            on_vars = [env[v] for v in _DNT_VARIABLES if v in env and _flag(os.environ[env[v]])]
            if value and on_vars:
                result.append(SettingSource(key, value=True, source="env", variable=on_vars[0]))
            elif in_file is not None:
                result.append(SettingSource(key, value, "file"))
            else:
                result.append(SettingSource(key, value, "default"))
            continue
        candidates = ["WKING_" + "__".join(p.upper() for p in parts[:end]) for end in (2, 1)]
        variable = next((env[c] for c in candidates[-len(parts) :] if c in env), None)
        if variable is not None:
            result.append(SettingSource(key, _jsonable(value), "env", variable))
        elif in_file is not None:
            result.append(SettingSource(key, _jsonable(value), "file"))
        else:
            result.append(SettingSource(key, _jsonable(value), "default"))
    return result


def write_template(paths: Paths, *, force: bool = False) -> Path:
    """Write the commented template as the installation's ``config.toml`` (mode 0600).

    Args:
        paths: The installation's paths.
        force: Replace an existing file.

    Returns:
        The file written.

    Raises:
        UsageError: The file exists and ``force`` is not given (exit 2).
        StorageError: The directory or the file cannot be written.
    """
    path = paths.config_file
    if path.exists() and not force:
        raise UsageError(
            f"{path} exists; nothing was changed",
            remedy="change one key with 'wking config set', or add --force to replace the file",
        )
    _atomic_write(path, TEMPLATE.encode("utf-8"))
    return path


def _check_key(key: str) -> None:
    lowered = key.lower()
    if lowered not in _SECRET_FILE_KEYS and any(word in lowered for word in _SECRET_WORDS):
        raise UsageError(
            f"{key!r} would hold a secret: secrets are never written in config.toml",
            remedy="put the token in a file readable by you only (chmod 600) and set "
            "upload.token_file to its path",
        )
    keys = setting_keys()
    if key in keys:
        return
    if key in _SECTIONS:
        raise UsageError(
            f"{key!r} is a section, not a setting",
            remedy=f"set one of its keys: {', '.join(k for k in keys if k.startswith(key + '.'))}",
        )
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    raise UsageError(
        f"unknown setting {key!r}",
        remedy=(f"did you mean {close[0]}? " if close else "")
        + "'wking config show' lists every setting",
    )


_TEXT_TYPES = frozenset({"str", "str | None", "Path", "Path | None"})


def _is_text(annotation: str) -> bool:
    """Whether a field takes text as typed (a string or a path, optional or not)."""
    return annotation in _TEXT_TYPES


def _parse_value(key: str, raw: str) -> Any:
    """Read VALUE as typed on the command line.

    Text for text and path settings, else a TOML value (``7``, ``true``, ``["a", "b"]``), else
    text (which validation then refuses, naming the key).
    """
    if _is_text(_field_type(key)):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _validate(data: dict[str, Any], path: Path) -> None:
    """Validate a whole file's content, as the file alone (the environment is not consulted).

    Raises:
        ConfigError: A key has a bad value, or is unknown (named in the error).
    """
    rest = dict(data)
    if "do_not_track" in rest and _flag(rest.pop("do_not_track")) is None:
        raise ConfigError("must be true or false", file=str(path), key="do_not_track")
    try:
        # the values alone: Settings' constructor would mix in the environment
        Settings.from_mapping(rest)
    except ConfigError as exc:
        raise ConfigError(_reason(exc), file=str(path), key=exc.key) from exc


def set_value(paths: Paths, key: str, raw: str) -> Any:
    """Change one key of ``config.toml``, keeping the rest of the file as it is.

    The resulting file is validated as a whole before anything is written; the file is then
    replaced atomically, readable by its owner only.

    Args:
        paths: The installation's paths.
        key: The dotted key (``upload.endpoint``).
        raw: The value as typed on the command line.

    Returns:
        The value written (parsed).

    Raises:
        UsageError: The key is unknown, a section, or would hold a secret (exit 2; the value is
            never repeated).
        ConfigError: The value, or the file, is invalid (naming the key; exit 2).
        StorageError: The file cannot be written.
    """
    _check_key(key)
    path = paths.config_file
    text, _ = _read_file(path)
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:  # pragma: no cover - tomllib refused it already
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    value = _parse_value(key, raw)
    section, _, name = key.rpartition(".")
    if section:
        table = document.get(section)
        if table is None:
            table = tomlkit.table()
            document[section] = table
        elif not isinstance(table, dict):
            raise ConfigError("is not a table", file=str(path), key=section)
        table[name] = value
    else:
        document[name] = value
    _validate(document.unwrap(), path)
    _atomic_write(path, tomlkit.dumps(document).encode("utf-8"))
    return value


def unset_value(paths: Paths, key: str) -> bool:
    """Take one key out of ``config.toml``, so its default (or the environment) applies again.

    The rest of the file is kept as it is; the result is validated as a whole before anything is
    written, then the file is replaced atomically, readable by its owner only. A key that would
    hold a secret is taken out too (written there by hand, it should not stay).

    Args:
        paths: The installation's paths.
        key: The dotted key (``upload.endpoint``).

    Returns:
        Whether the file held the key (``False``: nothing was written).

    Raises:
        UsageError: The key is neither in the file nor a known setting, or is a section.
        ConfigError: The file, without the key, is still invalid (naming the key; exit 2).
        StorageError: The file cannot be written.
    """
    path = paths.config_file
    text, _ = _read_file(path)
    document = tomlkit.parse(text)
    section, _, name = key.rpartition(".")
    table: Any = document.get(section) if section else document
    if not isinstance(table, dict) or name not in table or isinstance(table[name], dict):
        if key not in setting_keys():
            _check_key(key)  # unknown, or a section: the error says which
        return False
    del table[name]
    if section and not table:
        del document[section]
    _validate(document.unwrap(), path)
    _atomic_write(path, tomlkit.dumps(document).encode("utf-8"))
    return True


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole (:func:`wking_device._atomic.atomic_write`).

    Raises:
        StorageError: It cannot be written; it is unchanged.
    """
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc.strerror or exc}",
            remedy="choose another --home (or WKING_HOME), or fix that path",
        ) from exc
