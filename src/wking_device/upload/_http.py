"""Send one framed OTLP/HTTP logs body to the collector, and say what happened.

:class:`OTLPSender` owns one ``aiohttp.ClientSession`` (keep-alive, bounded connections and
timeouts, ``trust_env=False`` so no proxy or ``.netrc`` variable is read, no cookies, no
redirects) over the ``SSLContext`` of :mod:`wking_device.upload._tls`. :meth:`OTLPSender.send`
POSTs a body and returns a typed result the uploader acts on:

=====================================  ===========================================================
:class:`Delivered`                     2xx; ``rejected``/``error_message`` from OTLP
                                       ``partial_success``
:class:`Retryable`                     429/503 (``retry_after`` parsed), 408, 500/502/504,
                                       connection refused/reset, timeouts, truncated responses
:class:`TooLarge`                      413: split the batch
:class:`Permanent`                     3xx (never followed), other 4xx, other 5xx
=====================================  ===========================================================

A TLS failure is not a result but an error, because retrying cannot fix it:
:class:`~wking_device.errors.TLSVerificationFailed` (unknown CA, host name mismatch, expired or
not yet valid), :class:`~wking_device.errors.PinMismatch`, or
:class:`~wking_device.errors.TLSError` (another handshake failure). Nothing was sent in those
cases. This module does not retry, sleep, split batches or touch the store: the uploader does.
"""

from __future__ import annotations

import enum
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Final

import aiohttp
import orjson

from wking_device._url_mask import mask_url
from wking_device._version import __version__
from wking_device.errors import (
    InsecureEndpoint,
    PinMismatch,
    TLSError,
    TLSReason,
    TLSVerificationFailed,
    UsageError,
)
from wking_device.upload._backoff import parse_retry_after
from wking_device.upload._otlp import CONTENT_TYPE_PROTOBUF, decode_status_message
from wking_device.upload._tls import Endpoint, PinMismatchError, parse_endpoint

if TYPE_CHECKING:
    from aiohttp.abc import AbstractStreamWriter

__all__ = [
    "Delivered",
    "FailureKind",
    "OTLPSender",
    "Permanent",
    "Retryable",
    "SendResult",
    "Timeouts",
    "TooLarge",
]

_LOGGER = logging.getLogger(__name__)

_MAX_RESPONSE_BYTES: Final = 64 * 1024
"""The most read of an error answer (its message is cut to 300 characters anyway)."""
_MAX_SUCCESS_BYTES: Final = 1024 * 1024
"""The most read of a 2xx answer: its ``partial_success`` must be read whole (a collector may
explain every rejected record); a longer one cannot be read, and is not taken as "all accepted"."""
_MAX_MESSAGE_CHARS: Final = 300
# a URL quoted in an error text (aiohttp quotes the request URL, query included)
_URL_IN_TEXT: Final = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)
_RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})

# OpenSSL X509_V_ERR_* codes -> what to tell the user
_VERIFY_REASONS: Final[dict[int, tuple[TLSReason, str]]] = {
    2: (TLSReason.UNKNOWN_CA, "its certificate is signed by an unknown CA"),
    9: (TLSReason.NOT_YET_VALID, "its certificate is not yet valid (check the clock)"),
    10: (TLSReason.EXPIRED, "its certificate has expired"),
    18: (TLSReason.UNKNOWN_CA, "its certificate is self-signed by an unknown CA"),
    19: (TLSReason.UNKNOWN_CA, "its certificate chain ends in an unknown CA"),
    20: (TLSReason.UNKNOWN_CA, "its certificate is signed by an unknown CA"),
    21: (TLSReason.UNKNOWN_CA, "its certificate is signed by an unknown CA"),
    62: (TLSReason.HOSTNAME_MISMATCH, "its certificate is not valid for this host name"),
    64: (TLSReason.HOSTNAME_MISMATCH, "its certificate is not valid for this IP address"),
}


