"""The one exception tree of ``wking_device``.

Every error this package raises is a :class:`WkingError`. Foreign errors (bleak, bumble, sqlite3,
ssl, cryptography's ``InvalidTag``, aiohttp) are translated once, at the boundary of the layer that
calls them, with ``raise ... from exc``; nothing above that layer sees a foreign exception.

Each error carries structured fields and a ``remedy``: one sentence telling a *library user*
what to do (in terms of this package's API). ``cli_remedy`` is the same advice in terms of the
``wking`` command, which prints it instead (:meth:`WkingError.cli_message`); it falls back to
``remedy``. ``exit_code`` is what the ``wking`` command exits with when the error reaches it::

    WkingError                      exit 1
    ├── UsageError                  exit 2
    │   └── InvalidAddress                   not a Bluetooth address ("kitchen")
    ├── ConfigError                 exit 2   (file, line, key)
    ├── ProtocolError               exit 4   frames, advertisements, codec misuse
    │   ├── FrameError                       malformed frame bytes (reason)
    │   ├── ChecksumError                    a frame whose CRC does not match
    │   ├── CodecStateError                  the codec was used after an error
    │   └── AdvertisementError               malformed advertisement / manufacturer data
    ├── BluetoothError              exit 4   (address, reason, remedy)
    │   ├── AdapterUnavailable               no adapter / backend cannot start
    │   ├── DeviceNotFound                   address not seen in discovery
    │   ├── ConnectionFailed                 connect failed after bounded retries, or no slot
    │   ├── DeviceDisconnected               link lost during an operation
    │   ├── OperationTimeout                 no answer in time (connect, read, command)
    │   ├── GattError                        an ATT/GATT error (att_code)
    │   ├── CommandRejected                  the speaker answered with an error status
    │   ├── MalformedResponse                a response frame was malformed (also a ProtocolError)
    │   └── UnsupportedOperation             the profile has no such command/characteristic
    ├── ConsentError                exit 3
    │   ├── ConsentRequired                  a category lacks a valid grant (missing)
    │   ├── PermitRevoked                    a permit was used after revocation
    │   ├── ForeignPermit                    not a permit of this installation's gate
    │   ├── PrerequisiteMissing              e.g. mac_addresses without operation_logs
    │   └── GuardianRequired                 a minor's sensitive grant needs a guardian
    ├── IntegrityError              exit 7
    │   ├── LedgerTampered                   the consent ledger failed verification
    │   └── StoreIntegrityError              the database failed its integrity check
    ├── StorageError                exit 6
    │   ├── StoreFull                        disk full or size cap with nothing evictable
    │   ├── StoreClosed                      used after close()
    │   ├── StoreNotFound                    a read-only open of a store that does not exist
    │   ├── StoreInUse                       open already (in_this_process says where)
    │   ├── RecordCorrupt                    a record failed authentication (quarantined)
    │   └── KeyStoreError                    master key missing, wrong or insecure
    │       ├── KeyMissing
    │       └── WrongKey
    └── UploadError                 exit 5
        ├── InsecureEndpoint                 http:// or verification disabled: refused
        ├── CredentialError                  token file / client certificate unusable or unsafe
        ├── TLSError                         the TLS handshake failed
        │   ├── TLSVerificationFailed        the certificate did not verify (reason)
        │   └── PinMismatch                  no SPKI pin matches the peer's key
        ├── UploadRejected                   permanent HTTP error (status)
        └── UploadUnavailable                transient: network down, 429/503 (retry_after)
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

__all__ = [
    "AdapterUnavailable",
    "AdvertisementError",
    "BluetoothError",
    "BluetoothReason",
    "ChecksumError",
    "CodecStateError",
    "CommandRejected",
    "ConfigError",
    "ConnectionFailed",
    "ConsentError",
    "ConsentRequired",
    "CredentialError",
    "DeviceDisconnected",
    "DeviceNotFound",
    "ForeignPermit",
    "FrameError",
    "GattError",
    "GuardianRequired",
    "InsecureEndpoint",
    "IntegrityError",
    "InvalidAddress",
    "KeyMissing",
    "KeyStoreError",
    "LedgerTampered",
    "MalformedResponse",
    "OperationTimeout",
    "PermitRevoked",
    "PinMismatch",
    "PrerequisiteMissing",
    "ProtocolError",
    "RecordCorrupt",
    "StorageError",
    "StoreClosed",
    "StoreFull",
    "StoreInUse",
    "StoreIntegrityError",
    "StoreNotFound",
    "TLSError",
    "TLSReason",
    "TLSVerificationFailed",
    "UnsupportedOperation",
    "UploadError",
    "UploadRejected",
    "UploadUnavailable",
    "UsageError",
    "WkingError",
    "WrongKey",
]


class WkingError(Exception):
    """Root of every error raised by ``wking_device``.

    Args:
        message: What went wrong, in one line.
        remedy: What a library user can do about it, in one sentence (optional).
        cli_remedy: The same advice for a user of the ``wking`` command (optional; defaults to
            the class's ``default_cli_remedy``, then to ``remedy``).

    Attributes:
        message: What went wrong.
        remedy: Advice in terms of the library's API (``str(error)`` shows it).
        cli_remedy: Advice in terms of the ``wking`` command.
    """

    exit_code: ClassVar[int] = 1
    default_remedy: ClassVar[str | None] = None
    default_cli_remedy: ClassVar[str | None] = None

    def __init__(
        self, message: str, *, remedy: str | None = None, cli_remedy: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy if remedy is not None else self.default_remedy
        if cli_remedy is None:
            cli_remedy = self.default_cli_remedy if remedy is None else None
        self.cli_remedy = cli_remedy if cli_remedy is not None else self.remedy

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle without calling ``__init__`` again: the fields travel as they are.

        ``BaseException``'s own reduction rebuilds an error as ``cls(*args)``, which fails or
        garbles the message for every error whose constructor takes keyword-only or other than
        the message arguments (``StoreInUse``, ``ConsentRequired``...). multiprocessing,
        ``concurrent.futures`` and pytest-xdist pickle errors between processes.
        """
        return (_rebuild_error, (type(self), self.args), dict(vars(self)))

    def __str__(self) -> str:
        if self.remedy:
            return f"{self.message} ({self.remedy})"
        return self.message

    def cli_message(self) -> str:
        """The one line the ``wking`` command prints: the message and the CLI's remedy."""
        if self.cli_remedy:
            return f"{self.message} ({self.cli_remedy})"
        return self.message


def _rebuild_error(cls: type[WkingError], args: tuple[Any, ...]) -> WkingError:
    """An error of ``cls`` with ``args``, its fields restored by pickle (no ``__init__`` call)."""
    error = cls.__new__(cls)
    error.args = args
    return error


class UsageError(WkingError):
    """The caller asked for something that does not make sense (bad argument, wrong state)."""

    exit_code = 2


class InvalidAddress(UsageError):
    """A string that is not a Bluetooth address was given where one is needed.

    Raised at once (``Speaker("kitchen")``), before any scan.

    Args:
        address: The text given (a caller's, possibly a MAC: the log filter redacts it).
    """

    default_remedy = (
        "pass the speaker's address as six hex pairs (AA:BB:CC:DD:EE:FF), or the address "
        "of a DiscoveredSpeaker from discover()"
    )
    default_cli_remedy = "give the address as AA:BB:CC:DD:EE:FF; 'wking scan' lists them"

    def __init__(self, address: str) -> None:
        super().__init__(f"not a Bluetooth address: {address!r}")
        self.address = address


class ConfigError(WkingError):
    """A configuration file or value is malformed.

    Args:
        message: What is wrong.
        file: The config file, when the error comes from one.
        line: The 1-based line in that file, when known.
        key: The dotted key that is wrong, when known.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        remedy: str | None = None,
    ) -> None:
        where = ""
        if file is not None:
            where = file if line is None else f"{file}:{line}"
        if key is not None:
            where = f"{where} [{key}]" if where else f"[{key}]"
        super().__init__(f"{where}: {message}" if where else message, remedy=remedy)
        self.file = file
        self.line = line
        self.key = key


# --- protocol -------------------------------------------------------------------------------------


class ProtocolError(WkingError):
    """Bytes from a speaker (a frame or an advertisement) do not follow the profile."""

    exit_code = 4


class FrameError(ProtocolError):
    """A frame is malformed (bad start byte, length, type, opcode or payload)."""


class ChecksumError(FrameError):
    """A frame's checksum does not match its content."""


class CodecStateError(ProtocolError):
    """The codec was used in a state that does not allow it (e.g. after an error, before reset)."""


class AdvertisementError(ProtocolError):
    """An advertisement or its manufacturer data cannot be parsed."""


# --- bluetooth ------------------------------------------------------------------------------------


class BluetoothReason(enum.StrEnum):
    """Why a Bluetooth operation failed; stable strings for logs and operation events."""

    ADAPTER_UNAVAILABLE = "adapter_unavailable"
    NOT_FOUND = "not_found"
    NOT_CONNECTABLE = "not_connectable"
    CONNECTION_ABORTED = "connection_aborted"
    CONNECTION_FAILED = "connection_failed"
    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"
    GATT_ERROR = "gatt_error"
    REJECTED = "rejected"
    MALFORMED_RESPONSE = "malformed_response"
    UNSUPPORTED = "unsupported"
    TOO_MANY_CONNECTIONS = "too_many_connections"


class BluetoothError(WkingError):
    """A Bluetooth operation on a speaker failed.

    Args:
        message: What failed.
        address: The speaker's address (redacted by the log filter, never written to disk).
        reason: A stable reason code.
        remedy: What the user can try.
    """

    exit_code = 4
    default_reason: ClassVar[BluetoothReason] = BluetoothReason.CONNECTION_FAILED

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        reason: BluetoothReason | None = None,
        remedy: str | None = None,
        cli_remedy: str | None = None,
    ) -> None:
        super().__init__(message, remedy=remedy, cli_remedy=cli_remedy)
        self.address = address
        self.reason = reason if reason is not None else self.default_reason


