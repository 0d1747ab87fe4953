"""Hand-framed OTLP bytes decode with the stock opentelemetry-proto classes."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from wking_device import __version__
from wking_device.models import Record
from wking_device.upload import LogsFramer, encode_log_record, encode_record, gzip_body
from wking_device.upload._otlp import LogRecordEncoder, decode_status_message, encode_status

_text = st.text(max_size=300)  # any unicode, empty included (surrogates are not encodable)
_u64 = st.integers(min_value=0, max_value=2**64 - 1)

_record = st.fixed_dictionaries(
    {
        "record_id": _text,
        "category": _text,
        "consent_id": _text,
        "policy_version": _text,
        "body": _text,
        "time_unix_nano": _u64,
        "observed_time_unix_nano": _u64,
    }
)


def _attrs(log: object) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in log.attributes}  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_record, max_size=12), installation=_text, ip=st.booleans())
def test_framed_records_decode_with_the_stock_classes(
    records: list[dict[str, object]], installation: str, ip: bool
) -> None:
    framer = LogsFramer(installation, ip_address_consent=ip)
    body = framer.frame([encode_log_record(**r) for r in records])  # type: ignore[arg-type]
    request = ExportLogsServiceRequest.FromString(gzip.decompress(gzip_body(body)))
    (resource_logs,) = request.resource_logs
    resource = {kv.key: kv.value for kv in resource_logs.resource.attributes}
    assert resource["service.name"].string_value == "wking-device"
    assert resource["service.version"].string_value == __version__
    assert resource["wking.installation_id"].string_value == installation
    assert ("wking.consent.ip_address" in resource) is ip
    if ip:
        assert resource["wking.consent.ip_address"].bool_value is True
    logs = resource_logs.scope_logs[0].log_records
    assert len(logs) == len(records)
    for log, expected in zip(logs, records, strict=True):
        assert log.body.string_value == expected["body"]
        assert log.time_unix_nano == expected["time_unix_nano"]
        assert log.observed_time_unix_nano == expected["observed_time_unix_nano"]
        assert _attrs(log) == {
            "wking.record_id": expected["record_id"],
            "wking.category": expected["category"],
            "wking.consent_id": expected["consent_id"],
            "wking.policy_version": expected["policy_version"],
        }


def test_a_stored_record_is_encoded_with_its_body_as_json_text() -> None:
    record = Record(
        category="operation_logs",
        consent_id="c1",
        policy_version="1.1",
        body={"event": "connect", "name": "Küche ☕"},
        created_at=1_700_000_000.5,
    )
    request = ExportLogsServiceRequest.FromString(
        LogsFramer("id").frame([encode_record(record, observed_time_unix_nano=1)])
    )
    log = request.resource_logs[0].scope_logs[0].log_records[0]
    assert log.body.string_value == '{"event":"connect","name":"Küche ☕"}'
    assert log.time_unix_nano == 1_700_000_000_500_000_000
    assert _attrs(log)["wking.record_id"] == record.record_id


def test_framing_is_reusable_and_an_empty_batch_is_valid() -> None:
    framer = LogsFramer("id")
    one = encode_log_record(
        record_id="r",
        category="c",
        consent_id="k",
        policy_version="1",
        body="{}",
        time_unix_nano=1,
    )
    assert framer.frame([one] * 3).count(one) == 3
    empty = ExportLogsServiceRequest.FromString(framer.frame([]))
    assert list(empty.resource_logs[0].scope_logs[0].log_records) == []


def test_gzip_is_deterministic() -> None:
    assert gzip_body(b"x" * 1000) == gzip_body(b"x" * 1000)


@given(code=st.integers(0, 16), message=_text)
def test_status_bodies_round_trip(code: int, message: str) -> None:
    assert decode_status_message(encode_status(code, message)) == message


@given(st.binary(max_size=64))
def test_status_reader_never_raises_on_garbage(data: bytes) -> None:
    assert isinstance(decode_status_message(data), str)


_batch_row = st.tuples(
    _text,
    st.sampled_from(["operation_logs", "diagnostics", "é"]),
    st.sampled_from(["c-1", "c-2"]),
    st.sampled_from(["1.1", "1.2"]),
    _text,
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_batch_row, max_size=20), observed=_u64)
def test_encode_many_gives_the_bytes_of_encoding_each_record(
    rows: list[tuple[str, str, str, str, str, float]], observed: int
) -> None:
    encoder = LogRecordEncoder(max_cached=2)  # the cache is cleared on the way
    batch = [
        (rid, cat, cid, pv, body.encode(), created) for rid, cat, cid, pv, body, created in rows
    ]
    got = encoder.encode_many(batch, observed)
    framer = LogsFramer("inst")
    framed = encoder.encode_many(batch, observed, framed=True)
    assert framer.frame_framed(framed) == framer.frame(got)
    assert got == [
        encode_log_record(
            record_id=rid,
            category=cat,
            consent_id=cid,
            policy_version=pv,
            body=body,
            time_unix_nano=int(created * 1_000_000_000),
            observed_time_unix_nano=observed,
        )
        for rid, cat, cid, pv, body, created in rows
    ]
