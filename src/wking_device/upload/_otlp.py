"""OTLP/HTTP logs on the wire: encode a record once, frame many into one request.

This module owns the bytes of an ``ExportLogsServiceRequest`` (opentelemetry-proto
``collector/logs/v1``). It writes the protobuf wire format by hand for the few fields it uses,
because building one protobuf object per record at send time is far too slow for the upload
budget (docs/upload.md, notes/performance.md). Two steps:

1. :func:`encode_log_record` turns one record into the bytes of one ``LogRecord`` message —
   once per record (at append time or at send time; the bytes can be stored).
2. :class:`LogsFramer` wraps any number of such byte strings into a request:
   ``ExportLogsServiceRequest{resource_logs: [ResourceLogs{resource, scope_logs: [ScopeLogs{scope,
   log_records: [...]}]}]}``. A repeated message field is a concatenation of
   ``tag + length + bytes`` items, so framing 1,000 records is a join, not 1,000 objects.

Each ``LogRecord`` carries: ``time_unix_nano`` (the record's creation time),
``observed_time_unix_nano`` (the encoding time unless given), ``severity_number`` INFO, ``body`` a
*string* ``AnyValue`` holding the record's payload as compact JSON text (byte-exact, what was
sealed; a collector can parse it, e.g. with the ``json_parser`` operator), and four string
attributes: ``wking.record_id``, ``wking.category``, ``wking.consent_id``,
``wking.policy_version``. The resource carries ``service.name`` = ``wking-device``,
``service.version`` = the library version, ``wking.installation_id`` (pseudonymous, see
:mod:`wking_device.upload._identity`) and, only when the user granted ``ip_address``,
``wking.consent.ip_address`` = ``true`` (the receiver keeps the source IP only then).

The output decodes with the stock ``opentelemetry.proto`` classes (tested with hypothesis).
This module does no I/O and no compression policy beyond :func:`gzip_body`.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from wking_device._version import __version__
from wking_device.models import Record

__all__ = [
    "ATTR_CATEGORY",
    "ATTR_CONSENT_ID",
    "ATTR_INSTALLATION_ID",
    "ATTR_IP_CONSENT",
    "ATTR_POLICY_VERSION",
    "ATTR_RECORD_ID",
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PROTOBUF",
    "SERVICE_NAME",
    "LogRecordEncoder",
    "LogsFramer",
    "decode_status_message",
    "encode_log_record",
    "encode_record",
    "encode_status",
    "gzip_body",
]

ATTR_RECORD_ID: Final = "wking.record_id"
ATTR_CATEGORY: Final = "wking.category"
ATTR_CONSENT_ID: Final = "wking.consent_id"
ATTR_POLICY_VERSION: Final = "wking.policy_version"
ATTR_INSTALLATION_ID: Final = "wking.installation_id"
ATTR_IP_CONSENT: Final = "wking.consent.ip_address"
SERVICE_NAME: Final = "wking-device"
SCOPE_NAME: Final = "wking_device.upload"
CONTENT_TYPE_PROTOBUF: Final = "application/x-protobuf"
CONTENT_TYPE_JSON: Final = "application/json"

_SEVERITY_INFO: Final = 9  # SeverityNumber.SEVERITY_NUMBER_INFO
_FIXED64: Final = struct.Struct("<Q")
_HEAD: Final = struct.Struct("<BQBBB")  # time (1, fixed64), severity (2), the body's tag (5)
_HEAD_SIZE: Final = _HEAD.size


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): tag byte, length, payload."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _string_value(text: str) -> bytes:
    # AnyValue{string_value (1)}
    return _ld(0x0A, text.encode("utf-8"))


def _key_value(key: str, any_value: bytes) -> bytes:
    # KeyValue{key (1), value (2)}
    return _ld(0x0A, key.encode("utf-8")) + _ld(0x12, any_value)


# the attribute's key part is constant: pre-encode "0x0a len key" once
_KEY_RECORD_ID: Final = _ld(0x0A, ATTR_RECORD_ID.encode())
_KEY_CATEGORY: Final = _ld(0x0A, ATTR_CATEGORY.encode())
_KEY_CONSENT_ID: Final = _ld(0x0A, ATTR_CONSENT_ID.encode())
_KEY_POLICY_VERSION: Final = _ld(0x0A, ATTR_POLICY_VERSION.encode())
_TIME_TAG: Final = b"\x09"  # field 1, fixed64
_OBSERVED_TAG: Final = b"\x59"  # field 11, fixed64
_SEVERITY: Final = bytes((0x10, _SEVERITY_INFO))  # field 2, varint


def _string_attribute(key_part: bytes, value: str) -> bytes:
    # LogRecord.attributes (6) = KeyValue{key_part, value (2) = AnyValue{string_value}}
    raw = value.encode("utf-8")
    any_value = b"\x0a" + _varint(len(raw)) + raw
    kv = key_part + b"\x12" + _varint(len(any_value)) + any_value
    return b"\x32" + _varint(len(kv)) + kv


def encode_log_record(
    *,
    record_id: str,
    category: str,
    consent_id: str,
    policy_version: str,
    body: str | bytes,
    time_unix_nano: int,
    observed_time_unix_nano: int | None = None,
) -> bytes:
    """Encode one ``LogRecord`` message (the bytes :class:`LogsFramer` frames).

    Args:
        record_id: The record's id (``wking.record_id``; the receiver de-duplicates on it).
        category: The data category (``wking.category``).
        consent_id: The grant the record was collected under (``wking.consent_id``).
        policy_version: That grant's policy version (``wking.policy_version``).
        body: The payload as text (``str``, or UTF-8 ``bytes`` such as ``orjson.dumps`` output);
            becomes the string body.
        time_unix_nano: When the record was created, nanoseconds since the epoch (UTC).
        observed_time_unix_nano: When it was observed/encoded; defaults to now.

    Returns:
        The serialized ``LogRecord`` (without the framing tag and length).

    Raises:
        UnicodeDecodeError: ``body`` bytes that are not UTF-8 (a string body must be).
    """
    if observed_time_unix_nano is None:
        observed_time_unix_nano = time.time_ns()
    raw_body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if not isinstance(body, str):
        raw_body.decode("utf-8")  # protobuf strings must be valid UTF-8: refuse early
    any_body = b"\x0a" + _varint(len(raw_body)) + raw_body
    return b"".join(
        (
            _TIME_TAG,
            _FIXED64.pack(time_unix_nano),
            _SEVERITY,
            b"\x2a",
            _varint(len(any_body)),
            any_body,
            _string_attribute(_KEY_RECORD_ID, record_id),
            _string_attribute(_KEY_CATEGORY, category),
            _string_attribute(_KEY_CONSENT_ID, consent_id),
            _string_attribute(_KEY_POLICY_VERSION, policy_version),
            _OBSERVED_TAG,
            _FIXED64.pack(observed_time_unix_nano),
        )
    )


_SMALL_VARINTS: Final = tuple(_varint(n) for n in range(1 << 14))


def _fast_varint(value: int) -> bytes:
    return _SMALL_VARINTS[value] if value < 16384 else _varint(value)


class LogRecordEncoder:
    """:func:`encode_log_record` for many records: the same bytes, about twice as fast.

    The three attributes records share (category, consent id, policy version) are encoded once
    per distinct triple and kept (a bounded cache); lengths come from a table.

    Args:
        max_cached: Distinct attribute triples kept.
    """

    def __init__(self, max_cached: int = 1024) -> None:
        self._tails: dict[tuple[str, str, str], bytes] = {}
        self._max_cached = max_cached
        # the record id attribute's bytes before the id itself, per id length
        self._id_prefixes: dict[int, bytes] = {}

    def encode(
        self,
        *,
        record_id: str,
        category: str,
        consent_id: str,
        policy_version: str,
        body: bytes,
        time_unix_nano: int,
        observed_time_unix_nano: int,
    ) -> bytes:
        """Encode one ``LogRecord`` (arguments as :func:`encode_log_record`; ``body`` UTF-8).

        Raises:
            UnicodeDecodeError: ``body`` is not UTF-8.
        """
        key = (category, consent_id, policy_version)
        tail = self._tails.get(key)
        if tail is None:
            tail = (
                _string_attribute(_KEY_CATEGORY, category)
                + _string_attribute(_KEY_CONSENT_ID, consent_id)
                + _string_attribute(_KEY_POLICY_VERSION, policy_version)
            )
            if len(self._tails) >= self._max_cached:
                self._tails.clear()
            self._tails[key] = tail
        body.decode("utf-8")  # protobuf strings must be valid UTF-8: refuse early
        raw_id = record_id.encode("utf-8")
        id_prefix = self._id_prefixes.get(len(raw_id))
        if id_prefix is None:
            attribute = _string_attribute(_KEY_RECORD_ID, record_id)
            id_prefix = attribute[: len(attribute) - len(raw_id)]
            if len(self._id_prefixes) < 64:
                self._id_prefixes[len(raw_id)] = id_prefix
        length = len(body)
        return b"".join(
            (
                _TIME_TAG,
                _FIXED64.pack(time_unix_nano),
                _SEVERITY,
                b"\x2a",
                _fast_varint(length + 1 + len(_fast_varint(length))),
                b"\x0a",
                _fast_varint(length),
                body,
                id_prefix,
                raw_id,
                tail,
                _OBSERVED_TAG,
                _FIXED64.pack(observed_time_unix_nano),
            )
        )

    def encode_many(
        self,
        rows: Iterable[Sequence[Any]],
        observed_time_unix_nano: int,
        *,
        framed: bool = False,
    ) -> list[bytes]:
        """Encode many records at once: the same bytes as :meth:`encode` for each.

        The uploader's path: no keyword call per record, and the parts every record of a batch
        shares (its three attributes, the observed time) are joined once per distinct triple.

        Args:
            rows: Each starts with ``(record_id, category, consent_id, policy_version, body,
                created_at)`` (anything after is ignored, so a claimed
                :class:`~wking_device.store.OpenedRecord` is a row): the body UTF-8 JSON text,
                ``created_at`` in seconds since the epoch.
            observed_time_unix_nano: The batch's observed time.
            framed: Prefix each with its ``log_records`` tag and length, for
                :meth:`LogsFramer.frame_framed` (a join instead of a loop).

        Returns:
            The ``LogRecord`` bytes (framed or not), in order.

        Raises:
            UnicodeDecodeError: A body is not UTF-8.
        """
        observed = _OBSERVED_TAG + _FIXED64.pack(observed_time_unix_nano)
        tails: dict[tuple[str, str, str], bytes] = {}
        id_prefixes = self._id_prefixes
        head = _HEAD.pack
        varint = _fast_varint
        out: list[bytes] = []
        append = out.append
        for row in rows:
            record_id, category, consent_id, policy_version, body, created_at = row[:6]
            key = (category, consent_id, policy_version)
            tail = tails.get(key)
            if tail is None:
                tail = tails[key] = self._tail(key) + observed
            body.decode("utf-8")  # protobuf strings must be valid UTF-8: refuse early
            raw_id = record_id.encode("utf-8")
            id_prefix = id_prefixes.get(len(raw_id))
            if id_prefix is None:
                attribute = _string_attribute(_KEY_RECORD_ID, record_id)
                id_prefix = attribute[: len(attribute) - len(raw_id)]
                if len(id_prefixes) < 64:
                    id_prefixes[len(raw_id)] = id_prefix
            length = len(body)
            size = varint(length)
            any_length = length + 1 + len(size)
            any_size = varint(any_length)
            if framed:
                # ScopeLogs.log_records (2): tag, then the LogRecord's length
                prefix = b"\x12" + varint(
                    _HEAD_SIZE
                    + len(any_size)
                    + any_length
                    + len(id_prefix)
                    + len(raw_id)
                    + len(tail)
                )
            else:
                prefix = b""
            append(
                b"".join(
                    (
                        prefix,
                        head(0x09, int(created_at * 1_000_000_000), 0x10, _SEVERITY_INFO, 0x2A),
                        any_size,
                        b"\x0a",
                        size,
                        body,
                        id_prefix,
                        raw_id,
                        tail,
                    )
                )
            )
        return out

    def _tail(self, key: tuple[str, str, str]) -> bytes:
        """The category, consent id and policy version attributes (cached, bounded)."""
        tail = self._tails.get(key)
        if tail is None:
            category, consent_id, policy_version = key
            tail = (
                _string_attribute(_KEY_CATEGORY, category)
                + _string_attribute(_KEY_CONSENT_ID, consent_id)
                + _string_attribute(_KEY_POLICY_VERSION, policy_version)
            )
            if len(self._tails) >= self._max_cached:
                self._tails.clear()
            self._tails[key] = tail
        return tail


def encode_record(record: Record, *, observed_time_unix_nano: int | None = None) -> bytes:
    """Encode a stored :class:`~wking_device.models.Record` (its body as compact JSON text).

    Args:
        record: The decrypted record.
        observed_time_unix_nano: See :func:`encode_log_record`.

    Returns:
        The serialized ``LogRecord``.
    """
    return encode_log_record(
        record_id=record.record_id,
        category=record.category,
        consent_id=record.consent_id,
        policy_version=record.policy_version,
        body=orjson.dumps(record.body),
        time_unix_nano=int(record.created_at * 1_000_000_000),
        observed_time_unix_nano=observed_time_unix_nano,
    )


class LogsFramer:
    """Frames pre-encoded ``LogRecord`` bytes into ``ExportLogsServiceRequest`` bodies.

    The resource and scope parts are encoded once, here; :meth:`frame` only adds a tag and a
    length per record and three enclosing headers.

    Args:
        installation_id: The pseudonymous installation id (``wking.installation_id``).
        ip_address_consent: Declare ``wking.consent.ip_address = true`` on the resource (only
            when the user granted the ``ip_address`` category).
        service_version: ``service.version``; defaults to the library version.
    """

    def __init__(
        self,
        installation_id: str,
        *,
        ip_address_consent: bool = False,
        service_version: str = __version__,
    ) -> None:
        attributes = [
            _key_value("service.name", _string_value(SERVICE_NAME)),
            _key_value("service.version", _string_value(service_version)),
            _key_value(ATTR_INSTALLATION_ID, _string_value(installation_id)),
        ]
        if ip_address_consent:
            attributes.append(_key_value(ATTR_IP_CONSENT, b"\x10\x01"))  # bool_value (2) true
        # Resource{attributes (1)*}
        resource = b"".join(_ld(0x0A, kv) for kv in attributes)
        # InstrumentationScope{name (1), version (2)}
        scope = _ld(0x0A, SCOPE_NAME.encode()) + _ld(0x12, __version__.encode())
        self._resource_field = _ld(0x0A, resource)  # ResourceLogs.resource (1)
        self._scope_field = _ld(0x0A, scope)  # ScopeLogs.scope (1)
        self.installation_id = installation_id
        self.ip_address_consent = ip_address_consent

    def frame(self, records: Sequence[bytes] | Iterable[bytes]) -> bytes:
        """Build the request body (uncompressed protobuf) for these records.

        Args:
            records: ``LogRecord`` bytes from :func:`encode_log_record`.

        Returns:
            The serialized ``ExportLogsServiceRequest``.
        """
        parts: list[bytes] = [b"", b"", self._resource_field, b"\x12", b"", self._scope_field]
        append = parts.append
        size = 0
        for record in records:
            length = len(record)
            prefix = b"\x12" + (bytes((length,)) if length < 0x80 else _varint(length))
            append(prefix)
            append(record)
            size += len(prefix) + length
        scope_logs_len = len(self._scope_field) + size
        parts[4] = _varint(scope_logs_len)  # ResourceLogs.scope_logs (2)
        resource_logs_len = len(self._resource_field) + 1 + len(parts[4]) + scope_logs_len
        parts[0] = b"\x0a"  # ExportLogsServiceRequest.resource_logs (1)
        parts[1] = _varint(resource_logs_len)
        return b"".join(parts)

    def frame_framed(self, records: Sequence[bytes]) -> bytes:
        """:meth:`frame` for records from ``LogRecordEncoder.encode_many(..., framed=True)``.

        Args:
            records: ``LogRecord`` bytes, each with its tag and length already.

        Returns:
            The serialized ``ExportLogsServiceRequest`` (the same bytes :meth:`frame` gives).
        """
        scope_logs_len = len(self._scope_field) + sum(map(len, records))
        scope_logs_size = _varint(scope_logs_len)
        resource_logs_len = len(self._resource_field) + 1 + len(scope_logs_size) + scope_logs_len
        return b"".join(
            (
                b"\x0a",
                _varint(resource_logs_len),
                self._resource_field,
                b"\x12",
                scope_logs_size,
                self._scope_field,
                *records,
            )
        )


def gzip_body(body: bytes, *, level: int = 1) -> bytes:
    """Compress a request body for ``Content-Encoding: gzip`` (level 1: see performance notes).

    Args:
        body: The uncompressed body.
        level: The zlib level (1 is ~2x faster than 6 for ~15 % more bytes).

    Returns:
        A gzip member (no file name, mtime 0: equal bodies compress to equal bytes).
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
    return compressor.compress(body) + compressor.flush()


def encode_status(code: int, message: str) -> bytes:
    """Encode a ``google.rpc.Status`` (OTLP/HTTP error bodies): ``code`` (1), ``message`` (2).

    Args:
        code: A gRPC status code (e.g. 3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED).
        message: A developer-facing message.
    """
    out = b""
    if code:
        out += b"\x08" + _varint(code)
    return out + _ld(0x12, message.encode("utf-8"))


def decode_status_message(data: bytes) -> str:
    """Return the ``message`` of a ``google.rpc.Status`` body, or ``""`` if it is not one.

    A minimal reader (no dependency on googleapis-common-protos): it walks the top-level fields
    and gives up on anything unexpected.
    """
    pos, end = 0, len(data)
    try:
        while pos < end:
            key, pos = _read_varint(data, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _read_varint(data, pos)
            elif wire == 2:
                length, pos = _read_varint(data, pos)
                if pos + length > end:
                    return ""
                if field == 2:
                    return data[pos : pos + length].decode("utf-8", "replace")
                pos += length
            else:
                return ""
    except IndexError:
        return ""
    return ""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")
