"""The TLS side of uploading: endpoint checks, the client ``SSLContext``, SPKI pins, credentials.

This module owns every decision about whom the uploader trusts and what it presents:

- :func:`parse_endpoint` accepts ``https://`` URLs only; anything else is
  :class:`~wking_device.errors.InsecureEndpoint`. There is no switch to turn that off.
- :func:`build_ssl_context` makes the client context: TLS 1.2 or newer, ``CERT_REQUIRED`` and
  host-name checking always on. With a CA bundle it trusts **only** that bundle (no default
  verify paths, so ``SSL_CERT_FILE``/``SSL_CERT_DIR`` cannot add to it; ``REQUESTS_CA_BUNDLE`` and
  ``CURL_CA_BUNDLE`` are never read by this package). Without one it trusts the system store as
  OpenSSL finds it — which *does* honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``: that is
  OpenSSL's definition of "the system store" (see docs/upload.md).
- SPKI pins (:func:`parse_pin`) are checked inside the handshake, by the context's
  ``sslobject_class``: a peer whose key matches no pin fails the handshake itself, before the
  HTTP client has a connection to write a request on, so nothing is ever sent to it.
- :func:`read_token` reads a bearer token from a private file (never from the command line).

It does not open connections (:mod:`wking_device.upload._http` does) and it never logs a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from wking_device._url_mask import mask_url
from wking_device.errors import CredentialError, InsecureEndpoint

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "Endpoint",
    "PinMismatchError",
    "TLSOptions",
    "build_ssl_context",
    "parse_endpoint",
    "parse_pin",
    "read_token",
    "spki_sha256",
]

_LOGGER = logging.getLogger(__name__)

_PIN_PREFIX = "sha256//"
_MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A checked collector endpoint.

    Attributes:
        url: The full URL to POST to (``https://host[:port]/…/v1/logs``). Its query may hold a
            secret (``?api_key=…``): show ``mask_url(endpoint.url)`` to people, never this.
        host: The host name (or IP literal) certificates are checked against.
        port: The TCP port.
    """

    url: str
    host: str
    port: int

    def __repr__(self) -> str:  # the query masked: a repr ends up in logs and tracebacks
        return f"Endpoint(url={mask_url(self.url)!r}, host={self.host!r}, port={self.port!r})"