class AdapterUnavailable(BluetoothError):
    """No Bluetooth adapter, or the backend cannot start."""

    default_reason = BluetoothReason.ADAPTER_UNAVAILABLE
    default_remedy = (
        "check that an adapter is present and powered (bluetoothctl show), or pass a "
        "simulator's backend (wking_device.sim.SimWorld(...).backend) as backend="
    )
    default_cli_remedy = (
        "check that an adapter is present and powered (bluetoothctl show), "
        "or use --simulate N to run against simulated speakers"
    )


class DeviceNotFound(BluetoothError):
    """No speaker with that address was seen during discovery."""

    default_reason = BluetoothReason.NOT_FOUND
    default_remedy = (
        "move the speaker closer, make sure it is on, and check its address with discover()"
    )
    default_cli_remedy = "move the speaker closer, make sure it is on, and run 'wking scan'"


class ConnectionFailed(BluetoothError):
    """A connection could not be established within the bounded retries.

    Also raised, with ``reason`` ``TOO_MANY_CONNECTIONS``, by a first connect for which no
    connection slot of the adapter came free within ``slot_timeout`` (no attempt was made).
    """

    default_reason = BluetoothReason.CONNECTION_FAILED
    default_remedy = "make sure the speaker is on, in range and not connected to another host"


