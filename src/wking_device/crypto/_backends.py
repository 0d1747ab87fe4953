"""Where the master key (KEK) lives: the key-store ladder.

This module owns the three places a KEK can be kept and how each loads and replaces it:

1. ``systemd-credential``: ``$CREDENTIALS_DIRECTORY/wking-kek`` is a read-only *wrapping* key;
   the rotating KEK is kept sealed under it in the data directory (a credential cannot be
   rewritten by the service, so the credential itself never rotates).
2. ``keyring``: the KEK is an entry of the OS keyring, only when the active backend is a secure
   one (never ``keyring.backends.fail``, ``null``, or the ``keyrings.alt`` file backends).
3. ``key-file``: a 0600 file in a 0700 directory (in the data directory by default; a path outside
   it is an *external key location*).

It does not wrap data keys or secrets (:mod:`wking_device.crypto._keystore` does) and it never
logs key material.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wking_device._atomic import atomic_write
from wking_device.errors import KeyMissing, KeyStoreError, WrongKey

__all__ = [
    "CREDENTIAL_NAME",
    "KEYRING_SERVICE",
    "KekBackend",
    "KeyFileBackend",
    "KeyringBackend",
    "SystemdCredentialBackend",
    "atomic_write",
    "kek_id",
    "secure_keyring",
]

_LOGGER = logging.getLogger(__name__)

CREDENTIAL_NAME: Final = "wking-kek"
"""The systemd credential name (``LoadCredential=wking-kek:...`` in the unit)."""

KEYRING_SERVICE: Final = "wking_device"
"""The keyring service name; the user name is ``kek-<store id>``."""

KEK_SIZE: Final = 32

# Backends that keep secrets in plaintext, refuse everything, or need an interactive password.
_INSECURE_KEYRING_MODULES: Final = (
    "keyring.backends.fail",
    "keyring.backends.null",
    "keyrings.alt",
)


class KekBackend(Protocol):
    """A place that holds the master key.

    Attributes:
        level: The key-store level name shown by ``wking doctor``.
    """

    level: str

    def available(self) -> bool:
        """Tell whether this place can be used on this machine."""

    def load(self) -> bytes | None:
        """Return the KEK, or ``None`` when none is kept here yet."""

    def save(self, kek: bytes) -> None:
        """Durably replace the KEK kept here (the old one is gone afterwards)."""


def _check_private(path: Path) -> None:
    """Refuse a key file that others can read (like ssh does)."""
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise KeyStoreError(
            f"key file {path} is accessible to other users (mode {stat.S_IMODE(mode):o})",
            remedy=f"run 'chmod 600 {path}'",
        )


class KeyFileBackend:
    """The KEK in a 0600 file (the lowest level, or an external key location).

    Args:
        path: The key file. Inside the data directory it protects nothing against a copy of
            that directory; outside it (another disk, a mounted secret) it does.
    """

    level = "key-file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def available(self) -> bool:
        """A key file can always be created (the directory is made 0700)."""
        return True

    def load(self) -> bytes | None:
        """Read the key file.

        Raises:
            KeyStoreError: The file is readable by others.
            WrongKey: The file does not hold a 32-byte key.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(f"cannot read key file {self.path}: {exc.strerror}") from exc
        _check_private(self.path)
        if len(data) != KEK_SIZE:
            raise WrongKey(f"key file {self.path} does not hold a {KEK_SIZE}-byte key")
        return data

    def save(self, kek: bytes) -> None:
        """Atomically replace the key file (0600; a directory it creates is 0700)."""
        try:
            # a new directory is made 0700; an existing one (an external location) is left as is
            atomic_write(self.path, kek)
        except OSError as exc:
            raise KeyStoreError(f"cannot write key file {self.path}: {exc.strerror}") from exc


def secure_keyring() -> Any | None:
    """Return the active keyring backend when it is a secure one, else ``None``.

    Plaintext, null and failing backends are refused, and so is a chainer whose members are all
    insecure; importing keyring or asking it for its backend failing also means "no keyring".
    """
    try:
        import keyring  # noqa: PLC0415 - slow import (entry points), only on this path
        from keyring.backends.chainer import ChainerBackend  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - any failure of a foreign backend means "not available"
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001 - see above
        return None

    def secure(candidate: Any) -> bool:
        if isinstance(candidate, ChainerBackend):
            return any(secure(member) for member in candidate.backends)
        module = type(candidate).__module__
        return (
            not module.startswith(_INSECURE_KEYRING_MODULES)
            and "Plaintext" not in type(candidate).__name__
        )

    return backend if secure(backend) else None