class FailureKind(enum.StrEnum):
    """Why a send can be retried."""

    STATUS = "status"  # a retryable HTTP status
    CONNECTION = "connection"  # refused, unreachable, DNS
    RESET = "reset"  # the connection dropped mid-request or mid-response
    TIMEOUT = "timeout"
    WITHHELD = "withheld"  # the caller's guard kept the body from being written


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """The collector accepted the request (2xx).

    Attributes:
        status: The HTTP status.
        rejected: Records the collector declared rejected (OTLP ``partial_success``); they were
            not stored there and must be kept for inspection.
        error_message: The collector's explanation of the partial success, if any (untrusted
            text, cleaned and shortened); when not ``understood``, why the answer was not read.
        understood: Whether the answer's body was read whole and is an
            ``ExportLogsServiceResponse`` (empty counts: the empty message). When ``False``,
            whether the collector stored the records, or rejected some, is unknown: never
            taken for a full success (the uploader ends the drain, the records pending).
    """

    status: int
    rejected: int = 0
    error_message: str = ""
    understood: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Retryable:
    """The request may succeed later; nothing is known to have been stored.

    Attributes:
        kind: What went wrong.
        detail: One line for logs (no secrets).
        status: The HTTP status, for ``STATUS``.
        retry_after: Seconds the collector asked to wait (``Retry-After``), when it did.
        while_sending: For ``TIMEOUT``: the time ran out after the body had started going out
            (a slow uplink or a slow collector: a smaller body may get through), not while
            connecting. Known only for a send with a ``guard``.
    """

    kind: FailureKind
    detail: str
    status: int | None = None
    retry_after: float | None = None
    while_sending: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TooLarge:
    """413: the request is too large for the collector; send smaller batches.

    Attributes:
        status: 413.
        message: The collector's explanation, if any.
    """

    status: int = 413
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Permanent:
    """The collector refused the request for a reason a retry will not fix.

    Attributes:
        status: The HTTP status.
        message: The collector's explanation, if any.
    """

    status: int
    message: str = ""