def parse_endpoint(url: str) -> Endpoint:
    """Check a collector URL: ``https://`` only, with a host; add ``/v1/logs`` to a bare origin.

    Args:
        url: ``https://collector.example`` or ``https://collector.example:4318/v1/logs``.

    Returns:
        The endpoint; a URL without a path gets OTLP's default ``/v1/logs``.

    Raises:
        InsecureEndpoint: Not ``https://`` (``http://`` included), no host, or credentials or a
            fragment in the URL.
    """
    shown = mask_url(url)  # a query may hold a secret: refusals repeat only the masked URL
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise InsecureEndpoint(f"not a valid endpoint URL: {shown!r} ({exc})") from exc
    # credentials first: the other refusals repeat the URL, which must not show a password
    if "@" in parts.netloc:
        raise InsecureEndpoint(
            "refusing an endpoint URL with credentials in it",
            remedy="put the collector's token in a file and pass --token-file",
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise InsecureEndpoint(f"not a valid endpoint URL: {shown!r} ({exc})") from exc
    if parts.scheme.lower() != "https":
        scheme = parts.scheme or "no scheme"
        raise InsecureEndpoint(
            f"refusing endpoint {shown!r}: {scheme} is not https, records are only sent over TLS"
        )
    if not parts.hostname:
        raise InsecureEndpoint(f"refusing endpoint {shown!r}: it names no host")
    if parts.fragment:
        without = mask_url(url.partition("#")[0])  # the fragment itself is not repeated either
        raise InsecureEndpoint(f"refusing endpoint {without!r}: a URL fragment is not allowed")
    path = parts.path if parts.path not in ("", "/") else "/v1/logs"
    netloc = parts.netloc
    query = f"?{parts.query}" if parts.query else ""
    return Endpoint(url=f"https://{netloc}{path}{query}", host=parts.hostname, port=port or 443)


def spki_sha256(der_certificate: bytes) -> bytes:
    """Return the SHA-256 of a certificate's DER ``SubjectPublicKeyInfo`` (the pinned value).

    Args:
        der_certificate: The certificate, DER-encoded (``getpeercert(binary_form=True)``).
    """
    certificate = x509.load_der_x509_certificate(der_certificate)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def parse_pin(pin: str) -> bytes:
    """Parse one SHA-256 SPKI pin.

    Accepted forms (all of the SHA-256 of the DER SubjectPublicKeyInfo): curl's
    ``sha256//<base64>``, plain base64 (as in HPKP's ``pin-sha256``), or 64 hex digits (colons
    allowed).

    Args:
        pin: The pin text.

    Returns:
        The 32-byte digest.

    Raises:
        CredentialError: The text is not a SHA-256 digest in one of those forms.
    """
    text = pin.strip()
    if text.lower().startswith(_PIN_PREFIX):
        text = text[len(_PIN_PREFIX) :]
    hex_text = text.replace(":", "")
    if len(hex_text) == 64:
        try:
            return bytes.fromhex(hex_text)
        except ValueError:
            pass
    try:
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise CredentialError(
            "an SPKI pin must be the SHA-256 of the key: sha256//BASE64, base64 or 64 hex digits",
            remedy=(
                "compute it with: openssl x509 -in cert.pem -pubkey -noout | openssl pkey "
                "-pubin -outform der | openssl dgst -sha256 -binary | base64"
            ),
        )
    return digest


class PinMismatchError(ssl.SSLCertVerificationError):
    """Raised inside the handshake when the peer's key matches no pin.

    A subclass of :class:`ssl.SSLCertVerificationError`, so asyncio fails the handshake and
    aiohttp reports a certificate error; the sender translates it to
    :class:`~wking_device.errors.PinMismatch`.
    """

    verify_code = 0
    verify_message = "the server's public key matches no configured SHA-256 SPKI pin"


class _PinnedSSLObject(ssl.SSLObject):
    """An ``SSLObject`` that checks SPKI pins the moment the handshake completes.

    ``SSLContext.sslobject_class`` is the documented hook for this (asyncio creates every TLS
    connection through ``context.wrap_bio``). Raising from ``do_handshake`` makes asyncio fail the
    handshake: the connection is never handed to the HTTP client, so no request byte is written.
    """

    pins: ClassVar[frozenset[bytes]] = frozenset()

    def do_handshake(self) -> None:
        super().do_handshake()  # SSLWantReadError etc. propagate while the handshake is running
        der = self.getpeercert(binary_form=True)
        if der is None or spki_sha256(der) not in self.pins:
            raise PinMismatchError(PinMismatchError.verify_message)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSOptions:
    """What the uploader trusts and presents (``[upload]`` settings or command-line options).

    Attributes:
        ca_file: A PEM CA bundle; when set, the only trust anchors (no system CAs, no
            environment variables).
        pins: SHA-256 SPKI pins in any form :func:`parse_pin` accepts; when set, the peer's key
            must match one of them (in addition to normal verification).
        client_cert: A PEM client certificate for mutual TLS (may hold the key too).
        client_key: The client certificate's PEM private key, when in a separate file.
    """

    ca_file: Path | None = None
    pins: tuple[str, ...] = ()
    client_cert: Path | None = None
    client_key: Path | None = None


def _load_system_store(context: ssl.SSLContext) -> None:
    """Trust the system's CAs where OpenSSL was built to find them, whatever the environment says.

    ``ssl.create_default_context`` would read ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``: any process
    environment (a unit file, a shell profile) could then replace the trust store without a word.
    Only where OpenSSL has no store of its own (some macOS and Nix builds, Windows) is the
    platform's default loading used, and then it says so in the log.
    """
    paths = ssl.get_default_verify_paths()
    cafile = (
        paths.openssl_cafile
        if paths.openssl_cafile and Path(paths.openssl_cafile).is_file()
        else None
    )
    capath = (
        paths.openssl_capath
        if paths.openssl_capath and Path(paths.openssl_capath).is_dir()
        else None
    )
    if cafile is not None or capath is not None:
        context.load_verify_locations(cafile=cafile, capath=capath)
        return
    _LOGGER.warning(
        "OpenSSL has no built-in CA store here: the platform's defaults are used (which may "
        "follow SSL_CERT_FILE / SSL_CERT_DIR); set upload.ca_bundle to be independent of them"
    )
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)