class DeviceDisconnected(BluetoothError):
    """The link was lost while an operation was in progress."""

    default_reason = BluetoothReason.DISCONNECTED
    default_remedy = "move the speaker closer and retry"


class OperationTimeout(BluetoothError):
    """A connect, read or command got no answer in time."""

    default_reason = BluetoothReason.TIMEOUT
    default_remedy = "retry; if it persists, power-cycle the speaker"


class GattError(BluetoothError):
    """An ATT/GATT error from the speaker.

    Args:
        att_code: The ATT error code, when the stack reports one.
    """

    default_reason = BluetoothReason.GATT_ERROR

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        att_code: int | None = None,
        reason: BluetoothReason | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(message, address=address, reason=reason, remedy=remedy)
        self.att_code = att_code


class CommandRejected(BluetoothError):
    """The speaker answered a vendor command with an error status.

    Args:
        status: The status byte from the speaker's response.
    """

    default_reason = BluetoothReason.REJECTED

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        status: int | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(message, address=address, remedy=remedy)
        self.status = status


class MalformedResponse(BluetoothError, ProtocolError):
    """A speaker's response or notification could not be decoded (bad checksum, truncated frame).

    Both a :class:`BluetoothError` (it happened on a device session, with an address) and a
    :class:`ProtocolError` (the bytes broke the profile). The session resets its codec and stays
    usable.
    """

    default_reason = BluetoothReason.MALFORMED_RESPONSE
    default_remedy = "retry; if it persists, power-cycle the speaker or update its firmware"


