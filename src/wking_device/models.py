"""Value types shared across layers: operation events, device information and records.

This module owns the shapes that cross layer boundaries (the BLE layer emits
:class:`OperationEvent`, collectors turn events into :class:`Record`, the store keeps records and
the uploader sends them). It does not validate consent, encrypt or store anything.

Hot-path types (events and records) are frozen, slotted, keyword-only dataclasses: pydantic
validation costs ~5 µs per object (see shared notes/performance.md) and these are built by the
thousand. :class:`DeviceInfo` is a pydantic model because it is built from untrusted speaker data
and validates on construction; it is defined in ``wking_device._device_info`` and loaded on first
use, so that the commands and layers that never read a speaker (``wking consent status``, the
store) do not import pydantic (~80 ms with its plugin loader).
"""

from __future__ import annotations

import collections
import enum
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from wking_device._redact import redact_macs

if TYPE_CHECKING:
    from wking_device._device_info import DeviceInfo

__all__ = [
    "MAC_FIELDS",
    "DeviceInfo",
    "OperationEvent",
    "OperationKind",
    "Outcome",
    "Record",
    "new_record_id",
]


MAC_FIELDS = ("speaker_mac", "adapter_mac")
"""Record body fields that hold MAC addresses: present only under a ``mac_addresses`` permit
(collectors), and sealed under that category's data key so its withdrawal shreds them (store)."""


class OperationKind(enum.StrEnum):
    """What a Bluetooth operation did."""

    SCAN = "scan"
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    SERVICES = "services"
    READ = "read"
    WRITE = "write"
    SUBSCRIBE = "subscribe"
    NOTIFY = "notify"
    COMMAND = "command"
    INFO = "info"


class Outcome(enum.StrEnum):
    """How an operation ended."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    RETRY = "retry"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class OperationEvent:
    """One Bluetooth operation, as the BLE layer saw it.

    Emitted to in-process subscribers for every operation; nothing stores it unless a collector
    with a valid permit turns it into a record. ``address`` is the speaker's address: collectors
    attach it to a record only under a ``mac_addresses`` permit.

    Attributes:
        kind: What the operation was.
        outcome: How it ended.
        address: The speaker's address, or ``None`` for adapter-wide operations such as a scan.
        name: The speaker's advertised name, when known.
        model: The speaker's model id, when known.
        started_at: UTC wall-clock start, seconds since the epoch.
        duration_s: Monotonic duration in seconds.
        attempt: 1-based attempt number for retried operations.
        error: A stable reason code (:class:`wking_device.errors.BluetoothReason`) on failure.
        error_type: The error class name on failure.
        detail: Small, non-identifying extra facts (opcode, characteristic UUID, RSSI, count).
    """

    kind: OperationKind
    outcome: Outcome
    address: str | None = None
    name: str | None = None
    model: str | None = None
    started_at: float = field(default_factory=time.time)
    duration_s: float = 0.0
    attempt: int = 1
    error: str | None = None
    error_type: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # A repr ends up in log lines and tracebacks: the address and MAC-shaped text in the
        # speaker's name, the error and the detail are redacted; repr() escapes controls.
        return (
            f"OperationEvent(kind={self.kind!r}, outcome={self.outcome!r}, "
            f"address={redact_macs(self.address)!r}, name={redact_macs(self.name)!r}, "
            f"model={redact_macs(self.model)!r}, started_at={self.started_at!r}, "
            f"duration_s={self.duration_s!r}, attempt={self.attempt!r}, "
            f"error={redact_macs(self.error)!r}, error_type={redact_macs(self.error_type)!r}, "
            f"detail={redact_macs(self.detail)!r})"
        )


def new_record_id() -> str:
    """Return a new, time-ordered, 32-hex-digit record id (UUIDv7 layout).

    Time-ordered ids keep SQLite's primary-key index append-mostly; 74 random bits make
    collisions between installations negligible. The random bits come from ``os.urandom``,
    drawn for 256 ids at a time (one system call instead of one per id: with a writer process
    busy on the other core, that call cost the event loop 2-4 µs a record); a process made by
    ``fork`` starts with none drawn, so it never repeats its parent's ids.
    """
    # 48 bits of milliseconds (12 hex digits, made once a millisecond), then 20 digits drawn
    # ahead: the version (7), 74 random bits and the variant (10xx) are already in them (this
    # runs once per record)
    global _PREFIX  # noqa: PLW0603 - one (ms, digits) pair, replaced whole (threads share it)
    ms = time.time_ns() // 1_000_000
    prefix = _PREFIX
    if prefix[0] != ms:
        prefix = _PREFIX = (ms, f"{ms & 0xFFFF_FFFF_FFFF:012x}")
    try:
        return prefix[1] + _RANDOM.popleft()
    except IndexError:
        return prefix[1] + _draw()


_PREFIX: tuple[int, str] = (-1, "")
_RANDOM: Final[collections.deque[str]] = collections.deque()
"""The last 20 hex digits of ids, drawn ahead (``popleft`` is atomic: threads share it)."""
_DRAWN: Final = 256
_CHUNK_CLEAR: Final = ((1 << 76) - 1) & ~(0xC << 60)
"""Of an id's last 80 bits: the random ones (the version's four and the variant's two cleared)."""
_CHUNK_SET: Final = 0x7 << 76 | 0x8 << 60
_BLOCK_CLEAR: Final = int.from_bytes(_CHUNK_CLEAR.to_bytes(10, "big") * _DRAWN, "big")
_BLOCK_SET: Final = int.from_bytes(_CHUNK_SET.to_bytes(10, "big") * _DRAWN, "big")


