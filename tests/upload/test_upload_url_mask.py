"""A secret in the endpoint's query string (``?api_key=…``) never reaches a message or a log.

The code that sends keeps the real URL (the collector still gets the key); every message, log
line and report shows :func:`~wking_device.upload.mask_url` of it. The uploader and sender run
against the real reference receiver on 127.0.0.1, the probe against a real TLS server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from _upload_helpers import bare_server, raw_tls_server
from aiohttp import web

from wking_device.collect._install import open_installation_gate
from wking_device.config import UploadSettings, load_settings, resolve_paths
from wking_device.errors import InsecureEndpoint, UploadRejected, UploadUnavailable, UsageError
from wking_device.models import Record
from wking_device.receiver import FaultPlan, Receiver
from wking_device.store import open_store
from wking_device.upload import (
    OTLPSender,
    TLSOptions,
    UploadTarget,
    build_ssl_context,
    mask_url,
    open_uploader,
    parse_endpoint,
    probe_endpoint,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore

SECRET = "s3cr3t-Zq8vX1"
QUERY = f"?api_key={SECRET}"


# --- the mask itself -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://c.example/v1/logs", "https://c.example/v1/logs"),  # no query: unchanged
        ("https://c.example:4318/v1/logs?", "https://c.example:4318/v1/logs?"),  # empty query
        ("https://c.example/v1/logs?api_key=", "https://c.example/v1/logs?api_key="),  # empty
        ("https://c.example/v1/logs?api_key=abc", "https://c.example/v1/logs?api_key=[…]"),
        (
            "https://c.example/v1/logs?api_key=abc&tenant=t1&x=",
            "https://c.example/v1/logs?api_key=[…]&tenant=[…]&x=",
        ),
        ("https://c.example/?k=a%3Db%26c%20d", "https://c.example/?k=[…]"),  # percent-encoded
        ("https://c.example/?k=a=b=c", "https://c.example/?k=[…]"),  # "=" in the value
        ("https://c.example/?a=1;b=2&c=3", "https://c.example/?a=[…];b=[…]&c=[…]"),  # ";"
        ("https://c.example/?SECRETTOKEN", "https://c.example/?[…]"),  # no "=": masked whole
        ("https://c.example/?a=1&&flag&b=2", "https://c.example/?a=[…]&&[…]&b=[…]"),
        ("https://c.example/?a=1#frag", "https://c.example/?a=[…]#frag"),  # fragment kept
        ("https://c.example/p#x?a=1", "https://c.example/p#x?a=[…]"),  # text, not parsed
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_mask_url_masks_every_query_value_and_nothing_else(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_the_endpoint_keeps_the_real_url() -> None:
    endpoint = parse_endpoint(f"https://c.example:4318/v1/logs{QUERY}&tenant=a")
    assert endpoint.url == f"https://c.example:4318/v1/logs{QUERY}&tenant=a"
    assert mask_url(endpoint.url) == "https://c.example:4318/v1/logs?api_key=[…]&tenant=[…]"


# --- parse_endpoint's refusals ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:4318/v1/logs{QUERY}",  # plaintext
        f"https:///v1/logs{QUERY}",  # no host
        f"https://c.example:99999999/v1/logs{QUERY}",  # an invalid port
        f"https://c.example:port/v1/logs{QUERY}",
        f"https://[::1/v1/logs{QUERY}",  # an invalid IPv6 literal
        f"https://c.example/v1/logs{QUERY}#{SECRET}",  # a fragment (not repeated either)
        f"http://alice:{SECRET}@c.example/v1/logs",  # credentials in a plaintext URL
        f"https://alice:{SECRET}@c.example:port/v1/logs",  # credentials and a bad port
    ],
)
def test_a_refused_endpoint_does_not_repeat_its_secret(url: str) -> None:
    with pytest.raises(InsecureEndpoint) as info:
        parse_endpoint(url)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.args)


def test_a_refused_plaintext_endpoint_still_names_the_parameter() -> None:
    with pytest.raises(InsecureEndpoint, match=r"api_key=\[…\]") as info:
        parse_endpoint(f"http://127.0.0.1:4318/v1/logs{QUERY}")
    assert "not https" in str(info.value)


# --- the uploader and the sender, against the real receiver --------------------------------------


@pytest.fixture(name="gate")
def fixture_gate(home: Path) -> ConsentGate:
    paths = resolve_paths(home)
    paths.ensure()
    gate = open_installation_gate(paths, load_settings(paths))
    gate.grant(["operation_logs"], method="api")
    return gate


@pytest.fixture(name="store")
async def fixture_store(home: Path, gate: ConsentGate) -> AsyncIterator[RecordStore]:
    paths = resolve_paths(home)
    store = open_store(paths, load_settings(paths))
    detach = store.attach(gate)
    permit = gate.permit(["operation_logs"])
    records = [
        Record(
            category="operation_logs",
            consent_id=permit.consent_ids["operation_logs"],
            policy_version=permit.policy_version,
            body={"i": i},
        )
        for i in range(20)
    ]
    await store.append(records, permit)
    yield store
    detach()
    store.close()


async def _no_wait(_: float) -> None:
    return None


def _uploader(url: str, ca_file: Path, store: RecordStore, gate: ConsentGate, home: Path) -> Any:
    target = UploadTarget.resolve(UploadSettings(), endpoint=url, ca_file=ca_file)
    assert target is not None
    return open_uploader(
        target,
        store=store,
        gate=gate,
        data_dir=resolve_paths(home).data_dir,
        max_attempts=2,
        sleep=_no_wait,
        rng=random.Random(1),
    )


def _assert_hidden(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    text = f"{error} {error!r} {getattr(error, 'remedy', '')}"
    assert SECRET not in text
    assert "api_key=[…]" in str(error)
    assert SECRET not in caplog.text


async def test_the_collector_gets_the_key_and_the_uploader_keeps_the_real_url(
    home: Path, store: RecordStore, gate: ConsentGate
) -> None:
    queries: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        queries.append(request.query_string)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async with bare_server(home.parent, answer) as server:
        up = _uploader(f"{server.url}/v1/logs{QUERY}", server.ca_file, store, gate, home)
        async with up:
            result = await up.drain()
        assert up.endpoint.endswith(QUERY)  # the public value is the real one
    assert result.counters.sent == 20
    assert queries
    assert set(queries) == {f"api_key={SECRET}"}


@pytest.mark.parametrize(
    ("status", "error", "said"),
    [(401, UploadRejected, "HTTP 401"), (503, UploadUnavailable, "stayed unavailable")],
)
async def test_a_refusing_or_unavailable_collector_does_not_show_the_key(
    tmp_path: Path,
    home: Path,
    store: RecordStore,
    gate: ConsentGate,
    caplog: pytest.LogCaptureFixture,
    status: int,
    error: type[Exception],
    said: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Receiver(tmp_path / "rx", fault_plan=FaultPlan(status={status: 1.0})) as rx:
        up = _uploader(rx.endpoint + QUERY, rx.ca_file, store, gate, home)
        with pytest.raises(error) as info:
            await up.drain()
        await up.aclose()
    assert said in str(info.value)
    _assert_hidden(info.value, caplog)


async def test_a_closed_uploader_and_sender_do_not_show_the_key(
    tmp_path: Path,
    home: Path,
    store: RecordStore,
    gate: ConsentGate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Receiver(tmp_path / "rx") as rx:
        up = _uploader(rx.endpoint + QUERY, rx.ca_file, store, gate, home)
        await up.aclose()
        with pytest.raises(UsageError, match="cannot drain to") as info:
            await up.drain()
        _assert_hidden(info.value, caplog)
        context = build_ssl_context(TLSOptions(ca_file=rx.ca_file))
        sender = OTLPSender(rx.endpoint + QUERY, ssl_context=context)
        await sender.close()
        with pytest.raises(UsageError, match="cannot send to") as info:
            await sender.send(b"")
        _assert_hidden(info.value, caplog)


# --- the probe of wking doctor ----------------------------------------------------------------


async def test_the_probe_report_does_not_show_the_key(tmp_path: Path) -> None:
    async with Receiver(tmp_path / "rx") as rx:
        target = UploadTarget.resolve(
            UploadSettings(), endpoint=rx.endpoint + QUERY, ca_file=rx.ca_file
        )
        assert target is not None
        report = await probe_endpoint(target, timeout=30)
    assert report.http_status == 200
    assert report.endpoint == rx.endpoint + "?api_key=[…]"
    assert SECRET not in str(report.as_dict())


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("silent", "did not answer"),
        ("close", "closed the connection without an answer"),
        ("flood", "sent an oversized answer"),
    ],
)
async def test_the_probe_errors_do_not_show_the_key(
    tmp_path: Path, behaviour: str, message: str
) -> None:
    done = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if behaviour == "silent":
            await done.wait()
        elif behaviour == "flood":
            writer.write(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200_000)
            await writer.drain()
            await done.wait()
        writer.close()

    async with raw_tls_server(tmp_path, answer) as (port, ca_file):
        target = UploadTarget.resolve(
            UploadSettings(), endpoint=f"https://127.0.0.1:{port}/v1/logs{QUERY}", ca_file=ca_file
        )
        assert target is not None
        try:
            with pytest.raises(UploadUnavailable, match=message) as info:
                await probe_endpoint(target, timeout=2 if behaviour == "silent" else 30)
        finally:
            done.set()
    assert SECRET not in str(info.value)
    assert "api_key=[…]" in str(info.value)


async def test_a_malformed_answer_does_not_show_the_key(
    tmp_path: Path,
    home: Path,
    store: RecordStore,
    gate: ConsentGate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiohttp's error for an answer it cannot parse quotes the request URL, query included
    caplog.set_level(logging.DEBUG)
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        up = _uploader(f"https://127.0.0.1:{port}/v1/logs{QUERY}", ca_file, store, gate, home)
        with pytest.raises(UploadUnavailable) as info:
            await up.drain()
        await up.aclose()
    finally:
        server.close()
        await server.wait_closed()
    _assert_hidden(info.value, caplog)


def test_an_endpoints_repr_masks_its_query() -> None:
    endpoint = parse_endpoint("https://collector.example/v1/logs?api_key=s3cr3t-repr")
    assert "s3cr3t" not in repr(endpoint)
    assert "api_key=" in repr(endpoint)
    assert "s3cr3t-repr" in endpoint.url  # the real URL is what is sent to