class UnsupportedOperation(BluetoothError):
    """The speaker's profile has no such command or characteristic."""

    default_reason = BluetoothReason.UNSUPPORTED


# --- consent --------------------------------------------------------------------------------------


class ConsentError(WkingError):
    """Collection was refused because consent is missing or no longer valid."""

    exit_code = 3


class ConsentRequired(ConsentError):
    """One or more categories lack a valid grant.

    Args:
        missing: The categories that are not granted (or are suspended or denied by DNT).
    """

    def __init__(self, missing: frozenset[str] | set[str], *, reason: str | None = None) -> None:
        names = ", ".join(sorted(missing))
        detail = f" ({reason})" if reason else ""
        quoted = ", ".join(repr(name) for name in sorted(missing))
        super().__init__(
            f"consent required for: {names}{detail}",
            remedy=f"ask the user, then ConsentGate.grant([{quoted}])",
            cli_remedy=f"run 'wking consent grant {' '.join(sorted(missing))}'",
        )
        self.missing = frozenset(missing)


class PermitRevoked(ConsentError):
    """A permit was used after it had been revoked (withdrawal, DNT, policy change)."""


class ForeignPermit(ConsentError):
    """Something that is not a permit of this installation's consent gate was offered as one.

    A duck-typed object, a permit tampered with, or a real permit from another installation's
    gate: nothing is stored under it.
    """


class PrerequisiteMissing(ConsentError):
    """A category was granted without the categories it requires.

    Args:
        category: The category asked for.
        requires: The categories it needs first.
    """

    def __init__(self, category: str, requires: frozenset[str] | set[str]) -> None:
        needed = " ".join(sorted(requires))
        both = ", ".join(repr(name) for name in [*sorted(requires), category])
        super().__init__(
            f"{category} requires {needed}",
            remedy=f"grant {needed} too, e.g. ConsentGate.grant([{both}])",
            cli_remedy=f"grant {needed} too, e.g. 'wking consent grant {needed} {category}'",
        )
        self.category = category
        self.requires = frozenset(requires)


class GuardianRequired(ConsentError):
    """A minor's profile asked for sensitive categories without a guardian grant.

    Args:
        categories: The sensitive categories asked for.
    """

    def __init__(self, categories: frozenset[str] | set[str]) -> None:
        names = " ".join(sorted(categories))
        quoted = ", ".join(repr(name) for name in sorted(categories))
        super().__init__(
            f"this profile is a minor's: a parent or guardian must grant {names}",
            remedy=f"a parent or guardian grants them: ConsentGate.grant([{quoted}], "
            'method="guardian")',
            cli_remedy=f"a parent or guardian can run 'wking consent grant --guardian {names}'",
        )
        self.categories = frozenset(categories)


# --- integrity ------------------------------------------------------------------------------------


class IntegrityError(WkingError):
    """Stored data failed verification: it was altered outside this library."""

    exit_code = 7


class LedgerTampered(IntegrityError):
    """The consent ledger's hash chain or HMAC does not verify; the gate fails closed.

    Args:
        entry: The 0-based index of the first entry that failed, when known.
    """

    default_remedy = (
        "the consent ledger was altered; every category is denied until it is restored "
        "from a backup or reset (the 'wking consent reset' command)"
    )
    default_cli_remedy = (
        "the consent ledger was altered; every category is denied until it is restored "
        "from a backup or reset with 'wking consent reset'"
    )

    def __init__(self, message: str, *, entry: int | None = None) -> None:
        super().__init__(message)
        self.entry = entry


class StoreIntegrityError(IntegrityError):
    """The record database failed its integrity check on open."""


# --- storage --------------------------------------------------------------------------------------


class StorageError(WkingError):
    """The encrypted local store cannot do what was asked."""

    exit_code = 6


