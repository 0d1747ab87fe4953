"""The receiver's private CA and server certificate, made once and reused.

On first start :func:`ensure_pki` creates, in the data directory: ``ca.pem`` (a private CA,
ECDSA P-256, valid 10 years), ``ca.key``, ``server.pem`` (the server certificate for
``localhost``, ``127.0.0.1`` and ``::1``, signed by the CA, valid 1 year, with the CA appended)
and ``server.key``. Keys are written 0600 (created with that mode, never widened); a key found
group- or world-accessible is refused. Later starts reuse them; a server certificate within 30
days of expiry is re-issued from the same CA so clients that trust ``ca.pem`` keep working. This
module does no networking.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wking_device._atomic import atomic_write
from wking_device.errors import ConfigError

__all__ = ["PKI", "ensure_pki", "server_ssl_context"]

_LOGGER = logging.getLogger(__name__)

_CA_DAYS: Final = 3650
_SERVER_DAYS: Final = 365
_RENEW_BEFORE: Final = dt.timedelta(days=30)
_NAMES: Final = ("localhost",)
_ADDRESSES: Final = ("127.0.0.1", "::1")
_REMEDY: Final = (
    "restore the file, or move the directory away to start with a new CA (clients must then "
    "trust the new ca.pem)"
)


@dataclass(frozen=True, slots=True)
class PKI:
    """Paths of the receiver's certificates and keys.

    Attributes:
        ca_file: The CA certificate clients must trust (``DIR/ca.pem``).
        cert_file: The server certificate chain.
        key_file: The server's private key (0600).
    """

    ca_file: Path
    cert_file: Path
    key_file: Path


def _write_private(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600, parents=False)


def _write_public(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o644, parents=False)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(
    directory: Path, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wking reference receiver CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / "ca.key", _key_pem(key))
    _write_public(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _make_server(
    directory: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [
            *(x509.DNSName(name) for name in _NAMES),
            *(x509.IPAddress(ipaddress.ip_address(addr)) for addr in _ADDRESSES),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(directory / "server.key", _key_pem(key))
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    _write_public(directory / "server.pem", chain)


def ensure_pki(directory: Path, *, now: dt.datetime | None = None) -> PKI:
    """Create (first start) or reuse the CA and the server certificate in ``directory``.

    Args:
        directory: The receiver's data directory (created 0700 if missing).
        now: The current time (for tests); defaults to now, UTC.

    Returns:
        The paths.

    Raises:
        ConfigError: A file of the directory cannot be read or is not what it should be (names
            the file; the files are never replaced without a word).
    """
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = PKI(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key_file = directory / "ca.key"
    if pki.ca_file.exists() and ca_key_file.exists():
        with _reading(pki.ca_file):
            ca_cert = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
        _check_private(ca_key_file)
        with _reading(ca_key_file):
            loaded = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ConfigError("not an EC private key", file=str(ca_key_file), remedy=_REMEDY)
        ca_key = loaded
    else:
        _LOGGER.info("creating the receiver's private CA in %s", directory)
        ca_cert, ca_key = _make_ca(directory, now)
        pki.cert_file.unlink(missing_ok=True)
    if pki.key_file.exists():
        _check_private(pki.key_file)
    if (
        not pki.cert_file.exists()
        or not pki.key_file.exists()
        or _stale(pki.cert_file, ca_cert, now)
    ):
        _make_server(directory, ca_cert, ca_key, now)
    return pki


def _check_private(path: Path) -> None:
    """Refuse a key that group or others may read or write (it is never used, nor re-chmodded)."""
    with _reading(path):
        mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"a private key with mode {mode:04o}: group or others can read or write it",
            file=str(path),
            remedy=f"chmod 600 {path}, or move the directory away to start with a new CA",
        )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a file that cannot be read or parsed into a :class:`ConfigError` naming it."""
    try:
        yield
    except (OSError, ValueError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = reason.splitlines()[0] if reason.strip() else type(exc).__name__
        raise ConfigError(
            f"cannot use the receiver's file: {reason}",
            file=str(path),
            remedy=_REMEDY,
        ) from exc


def _stale(cert_file: Path, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    """Whether the server certificate is near its expiry or was not issued by this CA.

    The second happens when the CA was made again (its key was lost) and the process was killed
    before the new server certificate was written: clients trusting the new ``ca.pem`` could
    never connect to the old certificate, start after start.
    """
    with _reading(cert_file):
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    if cert.not_valid_after_utc - now < _RENEW_BEFORE:
        return True
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        _LOGGER.info("re-issuing the receiver's certificate: not signed by its CA")
        return True
    return False


def server_ssl_context(pki: PKI) -> ssl.SSLContext:
    """A TLS >= 1.2 server context with the receiver's certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with _reading(pki.key_file):  # the certificate was read by ensure_pki: the key is left
        context.load_cert_chain(pki.cert_file, pki.key_file)
    return context
