"""Every exported exception survives pickle and copy with its type, message and fields.

multiprocessing, ``concurrent.futures.ProcessPoolExecutor`` and pytest-xdist pass exceptions
between processes by pickling them; ``BaseException``'s default reduction calls ``cls(*args)``,
which loses (or fails on) keyword-only constructor arguments such as ``remedy=`` or ``address=``.
"""

from __future__ import annotations

import concurrent.futures
import copy
import importlib
import inspect
import multiprocessing
import pickle
import pkgutil
from typing import Any

import pytest

import wking_device
from wking_device.errors import (
    BluetoothError,
    BluetoothReason,
    ConfigError,
    TLSError,
    TLSReason,
    WkingError,
)


def _exported_exceptions() -> list[type[BaseException]]:
    modules = ["wking_device"] + [
        m.name
        for m in pkgutil.walk_packages(wking_device.__path__, "wking_device.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    found: dict[str, type[BaseException]] = {}
    for name in modules:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            value = getattr(module, attr)
            if inspect.isclass(value) and issubclass(value, BaseException):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


_SAMPLES: dict[str, Any] = {
    "message": "the speaker went away",
    "remedy": "a caller's own remedy",
    "cli_remedy": "a caller's own cli remedy",
    "address": "C0:00:00:00:00:01",
    "att_code": 0x0E,
    "status": 3,
    "file": "/etc/wking/config.toml",
    "line": 12,
    "key": "upload.endpoint",
    "entry": 4,
    "path": "/var/lib/wking/records.db",
    "record_id": "rec-1",
    "host": "collector.example",
    "retry_after": 2.5,
    "missing": frozenset({"operation_logs", "mac_addresses"}),
    "requires": frozenset({"operation_logs"}),
    "categories": frozenset({"mac_addresses"}),
    "category": "mac_addresses",
    "in_this_process": False,
}


def _make(cls: type[BaseException]) -> BaseException:
    """An instance with every constructor argument set to a non-default value."""
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name == "reason":
            if issubclass(cls, BluetoothError):
                kwargs[name] = BluetoothReason.TOO_MANY_CONNECTIONS
            elif issubclass(cls, TLSError):
                kwargs[name] = TLSReason.EXPIRED
            else:
                kwargs[name] = "do not track is on"
            continue
        assert name in _SAMPLES, f"{cls.__name__}: no sample value for argument {name!r}"
        kwargs[name] = _SAMPLES[name]
    return cls(**kwargs)


_CLASSES = _exported_exceptions()


def test_the_exported_exceptions_are_all_found() -> None:
    assert len(_CLASSES) >= 45
    assert all(issubclass(cls, WkingError) for cls in _CLASSES)


def _same(again: BaseException, error: BaseException) -> None:
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.args == error.args
    assert vars(again) == vars(error)
    if isinstance(error, WkingError):
        assert isinstance(again, WkingError)
        assert again.cli_message() == error.cli_message()
        assert (again.message, again.remedy, again.cli_remedy) == (
            error.message,
            error.remedy,
            error.cli_remedy,
        )


@pytest.mark.parametrize("cls", _CLASSES, ids=lambda cls: cls.__name__)
def test_error_survives_pickle_with_its_fields(cls: type[BaseException]) -> None:
    error = _make(cls)
    error.add_note("while connecting")
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        _same(pickle.loads(pickle.dumps(error, protocol=protocol)), error)
    _same(copy.copy(error), error)
    _same(copy.deepcopy(error), error)


def _raise_config_error(key: str) -> None:
    raise ConfigError("not a number", file="/etc/wking/config.toml", line=7, key=key, remedy="fix")


def test_an_error_raised_in_a_worker_process_reaches_the_parent_intact() -> None:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_raise_config_error, "upload.timeout")
        with pytest.raises(ConfigError) as caught:
            future.result(timeout=60)
    error = caught.value
    assert (error.file, error.line, error.key, error.remedy) == (
        "/etc/wking/config.toml",
        7,
        "upload.timeout",
        "fix",
    )
    assert str(error) == "/etc/wking/config.toml:7 [upload.timeout]: not a number (fix)"