class StoreFull(StorageError):
    """The disk is full (or the size cap is reached with nothing evictable); nothing was lost."""

    default_remedy = "free disk space or raise storage.max_bytes; stored records are intact"


class StoreClosed(StorageError):
    """The store was used after it was closed."""


class StoreNotFound(StorageError):
    """A store opened read-only does not exist (nothing was collected in this installation).

    Args:
        path: The database file looked for.
    """

    default_remedy = (
        "nothing was collected in this installation yet (check WKING_HOME / the paths "
        "passed); open it for writing to create it"
    )
    default_cli_remedy = "collect something first (wking agent run), or check WKING_HOME"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreInUse(StorageError):
    """The store is open for writing already: in another process, or in this one.

    Args:
        in_this_process: ``True`` when this process holds it (another ``open_store`` call).
    """

    def __init__(self, *, in_this_process: bool) -> None:
        if in_this_process:
            super().__init__(
                "the record store is open already in this process",
                remedy="use the RecordStore that is open, or close it before opening it again",
            )
        else:
            super().__init__(
                "the record store is open in another process",
                remedy="stop the other program (an agent?), or use open_store(..., readonly=True)",
                cli_remedy="stop the agent, or use a read-only command",
            )
        self.in_this_process = in_this_process


class RecordCorrupt(StorageError):
    """A record failed authentication; it was quarantined.

    Args:
        record_id: The record's id.
    """

    def __init__(self, message: str, *, record_id: str | None = None) -> None:
        super().__init__(message)
        self.record_id = record_id


class KeyStoreError(StorageError):
    """The master key cannot be obtained, or the key store is not secure."""


class KeyMissing(KeyStoreError):
    """The master key the store was created with is not available."""

    default_remedy = (
        "restore the key (key file, keyring entry or systemd credential) the store was created "
        "with; a new empty store is never created silently"
    )


class WrongKey(KeyStoreError):
    """The available master key does not open this store."""

    default_remedy = "point WKING_HOME or the key store at the key this store was created with"


# --- upload ---------------------------------------------------------------------------------------


class UploadError(WkingError):
    """Uploading records to the collector failed."""

    exit_code = 5


class InsecureEndpoint(UploadError):
    """The endpoint is not https:// or would need verification switched off: refused."""

    default_remedy = "use an https:// endpoint; set upload.ca_bundle for a private CA"


class CredentialError(UploadError):
    """A bearer-token file or a client certificate/key cannot be used, or is not private.

    Args:
        path: The file concerned, when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None, remedy: str | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.path = path


class TLSReason(enum.StrEnum):
    """Why a TLS connection to the collector was refused; stable strings for logs and tests."""

    UNKNOWN_CA = "unknown_ca"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    PIN_MISMATCH = "pin_mismatch"
    HANDSHAKE_FAILED = "handshake_failed"


class TLSError(UploadError):
    """The TLS handshake with the collector failed; nothing was sent.

    Args:
        message: The cause, in one line.
        host: The host name the client connected to.
        reason: A stable reason code.
    """

    default_reason: ClassVar[TLSReason] = TLSReason.HANDSHAKE_FAILED
    default_remedy = "check the endpoint, its certificate and upload.ca_bundle; nothing was sent"

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        reason: TLSReason | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(message, remedy=remedy)
        self.host = host
        self.reason = reason if reason is not None else self.default_reason


class TLSVerificationFailed(TLSError):
    """The collector's certificate did not verify (unknown CA, wrong host name, expired...)."""

    default_reason = TLSReason.UNKNOWN_CA
    default_remedy = (
        "nothing was sent: set upload.ca_bundle to the CA that signed the collector's "
        "certificate, or fix the endpoint's host name or certificate"
    )


class PinMismatch(TLSError):
    """The collector's public key matches none of the configured SHA-256 SPKI pins."""

    default_reason = TLSReason.PIN_MISMATCH
    default_remedy = (
        "nothing was sent: the collector presented a different key than upload.spki_pins "
        "expects; update the pins only if the collector's key was rotated on purpose"
    )


class UploadRejected(UploadError):
    """The collector rejected the request permanently.

    Args:
        status: The HTTP status code.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UploadUnavailable(UploadError):
    """The collector is unreachable or asked to retry later.

    Args:
        retry_after: Seconds the collector asked to wait, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
