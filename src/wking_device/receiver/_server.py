"""The reference receiver: an OTLP/HTTP logs endpoint over TLS that stores into SQLite.

:class:`Receiver` is an aiohttp server usable from tests and from ``wking receiver run``::

    async with Receiver(tmp_path / "rx", port=0) as rx:
        ...  # POST to rx.endpoint, trusting rx.ca_file
        rows = rx.export()

``POST /v1/logs`` takes protobuf or JSON, gzip or not; answers an ``ExportLogsServiceResponse`` in
the request's format; an error carries a ``google.rpc.Status`` (protobuf) or ``{"code",
"message"}`` (JSON). Limits: 413 when the body is larger than ``max_body`` bytes as sent or
``max_decompressed`` once decompressed (a gzip bomb is cut off after ``max_decompressed + 1``
bytes of output, never inflated whole) or holds more than ``max_records`` log records; 415
for another content type or encoding; 400 for a body that does not decode (more than 64 gzip
members included); 408 for a body not received within ``request_timeout``; 500 (without
details) for anything unexpected. Never a traceback to the client, nor in the log for a client
that disconnects mid-body. A :class:`~wking_device.receiver.FaultPlan` makes it misbehave
deterministically.

It is a test and demo tool, not a production collector (docs/deploy.md shows an OpenTelemetry
Collector for that): one process, one SQLite file, no authentication of clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from wking_device.errors import UsageError
from wking_device.receiver._db import DB_FILE, ReceiverDB, export_records
from wking_device.receiver._decode import BadRequest, TooManyRecords, decode_request
from wking_device.receiver._faults import FaultPicker, FaultPlan
from wking_device.receiver._pki import ensure_pki, server_ssl_context
from wking_device.upload._otlp import CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF, encode_status

if TYPE_CHECKING:
    from wking_device.receiver._decode import ReceivedRecord

__all__ = ["Receiver", "ReceiverStats"]

_LOGGER = logging.getLogger(__name__)


class _HttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]  # generic only in typeshed
    """aiohttp's server log: a request it refused as malformed HTTP is the client's doing.

    aiohttp logs each one (a header line too long, a bad ``Content-Length`` or chunk size) as an
    error with a traceback: on the terminal of ``wking receiver run`` without ``-v``, once per
    request a client cares to send. They go to debug (shown with ``-v``); anything else stays
    an error.
    """

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            self.logger.debug(msg, *args, **kwargs)
        else:
            kwargs.setdefault("exc_info", True)
            self.logger.error(msg, *args, **kwargs)


_HTTP_LOGGER: Final = cast("logging.Logger", _HttpLog(logging.getLogger(__name__ + ".http")))

_PROTOBUF_TYPES: Final = frozenset({CONTENT_TYPE_PROTOBUF, "application/protobuf"})
_CHUNK: Final = 16 * 1024
# a client sends one gzip member; a few are legal (RFC 1952), thousands are an attack
_MAX_GZIP_MEMBERS: Final = 64
# gRPC status codes used in google.rpc.Status bodies
_INVALID_ARGUMENT: Final = 3
_RESOURCE_EXHAUSTED: Final = 8
_UNAVAILABLE: Final = 14
_INTERNAL: Final = 13


@dataclass(slots=True)
class ReceiverStats:
    """Counters since start (read them in tests).

    Attributes:
        requests: POSTs to /v1/logs that reached the handler.
        stored: Records newly stored.
        duplicates: Records whose id was already stored.
        faults: Requests that got an injected fault.
        refused: Requests answered 4xx by the receiver itself (size, type, garbage).
        rejected: Records refused by the fault plan's ``reject_categories`` (partial success).
        dropped: Requests whose client disconnected (or that :meth:`Receiver.stop` dropped)
            before the whole body arrived: nothing stored, no answer.
    """

    requests: int = 0
    stored: int = 0
    duplicates: int = 0
    faults: int = 0
    refused: int = 0
    rejected: int = 0
    dropped: int = 0


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Receiver:
    """An OTLP/HTTP logs receiver over TLS with its own private CA.

    Args:
        data_dir: Where the CA, the server certificate and ``receiver.db`` live.
        host: The address to listen on (default loopback only).
        port: The TCP port; 0 picks a free one (see :attr:`port` after start).
        fault_plan: Faults to inject, or ``None``.
        max_body: Largest request body as sent, bytes.
        max_decompressed: Largest request body after gzip decompression, bytes.
        request_timeout: Seconds a client has to send a request's whole body (else 408 and the
            connection is closed), and to send a request on a connection it opened or kept
            alive (else the connection is closed): a client that connects and stalls does not
            hold a connection for ever.
        max_records: The most log records one request may hold (413 above it, so an uploader
            splits its batch): a few MiB of empty records would be millions of rows.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fault_plan: FaultPlan | None = None,
        max_body: int = 8 * 1024 * 1024,
        max_decompressed: int = 32 * 1024 * 1024,
        request_timeout: float = 60.0,
        max_records: int = 100_000,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self._requested_port = port
        self._faults = FaultPicker(fault_plan) if fault_plan is not None else None
        self.max_body = max_body
        self.max_decompressed = max_decompressed
        self.request_timeout = request_timeout
        self.max_records = max_records
        # requests whose body is still arriving, by id (a request is not hashable)
        self._reading: dict[int, web.BaseRequest] = {}
        self._stopping = False
        self.stats = ReceiverStats()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._db: ReceiverDB | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._port: int | None = None
        self.ca_file = data_dir / "ca.pem"

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (after :meth:`start`)."""
        if self._port is None:
            raise UsageError(
                "the receiver is not started", remedy="await receiver.start() or use async with"
            )
        return self._port

    @property
    def url(self) -> str:
        """``https://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The logs endpoint, ``url + "/v1/logs"``."""
        return self.url + "/v1/logs"

    async def start(self) -> None:
        """Create or reuse the CA and certificate, open the database and listen."""
        loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="wking-receiver-db"
        )
        pki = await loop.run_in_executor(self._executor, ensure_pki, self.data_dir)
        self.ca_file = pki.ca_file
        self._db = await loop.run_in_executor(self._executor, ReceiverDB, self.data_dir / DB_FILE)
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/v1/logs", self._handle)
        # we decompress ourselves, with a bound (aiohttp would inflate before we can count)
        self._stopping = False
        self._runner = web.AppRunner(
            app,
            access_log=None,
            auto_decompress=False,
            # aiohttp's default keeps a silent connection open for an hour
            keepalive_timeout=self.request_timeout,
            logger=_HTTP_LOGGER,
        )
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner, self.host, self._requested_port, ssl_context=server_ssl_context(pki)
        )
        await self._site.start()
        self._port = int(self._runner.addresses[0][1])
        _LOGGER.info("receiver listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening, finish in-flight requests, close the database (idempotent).

        A request whose body is still arriving is dropped at once (nothing of it is stored; its
        client retries): a client stalled mid-body does not hold the stop for aiohttp's 60 s.
        Requests being stored and answered are finished.
        """
        self._stopping = True
        for request in list(self._reading.values()):
            _abort(request)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._executor is not None:
            if self._db is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
                self._db = None
            self._executor.shutdown(wait=True)
            self._executor = None

    def export(self) -> list[dict[str, Any]]:
        """Every stored record (see :func:`export_records`)."""
        return export_records(self.data_dir / DB_FILE)

    # --- request handling ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        as_json = request.content_type == CONTENT_TYPE_JSON
        try:
            return await self._process(request, as_json=as_json)
        except _Refused as refused:
            self.stats.refused += 1
            code = _RESOURCE_EXHAUSTED if refused.status == 413 else _INVALID_ARGUMENT
            response = _error(refused.status, code, refused.message, as_json=as_json)
            if refused.status == 408:
                response.force_close()  # the rest of the body may still come: not reusable
            return response
        except ConnectionResetError:
            # the client left (or stop() dropped it) before its body arrived: nothing stored,
            # nobody to answer; aiohttp would log it with a traceback as an error
            self.stats.dropped += 1
            return web.Response(status=400)  # never reaches the client
        except asyncio.CancelledError:
            raise
        except Exception:  # the client never sees a traceback
            _LOGGER.exception("receiver: unexpected error handling a request")
            return _error(500, _INTERNAL, "internal error", as_json=as_json)

    async def _process(self, request: web.Request, *, as_json: bool) -> web.StreamResponse:
        decision = self._faults.next() if self._faults is not None else None
        plan = self._faults.plan if self._faults is not None else None
        if plan is not None and plan.latency:
            await asyncio.sleep(plan.latency)
        if not as_json and request.content_type not in _PROTOBUF_TYPES:
            raise _Refused(415, f"unsupported content type {request.content_type[:80]!r}")
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("gzip", "identity", ""):
            raise _Refused(415, f"unsupported content encoding {encoding[:40]!r}")
        if request.content_length is not None and request.content_length > self.max_body:
            raise _Refused(413, f"request body larger than {self.max_body} bytes")
        raw = await self._read_body(request, slow=plan.slow_read if plan else 0.0)
        body = self._gunzip(raw) if encoding == "gzip" else raw
        if decision is not None and decision.status is not None:
            self.stats.faults += 1
            return self._injected_status(decision.status, as_json=as_json)
        try:
            records = decode_request(body, json=as_json, max_records=self.max_records)
        except TooManyRecords as exc:
            raise _Refused(413, str(exc)) from exc
        except BadRequest as exc:
            raise _Refused(400, str(exc)) from exc
        reset = decision is not None and decision.reset
        if reset and plan is not None and not plan.reset_after_store:
            return self._reset(request)
        rejected = 0
        if plan is not None and plan.reject_categories:
            kept = [r for r in records if r.category not in plan.reject_categories]
            rejected = len(records) - len(kept)
            records = kept
        await self._store(records, request.remote)
        if plan is not None and plan.answer_latency:
            await asyncio.sleep(plan.answer_latency)  # stored: a client giving up cannot know
        if reset:
            return self._reset(request)
        # an empty ExportLogsServiceResponse: all accepted
        payload = (
            _partial_success(rejected, as_json=as_json) if rejected else (b"{}" if as_json else b"")
        )
        self.stats.rejected += rejected
        if decision is not None and decision.truncate:
            self.stats.faults += 1
            return await self._truncated(request, as_json=as_json)
        content_type = CONTENT_TYPE_JSON if as_json else CONTENT_TYPE_PROTOBUF
        return web.Response(body=payload, content_type=content_type)

    async def _read_body(self, request: web.Request, *, slow: float) -> bytes:
        self._reading[id(request)] = request
        try:
            if self._stopping:
                _abort(request)  # accepted as the receiver stops: its client retries
            return await self._read_body_until(request, slow=slow)
        finally:
            del self._reading[id(request)]

    async def _read_body_until(self, request: web.Request, *, slow: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout  # moved on by our own slow_read pauses
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await request.content.read(_CHUNK)
            except TimeoutError:
                raise _Refused(
                    408, f"the request body did not arrive within {self.request_timeout:g} s"
                ) from None
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_body:
                raise _Refused(413, f"request body larger than {self.max_body} bytes")
            chunks.append(chunk)
            if slow:
                await asyncio.sleep(slow)
                deadline += slow
        return b"".join(chunks)

    def _gunzip(self, raw: bytes) -> bytes:
        """Inflate a gzip body of one or more members, bounded in output and in work.

        The input goes to zlib a chunk at a time: a member's ``unused_data`` is a copy of what
        follows it, so handing zlib the whole rest after each member copied the body once per
        member (8 MiB of empty members froze the event loop for tens of seconds).
        """
        out: list[bytes] = []
        size = 0
        members = 0
        view = memoryview(raw)
        position = 0
        pending: bytes | memoryview = b""  # input read but not yet given to zlib
        inflater: Any = None
        while True:
            if not pending:
                if position >= len(view):
                    break
                pending = view[position : position + _CHUNK]
                position += len(pending)
            if inflater is None:
                members += 1
                if members > _MAX_GZIP_MEMBERS:
                    raise _Refused(400, f"more than {_MAX_GZIP_MEMBERS} gzip members")
                inflater = zlib.decompressobj(wbits=31)
            try:
                chunk = inflater.decompress(pending, self.max_decompressed + 1 - size)
            except zlib.error as exc:
                raise _Refused(400, "the body is not valid gzip") from exc
            size += len(chunk)
            if size > self.max_decompressed:
                raise _Refused(413, f"decompressed body larger than {self.max_decompressed} bytes")
            out.append(chunk)
            if inflater.eof:
                pending = inflater.unused_data  # at most one chunk: the next member's start
                inflater = None
            else:
                # output below the bound: zlib took all the input (a tail is only left when
                # the output reached max_length, which is over the limit: refused above)
                pending = inflater.unconsumed_tail
        if inflater is not None:
            raise _Refused(400, "the gzip body is truncated")
        return b"".join(out)

    async def _store(self, records: list[ReceivedRecord], remote: str | None) -> None:
        assert self._db is not None
        assert self._executor is not None
        new = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._db.store, records, remote
        )
        self.stats.stored += new
        self.stats.duplicates += len(records) - new

    def _injected_status(self, status: int, *, as_json: bool) -> web.Response:
        response = _error(status, _UNAVAILABLE, f"injected fault: HTTP {status}", as_json=as_json)
        plan = self._faults.plan if self._faults is not None else None
        if status in (429, 503) and plan is not None and plan.retry_after is not None:
            response.headers["Retry-After"] = str(round(plan.retry_after))
        return response

    def _reset(self, request: web.Request) -> web.Response:
        self.stats.faults += 1
        transport = request.transport
        if transport is not None:
            transport.abort()  # RST-like: the client sees the connection drop, no answer
        return web.Response(status=500)  # never reaches the client

    async def _truncated(self, request: web.Request, *, as_json: bool) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = CONTENT_TYPE_JSON if as_json else CONTENT_TYPE_PROTOBUF
        response.content_length = 64  # announce 64 bytes, send 8, close
        await response.prepare(request)
        await response.write(b"\x00" * 8)
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response


def _abort(request: web.BaseRequest) -> None:
    """Drop a request's connection (its body read then raises ``ConnectionResetError``)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _partial_success(rejected: int, *, as_json: bool) -> bytes:
    message = f"{rejected} records of a refused category"
    if as_json:
        return orjson.dumps(
            {"partialSuccess": {"rejectedLogRecords": str(rejected), "errorMessage": message}}
        )
    response = ExportLogsServiceResponse()
    response.partial_success.rejected_log_records = rejected
    response.partial_success.error_message = message
    return bytes(response.SerializeToString())


def _error(status: int, code: int, message: str, *, as_json: bool) -> web.Response:
    if as_json:
        return web.Response(
            status=status,
            body=orjson.dumps({"code": code, "message": message}),
            content_type=CONTENT_TYPE_JSON,
        )
    return web.Response(
        status=status, body=encode_status(code, message), content_type=CONTENT_TYPE_PROTOBUF
    )
