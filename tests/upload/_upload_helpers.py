"""Helpers: bare aiohttp TLS servers on 127.0.0.1 (trustme certificates) and request bodies."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiohttp import web

from wking_device.upload import LogsFramer, encode_log_record, gzip_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class BareServer:
    url: str
    ca_file: Path
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@asynccontextmanager
async def bare_server(
    tmp_path: Path,
    handler: Handler | None = None,
    *,
    ca: trustme.CA | None = None,
    identities: tuple[str, ...] = ("127.0.0.1", "localhost"),
    not_after: dt.datetime | None = None,
    require_client_cert: trustme.CA | None = None,
) -> AsyncIterator[BareServer]:
    """An aiohttp HTTPS server with a trustme certificate; records every request it gets."""
    ca = ca or trustme.CA()
    cert = ca.issue_cert(*identities, not_after=not_after)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    if require_client_cert is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        require_client_cert.configure_trust(context)
    ca_file = tmp_path / f"bare-ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = BareServer(url="", ca_file=ca_file)

    async def default(_: web.Request) -> web.StreamResponse:
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def record(request: web.Request) -> web.StreamResponse:
        server.requests.append((dict(request.headers), await request.read()))
        return await (handler or default)(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server.url = f"https://127.0.0.1:{runner.addresses[0][1]}/v1/logs"
    try:
        yield server
    finally:
        await runner.cleanup()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_tls_server(tmp_path: Path, handler: RawHandler) -> AsyncIterator[tuple[int, Path]]:
    """A TLS server on 127.0.0.1 answering with raw bytes (no HTTP stack): (port, its CA file).

    For answers no HTTP server would send: malformed status lines, bad headers, floods.
    """
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / f"raw-ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], ca_file
    finally:
        server.close()
        await server.wait_closed()


def make_records(n: int, *, start: int = 0) -> list[bytes]:
    return [
        encode_log_record(
            record_id=f"{i:032x}",
            category="operation_logs",
            consent_id="consent-1",
            policy_version="1.1",
            body=f'{{"n":{i}}}',
            time_unix_nano=1_700_000_000_000_000_000 + i,
        )
        for i in range(start, start + n)
    ]


def make_body(n: int, *, start: int = 0, installation: str = "ab" * 16) -> bytes:
    return gzip_body(LogsFramer(installation).frame(make_records(n, start=start)))
