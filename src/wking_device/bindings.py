"""Device bindings: the speakers a user has chosen for the agent to look after.

This module owns the bindings file. A binding names a speaker by its address, and a speaker's
address is a MAC address — personal data that must never reach disk in plaintext (DESIGN §4,
§9). The file is therefore one AES-256-GCM message under a named secret from the key store, written
atomically (temporary file, fsync, rename) with mode 0600.

Changes (bind, unbind) read, modify and write the file under an exclusive ``flock`` on a lock
file beside it, so two processes never lose each other's change — an unbind is never undone by a
concurrent bind that read the file before it.

It does not discover or connect speakers (``ble``) and does not decide what is collected from
them (``consent``): binding a speaker grants nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wking_device.errors import StorageError, StoreIntegrityError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["Binding", "Bindings"]

_AAD = b"wking-bindings-v1"
_NONCE_LEN = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """One bound speaker.

    Attributes:
        address: The speaker's Bluetooth address (stored encrypted only).
        name: The advertised name when it was bound.
        model: The model id when it was bound.
        alias: A name the user chose.
        bound_at: UTC time of binding, seconds since the epoch.
    """

    address: str
    name: str | None = None
    model: str | None = None
    alias: str | None = None
    bound_at: float = field(default_factory=time.time)


class Bindings:
    """The encrypted list of bound speakers of one installation.

    Args:
        path: The bindings file (created on the first bind).
        key: A 32-byte secret from the key store (``secret("device-bindings")``).
    """

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("bindings key must be 32 bytes")
        self._path = path
        self._aead = AESGCM(key)

    def load(self) -> list[Binding]:
        """Read every binding, oldest first.

        Raises:
            StoreIntegrityError: The file was altered or belongs to another key.
            StorageError: The file cannot be read.
        """
        try:
            blob = self._path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot read device bindings: {exc.strerror}") from exc
        try:
            plain = self._aead.decrypt(blob[:_NONCE_LEN], blob[_NONCE_LEN:], _AAD)
            items = orjson.loads(plain)
            return [Binding(**item) for item in items]
        except (InvalidTag, ValueError, TypeError) as exc:
            raise StoreIntegrityError(
                f"device bindings file {self._path} failed authentication",
                remedy="restore it from a backup, or delete it and bind the speakers again",
            ) from exc

    def bind(self, binding: Binding) -> None:
        """Add a binding, replacing any earlier one for the same address."""
        key = binding.address.upper()
        with self._locked():
            kept = [b for b in self.load() if b.address.upper() != key]
            self._save([*kept, binding])

    def unbind(self, address: str) -> bool:
        """Remove the binding for an address.

        Returns:
            Whether a binding was removed.
        """
        with self._locked():
            current = self.load()
            kept = [b for b in current if b.address.upper() != address.upper()]
            if len(kept) == len(current):
                return False
            self._save(kept)
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the bindings' lock (across processes) for one read-modify-write."""
        lock = self._path.with_name(self._path.name + ".lock")
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot lock device bindings: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def addresses(self) -> set[str]:
        """The bound addresses, upper case."""
        return {b.address.upper() for b in self.load()}

    def _save(self, bindings: list[Binding]) -> None:
        nonce = os.urandom(_NONCE_LEN)
        blob = nonce + self._aead.encrypt(nonce, orjson.dumps([asdict(b) for b in bindings]), _AAD)
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self._path)
            dir_fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write device bindings: {exc.strerror}") from exc
