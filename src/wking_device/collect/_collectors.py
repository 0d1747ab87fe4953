"""The concrete collectors: operation logs, device info, software info, diagnostics, location.

This module owns what goes into each category's records, and keeps MAC addresses out of every
record not made under a ``mac_addresses`` permit (the fields are then absent: not hashed, not
blank). It does not subscribe itself to the Bluetooth layer (call ``attach(bus)`` with an event
bus, or feed ``on_event`` yourself) and it does not keep records (the sink does).
"""

from __future__ import annotations

import logging
import platform
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

import wking_device  # annotations name wking_device.X: get_type_hints loads X lazily
from wking_device._subscription import Subscription
from wking_device.bindings import SpeakerKeys
from wking_device.collect._base import Collector
from wking_device.collect._sink import MAC_FIELDS, MAC_PATTERN, RecordSink
from wking_device.consent import ConsentGate, Permit
from wking_device.models import OperationEvent, Outcome, Record

__all__ = [
    "DeviceInfoCollector",
    "DiagnosticsCollector",
    "EventSource",
    "LocationCollector",
    "OperationLogCollector",
    "SoftwareInfoCollector",
    "host_adapter_mac",
    "host_info",
    "scrub",
]

_LOGGER = logging.getLogger(__name__)

_OPERATION_LOGS = frozenset({"operation_logs"})
_WITH_MACS = frozenset({"operation_logs", "mac_addresses"})
_FAILED = frozenset({Outcome.ERROR, Outcome.TIMEOUT})
_PATH_PATTERN = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.~@+-]+){2,}")


