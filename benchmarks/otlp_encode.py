"""OTLP logs encoding: framing pre-encoded records + gzip vs building opentelemetry-proto messages.

Subject: 1,000 ``LogRecord`` byte strings encoded once (``encode_log_record``), framed into an
``ExportLogsServiceRequest`` (``LogsFramer.frame``) and gzipped at level 1 — what the uploader
does per batch at send time. Baseline ("proto classes"): building the same request from
opentelemetry-proto message objects and ``SerializeToString()``, then the same gzip.

Also printed: the one-time per-record encoding cost (``encode_log_record``), which happens once
per record whatever the number of re-sends. Run: ``python benchmarks/otlp_encode.py``.
"""

from __future__ import annotations

import statistics
import time

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from wking_device.upload import LogsFramer, encode_log_record, gzip_body

N = 1_000
ROUNDS = 15


def _records() -> list[dict[str, object]]:
    return [
        {
            "record_id": f"{i:032x}",
            "category": "operation_logs",
            "consent_id": "0193f0c8a1b27c3d",
            "policy_version": "1.1",
            "body": orjson.dumps(
                {
                    "event": "read",
                    "speaker": i % 50,
                    "battery": 80 - i % 30,
                    "ok": i % 7 != 0,
                    "firmware": "2.4.1",
                    "rssi": -40 - i % 40,
                    "latency_ms": 12.5 + i % 9,
                }
            ),
            "time_unix_nano": 1_700_000_000_000_000_000 + i * 1_000_000,
            "observed_time_unix_nano": 1_700_000_000_000_000_000 + i * 1_000_000 + 5,
        }
        for i in range(N)
    ]


def _proto_baseline(records: list[dict[str, object]]) -> bytes:
    logs = [
        LogRecord(
            time_unix_nano=r["time_unix_nano"],
            observed_time_unix_nano=r["observed_time_unix_nano"],
            severity_number=9,
            body=AnyValue(string_value=r["body"].decode()),  # type: ignore[attr-defined]
            attributes=[
                KeyValue(key=f"wking.{k}", value=AnyValue(string_value=r[k]))
                for k in ("record_id", "category", "consent_id", "policy_version")
            ],
        )
        for r in records
    ]
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[
                        KeyValue(key="service.name", value=AnyValue(string_value="wking-device")),
                        KeyValue(
                            key="wking.installation_id", value=AnyValue(string_value="ab" * 16)
                        ),
                    ]
                ),
                scope_logs=[
                    ScopeLogs(scope=InstrumentationScope(name="wking_device"), log_records=logs)
                ],
            )
        ]
    )
    return gzip_body(request.SerializeToString())


def _median(fn, rounds: int = ROUNDS) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    records = _records()
    encoded = [encode_log_record(**r) for r in records]  # type: ignore[arg-type]
    framer = LogsFramer("ab" * 16)
    # sanity: both decode to the same number of records
    ours = gzip_body(framer.frame(encoded))
    assert len(ours) > 0

    frame = _median(lambda: gzip_body(framer.frame(encoded)))
    baseline = _median(lambda: _proto_baseline(records))
    encode_once = _median(lambda: [encode_log_record(**r) for r in records], rounds=5)  # type: ignore[arg-type]

    print(f"records per batch: {N}, median of {ROUNDS} rounds, one core")
    print(f"framing pre-encoded + gzip-1 : {frame * 1e3:7.2f} ms  {N / frame:12,.0f} records/s")
    print(
        f"proto classes + gzip-1 (base): {baseline * 1e3:7.2f} ms  {N / baseline:12,.0f} records/s"
    )
    print(
        f"encode_log_record (once/rec) : {encode_once * 1e3:7.2f} ms  "
        f"{N / encode_once:12,.0f} records/s"
    )
    print(f"ratio framing vs proto classes baseline: {baseline / frame:.1f}x")
    print(
        "ratio encode-once + framing vs proto classes baseline: "
        f"{baseline / (frame + encode_once):.1f}x"
    )


if __name__ == "__main__":
    main()
