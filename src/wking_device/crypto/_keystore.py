"""The key hierarchy: a master key (KEK) wrapping data keys (DEKs) and named secrets.

This module owns ``keys/keystore.json`` in the data directory: the wrapped DEKs (one per category
and epoch), the wrapped named secrets (``ledger-hmac``, ``mac-pseudonym:<epoch>``), and the
crash-safe KEK rotation that makes destroying a DEK reach copies of the data directory taken
earlier (crypto-shredding). Where the KEK itself lives is :mod:`wking_device.crypto._backends`.
It does not encrypt records (:mod:`wking_device.crypto._envelope`) or touch the database.

KEK rotation is a three-step, crash-safe protocol. The key store file always holds everything
wrapped under the KEK in force; during a rotation it additionally holds a ``pending`` copy
wrapped under the next KEK:

1. write the file with the destroyed DEKs removed and a ``pending`` section under KEK';
2. replace the KEK in its backend with KEK' (the old KEK is gone from that place);
3. write the file with ``pending`` promoted.

The steps run under the key store's ``flock``, which every change of the file takes too. A
rotation found stopped part-way is settled under that lock: a KEK matching ``pending`` finishes
step 3 (and a change made then goes into the promoted sections, which the next open goes by); a
KEK matching the main section means the rotation stopped before step 2, and the next open starts
it again so the old KEK is still retired. A reader that finds a key matching neither section (a
rotation between its unlocked read of the file and its load of the key) re-reads under the lock.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import wking_device  # annotations name wking_device.X: get_type_hints loads X lazily
from wking_device.crypto._backends import (
    KEK_SIZE,
    KekBackend,
    KeyFileBackend,
    KeyringBackend,
    SystemdCredentialBackend,
    atomic_write,
    kek_id,
)
from wking_device.errors import KeyMissing, KeyStoreError, UsageError, WrongKey

__all__ = ["LEDGER_SECRET", "DataKey", "KeyStore", "key_dir", "open_key_store"]

_LOGGER = logging.getLogger(__name__)

_FORMAT: Final = 1
_FILE: Final = "keystore.json"
_LOCK: Final = "keystore.lock"
_KEY_FILE: Final = "master.key"
_SEALED: Final = "master.key.sealed"
LEVELS: Final = ("systemd-credential", "keyring", "key-file")

LEDGER_SECRET: Final = "ledger-hmac"  # noqa: S105 - the name of a key-store secret, not a secret
"""The key store's name for the consent ledger's HMAC key (the permit key derives from it)."""


def key_dir(paths: wking_device.Paths) -> Path:
    """Return the directory holding the key store file (and, at the lowest level, the KEK)."""
    return paths.data_dir / "keys"


@dataclass(frozen=True, slots=True, kw_only=True)
class DataKey:
    """One data key (DEK) of one category and epoch.

    Attributes:
        key_id: Stable id, stored in plaintext beside each record it seals.
        category: The data category it seals.
        epoch: 0, 1, ... : a new epoch starts on the rotation schedule.
        created_at: UTC seconds since the epoch.
        key: The 32-byte key (never printed).
    """

    key_id: int
    category: str
    epoch: int
    created_at: float
    key: bytes = field(repr=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


class _Wrapper:
    """AES-256-GCM key wrapping under one KEK, bound to the store id and the item name."""

    def __init__(self, kek: bytes, store_id: str) -> None:
        self._aead = AESGCM(kek)
        self._store_id = store_id

    def _ad(self, name: str) -> bytes:
        return f"wking-wrap|{self._store_id}|{name}".encode()

    def wrap(self, name: str, key: bytes) -> str:
        nonce = os.urandom(12)
        return _b64(nonce + self._aead.encrypt(nonce, key, self._ad(name)))

    def unwrap(self, name: str, wrapped: str) -> bytes:
        try:
            blob = _unb64(wrapped)
        except binascii.Error as exc:
            raise KeyStoreError(
                f"key store entry {name!r} is corrupt ({exc})", remedy=_CORRUPT_REMEDY
            ) from exc
        if len(blob) < 12 + 16:
            raise KeyStoreError(
                f"key store entry {name!r} is corrupt (too short)", remedy=_CORRUPT_REMEDY
            )
        try:
            return self._aead.decrypt(blob[:12], blob[12:], self._ad(name))
        except InvalidTag as exc:
            raise WrongKey(f"key store entry {name!r} does not open with the master key") from exc


def _dek_name(entry: Mapping[str, Any]) -> str:
    return f"dek:{entry['id']}:{entry['category']}:{entry['epoch']}"


class KeyStore:
    """The key hierarchy of one installation. Build it with :func:`open_key_store`.

    Thread-safe within a process (one lock) and across processes (``flock`` on mutations).

    Attributes:
        level: ``"systemd-credential"``, ``"keyring"`` or ``"key-file"``.
        store_id: Random id of this key store (the database records it, to refuse a foreign key).
        directory: The key directory.
    """

    def __init__(
        self, directory: Path, backend: KekBackend, doc: dict[str, Any], kek: bytes
    ) -> None:
        self.directory = directory
        self.level: str = backend.level
        self.store_id: str = doc["store_id"]
        self._backend = backend
        self._doc = doc
        self._kek = kek
        self._lock = threading.RLock()
        self._deks: dict[int, DataKey] = {}
        self._secrets: dict[str, bytes] = {}

    # -- file handling -------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The key store file."""
        return self.directory / _FILE

    @property
    def master_key_id(self) -> str:
        """A one-way id of the KEK in force (changes on every rotation)."""
        return str(self._doc["kek_id"])

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Hold the key store's ``flock`` (call with ``self._lock`` held: it is not re-entrant).

        Every change of the file and every KEK rotation take it, so while it is held no rotation
        is under way: the file and the key location agree, up to a rotation that stopped
        part-way.
        """
        lock_fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock_fd)  # closing releases the flock

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[dict[str, Any]]:
        """Lock (thread and file), re-read the file, yield a copy for changes, then write it.

        The copy is what this object goes by only once it is written: a change that fails (a
        full disk, a failing backend) leaves what the file and the backend hold, re-read, so no
        key that is not on disk is handed out (records sealed with it would not open after a
        restart).
        """
        with self._lock, self._file_lock():
            self._reload()
            doc = copy.deepcopy(self._doc)
            try:
                yield doc
                self._write(doc)
            except BaseException:
                with contextlib.suppress(Exception):  # the error raised says what failed
                    self._reload()
                raise
            self._doc = doc

    def _refresh(self) -> None:
        """Pick up changes another process made (new DEKs, secrets, a rotated KEK), unlocked.

        The file is read before the key: a rotation in between (another process's steps 1 and
        2) leaves a key that matches nothing read, and a file whose ``pending`` section is in
        force must be promoted by a writer holding the lock. Both are settled under the lock.
        """
        doc = _read_doc(self.path)
        if doc is None:
            raise KeyMissing(f"the key store file {self.path} disappeared")
        if doc["kek_id"] != kek_id(self._kek):
            kek = self._load_kek()
            if kek_id(kek) != doc["kek_id"]:
                with self._file_lock():
                    self._reload()
                return
            self._adopt(kek)
        self._doc = doc

    def _reload(self) -> None:
        """Re-read the file and settle which KEK is in force. Call with the file lock held.

        A ``pending`` section whose KEK the backend holds is in force (a rotation stopped
        between steps 2 and 3: killed, or a key location that failed after keeping the new
        KEK): it is promoted here, so the changes made under this lock go into the sections the
        next open goes by. A ``pending`` section whose KEK the backend lacks is a rotation that
        stopped before step 2 (its KEK is gone): the main section is in force, and the next open
        starts that rotation again.
        """
        doc = _read_doc(self.path)
        if doc is None:
            raise KeyMissing(f"the key store file {self.path} disappeared")
        pending = doc.get("pending")
        if pending or doc["kek_id"] != kek_id(self._kek):
            kek = self._load_kek()
            if pending and kek_id(kek) == pending["kek_id"]:
                _promote(doc)
                # promoted in memory it is right already; if this write fails, the next writer
                # (or opener) holding the lock promotes the file
                with contextlib.suppress(KeyStoreError):
                    self._write(doc)
            elif kek_id(kek) != doc["kek_id"]:
                raise WrongKey(
                    f"the master key ({self.level}) does not open the key store in {self.directory}"
                )
            self._adopt(kek)
        self._doc = doc

    def _load_kek(self) -> bytes:
        kek = self._backend.load()
        if kek is None:
            raise KeyMissing(f"the master key ({self.level}) of {self.directory} is missing")
        return kek

    def _adopt(self, kek: bytes) -> None:
        if kek != self._kek:
            self._kek = kek
            self._deks.clear()
            self._secrets.clear()

    def _write(self, doc: dict[str, Any]) -> None:
        try:
            atomic_write(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise KeyStoreError(f"cannot write the key store file: {exc.strerror}") from exc

    # -- named secrets -------------------------------------------------------------------------

    def secret(self, name: str) -> bytes:
        """Return a stable 32-byte named secret, creating it on first use.

        Secrets are wrapped under the KEK and survive KEK rotation (re-wrapped, not changed).

        Args:
            name: e.g. ``"ledger-hmac"`` or ``"mac-pseudonym:20"``.

        Returns:
            The secret.
        """
        with self._lock:
            cached = self._secrets.get(name)
            if cached is not None:
                return cached
            wrapped = self._doc["secrets"].get(name)
            if wrapped is None:
                with self._mutating() as doc:
                    wrapped = doc["secrets"].get(name)
                    if wrapped is None:
                        wrapped = _Wrapper(self._kek, self.store_id).wrap(
                            f"secret:{name}", os.urandom(32)
                        )
                        doc["secrets"][name] = wrapped
            value = _Wrapper(self._kek, self.store_id).unwrap(f"secret:{name}", wrapped)
            self._secrets[name] = value
            return value

    def anchor(self, name: str) -> str | None:
        """Return a value kept with :meth:`set_anchor` (re-read from the file), or ``None``.

        Anchors are small plaintext values another file is checked against (the consent
        ledger's head: a ledger rolled back to an older copy no longer matches it). Whoever
        writes one authenticates it; the key store only keeps it.
        """
        with self._lock:
            doc = _read_doc(self.path)
            anchors = (doc or self._doc).get("anchors")
            value = anchors.get(name) if isinstance(anchors, dict) else None
            return value if isinstance(value, str) else None

    def set_anchor(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` in the key store file (durable, locked)."""
        with self._mutating() as doc:
            anchors = doc.get("anchors")
            if not isinstance(anchors, dict):
                anchors = doc["anchors"] = {}
            anchors[name] = value

    def secret_names(self) -> list[str]:
        """Return the names of the secrets kept (no values)."""
        with self._lock:
            return sorted(self._doc["secrets"])

    def forget_secrets(self, names: list[str]) -> None:
        """Destroy named secrets and retire the KEK they were wrapped under.

        Args:
            names: The secrets to destroy; unknown names are ignored.
        """
        with self._lock:
            present = [name for name in names if name in self._doc["secrets"]]
            if not present:
                return
            self._rotate(drop_secrets=set(present), drop_deks=set())

    # -- data keys -----------------------------------------------------------------------------

    def current_data_key(
        self, category: str, *, rotate_after: float, now: float | None = None
    ) -> DataKey:
        """Return the data key new records of a category are sealed with.

        A new epoch (a new DEK) starts when the newest one is older than ``rotate_after``.

        Args:
            category: The data category.
            rotate_after: Seconds a DEK seals new records before the next epoch starts.
            now: The current UTC time (injectable for tests).

        Returns:
            The DEK in force.
        """
        now = time.time() if now is None else now
        with self._lock:
            entry = self._newest(category)
            if entry is None or entry["created_at"] + rotate_after <= now:
                with self._mutating() as doc:
                    entry = self._newest(category)
                    if entry is None or entry["created_at"] + rotate_after <= now:
                        entry = {
                            "id": doc["next_key_id"],
                            "category": category,
                            "epoch": 0 if entry is None else entry["epoch"] + 1,
                            "created_at": now,
                        }
                        doc["next_key_id"] += 1
                        entry["wrapped"] = _Wrapper(self._kek, self.store_id).wrap(
                            _dek_name(entry), os.urandom(32)
                        )
                        doc["deks"].append(entry)
                        _LOGGER.info(
                            "new data key %d for %s (epoch %d)",
                            entry["id"],
                            category,
                            entry["epoch"],
                        )
            key = self.data_key(int(entry["id"]))
            assert key is not None
            return key

    def data_key_in_force(
        self, category: str, *, rotate_after: float, now: float | None = None
    ) -> DataKey | None:
        """The data key :meth:`current_data_key` would return, if that creates none.

        Never writes: ``None`` when the category has no data key yet, or when its newest is due
        for rotation (a new epoch needs :meth:`current_data_key`).

        Args:
            category: The data category (or key scope).
            rotate_after: Seconds a DEK seals new records before the next epoch starts.
            now: The current UTC time (injectable for tests).
        """
        now = time.time() if now is None else now
        with self._lock:
            entry = self._newest(category)
            if entry is None or entry["created_at"] + rotate_after <= now:
                return None
            return self.data_key(int(entry["id"]))

    def _newest(self, category: str) -> dict[str, Any] | None:
        newest: dict[str, Any] | None = None
        for entry in self._doc["deks"]:
            if entry["category"] == category and (
                newest is None or entry["epoch"] > newest["epoch"]
            ):
                newest = entry
        return newest

    def data_key(self, key_id: int) -> DataKey | None:
        """Return a data key by id, or ``None`` when it was destroyed (or never existed)."""
        with self._lock:
            cached = self._deks.get(key_id)
            if cached is not None:
                return cached
            entry = self._find(key_id)
            if entry is None:
                # another process may have created it since we read the file
                self._refresh()
                entry = self._find(key_id)
                if entry is None:
                    return None
            dek = DataKey(
                key_id=key_id,
                category=entry["category"],
                epoch=entry["epoch"],
                created_at=entry["created_at"],
                key=_Wrapper(self._kek, self.store_id).unwrap(_dek_name(entry), entry["wrapped"]),
            )
            self._deks[key_id] = dek
            return dek

    def _find(self, key_id: int) -> dict[str, Any] | None:
        for entry in self._doc["deks"]:
            if entry["id"] == key_id:
                return dict(entry)
        return None

    def was_destroyed(self, key_id: int) -> bool:
        """Tell whether a data key existed and was destroyed (its records are shredded)."""
        with self._lock:
            if key_id in self._doc.get("destroyed", ()):
                return True
            self._refresh()
            return key_id in self._doc.get("destroyed", ())

    def data_key_ids(self, category: str | None = None) -> dict[int, str]:
        """Return the ids of the live data keys (all, or of one category) with their category."""
        with self._lock:
            return {
                int(entry["id"]): str(entry["category"])
                for entry in self._doc["deks"]
                if category is None or entry["category"] == category
            }

    def destroy_data_keys(
        self, *, category: str | None = None, key_ids: set[int] | None = None
    ) -> list[int]:
        """Destroy data keys (crypto-shredding) and retire the KEK they were wrapped under.

        The surviving keys and secrets are re-wrapped under a new KEK that replaces the old one in
        its backend, so a copy of the key store file taken earlier no longer opens with the KEK
        in force (see docs/security.md for what each level guarantees).

        Args:
            category: Destroy every key of this category.
            key_ids: Destroy these keys.

        Returns:
            The ids destroyed (empty when there was nothing to destroy: no rotation then).
        """
        if category is None and key_ids is None:
            raise UsageError("name a category or key ids to destroy")
        with self._lock:
            doomed = {
                int(entry["id"])
                for entry in self._doc["deks"]
                if (category is not None and entry["category"] == category)
                or (key_ids is not None and entry["id"] in key_ids)
            }
            if not doomed:
                return []
            self._rotate(drop_secrets=set(), drop_deks=doomed)
            return sorted(doomed)

    # -- KEK rotation --------------------------------------------------------------------------

    def rotate_master_key(self) -> None:
        """Replace the KEK; every key and secret survives, re-wrapped."""
        self._rotate(drop_secrets=set(), drop_deks=set())

    def _rotate(self, *, drop_secrets: set[str], drop_deks: set[int]) -> None:
        with self._mutating() as doc:
            old = _Wrapper(self._kek, self.store_id)
            doc["deks"] = [entry for entry in doc["deks"] if entry["id"] not in drop_deks]
            # tombstones tell a shredded record (key destroyed) from a corrupt key id
            doc["destroyed"] = sorted({*doc.get("destroyed", []), *drop_deks})
            for name in drop_secrets:
                doc["secrets"].pop(name, None)
            new_kek = os.urandom(KEK_SIZE)
            new = _Wrapper(new_kek, self.store_id)
            pending_deks = []
            for entry in doc["deks"]:
                name = _dek_name(entry)
                pending_deks.append(
                    {**entry, "wrapped": new.wrap(name, old.unwrap(name, entry["wrapped"]))}
                )
            pending_secrets = {
                name: new.wrap(f"secret:{name}", old.unwrap(f"secret:{name}", wrapped))
                for name, wrapped in doc["secrets"].items()
            }
            doc["pending"] = {
                "kek_id": kek_id(new_kek),
                "deks": pending_deks,
                "secrets": pending_secrets,
            }
            # step 1: removal + pending copy durable under the old KEK
            self._write(doc)
            self._doc = copy.deepcopy(doc)  # in force now, whatever happens next
            for key_id in drop_deks:
                self._deks.pop(key_id, None)
            for name in drop_secrets:
                self._secrets.pop(name, None)
            # step 2: the backend forgets the old KEK
            self._backend.save(new_kek)
            if self._backend.load() != new_kek:
                # a keyring that reports success and keeps the old entry (or none): promoting
                # now would leave a key store file that no key kept anywhere opens
                raise KeyStoreError(
                    f"the {self.level} key store did not keep the new master key; the old one "
                    "stays in force and the rotation is tried again on the next open",
                    remedy="check that the OS keyring works (unlocked, writable) and try again",
                )
            self._kek = new_kek
            # step 3 is the write _mutating() does on exit
            _promote(doc)
        _LOGGER.info(
            "master key rotated (%d data keys destroyed, %d secrets destroyed)",
            len(drop_deks),
            len(drop_secrets),
        )


def _promote(doc: dict[str, Any]) -> None:
    pending = doc.pop("pending")
    doc["pending"] = None
    doc["kek_id"] = pending["kek_id"]
    doc["deks"] = pending["deks"]
    doc["secrets"] = pending["secrets"]


_CORRUPT_REMEDY: Final = (
    "restore keys/keystore.json from a backup; without it the stored records cannot be read"
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _section_error(label: str, section: dict[str, Any]) -> str | None:
    deks, secrets = section.get("deks"), section.get("secrets")
    if not isinstance(deks, list):
        return f"{label}'deks' is not a list"
    for entry in deks:
        if not (
            isinstance(entry, dict)
            and _is_int(entry.get("id"))
            and isinstance(entry.get("category"), str)
            and _is_int(entry.get("epoch"))
            and isinstance(entry.get("created_at"), int | float)
            and isinstance(entry.get("wrapped"), str)
        ):
            return f"a {label}data key entry is malformed"
    if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
        return f"{label}'secrets' is malformed"
    return None


def _shape_error(doc: dict[str, Any]) -> str | None:
    """Say what is malformed in a parsed key store document, or ``None`` when it is sound.

    Checked once, on read, so a damaged file is a :class:`KeyStoreError` naming the problem
    instead of a ``KeyError`` or ``TypeError`` deep in a later operation.
    """
    problems = [
        f"{name!r} is not a string"
        for name in ("store_id", "level", "kek_id")
        if not isinstance(doc[name], str)
    ]
    if not _is_int(doc["next_key_id"]):
        problems.append("'next_key_id' is not an integer")
    destroyed = doc.get("destroyed", [])
    if not isinstance(destroyed, list) or not all(_is_int(key_id) for key_id in destroyed):
        problems.append("'destroyed' is malformed")
    problems.append(_section_error("", doc) or "")
    pending = doc.get("pending")
    if pending is not None:
        if isinstance(pending, dict) and isinstance(pending.get("kek_id"), str):
            problems.append(_section_error("pending ", pending) or "")
        else:
            problems.append("'pending' is malformed")
    found = [problem for problem in problems if problem]
    return found[0] if found else None


def _read_doc(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyStoreError(f"cannot read the key store file {path}: {exc.strerror}") from exc
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KeyStoreError(
            f"the key store file {path} is corrupt", remedy=_CORRUPT_REMEDY
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise KeyStoreError(f"{path} is not a key store file of format {_FORMAT}")
    for name in ("store_id", "level", "kek_id", "next_key_id", "deks", "secrets"):
        if name not in doc:
            raise KeyStoreError(f"{path} lacks {name!r}", remedy=_CORRUPT_REMEDY)
    problem = _shape_error(doc)
    if problem is not None:
        raise KeyStoreError(
            f"the key store file {path} is corrupt: {problem}", remedy=_CORRUPT_REMEDY
        )
    return doc


def _backend_for(
    level: str,
    directory: Path,
    store_id: str,
    environ: Mapping[str, str] | None,
    key_file: Path | None = None,
) -> KekBackend:
    if level == "systemd-credential":
        return SystemdCredentialBackend(directory / _SEALED, environ=environ)
    if level == "keyring":
        return KeyringBackend(f"kek-{store_id}")
    if level == "key-file":
        return KeyFileBackend(key_file or directory / _KEY_FILE)
    raise KeyStoreError(f"unknown key store level {level!r}")


def open_key_store(
    paths: wking_device.Paths,
    *,
    create: bool = True,
    backend: KekBackend | None = None,
    environ: Mapping[str, str] | None = None,
) -> KeyStore:
    """Open (or create) the key store of an installation.

    A new key store takes the first available level: a systemd credential
    (``$CREDENTIALS_DIRECTORY/wking-kek``), the OS keyring with a secure backend, a 0600 key file
    in the data directory. An existing one keeps the level it was created with.

    Args:
        paths: The installation's paths.
        create: Create a key store when there is none (pass ``False`` when data already exists
            that a new key could not open).
        backend: Keep the KEK in this place instead of the ladder (e.g. a
            :class:`KeyFileBackend` outside the data directory: an external key location,
            whose path is remembered so later opens without ``backend`` find it).
        environ: The environment (``CREDENTIALS_DIRECTORY``); defaults to ``os.environ``.

    Returns:
        The key store.

    Raises:
        KeyMissing: There is no key store and ``create`` is false, or its KEK is not available.
        WrongKey: The available KEK does not open the key store.
        KeyStoreError: The key store file is corrupt or cannot be written.
    """
    directory = key_dir(paths)
    doc = _read_doc(directory / _FILE)
    if doc is None:
        if not create:
            raise KeyMissing(f"no key store in {directory}")
        return _create(directory, backend, environ)
    external = Path(doc["key_file"]) if doc.get("key_file") else None
    chosen = backend or _backend_for(doc["level"], directory, doc["store_id"], environ, external)
    if chosen.level != doc["level"] and backend is None:
        raise KeyMissing(f"the key store was created with level {doc['level']!r}")
    if not chosen.available():
        raise KeyMissing(
            f"the key store was created with level {doc['level']!r}, "
            "which is not available in this environment"
        )
    kek = chosen.load()
    if kek is None:
        raise KeyMissing(f"the master key ({doc['level']}) of {directory} is missing")
    store = KeyStore(directory, chosen, doc, kek)
    if kek_id(kek) == doc["kek_id"] and not doc.get("pending"):
        return store
    # A rotation is under way (another process), stopped part-way, or ran between reading the
    # file and loading the key: settled under the lock, where no rotation is under way, so a
    # promotion is written over the newest file, never over one another process wrote since.
    with store._lock, store._file_lock():
        store._reload()
        redo = bool(store._doc.get("pending"))
    if redo:
        # the rotation stopped before the backend took the new KEK: finish retiring the old
        _LOGGER.warning("an interrupted master key rotation is redone")
        store.rotate_master_key()
    return store


def _create(
    directory: Path, backend: KekBackend | None, environ: Mapping[str, str] | None
) -> KeyStore:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    store_id = os.urandom(8).hex()
    if backend is None:
        for level in LEVELS:
            candidate = _backend_for(level, directory, store_id, environ)
            if candidate.available():
                backend = candidate
                break
    assert backend is not None  # the key-file level is always available
    # The KEK is saved before the key store file: a crash in between leaves a KEK that the next
    # open reuses (key file, sealed file) or an orphan keyring entry, never a file without a key.
    kek = backend.load()
    if kek is None:
        kek = os.urandom(KEK_SIZE)
        backend.save(kek)
    doc: dict[str, Any] = {
        "format": _FORMAT,
        "store_id": store_id,
        "level": backend.level,
        "kek_id": kek_id(kek),
        "created_at": time.time(),
        "next_key_id": 1,
        "deks": [],
        "secrets": {},
        "pending": None,
        "destroyed": [],
    }
    if isinstance(backend, KeyFileBackend) and backend.path != directory / _KEY_FILE:
        # an external key location: remembered (the path only), so every opener finds it
        doc["key_file"] = str(backend.path.resolve())
    store = KeyStore(directory, backend, doc, kek)
    store._write(doc)
    _LOGGER.info("created a key store (level %s)", backend.level)
    return store
