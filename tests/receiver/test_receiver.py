"""The reference receiver: formats, limits, de-duplication, IP consent, PKI reuse, faults."""

from __future__ import annotations

import gzip
import json
import os
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from wking_device.errors import ConfigError
from wking_device.receiver import FaultPicker, FaultPlan, Receiver, load_fault_plan
from wking_device.upload import LogsFramer, encode_log_record, gzip_body


def _body(n: int = 2, *, ip: bool = False) -> bytes:
    records = [
        encode_log_record(
            record_id=f"r{i}",
            category="operation_logs",
            consent_id="c1",
            policy_version="1.1",
            body=f'{{"i":{i}}}',
            time_unix_nano=i + 1,
        )
        for i in range(n)
    ]
    return LogsFramer("inst-1", ip_address_consent=ip).frame(records)


@pytest.fixture(name="rx")
async def fixture_rx(tmp_path: Path) -> AsyncIterator[Receiver]:
    async with Receiver(tmp_path / "rx", max_body=64 * 1024, max_decompressed=256 * 1024) as rx:
        yield rx


async def _post(
    rx: Receiver, data: bytes, *, content_type: str = "application/x-protobuf", gz: bool = False
) -> tuple[int, str, bytes]:
    context = ssl.create_default_context(cafile=rx.ca_file)
    headers = {"Content-Type": content_type}
    if gz:
        headers["Content-Encoding"] = "gzip"
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(rx.endpoint, data=data, headers=headers, ssl=context) as response,
    ):
        return response.status, response.content_type, await response.read()


async def test_protobuf_gzip_or_not_is_stored_once(rx: Receiver) -> None:
    status, ctype, payload = await _post(rx, gzip_body(_body()), gz=True)
    assert (status, ctype) == (200, "application/x-protobuf")
    assert ExportLogsServiceResponse.FromString(payload) == ExportLogsServiceResponse()
    assert (await _post(rx, _body()))[0] == 200
    rows = rx.export()
    assert [(r["record_id"], r["category"], r["installation_id"], r["body"]) for r in rows] == [
        ("r0", "operation_logs", "inst-1", '{"i":0}'),
        ("r1", "operation_logs", "inst-1", '{"i":1}'),
    ]
    assert rx.stats.duplicates == 2


async def test_a_200_comes_after_a_commit_synced_to_disk(rx: Receiver) -> None:
    # the uploader deletes its copy on the 200: the commit must survive a power loss too
    assert (await _post(rx, _body()))[0] == 200
    assert rx._db is not None
    connection = rx._db._conn
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert len(rx.export()) == 2


async def test_otlp_json_is_accepted_and_answered_in_json(rx: Receiver) -> None:
    request = {
        "resourceLogs": [
            {
                "resource": {"attributes": []},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": "1700000000000000000",
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "body": {
                                    "kvlistValue": {
                                        "values": [{"key": "a", "value": {"intValue": "7"}}]
                                    }
                                },
                                "attributes": [
                                    {"key": "wking.record_id", "value": {"stringValue": "j1"}}
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    status, ctype, payload = await _post(
        rx, gzip.compress(json.dumps(request).encode()), content_type="application/json", gz=True
    )
    assert (status, ctype, json.loads(payload)) == (200, "application/json", {})
    (row,) = rx.export()
    assert row["record_id"] == "j1"
    assert json.loads(row["body"]) == {"a": 7}


async def test_ip_is_kept_only_with_declared_consent(rx: Receiver) -> None:
    await _post(rx, _body(1))
    records = [
        encode_log_record(
            record_id="with-ip",
            category="c",
            consent_id="k",
            policy_version="1",
            body="{}",
            time_unix_nano=1,
        )
    ]
    await _post(rx, LogsFramer("inst-1", ip_address_consent=True).frame(records))
    by_id = {row["record_id"]: row for row in rx.export()}
    assert by_id["r0"]["source_ip"] is None
    assert by_id["with-ip"]["source_ip"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("data", "content_type", "gz", "status"),
    [
        (b"\xff\xfe garbage \x00", "application/x-protobuf", False, 400),
        (b"{not json", "application/json", False, 400),
        (b'{"resourceLogs": 5}', "application/json", False, 400),
        (b"[]", "application/json", False, 400),
        (b"not gzip at all", "application/x-protobuf", True, 400),
        (gzip.compress(b"abc", mtime=0)[:-6], "application/x-protobuf", True, 400),
        (b"hello", "text/plain", False, 415),
        (os.urandom(70 * 1024), "application/x-protobuf", False, 413),
        # a gzip bomb: 1 MiB of zeros compresses to ~1 KiB, limit is 256 KiB decompressed
        (gzip.compress(b"\x00" * 1024 * 1024, mtime=0), "application/x-protobuf", True, 413),
    ],
)
async def test_bad_requests_get_a_clear_4xx_and_no_traceback(
    rx: Receiver, data: bytes, content_type: str, gz: bool, status: int
) -> None:
    got, _, payload = await _post(rx, data, content_type=content_type, gz=gz)
    assert got == status
    assert b"Traceback" not in payload
    assert rx.export() == []
    # and the receiver still works afterwards
    assert (await _post(rx, _body(1)))[0] == 200


async def test_the_ca_is_created_once_private_and_reused(tmp_path: Path) -> None:
    directory = tmp_path / "rx"
    async with Receiver(directory) as rx:
        ca = rx.ca_file.read_bytes()
    assert rx.ca_file == directory / "ca.pem"
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((directory / key).stat().st_mode) == 0o600
    async with Receiver(directory) as again:
        assert again.ca_file.read_bytes() == ca
        assert (await _post(again, _body(1)))[0] == 200


def test_fault_decisions_are_deterministic() -> None:
    plan = FaultPlan(seed=5, status={500: 0.2, 503: 0.1}, reset_rate=0.2, truncate_rate=0.1)
    first = [FaultPicker(plan).next() for _ in range(1)]
    picker_a, picker_b = FaultPicker(plan), FaultPicker(plan)
    a = [picker_a.next() for _ in range(200)]
    assert a == [picker_b.next() for _ in range(200)]
    assert first == a[:1]
    assert {d.status for d in a} == {None, 500, 503}
    assert any(d.reset for d in a)
    assert any(d.truncate for d in a)


def test_fault_plans_load_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "plan.toml"
    toml.write_text("seed = 3\nretry_after = 2\n[status]\n503 = 0.5\n")
    assert load_fault_plan(toml) == FaultPlan(seed=3, retry_after=2, status={503: 0.5})
    js = tmp_path / "plan.json"
    js.write_text('{"reset_rate": 0.25}')
    assert load_fault_plan(js).reset_rate == 0.25


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("bad.toml", "seed = = 1", "not valid TOML"),
        ("bad.json", "{", "not valid JSON"),
        ("bad.toml", "reset_rate = 2", r"\[reset_rate\]"),
        ("bad.toml", "[status]\n200 = 0.5", "not an HTTP error status"),
        ("bad.toml", "latncy = 1", r"\[latncy\]"),
    ],
)
def test_a_bad_fault_plan_is_a_clear_config_error(
    tmp_path: Path, name: str, text: str, match: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_fault_plan(path)
    assert str(path) in str(info.value)