class KeyringBackend:
    """The KEK as an OS keyring entry (secure backends only).

    Args:
        username: The entry's user name (``kek-<store id>``).
        service: The entry's service name.
    """

    level = "keyring"

    def __init__(self, username: str, *, service: str = KEYRING_SERVICE) -> None:
        self.username = username
        self.service = service

    def available(self) -> bool:
        """Tell whether a secure keyring backend is active."""
        return secure_keyring() is not None

    def _backend(self) -> Any:
        backend = secure_keyring()
        if backend is None:
            raise KeyMissing("no secure OS keyring is available")
        return backend

    def load(self) -> bytes | None:
        """Read the entry (base64 of the KEK)."""
        backend = self._backend()
        try:
            value = backend.get_password(self.service, self.username)
        except Exception as exc:
            raise KeyStoreError(f"the OS keyring failed: {type(exc).__name__}") from exc
        if value is None:
            return None
        try:
            kek = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise WrongKey("the keyring entry does not hold a key") from exc
        if len(kek) != KEK_SIZE:
            raise WrongKey("the keyring entry does not hold a 32-byte key")
        return kek

    def save(self, kek: bytes) -> None:
        """Replace the entry."""
        backend = self._backend()
        try:
            backend.set_password(self.service, self.username, base64.b64encode(kek).decode())
        except Exception as exc:
            raise KeyStoreError(f"the OS keyring failed: {type(exc).__name__}") from exc


class SystemdCredentialBackend:
    """A systemd credential wraps the KEK; the sealed KEK lives beside the data and rotates.

    The credential (``LoadCredential=`` / ``SetCredentialEncrypted=``) is read-only to the
    service, so it cannot itself be rotated: it is a key-wrapping key. The KEK is sealed under a
    key derived from it (HKDF-SHA-256) and replaced on every rotation.

    Args:
        sealed_path: Where the sealed KEK is kept (in the key directory).
        environ: The environment to read ``CREDENTIALS_DIRECTORY`` from.
    """

    level = "systemd-credential"

    def __init__(self, sealed_path: Path, *, environ: Mapping[str, str] | None = None) -> None:
        self.sealed_path = sealed_path
        env = os.environ if environ is None else environ
        directory = env.get("CREDENTIALS_DIRECTORY")
        self.credential = Path(directory) / CREDENTIAL_NAME if directory else None

    def available(self) -> bool:
        """Tell whether the service was started with the ``wking-kek`` credential."""
        return self.credential is not None and self.credential.is_file()

    def _wrapping_key(self) -> AESGCM:
        if self.credential is None:
            raise KeyMissing("CREDENTIALS_DIRECTORY is not set")
        try:
            material = self.credential.read_bytes()
        except OSError as exc:
            raise KeyMissing(f"cannot read the {CREDENTIAL_NAME} credential") from exc
        if len(material) < 16:
            raise KeyStoreError(f"the {CREDENTIAL_NAME} credential is shorter than 16 bytes")
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"wking kek wrapping v1"
        ).derive(material)
        return AESGCM(key)

    def load(self) -> bytes | None:
        """Unseal the KEK kept beside the data.

        Raises:
            WrongKey: The sealed KEK does not open with this credential.
        """
        try:
            sealed = self.sealed_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(f"cannot read {self.sealed_path}: {exc.strerror}") from exc
        try:
            kek = self._wrapping_key().decrypt(sealed[:12], sealed[12:], b"wking sealed kek")
        except (InvalidTag, ValueError) as exc:
            raise WrongKey(
                f"the {CREDENTIAL_NAME} credential does not open the sealed master key"
            ) from exc
        if len(kek) != KEK_SIZE:
            raise WrongKey("the sealed master key has the wrong size")
        return kek

    def save(self, kek: bytes) -> None:
        """Seal the KEK under the credential and replace the sealed file."""
        nonce = os.urandom(12)
        sealed = nonce + self._wrapping_key().encrypt(nonce, kek, b"wking sealed kek")
        try:
            atomic_write(self.sealed_path, sealed)
        except OSError as exc:
            raise KeyStoreError(f"cannot write {self.sealed_path}: {exc.strerror}") from exc


def kek_id(kek: bytes) -> str:
    """Return a one-way identifier of a KEK (to tell a wrong key from a missing one)."""
    return hashlib.blake2b(kek, digest_size=8, person=b"wking-kek-id").hexdigest()