SendResult = Delivered | Retryable | TooLarge | Permanent


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Bounded waits of one request (seconds).

    Attributes:
        connect: TCP connect plus TLS handshake.
        read: Longest silence while reading the response.
        total: The whole request, upload of the body included.
    """

    connect: float = 10.0
    read: float = 30.0
    total: float = 60.0


class OTLPSender:
    """POSTs OTLP/HTTP logs bodies to one collector over verified TLS.

    Use as ``async with OTLPSender(...) as sender:`` (or call :meth:`close`). Safe to call
    :meth:`send` concurrently (up to ``max_connections`` requests in flight). Once closed, it
    stays closed: :meth:`send` raises :class:`~wking_device.errors.UsageError` and opens nothing.

    Args:
        endpoint: The collector URL (``https://`` only) or a checked :class:`Endpoint`, kept as
            ``self.endpoint``; its query may hold a secret, so messages show
            :func:`~wking_device.upload.mask_url` of it.
        ssl_context: From :func:`~wking_device.upload.build_ssl_context`.
        token: A bearer token (:func:`~wking_device.upload.read_token`); never logged.
        timeouts: Connect/read/total limits.
        max_connections: Concurrent connections (and requests) to the collector.
        clock: Wall-clock time for ``Retry-After`` dates (inject in tests).

    Raises:
        InsecureEndpoint: The URL is not ``https://``.
    """

    def __init__(
        self,
        endpoint: str | Endpoint,
        *,
        ssl_context: ssl.SSLContext,
        token: str | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)
        if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            # a caller-made context must not switch verification off behind our back
            raise InsecureEndpoint("refusing an SSL context without certificate verification")
        self._ssl = ssl_context
        self._timeouts = timeouts or Timeouts()
        self._max_connections = max_connections
        self._clock = clock
        self._headers = {
            "Content-Type": CONTENT_TYPE_PROTOBUF,
            "User-Agent": f"wking-device/{__version__}",
        }
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed sender sends nothing more)."""
        return self._closed

    async def __aenter__(self) -> OTLPSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise UsageError(
                f"cannot send to {mask_url(self.endpoint.url)}: this sender was closed",
                remedy="open a new uploader (open_uploader) instead of reusing a closed one",
            )
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=self._max_connections,
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self._timeouts.total,
                    sock_connect=self._timeouts.connect,
                    sock_read=self._timeouts.read,
                ),
                trust_env=False,  # no HTTP(S)_PROXY, .netrc or CA variables
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the connections (idempotent); the sender cannot send again."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, body: bytes, *, gzipped: bool = True, guard: Callable[[], bool] | None = None
    ) -> SendResult:
        """POST one request body.

        Args:
            body: A serialized ``ExportLogsServiceRequest`` (gzip-compressed when ``gzipped``).
            gzipped: Whether ``body`` is gzip (sets ``Content-Encoding: gzip``).
            guard: Called once the connection is up, right before the first byte of the body is
                written; when it returns ``False`` no byte of the body is written (the request
                is abandoned) and the result is ``Retryable(kind=WITHHELD)``.

        Returns:
            What happened (see the module docstring).

        Raises:
            TLSVerificationFailed: The collector's certificate did not verify.
            PinMismatch: Its key matches no configured pin.
            TLSError: Another TLS handshake failure.
            UsageError: The sender was closed.
        """
        headers = dict(self._headers)
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        if guard is None:
            return await self._post(body, headers)
        guarded = _GuardedBody(body, guard)
        result = await self._post(guarded, headers)
        if guarded.withheld:
            # whatever aiohttp made of the abandoned request: no byte of the body went out
            return Retryable(kind=FailureKind.WITHHELD, detail="the body was withheld")
        if guarded.started and isinstance(result, Retryable) and result.kind is FailureKind.TIMEOUT:
            return replace(result, while_sending=True)
        return result

    async def _post(
        self, data: bytes | aiohttp.BytesPayload, headers: dict[str, str]
    ) -> SendResult:
        host = self.endpoint.host
        try:
            async with self._get_session().post(
                self.endpoint.url, data=data, headers=headers, allow_redirects=False
            ) as response:
                ok = 200 <= response.status < 300
                limit = _MAX_SUCCESS_BYTES if ok else _MAX_RESPONSE_BYTES
                content, whole = await _read_bounded(response, limit)
                if ok and not whole:
                    return _unreadable(response, f"longer than {limit} bytes")
                return self._classify(response, content)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise _certificate_error(exc.certificate_error, host) from exc
        except aiohttp.ClientSSLError as exc:
            raise TLSError(
                f"TLS handshake with {host} failed: {_ssl_reason(exc)}", host=host
            ) from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            return Retryable(kind=FailureKind.TIMEOUT, detail=f"timed out: {type(exc).__name__}")
        except aiohttp.ClientConnectorError as exc:
            return Retryable(
                kind=FailureKind.CONNECTION, detail=_clean(f"cannot connect to {host}: {exc}")
            )
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            return Retryable(kind=FailureKind.RESET, detail=_clean(f"connection dropped: {exc}"))
        except aiohttp.ClientError as exc:
            # ClientOSError (reset by peer), invalid responses...: the outcome is unknown, the
            # receiver de-duplicates a re-send
            # (aiohttp's parse errors quote the collector's bytes over several lines)
            return Retryable(
                kind=FailureKind.RESET,
                detail=_clean(f"connection failed: {type(exc).__name__}: {exc}"),
            )

    def _classify(self, response: aiohttp.ClientResponse, content: bytes) -> SendResult:
        status = response.status
        if 200 <= status < 300:
            partial = _partial_success(content, response.content_type)
            if partial is None:
                return _unreadable(response, f"{len(content)} bytes")
            rejected, message = partial
            if rejected or message:
                _LOGGER.warning("collector rejected %d records: %s", rejected, message)
            return Delivered(status=status, rejected=rejected, error_message=message)
        message = _error_message(content, response.content_type)
        if status == 413:
            return TooLarge(message=message)
        if status in _RETRYABLE_STATUS:
            retry_after = None
            if status in (429, 503):
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), now=self._clock()
                )
            return Retryable(
                kind=FailureKind.STATUS,
                detail=f"HTTP {status}{': ' + message if message else ''}",
                status=status,
                retry_after=retry_after,
            )
        return Permanent(status=status, message=message)


class _Withheld(Exception):
    """Raised by :class:`_GuardedBody` instead of writing: aiohttp abandons the request."""


