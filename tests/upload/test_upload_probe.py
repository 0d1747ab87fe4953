"""``wking doctor``'s endpoint check against hostile answers of a real TLS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _upload_helpers import raw_tls_server

from wking_device.config import UploadSettings
from wking_device.upload import UploadTarget, probe_endpoint


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", 200),
        (b"HTTP/1.1 \xb200 OK\r\n\r\n", None),  # "\xb2" is "\u00b2" in latin-1: isdigit()
        (b"HTTP/1.1 " + b"9" * 5000 + b" OK\r\n\r\n", None),  # past int()'s digit limit
    ],
)
async def test_a_hostile_status_line_is_no_crash(
    tmp_path: Path, head: bytes, status: int | None
) -> None:

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        await writer.drain()
        writer.close()

    async with raw_tls_server(tmp_path, answer) as (port, ca_file):
        target = UploadTarget.resolve(
            UploadSettings(), endpoint=f"https://127.0.0.1:{port}/v1/logs", ca_file=ca_file
        )
        assert target is not None
        report = await probe_endpoint(target, timeout=30)
    assert report.http_status == status