class EventSource(Protocol):
    """Anything with ``subscribe(callback) -> unsubscribe`` (the Bluetooth layer's event bus)."""

    def subscribe(self, callback: Callable[[OperationEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every event; return a function that unsubscribes."""


def _as_subscription(unsubscribe: Callable[[], None]) -> Subscription:
    return unsubscribe if isinstance(unsubscribe, Subscription) else Subscription(unsubscribe)


def _speaker_keys_of(sink: RecordSink, given: SpeakerKeys | None) -> SpeakerKeys | None:
    """The speaker keys given, or those of the installation whose record store is the sink."""
    if given is not None:
        return given
    from wking_device.crypto import KeyStore  # noqa: PLC0415 - cryptography on first use

    keys = getattr(sink, "keys", None)
    return SpeakerKeys.from_key_store(keys) if isinstance(keys, KeyStore) else None


def scrub(text: str) -> str:
    """Remove MAC addresses and file paths from a message (diagnostics keep neither).

    Args:
        text: An error message or traceback line.

    Returns:
        The text with MACs as ``<mac>`` and paths reduced to ``<path>/<basename>``.
    """
    text = MAC_PATTERN.sub("<mac>", text)
    return _PATH_PATTERN.sub(lambda m: "<path>/" + re.split(r"[/\\]", m.group(0))[-1], text)


def host_adapter_mac(
    sysfs: Path = Path("/sys/class/bluetooth"), adapter: str | None = None
) -> str | None:
    """Read a host Bluetooth adapter's MAC on Linux, if there is one.

    Args:
        sysfs: Where Linux lists adapters (``hci*/address``); injectable for tests.
        adapter: The adapter in use (``hci1``); default: the first one.

    Returns:
        The MAC in upper case, or ``None`` when there is no adapter (or not Linux).
    """
    try:
        candidates = sorted(sysfs.glob(f"{adapter or 'hci*'}/address"))
    except OSError:
        return None
    for candidate in candidates:
        try:
            value = candidate.read_text(encoding="ascii").strip().upper()
        except (OSError, UnicodeDecodeError):
            continue
        if MAC_PATTERN.fullmatch(value) and value != "00:00:00:00:00:00":
            return value
    return None


def host_info(adapter_model: str | None = None) -> dict[str, Any]:
    """Describe the host for ``device_info`` (operating system, machine, adapter model).

    Args:
        adapter_model: The Bluetooth adapter's model, when the caller knows it.

    Returns:
        A dict without identifying values (no host name, no user name, no MAC).
    """
    info: dict[str, Any] = {
        "os": platform.system(),
        "os_release": platform.release(),
        "machine": platform.machine(),
    }
    if adapter_model:
        info["adapter_model"] = adapter_model
    return info


class OperationLogCollector(Collector):
    """Turns Bluetooth operation events into ``operation_logs`` records.

    MAC addresses (the event's speaker address and the host adapter's) are attached only while a
    ``mac_addresses`` permit is valid; a record buffered with MACs whose ``mac_addresses`` permit
    is revoked before the flush loses the MAC fields (or is dropped, if ``operation_logs`` went
    too).

    Args:
        gate: The consent gate.
        sink: Where records go.
        adapter_mac: The host adapter's MAC; defaults to :func:`host_adapter_mac`. Pass ``""`` for
            "unknown" without probing the system.
        speaker_keys: Gives each record about a speaker its ``speaker`` key; defaults to the
            installation's when ``sink`` is a ``RecordStore`` (other sinks: no ``speaker``).
        **kwargs: Passed to :class:`Collector`.
    """

    categories: ClassVar[frozenset[str]] = _OPERATION_LOGS

    def __init__(
        self,
        gate: ConsentGate,
        sink: RecordSink,
        *,
        adapter_mac: str | None = None,
        speaker_keys: SpeakerKeys | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(gate, sink, **kwargs)
        self._adapter_mac = (host_adapter_mac() if adapter_mac is None else adapter_mac) or None
        self._speaker_keys = _speaker_keys_of(sink, speaker_keys)

    def attach(self, source: EventSource) -> Subscription:
        """Subscribe :meth:`on_event` to an event bus.

        Returns:
            A :class:`~wking_device.Subscription` (call it, ``close()`` it or leave its
            ``with`` block to detach).
        """
        return _as_subscription(source.subscribe(self.on_event))

    def on_event(self, event: OperationEvent) -> None:
        """Record one operation event, if ``operation_logs`` is granted.

        Args:
            event: The event from the Bluetooth layer.
        """
        permit = self._permit()
        if permit is None:
            self.stats.skipped += 1
            return
        body: dict[str, Any] = {}
        if event.address is not None and self._speaker_keys is not None:
            # first: the uploader cuts it out of the sealed text without parsing it
            body["speaker"] = self._speaker_keys.key(event.address)
        body["kind"] = str(event.kind)
        body["outcome"] = str(event.outcome)
        body["started_at"] = event.started_at
        body["duration_s"] = event.duration_s
        body["attempt"] = event.attempt
        if event.name is not None:
            body["name"] = event.name
        if event.model is not None:
            body["model"] = event.model
        if event.error is not None:
            body["error"] = event.error
        if event.error_type is not None:
            body["error_type"] = event.error_type
        if event.detail:
            body["detail"] = dict(event.detail)
        macs: dict[str, str] = {}
        mac_permit = self._permit(_WITH_MACS)
        if mac_permit is not None:
            if event.address is not None:
                macs["speaker_mac"] = event.address
            if self._adapter_mac is not None:
                macs["adapter_mac"] = self._adapter_mac
        if macs:
            # under the mac_addresses permit: the record is sealed under that category's key
            # (see store.key_scope) and shredded, or stripped, when it is withdrawn
            body.update(macs)
            assert mac_permit is not None
            permit = mac_permit
        else:
            # no MAC field, so nothing else in the record may hold one either: an advertised
            # name that is a MAC, a MAC anywhere in the details
            _strip_macs(body)
        self._emit("operation_logs", body, permit, created_at=event.started_at)

    def _salvage(self, record: Record) -> tuple[Record, Permit] | None:
        permit = self._permit()
        if permit is None or not any(name in record.body for name in MAC_FIELDS):
            return None
        if not self._gate.allows(record.category, record.consent_id):
            # operation_logs was withdrawn (and granted again since): the record belongs to a
            # grant that is gone and must not ride on the new one
            return None
        body = {k: v for k, v in record.body.items() if k not in MAC_FIELDS}
        _strip_macs(body)
        return (
            Record(
                category=record.category,
                consent_id=record.consent_id,  # the grant it was collected under, still live
                policy_version=record.policy_version,
                body=body,
                record_id=record.record_id,
                created_at=record.created_at,
            ),
            permit,
        )


def _has_mac(value: Any) -> bool:
    """Tell whether a value holds a MAC address anywhere (strings, nested dicts and lists)."""
    if isinstance(value, str):
        return MAC_PATTERN.search(value) is not None
    if isinstance(value, dict):
        return any(_has_mac(k) or _has_mac(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_mac(item) for item in value)
    return False


def _without_macs(detail: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in detail.items() if not (_has_mac(key) or _has_mac(value))}


def _strip_macs(body: dict[str, Any]) -> None:
    """Remove, in place, what holds a MAC from a record body without MAC fields."""
    if _has_mac(body.get("name")):
        del body["name"]  # some speakers advertise their MAC as their name
    if "detail" in body:
        body["detail"] = _without_macs(body["detail"])


class DeviceInfoCollector(Collector):
    """Turns speaker information reads into ``device_info`` records (never with a MAC).

    Args:
        gate: The consent gate.
        sink: Where records go.
        host: Facts about the host (default :func:`host_info`).
        speaker_keys: Gives each record its ``speaker`` key; defaults to the installation's
            when ``sink`` is a ``RecordStore`` (other sinks: no ``speaker``).
        **kwargs: Passed to :class:`Collector`.
    """

    categories: ClassVar[frozenset[str]] = frozenset({"device_info"})

    def __init__(
        self,
        gate: ConsentGate,
        sink: RecordSink,
        *,
        host: Mapping[str, Any] | None = None,
        speaker_keys: SpeakerKeys | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(gate, sink, **kwargs)
        self._host = dict(host_info() if host is None else host)
        self._speaker_keys = _speaker_keys_of(sink, speaker_keys)

    def on_info(self, info: wking_device.DeviceInfo) -> None:
        """Record what a speaker told about itself, if ``device_info`` is granted.

        Args:
            info: The speaker's information; its address is not recorded (its speaker key is).
        """
        permit = self._permit()
        if permit is None:
            self.stats.skipped += 1
            return
        fields = info.model_dump(exclude={"address"}, exclude_none=True)
        _strip_macs(fields)
        # the speaker key first: the uploader cuts it out of the sealed text without parsing
        body: dict[str, Any] = {}
        if self._speaker_keys is not None:
            body["speaker"] = self._speaker_keys.key(info.address)
        body.update(fields)
        body["host"] = dict(self._host)
        self._emit("device_info", body, permit)


class SoftwareInfoCollector(Collector):
    """Records the versions of this library, bleak, BlueZ and Python as ``software_info``.

    Args:
        gate: The consent gate.
        sink: Where records go.
        bluez_version: BlueZ's version, when the caller knows it (it is not probed).
        **kwargs: Passed to :class:`Collector`.
    """

    categories: ClassVar[frozenset[str]] = frozenset({"software_info"})

    def __init__(
        self,
        gate: ConsentGate,
        sink: RecordSink,
        *,
        bluez_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(gate, sink, **kwargs)
        self._bluez = bluez_version

    def snapshot(self) -> bool:
        """Record the versions once, if ``software_info`` is granted.

        Returns:
            Whether a record was made.
        """
        permit = self._permit()
        if permit is None:
            self.stats.skipped += 1
            return False
        body: dict[str, Any] = {
            "wking_device": _version("wking-device"),
            "bleak": _version("bleak"),
            "python": platform.python_version(),
            "implementation": sys.implementation.name,
        }
        if self._bluez:
            body["bluez"] = self._bluez
        self._emit("software_info", body, permit)
        return True


def _version(distribution: str) -> str | None:
    # imported here: importlib.metadata imports the email package (~20 ms), which a command
    # that never collects software info (`wking consent status`) should not pay for
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class DiagnosticsCollector(Collector):
    """Records failures as ``diagnostics``: failed operations and scrubbed exceptions."""

    categories: ClassVar[frozenset[str]] = frozenset({"diagnostics"})

    def attach(self, source: EventSource) -> Subscription:
        """Subscribe :meth:`on_event` to an event bus.

        Returns:
            A :class:`~wking_device.Subscription` (call it, ``close()`` it or leave its
            ``with`` block to detach).
        """
        return _as_subscription(source.subscribe(self.on_event))

    def on_event(self, event: OperationEvent) -> None:
        """Record a failed operation (errors and timeouts only), if ``diagnostics`` is granted."""
        if event.outcome not in _FAILED:
            return
        permit = self._permit()
        if permit is None:
            self.stats.skipped += 1
            return
        body: dict[str, Any] = {
            "source": "operation",
            "kind": str(event.kind),
            "outcome": str(event.outcome),
            "attempt": event.attempt,
        }
        if event.error is not None:
            body["error"] = event.error
        if event.error_type is not None:
            body["error_type"] = event.error_type
        self._emit("diagnostics", body, permit, created_at=event.started_at)

    def on_exception(self, exc: BaseException, *, where: str) -> None:
        """Record a service failure, scrubbed of MAC addresses and paths.

        Args:
            exc: The exception.
            where: Which part of the service failed (e.g. ``"uploader"``).
        """
        permit = self._permit()
        if permit is None:
            self.stats.skipped += 1
            return
        frames = traceback.extract_tb(exc.__traceback__)[-5:]
        body: dict[str, Any] = {
            "source": "exception",
            "where": scrub(where),
            "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": scrub(str(exc))[:500],
            "frames": [f"{Path(f.filename).name}:{f.name}:{f.lineno}" for f in frames],
        }
        self._emit("diagnostics", body, permit)


class LocationCollector(Collector):
    """Records the coarse location the user configured (``location`` setting) as ``location``.

    Args:
        gate: The consent gate.
        sink: Where records go.
        location: The configured location (``Settings.location``); nothing is recorded without
            one.
        **kwargs: Passed to :class:`Collector`.
    """

    categories: ClassVar[frozenset[str]] = frozenset({"location"})

    def __init__(
        self, gate: ConsentGate, sink: RecordSink, *, location: str | None, **kwargs: Any
    ) -> None:
        super().__init__(gate, sink, **kwargs)
        self._location = location.strip() if location else None

    def snapshot(self) -> bool:
        """Record the configured location once, if there is one and ``location`` is granted.

        Returns:
            Whether a record was made.
        """
        if not self._location:
            return False
        permit = self._permit()
        if permit is None:
            self.stats.skipped += 1
            return False
        self._emit("location", {"location": self._location}, permit)
        return True
