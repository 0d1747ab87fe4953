"""What a send returns for each answer of a real TLS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
from pathlib import Path

import pytest
from _upload_helpers import bare_server, make_body, raw_tls_server
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)

from wking_device.errors import UsageError
from wking_device.receiver import FaultPlan, Receiver
from wking_device.upload import (
    Delivered,
    FailureKind,
    OTLPSender,
    Permanent,
    Retryable,
    Timeouts,
    TLSOptions,
    TooLarge,
    build_ssl_context,
)
from wking_device.upload._otlp import encode_status

NOW = 1_800_000_000.0


def _sender(url: str, ca_file: Path) -> OTLPSender:
    context = build_ssl_context(TLSOptions(ca_file=ca_file))
    return OTLPSender(url, ssl_context=context, clock=lambda: NOW)


def _answer(status: int, headers: dict[str, str] | None = None, body: bytes = b""):  # type: ignore[no-untyped-def]
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status, headers=headers, body=body, content_type="application/x-protobuf"
        )

    return handler


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds_and_as_a_date(tmp_path: Path, status: int) -> None:
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    for value, expected in (("120", 120.0), (date, 90.0), ("soon", None)):
        async with (
            bare_server(tmp_path, _answer(status, {"Retry-After": value})) as server,
            _sender(server.url, server.ca_file) as sender,
        ):
            result = await sender.send(make_body(1))
        assert result == Retryable(
            kind=FailureKind.STATUS,
            detail=f"HTTP {status}",
            status=status,
            retry_after=expected,
        )


@pytest.mark.parametrize("value", ["9" * 5000, "\u00b2"])
async def test_a_hostile_retry_after_is_retryable_not_a_crash(tmp_path: Path, value: str) -> None:
    # a collector's header must never raise out of send() (the agent's loop only expects
    # UploadError/StorageError): an absurd number is clamped, a non-number ignored
    async with (
        bare_server(tmp_path, _answer(503, {"Retry-After": value})) as server,
        _sender(server.url, server.ca_file) as sender,
    ):
        result = await sender.send(make_body(1))
    assert isinstance(result, Retryable)
    assert result.retry_after == (86400.0 if value.isascii() else None)


@pytest.mark.parametrize("status", [500, 502, 504, 408])
async def test_server_errors_are_retryable(tmp_path: Path, status: int) -> None:
    async with (
        bare_server(tmp_path, _answer(status)) as server,
        _sender(server.url, server.ca_file) as sender,
    ):
        result = await sender.send(make_body(1))
    assert isinstance(result, Retryable)
    assert result.status == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 422, 501])
async def test_client_errors_are_permanent_with_the_collectors_message(
    tmp_path: Path, status: int
) -> None:
    body = encode_status(3, "bad\x1b[31m request\n")
    async with (
        bare_server(tmp_path, _answer(status, body=body)) as server,
        _sender(server.url, server.ca_file) as sender,
    ):
        result = await sender.send(make_body(1))
    # untrusted text from the collector: no escape sequences or line breaks survive
    assert result == Permanent(status=status, message="bad [31m request")


async def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    handler = _answer(307, {"Location": "http://127.0.0.1:1/v1/logs"})
    async with (
        bare_server(tmp_path, handler) as server,
        _sender(server.url, server.ca_file) as sender,
    ):
        result = await sender.send(make_body(1))
    assert result == Permanent(status=307)
    assert len(server.requests) == 1


async def test_partial_success_is_reported(tmp_path: Path) -> None:
    response = ExportLogsServiceResponse(
        partial_success=ExportLogsPartialSuccess(rejected_log_records=2, error_message="too old")
    ).SerializeToString()
    async with (
        bare_server(tmp_path, _answer(200, body=response)) as server,
        _sender(server.url, server.ca_file) as sender,
    ):
        result = await sender.send(make_body(3))
    assert result == Delivered(status=200, rejected=2, error_message="too old")


async def test_413_from_the_receiver_is_too_large(tmp_path: Path) -> None:
    async with (
        Receiver(tmp_path / "rx", max_body=2_000) as rx,
        _sender(rx.endpoint, rx.ca_file) as sender,
    ):
        result = await sender.send(make_body(200))
        assert isinstance(result, TooLarge)
        assert "larger than 2000 bytes" in result.message
        assert rx.export() == []


async def test_429_with_retry_after_from_a_fault_plan(tmp_path: Path) -> None:
    plan = FaultPlan(status={429: 1.0}, retry_after=3)
    async with (
        Receiver(tmp_path / "rx", fault_plan=plan) as rx,
        _sender(rx.endpoint, rx.ca_file) as sender,
    ):
        result = await sender.send(make_body(2))
        assert isinstance(result, Retryable)
        assert (result.status, result.retry_after) == (429, 3.0)
        assert rx.export() == []


@pytest.mark.parametrize("after_store", [True, False])
async def test_a_reset_mid_request_is_retryable_and_the_resend_is_deduplicated(
    tmp_path: Path, after_store: bool
) -> None:
    # seed 9: the first draw resets, the second does not (reset_rate 0.5): deterministic
    plan = FaultPlan(seed=9, reset_rate=0.5, reset_after_store=after_store)
    async with (
        Receiver(tmp_path / "rx", fault_plan=plan) as rx,
        _sender(rx.endpoint, rx.ca_file) as sender,
    ):
        first = await sender.send(make_body(4))
        second = await sender.send(make_body(4))
        assert isinstance(first, Retryable)
        assert first.kind is FailureKind.RESET
        assert second == Delivered(status=200)
        assert len(rx.export()) == 4
        assert rx.stats.duplicates == (4 if after_store else 0)


async def test_a_truncated_response_is_retryable(tmp_path: Path) -> None:
    async with (
        Receiver(tmp_path / "rx", fault_plan=FaultPlan(truncate_rate=1.0)) as rx,
        _sender(rx.endpoint, rx.ca_file) as sender,
    ):
        result = await sender.send(make_body(1))
    assert isinstance(result, Retryable)
    assert result.kind is FailureKind.RESET


async def test_a_refused_connection_is_retryable(tmp_path: Path) -> None:
    async with bare_server(tmp_path) as server:
        url, ca_file = server.url, server.ca_file
    async with _sender(url, ca_file) as sender:  # the server is gone: nothing listens
        result = await sender.send(make_body(1))
    assert isinstance(result, Retryable)
    assert result.kind is FailureKind.CONNECTION


async def test_a_closed_sender_refuses_to_send_and_opens_no_session(receiver: Receiver) -> None:
    # send() after close() opened a new aiohttp session that nothing closed again
    sender = _sender(receiver.endpoint, receiver.ca_file)
    async with sender:
        assert isinstance(await sender.send(make_body(1)), Delivered)
    assert sender.closed
    with pytest.raises(UsageError, match="closed"):
        await sender.send(make_body(1))
    assert receiver.stats.requests == 1
    await sender.close()  # still idempotent


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2\x1b[2J00 OK\xe2\x80\xae " + b"A" * 8000 + b"\r\n\r\n",  # bad status line
        b"HTTP/1.1 503 X\r\nX-Evil: " + b"\x1b[31m" * 4000 + b"\r\n\r\n",  # a header too long
        b"HTTP/1.1 503 X\r\nX-E\x1b[2Jvil: y\r\nContent-Length: 0\r\n\r\n",  # a bad header name
    ],
)
async def test_a_malformed_answer_gives_a_one_line_bounded_detail(
    tmp_path: Path, answer: bytes
) -> None:
    # aiohttp's parse errors quote the collector's bytes over several lines: the detail that
    # goes to logs and to UploadUnavailable must stay one short printable line

    async def answer_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with (
        raw_tls_server(tmp_path, answer_raw) as (port, ca_file),
        _sender(f"https://127.0.0.1:{port}/v1/logs", ca_file) as sender,
    ):
        result = await sender.send(make_body(1))
    assert isinstance(result, Retryable)
    assert result.detail.isprintable()  # no line break, no escape character
    assert len(result.detail) <= 300


async def test_a_guard_that_says_no_keeps_the_body_back(tmp_path: Path) -> None:
    asked: list[bool] = []

    def guard() -> bool:
        asked.append(True)
        return False

    async with (
        Receiver(tmp_path / "rx") as rx,
        _sender(rx.endpoint, rx.ca_file) as sender,
    ):
        result = await sender.send(make_body(3), guard=guard)
        assert result == Retryable(kind=FailureKind.WITHHELD, detail="the body was withheld")
        assert asked == [True]
        assert rx.export() == []
        # the sender stays usable
        assert await sender.send(make_body(3), guard=lambda: True) == Delivered(status=200)
        assert len(rx.export()) == 3


async def test_a_timeout_says_whether_the_body_had_started_going_out(tmp_path: Path) -> None:
    # the uploader sends smaller requests only after a timeout while sending (a slow uplink):
    # a server that never finishes the TLS handshake is not that, a slow reader is
    limits = Timeouts(connect=0.3, read=5.0, total=0.6)
    silent_clients: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_clients.append(writer)  # accepts the TCP connection, never answers the TLS hello

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Receiver(tmp_path / "rx") as rx:  # only for its CA file
            context = build_ssl_context(TLSOptions(ca_file=rx.ca_file))
        async with OTLPSender(
            f"https://127.0.0.1:{port}/v1/logs", ssl_context=context, timeouts=limits
        ) as sender:
            never = await sender.send(make_body(1), guard=lambda: True)
    finally:
        for writer in silent_clients:
            writer.close()
        server.close()
        await server.wait_closed()
    assert isinstance(never, Retryable)
    assert never.kind is FailureKind.TIMEOUT
    assert not never.while_sending
    async with (
        Receiver(tmp_path / "rxslow", fault_plan=FaultPlan(slow_read=1.0)) as rx,
        OTLPSender(
            rx.endpoint,
            ssl_context=build_ssl_context(TLSOptions(ca_file=rx.ca_file)),
            timeouts=limits,
        ) as sender,
    ):
        slow = await sender.send(make_body(1), guard=lambda: True)
    assert isinstance(slow, Retryable)
    assert slow.kind is FailureKind.TIMEOUT
    assert slow.while_sending
