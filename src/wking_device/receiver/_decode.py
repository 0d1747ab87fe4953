"""Turn an OTLP/HTTP logs request (protobuf or JSON) into rows for the receiver's database.

Accepts what any OTLP/HTTP exporter sends: ``application/x-protobuf`` (or
``application/protobuf``) and ``application/json`` (OTLP/JSON: camelCase or snake_case keys,
64-bit integers as strings or numbers, trace and span ids in hex). A record with a
``wking.record_id`` attribute keeps it; one without (a stock SDK exporter's) gets a generated id,
and one whose id is no string of 1 to 200 characters makes the request a bad one (a generated id
would store it again each time it is re-sent).
The source IP is kept only for records whose resource declares
``wking.consent.ip_address = true``. The body is stored as text: a string body as is, any other
``AnyValue`` as JSON. This module does no I/O.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from wking_device.upload._otlp import (
    ATTR_CATEGORY,
    ATTR_CONSENT_ID,
    ATTR_INSTALLATION_ID,
    ATTR_IP_CONSENT,
    ATTR_POLICY_VERSION,
    ATTR_RECORD_ID,
)

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["BadRequest", "ReceivedRecord", "TooManyRecords", "decode_request"]

_MAX_ID_CHARS = 200
_BAD_ID: Final = f"a wking.record_id is not a string of 1 to {_MAX_ID_CHARS} characters"


class BadRequest(ValueError):
    """The request body is not a valid OTLP logs request (answered 400)."""


class TooManyRecords(BadRequest):
    """The request holds more log records than the receiver takes in one (answered 413)."""


class ReceivedRecord(NamedTuple):
    """One log record as the receiver stores it (a tuple: built once per record received)."""

    record_id: str
    category: str | None
    installation_id: str | None
    consent_id: str | None
    policy_version: str | None
    body: str
    time_unix_nano: int
    keep_ip: bool


def decode_request(
    body: bytes, *, json: bool, max_records: int | None = None
) -> list[ReceivedRecord]:
    """Decode a request body (already decompressed).

    Args:
        body: The serialized ``ExportLogsServiceRequest``.
        json: Whether it is OTLP/JSON (else protobuf).
        max_records: The most log records one request may hold, or ``None`` for no limit.
            Counted after parsing and before any per-record work: an empty log record is two
            bytes of protobuf, so a body of a few MiB can hold millions, each costing
            microseconds and a row.

    Returns:
        The records, in request order.

    Raises:
        TooManyRecords: More than `max_records` records.
        BadRequest: The body cannot be decoded.
    """
    request = _parse_json(body) if json else _parse_protobuf(body)
    if max_records is not None:
        count = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
        if count > max_records:
            raise TooManyRecords(f"{count} log records in one request (at most {max_records})")
    records: list[ReceivedRecord] = []
    for resource_logs in request.resource_logs:
        resource = {kv.key: kv.value for kv in resource_logs.resource.attributes}
        installation = _string(resource.get(ATTR_INSTALLATION_ID))
        ip_value = resource.get(ATTR_IP_CONSENT)
        keep_ip = (
            ip_value is not None
            and ip_value.WhichOneof("value") == "bool_value"
            and ip_value.bool_value
        )
        keep = bool(keep_ip)
        append = records.append
        make = tuple.__new__
        for scope_logs in resource_logs.scope_logs:
            for log in scope_logs.log_records:
                # the four wking.* attributes, by position; the last of a repeated key wins
                found: list[str | None] = [None, None, None, None]
                id_given = False
                for kv in log.attributes:
                    slot = _SLOTS.get(kv.key)
                    if slot is not None:
                        found[slot] = _string(kv.value)
                        id_given = id_given or slot == 0
                record_id, category, consent_id, policy_version = found
                if not id_given:
                    record_id = "gen-" + uuid.uuid4().hex  # a stock exporter's record
                elif not record_id or len(record_id) > _MAX_ID_CHARS:
                    # a made-up id would store the record again each time it is re-sent
                    raise BadRequest(_BAD_ID)
                content = log.body
                text = content.string_value  # "" when unset or not a string
                if not text and log.HasField("body"):
                    text = _body_text(content)
                append(
                    make(
                        ReceivedRecord,
                        (
                            record_id,
                            category,
                            installation,
                            consent_id,
                            policy_version,
                            text,
                            log.time_unix_nano or log.observed_time_unix_nano,
                            keep,
                        ),
                    )
                )
    return records


_SLOTS: Final = {ATTR_RECORD_ID: 0, ATTR_CATEGORY: 1, ATTR_CONSENT_ID: 2, ATTR_POLICY_VERSION: 3}


def _parse_protobuf(body: bytes) -> ExportLogsServiceRequest:
    try:
        return cast("ExportLogsServiceRequest", ExportLogsServiceRequest.FromString(body))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BadRequest("the body is not a protobuf ExportLogsServiceRequest") from exc


def _parse_json(body: bytes) -> ExportLogsServiceRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("an OTLP/JSON request is an object")
    _hex_ids_to_base64(data)
    try:
        parsed = json_format.ParseDict(data, ExportLogsServiceRequest(), ignore_unknown_fields=True)
        return cast("ExportLogsServiceRequest", parsed)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise BadRequest(f"not an OTLP/JSON logs request: {str(exc)[:200]}") from exc


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON writes traceId/spanId in hex where protobuf JSON expects base64."""
    for resource_logs in _list(data.get("resourceLogs", data.get("resource_logs"))):
        if not isinstance(resource_logs, dict):
            continue
        for scope_logs in _list(resource_logs.get("scopeLogs", resource_logs.get("scope_logs"))):
            if not isinstance(scope_logs, dict):
                continue
            for log in _list(scope_logs.get("logRecords", scope_logs.get("log_records"))):
                if not isinstance(log, dict):
                    continue
                for key in ("traceId", "trace_id", "spanId", "span_id"):
                    value = log.get(key)
                    if isinstance(value, str) and value:
                        # not hex: already base64 (the protobuf JSON mapping), left as it is
                        with contextlib.suppress(ValueError):
                            log[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _string(value: AnyValue | None) -> str | None:
    if value is None:
        return None
    text: str = value.string_value
    if text or value.WhichOneof("value") == "string_value":  # "" when it is not a string
        return text
    return None


def _body_text(value: AnyValue) -> str:
    if value.WhichOneof("value") == "string_value":
        return value.string_value
    return orjson.dumps(_to_python(value)).decode("utf-8")


def _to_python(value: AnyValue, depth: int = 0) -> Any:
    if depth > 32:
        return None
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_to_python(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _to_python(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return None
    return getattr(value, kind)
