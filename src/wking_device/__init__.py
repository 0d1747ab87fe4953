"""Discover and control W-KING BLE speakers; collect their logs only with consent.

With the user's consent, ``wking_device`` collects Bluetooth operation logs, keeps them
encrypted on disk and uploads them to a configured collector as OpenTelemetry logs over verified
TLS (``wking_device.upload``).

This module is the public door: it re-exports the names of the library's API. The errors load at
once; every other name (value types and configuration: pydantic; bleak, cryptography, SQLite)
loads on first use, so ``import wking_device`` stays cheap (benchmarks/startup.py).
Subpackages that are not re-exported here (``sim``, ``receiver``) are public in their own right;
everything whose name starts with ``_`` is internal.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from wking_device._redact import install_redaction as _install_redaction
from wking_device._version import __version__
from wking_device.errors import (
    AdapterUnavailable,
    AdvertisementError,
    BluetoothError,
    BluetoothReason,
    ChecksumError,
    CodecStateError,
    CommandRejected,
    ConfigError,
    ConnectionFailed,
    ConsentError,
    ConsentRequired,
    CredentialError,
    DeviceDisconnected,
    DeviceNotFound,
    ForeignPermit,
    FrameError,
    GattError,
    GuardianRequired,
    InsecureEndpoint,
    IntegrityError,
    InvalidAddress,
    KeyMissing,
    KeyStoreError,
    LedgerTampered,
    MalformedResponse,
    OperationTimeout,
    PermitRevoked,
    PinMismatch,
    PrerequisiteMissing,
    ProtocolError,
    RecordCorrupt,
    StorageError,
    StoreClosed,
    StoreFull,
    StoreIntegrityError,
    StoreInUse,
    StoreNotFound,
    TLSError,
    TLSReason,
    TLSVerificationFailed,
    UnsupportedOperation,
    UploadError,
    UploadRejected,
    UploadUnavailable,
    UsageError,
    WkingError,
    WrongKey,
)

if TYPE_CHECKING:
    from wking_device._subscription import Subscription
    from wking_device.agent import Agent, AgentSummary
    from wking_device.bindings import BoundSpeaker, SpeakerKeys, open_bindings
    from wking_device.ble import (
        BleBackend,
        ConnectionLimiter,
        DiscoveredSpeaker,
        EventBus,
        EventStream,
        FleetResult,
        RetryPolicy,
        SessionKeeper,
        Speaker,
        SpeakerScanner,
        SpeakerTracker,
        discover,
        find,
        get_event_bus,
        read_all,
    )
    from wking_device.collect import RecordSink, open_installation_gate
    from wking_device.config import Paths, Settings, load_settings, resolve_paths
    from wking_device.consent import ConsentGate, Permit, Revocation
    from wking_device.models import DeviceInfo, OperationEvent, OperationKind, Outcome, Record
    from wking_device.protocol import MODELS, WKING_V1, DeviceProfile, FrameCodec, Role
    from wking_device.store import RecordStore, open_store

logging.getLogger(__name__).addHandler(logging.NullHandler())
# The package's own log records never carry a MAC address or key material, whoever configures
# logging (DESIGN §9): records of ``wking_device.*`` loggers are redacted when they are created.
_install_redaction()

_LAZY = {
    "Agent": "wking_device.agent",
    "AgentSummary": "wking_device.agent",
    "Subscription": "wking_device._subscription",
    "BoundSpeaker": "wking_device.bindings",
    "SpeakerKeys": "wking_device.bindings",
    "open_bindings": "wking_device.bindings",
    "BleBackend": "wking_device.ble",
    "ConnectionLimiter": "wking_device.ble",
    "DiscoveredSpeaker": "wking_device.ble",
    "EventBus": "wking_device.ble",
    "EventStream": "wking_device.ble",
    "FleetResult": "wking_device.ble",
    "RetryPolicy": "wking_device.ble",
    "SessionKeeper": "wking_device.ble",
    "Speaker": "wking_device.ble",
    "SpeakerScanner": "wking_device.ble",
    "SpeakerTracker": "wking_device.ble",
    "discover": "wking_device.ble",
    "find": "wking_device.ble",
    "get_event_bus": "wking_device.ble",
    "read_all": "wking_device.ble",
    "RecordSink": "wking_device.collect",
    "open_installation_gate": "wking_device.collect",
    "ConsentGate": "wking_device.consent",
    "Permit": "wking_device.consent",
    "Revocation": "wking_device.consent",
    "DeviceProfile": "wking_device.protocol",
    "FrameCodec": "wking_device.protocol",
    "MODELS": "wking_device.protocol",
    "Role": "wking_device.protocol",
    "WKING_V1": "wking_device.protocol",
    "RecordStore": "wking_device.store",
    "open_store": "wking_device.store",
    # value types and configuration: pydantic models (~100 ms)
    "DeviceInfo": "wking_device.models",
    "OperationEvent": "wking_device.models",
    "OperationKind": "wking_device.models",
    "Outcome": "wking_device.models",
    "Record": "wking_device.models",
    "Paths": "wking_device.config",
    "Settings": "wking_device.config",
    "load_settings": "wking_device.config",
    "resolve_paths": "wking_device.config",
}

__all__ = [  # noqa: RUF022 - plain sorted() order, checked by tests/test_exported_members.py
    "AdapterUnavailable",
    "AdvertisementError",
    "Agent",
    "AgentSummary",
    "BleBackend",
    "BluetoothError",
    "BluetoothReason",
    "BoundSpeaker",
    "ChecksumError",
    "CodecStateError",
    "CommandRejected",
    "ConfigError",
    "ConnectionFailed",
    "ConnectionLimiter",
    "ConsentError",
    "ConsentGate",
    "ConsentRequired",
    "CredentialError",
    "DeviceDisconnected",
    "DeviceInfo",
    "DeviceNotFound",
    "DeviceProfile",
    "DiscoveredSpeaker",
    "EventBus",
    "EventStream",
    "FleetResult",
    "ForeignPermit",
    "FrameCodec",
    "FrameError",
    "GattError",
    "GuardianRequired",
    "InsecureEndpoint",
    "IntegrityError",
    "InvalidAddress",
    "KeyMissing",
    "KeyStoreError",
    "LedgerTampered",
    "MODELS",
    "MalformedResponse",
    "OperationEvent",
    "OperationKind",
    "OperationTimeout",
    "Outcome",
    "Paths",
    "Permit",
    "PermitRevoked",
    "PinMismatch",
    "PrerequisiteMissing",
    "ProtocolError",
    "Record",
    "RecordCorrupt",
    "RecordSink",
    "RecordStore",
    "RetryPolicy",
    "Revocation",
    "Role",
    "SessionKeeper",
    "Settings",
    "Speaker",
    "SpeakerKeys",
    "SpeakerScanner",
    "SpeakerTracker",
    "StorageError",
    "StoreClosed",
    "StoreFull",
    "StoreInUse",
    "StoreIntegrityError",
    "StoreNotFound",
    "Subscription",
    "TLSError",
    "TLSReason",
    "TLSVerificationFailed",
    "UnsupportedOperation",
    "UploadError",
    "UploadRejected",
    "UploadUnavailable",
    "UsageError",
    "WKING_V1",
    "WkingError",
    "WrongKey",
    "__version__",
    "discover",
    "find",
    "get_event_bus",
    "load_settings",
    "open_bindings",
    "open_installation_gate",
    "open_store",
    "read_all",
    "resolve_paths",
]


_SUBPACKAGES = frozenset(
    {
        "agent",
        "bindings",
        "ble",
        "collect",
        "config",
        "consent",
        "crypto",
        "events",
        "models",
        "policy",
        "protocol",
        "receiver",
        "sim",
        "store",
        "upload",
    }
)
"""Public modules :func:`__getattr__` imports on first use: an annotation written
``wking_device.crypto.KeyStore`` (a name not re-exported here) then resolves with
``typing.get_type_hints`` though nothing imported the module yet."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if name in _SUBPACKAGES:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