def _draw() -> str:
    """Draw the next ids' random digits; return one of them.

    Each id takes 10 random bytes ``r`` (80 bits): its last 20 hex digits are ``r >> 4`` with
    the version (7) in the top four bits and the variant (``10``) in bits 63-62 (RFC 9562).
    All 256 are made at once: the block shifted right by four bits gives every id its own
    ``r >> 4`` (the four bits shifted in from the id before land where the version goes).
    """
    block = (int.from_bytes(os.urandom(10 * _DRAWN), "big") >> 4) & _BLOCK_CLEAR | _BLOCK_SET
    digits = block.to_bytes(10 * _DRAWN, "big").hex()
    tails = [digits[i : i + 20] for i in range(0, 20 * _DRAWN, 20)]
    tail = tails.pop()
    _RANDOM.extend(tails)
    return tail


os.register_at_fork(after_in_child=_RANDOM.clear)


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One collected item of one data category, as it is stored and uploaded.

    Only a collector holding a valid permit creates records; ``consent_id`` and
    ``policy_version`` name the grant that allowed it, so the uploader and the receiver can prove
    what each record was collected under.

    Attributes:
        record_id: Unique, time-ordered id (:func:`new_record_id`); the receiver de-duplicates
            on it.
        category: The data category (``operation_logs``, ``device_info``, ...).
        created_at: UTC wall-clock time, seconds since the epoch.
        consent_id: The ledger entry id of the grant that allowed this record.
        policy_version: The policy version that grant was made under.
        body: JSON-serialisable content; never holds a MAC address unless ``mac_addresses`` is
            granted.
    """

    category: str
    consent_id: str
    policy_version: str
    body: dict[str, Any]
    record_id: str = field(default_factory=new_record_id)
    created_at: float = field(default_factory=time.time)


def __getattr__(name: str) -> Any:
    """Load :class:`DeviceInfo` (and pydantic) on first use."""
    if name == "DeviceInfo":
        from wking_device._device_info import DeviceInfo  # noqa: PLC0415 - the point

        DeviceInfo.__module__ = __name__  # its public home, for repr, pickle and docs
        globals()[name] = DeviceInfo
        return DeviceInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
