"""The receiver's decoder on requests built with the stock opentelemetry-proto classes."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from wking_device.receiver._decode import ReceivedRecord, decode_request


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def test_attributes_bodies_and_odd_values_decode_as_stored() -> None:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        [
            _kv("wking.installation_id", AnyValue(string_value="inst")),
            _kv("wking.consent.ip_address", AnyValue(bool_value=True)),
        ]
    )
    logs = resource_logs.scope_logs.add().log_records
    first = logs.add(time_unix_nano=5, body=AnyValue(string_value='{"a":1}'))
    first.attributes.extend(
        [
            _kv("wking.record_id", AnyValue(string_value="old")),
            _kv("other", AnyValue(string_value="ignored")),
            _kv("wking.category", AnyValue(int_value=3)),  # not a string: no category
            _kv("wking.consent_id", AnyValue(string_value="")),  # an empty string is kept
            _kv("wking.record_id", AnyValue(string_value="r-1")),  # the last one wins
        ]
    )
    second = logs.add(observed_time_unix_nano=7, body=AnyValue(int_value=42))
    second.attributes.append(_kv("wking.policy_version", AnyValue(string_value="1.1")))
    logs.add(body=AnyValue(string_value=""))  # an empty body
    got = decode_request(request.SerializeToString(), json=False)
    assert got[0] == ReceivedRecord(
        record_id="r-1",
        category=None,
        installation_id="inst",
        consent_id="",
        policy_version=None,
        body='{"a":1}',
        time_unix_nano=5,
        keep_ip=True,
    )
    assert got[1].record_id.startswith("gen-")  # no id: one is made up
    assert (got[1].body, got[1].policy_version, got[1].time_unix_nano) == ("42", "1.1", 7)
    assert (got[2].body, got[2].category) == ("", None)
