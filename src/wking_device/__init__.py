"""Discover and control W-KING BLE speakers; collect their logs only with consent.

With the user's consent, ``wking_device`` collects Bluetooth operation logs, keeps them encrypted
and uploads them over TLS.

This module is the public door: it re-exports the names of the library's API. Subpackages that
are not re-exported here (``sim``, ``receiver``) are public in their own right; everything else
whose name starts with ``_`` is internal.
"""

from __future__ import annotations

import logging

from wking_device._version import __version__
from wking_device.config import Paths, Settings, load_settings, resolve_paths
from wking_device.errors import (
    BluetoothError,
    ConfigError,
    ConsentError,
    ConsentRequired,
    IntegrityError,
    ProtocolError,
    StorageError,
    UploadError,
    WkingError,
)
from wking_device.models import DeviceInfo, OperationEvent, OperationKind, Outcome, Record

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BluetoothError",
    "ConfigError",
    "ConsentError",
    "ConsentRequired",
    "DeviceInfo",
    "IntegrityError",
    "OperationEvent",
    "OperationKind",
    "Outcome",
    "Paths",
    "ProtocolError",
    "Record",
    "Settings",
    "StorageError",
    "UploadError",
    "WkingError",
    "__version__",
    "load_settings",
    "resolve_paths",
]