class _GuardedBody(aiohttp.BytesPayload):
    """A request body that asks a guard, right before its first byte is written, if it may go."""

    def __init__(self, value: bytes, guard: Callable[[], bool]) -> None:
        super().__init__(value, content_type=CONTENT_TYPE_PROTOBUF)
        self._guard = guard
        self.withheld = False
        self.started = False
        """Whether the guard let the body go (its first byte was about to be written)."""

    def _check(self) -> None:
        if not self._guard():
            self.withheld = True
            raise _Withheld
        self.started = True

    async def write(self, writer: AbstractStreamWriter) -> None:
        self._check()
        await super().write(writer)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        self._check()
        await super().write_with_length(writer, content_length)


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Read the response body up to ``limit`` bytes: (its first bytes, whether that is all).

    A truncated body raises ClientPayloadError.
    """
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], size <= limit


def _unreadable(response: aiohttp.ClientResponse, what: str) -> Delivered:
    """A 2xx whose body is no readable ``ExportLogsServiceResponse``: acceptance unknown."""
    kind = _clean(response.content_type)[:60]
    return Delivered(
        status=response.status,
        understood=False,
        error_message=f"HTTP {response.status}, {kind}, {what}: not an OTLP logs response",
    )


def _certificate_error(error: BaseException, host: str) -> TLSError:
    if isinstance(error, PinMismatchError):
        return PinMismatch(
            f"TLS refused for {host}: the server's public key matches no configured SPKI pin",
            host=host,
        )
    code = getattr(error, "verify_code", None)
    known = _VERIFY_REASONS.get(code) if isinstance(code, int) else None
    if known is not None:
        reason, text = known
    else:
        reason = TLSReason.HANDSHAKE_FAILED
        text = f"its certificate did not verify ({getattr(error, 'verify_message', None) or error})"
    return TLSVerificationFailed(
        f"TLS verification of {host} failed: {text}", host=host, reason=reason
    )


def _ssl_reason(exc: BaseException) -> str:
    for candidate in (exc, exc.__cause__, getattr(exc, "os_error", None)):
        # aiohttp's ClientConnectorSSLError is an ssl.SSLError without a ``reason`` attribute
        reason = getattr(candidate, "reason", None) if isinstance(candidate, ssl.SSLError) else None
        if reason:
            return str(reason).lower().replace("_", " ")
    return _clean(str(exc))


def _clean(text: str) -> str:
    """Untrusted text from the collector: printable, one line, bounded, URLs masked.

    aiohttp's errors quote the request URL (``url='https://…?api_key=…'``): every URL in the
    text is shown as :func:`mask_url` renders it.
    """
    text = _URL_IN_TEXT.sub(lambda match: mask_url(match.group()), text)
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text[:_MAX_MESSAGE_CHARS]


def _partial_success(content: bytes, content_type: str) -> tuple[int, str] | None:
    """A 2xx body's ``partial_success``: (rejected, message), or ``None`` if it cannot be read.

    OTLP: a server that rejected some records MUST say so in ``partial_success``; an answer
    that is not an ``ExportLogsServiceResponse`` therefore says nothing about the rejected
    ones, and is not read as "none rejected". An empty body is the empty message (all accepted).
    """
    if not content:
        return 0, ""
    if content_type == "application/json":
        return _json_partial_success(content)
    from google.protobuf.message import DecodeError  # noqa: PLC0415
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: PLC0415
        ExportLogsServiceResponse,
    )

    try:
        parsed = ExportLogsServiceResponse.FromString(content)
    except DecodeError:
        return None
    if parsed.partial_success.rejected_log_records < 0:
        return None
    return (
        parsed.partial_success.rejected_log_records,
        _clean(parsed.partial_success.error_message),
    )


def _json_partial_success(content: bytes) -> tuple[int, str] | None:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    partial = data.get("partialSuccess", data.get("partial_success")) or {}
    if not isinstance(partial, dict):
        return None
    rejected = partial.get("rejectedLogRecords", partial.get("rejected_log_records", 0))
    message = partial.get("errorMessage", partial.get("error_message", ""))
    # proto3 JSON: an int64 is a decimal string (or a number)
    if isinstance(rejected, str) and rejected.isascii() and rejected.isdigit():
        rejected = int(rejected)
    if isinstance(rejected, bool) or not isinstance(rejected, int) or rejected < 0:
        return None
    return (rejected, _clean(message)) if isinstance(message, str) else None


def _error_message(content: bytes, content_type: str) -> str:  # noqa: PLR0911 - one per type
    if not content:
        return ""
    if content_type == "application/json":
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            return _clean(content.decode("utf-8", "replace"))
        if isinstance(data, dict):
            return _clean(str(data.get("message", "")))
        return ""
    if content_type in (CONTENT_TYPE_PROTOBUF, "application/protobuf"):
        return _clean(decode_status_message(content))
    if content_type.startswith("text/"):
        return _clean(content.decode("utf-8", "replace"))
    return ""
