"""The OpenTelemetry Python SDK's own OTLP/HTTP exporter can post to the receiver."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from wking_device.receiver import Receiver

if TYPE_CHECKING:
    import pytest


async def test_sdk_exporter_records_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets these variables override the exporter's certificate_file (notes/performance)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    async with Receiver(tmp_path / "rx") as rx:
        exporter = OTLPLogExporter(
            endpoint=rx.endpoint, certificate_file=str(rx.ca_file), timeout=10
        )
        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        logger = provider.get_logger("sdk-test")
        for i in range(3):
            logger.emit(body=f"hello {i} from the SDK", attributes={"n": i})
        # the exporter blocks (requests): flush it off the event loop the receiver runs on
        await asyncio.to_thread(provider.shutdown)
        rows = rx.export()
    assert sorted(row["body"] for row in rows) == [f"hello {i} from the SDK" for i in range(3)]
    assert all(row["record_id"].startswith("gen-") for row in rows)  # no wking.record_id
    assert all(row["installation_id"] is None for row in rows)
