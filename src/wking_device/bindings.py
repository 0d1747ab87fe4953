"""Device bindings: the speakers a user has chosen for the agent to look after.

This module owns the bindings file. A binding names a speaker by its address, and a speaker's
address is a MAC address — personal data that must never reach disk in plaintext (DESIGN §4,
§9). The file is therefore one AES-256-GCM message under a named secret from the key store, written
atomically (temporary file, fsync, rename) with mode 0600.

Changes (bind, unbind) read, modify and write the file under an exclusive ``flock`` on a lock
file beside it, so two processes never lose each other's change — an unbind is never undone by a
concurrent bind that read the file before it.

It also owns the speaker key (:class:`SpeakerKeys`): a stable, keyed pseudonym of a speaker
(``spk:`` and 32 hex digits, HMAC-SHA-256 of the address under a secret derived from the bindings'
secret) that collected records carry as ``speaker``, so an app can join a speaker's records and
its binding without a MAC. :func:`open_bindings` reads the bindings for an app and writes nothing.

It does not discover or connect speakers (``ble``) and does not decide what is collected from
them (``consent``): binding a speaker grants nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import wking_device  # annotations name wking_device.X: get_type_hints loads X lazily
from wking_device._atomic import atomic_write
from wking_device.errors import StorageError, StoreIntegrityError, UsageError

if TYPE_CHECKING:
    import wking_device.crypto

__all__ = [
    "BINDINGS_FILE",
    "BINDINGS_SECRET",
    "Binding",
    "Bindings",
    "BoundSpeaker",
    "SpeakerKeys",
    "bindings_path",
    "open_bindings",
]

BINDINGS_FILE = "devices.bin"
"""The bindings file's name, in the configuration directory."""
BINDINGS_SECRET = "device-bindings"  # noqa: S105 - the name of a key-store secret
"""The key store's named secret that encrypts the bindings (and roots the speaker keys)."""

_AAD = b"wking-bindings-v1"
_NONCE_LEN = 12
_SPEAKER_KEY_LABEL = b"wking-device speaker key v1"
_SEPARATORS = str.maketrans("", "", ":-.")


def bindings_path(paths: wking_device.Paths) -> Path:
    """The bindings file of an installation."""
    return paths.config_dir / BINDINGS_FILE


class SpeakerKeys:
    """Stable keyed pseudonyms of speakers: the ``speaker`` field of records and bindings.

    ``key(address)`` is ``"spk:"`` and 32 hex digits: HMAC-SHA-256 of the normalised address
    under a key derived (HMAC, own label) from the installation's bindings secret. It is the same
    for a speaker in every record and binding of one installation, differs between
    installations, and cannot be turned back into the MAC without the key store (an unkeyed hash
    of a 48-bit MAC could: 2**48 guesses). Unlike the per-epoch ``mac:`` pseudonyms of uploads it
    does not rotate: it is what links a speaker's records over time on this machine.

    Args:
        secret: The bindings secret (32 bytes; ``KeyStore.secret(BINDINGS_SECRET)``).
    """

    __slots__ = ("_cache", "_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise UsageError("the speaker-key secret must be 32 bytes")
        self._key = hmac.new(secret, _SPEAKER_KEY_LABEL, hashlib.sha256).digest()
        self._cache: dict[str, str] = {}

    @classmethod
    def from_key_store(cls, keys: wking_device.crypto.KeyStore) -> SpeakerKeys:
        """The speaker keys of the installation whose key store this is.

        The bindings secret is created if the key store has none yet (a write); a reader that
        must not write uses :func:`open_bindings`, which needs none when nothing is bound.
        """
        return cls(keys.secret(BINDINGS_SECRET))

    def key(self, address: str) -> str:
        """The speaker key of an address (any case; ``:``, ``-`` or ``.`` separators).

        Args:
            address: A Bluetooth address (a MAC, or a platform's device identifier).

        Returns:
            ``"spk:"`` followed by 32 hex digits (128 bits of HMAC-SHA-256).
        """
        cached = self._cache.get(address)
        if cached is None:
            normal = address.strip().upper().translate(_SEPARATORS)
            digest = hmac.new(self._key, normal.encode(), hashlib.sha256).hexdigest()
            cached = self._cache[address] = f"spk:{digest[:32]}"
        return cached


@dataclass(frozen=True, slots=True, kw_only=True)
class BoundSpeaker:
    """A bound speaker as :func:`open_bindings` reads it.

    Attributes:
        speaker: The speaker key (``spk:…``): the ``speaker`` field of its records.
        address: The speaker's Bluetooth address (to connect to it; never written anywhere).
        name: The advertised name when it was bound.
        model: The model id when it was bound.
        alias: A name the user chose.
        bound_at: UTC time of binding, seconds since the epoch.
    """

    speaker: str
    address: str
    name: str | None = None
    model: str | None = None
    alias: str | None = None
    bound_at: float = 0.0


def open_bindings(paths: wking_device.Paths) -> list[BoundSpeaker]:
    """Read an installation's bound speakers, oldest first, writing nothing.

    Creates no directory, key or file: with nothing bound it returns ``[]`` without opening the
    key store. Each speaker carries its speaker key, the ``speaker`` field of the records
    collected from it (join ``RecordStore.export(["device_info"])`` on it for its last known
    state).

    Args:
        paths: The installation's paths (:func:`wking_device.resolve_paths`).

    Returns:
        The bound speakers.

    Raises:
        KeyMissing: Bindings exist but their key store (or its master key) is missing.
        WrongKey: The master key does not open the key store.
        StoreIntegrityError: The bindings file was altered or belongs to another key.
        StorageError: The bindings file cannot be read.
    """
    from wking_device.crypto import open_key_store  # noqa: PLC0415 - cryptography on first use

    path = bindings_path(paths)
    if not path.exists():
        return []
    keys = open_key_store(paths, create=False)
    if BINDINGS_SECRET not in keys.secret_names():
        raise StoreIntegrityError(
            f"device bindings file {path} has no key in the key store",
            remedy="delete it and bind the speakers again",
        )
    secret = keys.secret(BINDINGS_SECRET)
    speaker_keys = SpeakerKeys(secret)
    return [
        BoundSpeaker(
            speaker=speaker_keys.key(b.address),
            address=b.address,
            name=b.name,
            model=b.model,
            alias=b.alias,
            bound_at=b.bound_at,
        )
        for b in Bindings(path, secret).load()
    ]


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
            raise UsageError(f"the bindings key must be 32 bytes, not {len(key)}")
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
        try:
            atomic_write(self._path, blob)
        except OSError as exc:
            raise StorageError(f"cannot write device bindings: {exc.strerror}") from exc
