"""The endpoint check of ``wking doctor``: handshake, certificate, pin, clock skew.

:func:`probe_endpoint` opens one TLS connection to the collector with the uploader's own
``SSLContext`` (so it fails exactly where an upload would: unknown CA, host name, expiry, pin),
reports the certificate and the negotiated protocol, then POSTs an empty OTLP logs request (zero
records: a valid, empty ``ExportLogsServiceRequest``) to read the status and the ``Date`` header,
whose difference from the local clock is the skew. It sends no record and no installation id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

from cryptography import x509

from wking_device._url_mask import mask_url
from wking_device._version import __version__
from wking_device.errors import TLSError, UploadUnavailable
from wking_device.upload._connect import UploadTarget
from wking_device.upload._http import _certificate_error, _ssl_reason
from wking_device.upload._tls import build_ssl_context, read_token, spki_sha256

__all__ = ["EndpointReport", "probe_endpoint"]

_MAX_HEADER: Final = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointReport:
    """What ``wking doctor`` shows about the collector.

    Attributes:
        endpoint: The URL checked, its query values masked (:func:`~wking_device.upload.mask_url`).
        tls_version: The negotiated protocol (``TLSv1.3``...).
        subject: The certificate's subject.
        issuer: Its issuer.
        not_after: Its expiry (UTC, ISO 8601).
        days_left: Days until it expires.
        spki_pin: Its key's pin, ``sha256//BASE64`` (what ``--pin`` takes).
        pinned: Whether pins are configured (the handshake already checked them).
        http_status: The status of an empty logs request (200 expected; 401/403 without the
            right credentials).
        clock_skew_s: The collector's ``Date`` minus the local clock, in seconds, if it sent one.
    """

    endpoint: str
    tls_version: str
    subject: str
    issuer: str
    not_after: str
    days_left: float
    spki_pin: str
    pinned: bool
    http_status: int | None
    clock_skew_s: float | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


async def probe_endpoint(
    target: UploadTarget,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - one bound for the whole check
    clock: Callable[[], float] = time.time,
) -> EndpointReport:
    """Check the collector of a target (see the module docstring).

    Args:
        target: The endpoint and TLS options.
        timeout: Seconds for the whole check.
        clock: The local wall clock (for the skew).

    Returns:
        The report.

    Raises:
        TLSVerificationFailed: The certificate did not verify.
        PinMismatch: The key matches no pin.
        TLSError: Another handshake failure.
        UploadUnavailable: The collector cannot be reached or does not answer HTTP.
        CredentialError: A configured file cannot be used.
    """
    context = build_ssl_context(target.tls)
    token = read_token(target.token_file) if target.token_file is not None else None
    endpoint = target.endpoint
    try:
        async with asyncio.timeout(timeout):
            return await _probe(target, context, token, clock)
    except ssl.SSLCertVerificationError as exc:
        raise _certificate_error(exc, endpoint.host) from exc
    except ssl.SSLError as exc:
        raise TLSError(
            f"TLS handshake with {endpoint.host} failed: {_ssl_reason(exc)}", host=endpoint.host
        ) from exc
    except TimeoutError as exc:
        raise UploadUnavailable(
            f"{mask_url(endpoint.url)} did not answer within {timeout:g} s"
        ) from exc
    except OSError as exc:
        raise UploadUnavailable(
            f"cannot connect to {endpoint.host}:{endpoint.port}: {exc.strerror or exc}"
        ) from exc


async def _probe(
    target: UploadTarget, context: ssl.SSLContext, token: str | None, clock: Callable[[], float]
) -> EndpointReport:
    endpoint = target.endpoint
    reader, writer = await asyncio.open_connection(
        endpoint.host, endpoint.port, ssl=context, server_hostname=endpoint.host
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:  # pragma: no cover - a verified handshake always has a peer certificate
            raise TLSError(f"{endpoint.host} presented no certificate", host=endpoint.host)
        certificate = x509.load_der_x509_certificate(der)
        path = endpoint.url.split(endpoint.host, 1)[1].split("/", 1)
        target_path = "/" + (path[1] if len(path) > 1 else "")
        host_header = endpoint.url.split("://", 1)[1].split("/", 1)[0]
        lines = [
            f"POST {target_path} HTTP/1.1",
            f"Host: {host_header}",
            "Content-Type: application/x-protobuf",
            "Content-Length: 0",
            f"User-Agent: wking-device/{__version__} (doctor)",
            "Connection: close",
        ]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        received_at = clock()
    except asyncio.IncompleteReadError as exc:
        raise UploadUnavailable(
            f"{mask_url(endpoint.url)} closed the connection without an answer"
        ) from exc
    except asyncio.LimitOverrunError as exc:
        raise UploadUnavailable(f"{mask_url(endpoint.url)} sent an oversized answer") from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    status, date = _parse_head(head[:_MAX_HEADER])
    not_after = certificate.not_valid_after_utc
    return EndpointReport(
        endpoint=mask_url(endpoint.url),
        tls_version=str(ssl_object.version()),
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        not_after=not_after.isoformat(),
        days_left=round((not_after.timestamp() - clock()) / 86400, 1),
        spki_pin="sha256//" + base64.b64encode(spki_sha256(der)).decode("ascii"),
        pinned=bool(target.tls.pins),
        http_status=status,
        clock_skew_s=None if date is None else round(date - received_at, 1),
    )


def _parse_head(head: bytes) -> tuple[int | None, float | None]:
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    status: int | None = None
    parts = lines[0].split(" ", 2)
    # a status code is three ASCII digits (isdigit() alone takes "\u00b2", which int() refuses)
    code = parts[1] if len(parts) > 1 else ""
    if parts[0].startswith("HTTP/") and len(code) == 3 and code.isascii() and code.isdigit():
        status = int(code)
    date: float | None = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "date":
            try:
                parsed = email.utils.parsedate_to_datetime(value.strip())
            except (TypeError, ValueError, IndexError):
                break
            if parsed.tzinfo is not None:
                date = parsed.timestamp()
            break
    return status, date