def build_ssl_context(options: TLSOptions | None = None) -> ssl.SSLContext:
    """Build the client context for the collector.

    Args:
        options: CA bundle, pins and client certificate; ``None`` for the system CAs alone.

    Returns:
        A context with TLS >= 1.2, ``CERT_REQUIRED`` and host-name checks, and pins (if any)
        checked during the handshake.

    Raises:
        CredentialError: A pin is malformed, or the CA bundle, client certificate or key
            cannot be loaded (missing, unreadable, not PEM, key not matching, key not private).
    """
    options = options or TLSOptions()
    pins = frozenset(parse_pin(pin) for pin in options.pins)
    if options.ca_file is not None:
        # Only the configured bundle: PROTOCOL_TLS_CLIENT has no trust anchors until
        # load_verify_locations, and set_default_verify_paths (which reads SSL_CERT_FILE /
        # SSL_CERT_DIR) is deliberately never called.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=os.fspath(options.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise CredentialError(
                f"cannot load the CA bundle {options.ca_file}: {_reason(exc)}",
                path=os.fspath(options.ca_file),
                remedy="point upload.ca_bundle / --ca-file at a readable PEM file of CAs",
            ) from exc
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_system_store(context)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    # no compression (CRIME) and no renegotiation; create_default_context sets these already
    context.options |= ssl.OP_NO_COMPRESSION
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        context.options |= ssl.OP_NO_RENEGOTIATION
    if options.client_cert is not None:
        _load_client_certificate(context, options.client_cert, options.client_key)
    elif options.client_key is not None:
        raise CredentialError(
            "a client key was given without a client certificate",
            path=os.fspath(options.client_key),
            remedy="give both --client-cert and --client-key",
        )
    if pins:
        context.sslobject_class = type("PinnedSSLObject", (_PinnedSSLObject,), {"pins": pins})
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    key_file = key if key is not None else cert
    _refuse_if_not_private(key_file, what="client key")
    try:
        context.load_cert_chain(certfile=os.fspath(cert), keyfile=os.fspath(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise CredentialError(
            f"cannot load the client certificate {cert}: {_reason(exc)}",
            path=os.fspath(cert),
            remedy="give a PEM certificate and its matching unencrypted PEM private key",
        ) from exc


def read_token(path: Path) -> str:
    """Read a bearer token from a file: private, non-empty, one line, surrounding blanks stripped.

    Args:
        path: The token file (mode 0600 or stricter).

    Returns:
        The token. It is never logged; the log filter also redacts ``Bearer`` values.

    Raises:
        CredentialError: The file is missing or unreadable, readable or writable by others,
            empty, too large, or holds more than one line or non-ASCII characters.
    """
    _refuse_if_not_private(path, what="token file")
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise CredentialError(
            f"cannot read the token file {path}: {exc.strerror or exc}", path=os.fspath(path)
        ) from exc
    if len(raw) > _MAX_TOKEN_BYTES:
        raise CredentialError(f"the token file {path} is too large", path=os.fspath(path))
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise CredentialError(
            f"the token file {path} holds non-ASCII bytes", path=os.fspath(path)
        ) from exc
    if not token:
        raise CredentialError(f"the token file {path} is empty", path=os.fspath(path))
    if any(ch in token for ch in "\r\n") or not token.isprintable():
        # a header value with a line break would be header injection
        raise CredentialError(
            f"the token file {path} must hold the token on one line", path=os.fspath(path)
        )
    return token


def _refuse_if_not_private(path: Path, *, what: str) -> None:
    """Refuse a secret file that other users can read or write (POSIX permissions only)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CredentialError(
            f"cannot read the {what} {path}: {exc.strerror or exc}", path=os.fspath(path)
        ) from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(
            f"the {what} {path} is accessible by other users (mode {stat.S_IMODE(mode):04o})",
            path=os.fspath(path),
            remedy=f"run 'chmod 600 {path}'",
        )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def describe_pins(pins: Iterable[bytes]) -> list[str]:
    """Render pins as curl-style ``sha256//BASE64`` strings (for diagnostics)."""
    return [_PIN_PREFIX + base64.b64encode(pin).decode("ascii") for pin in pins]
