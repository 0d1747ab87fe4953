"""The AEAD envelope: AES-256-GCM with counter nonces and associated data binding each record.

This module owns the byte layout of one sealed record and the nonce discipline under one data key
(DEK). It does not know where keys come from (:mod:`wking_device.crypto._keystore`) nor where the
ciphertext is kept (:mod:`wking_device.store`).

Layout of a sealed payload::

    version (1 byte) | nonce (12 bytes) | ciphertext + 16-byte GCM tag

The associated data (version 2) binds the envelope version, the record id, the category, the key
id, the record schema version, and the record's ``created_at`` and ``expires_at`` times, so a
ciphertext copied to another row (another id, category or key), or a row whose times were edited
(to keep it past its retention), fails authentication. Version 1 payloads (written before the
times were bound) still open, with the version 1 associated data; the store re-seals them.

Nonces are ``prefix (4 bytes) | counter (8 bytes, big endian)``. The store reserves counter blocks
per key in its database (committed before any nonce of the block is used) and draws a fresh random
prefix for each block, so a nonce never repeats under one key even across crashes; a database
restored from an old backup would replay counters, and the random per-block prefix still makes a
collision a 2**-32 event per replayed block rather than a certainty (see docs/security.md).
"""

from __future__ import annotations

import math
import os
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wking_device.errors import RecordCorrupt, UsageError

__all__ = [
    "ENVELOPE_VERSION",
    "NONCE_BLOCK",
    "RECORD_SCHEMA_VERSION",
    "Sealer",
    "associated_data",
]

ENVELOPE_VERSION: Final = 2
"""The first byte of every payload sealed now (version 1 payloads still open)."""

LEGACY_ENVELOPE_VERSION: Final = 1
"""Payloads sealed before ``created_at`` and ``expires_at`` were bound (issue 7)."""

RECORD_SCHEMA_VERSION: Final = 1
"""Version of the plaintext body layout inside the envelope (bound into the associated data)."""

NONCE_BLOCK: Final = 1 << 20
"""Counters reserved per block: one durable reservation per ~1 million records per key."""

_VERSION_BYTE: Final = bytes([ENVELOPE_VERSION])
_HEADER: Final = 1 + 12
_AD_PREFIX: Final = f"wking/v{ENVELOPE_VERSION}".encode()
_AD_TAIL: Final = struct.Struct(">qIdd")
_KEY_PART: Final = struct.Struct(">qI")  # _AD_TAIL in two parts: key id and schema version...
_TIMES: Final = struct.Struct(">dd")  # ...then the two times
_CATEGORY_PARTS: Final = 64
_isfinite: Final = math.isfinite


def associated_data(
    record_id: str, category: str, key_id: int, *, created_at: float, expires_at: float
) -> bytes:
    """Build the associated data that binds a ciphertext to its row.

    Every field is length-prefixed or fixed-size, so two different rows never share associated
    data (no separator can be smuggled into an id).

    Args:
        record_id: The record's id.
        category: The record's data category.
        key_id: The id of the data key that seals it.
        created_at: The row's ``created_at`` (UTC seconds).
        expires_at: The row's ``expires_at`` (UTC seconds).

    Returns:
        The bytes passed to AES-GCM as associated data.

    Raises:
        TypeError: A field has the wrong type (a row edited to hold text in a number column).
        ValueError: A time is not a finite number, or a field is out of range.
    """
    rid = record_id.encode()
    cat = category.encode()
    created, expires = float(created_at), float(expires_at)
    if not (math.isfinite(created) and math.isfinite(expires)):
        raise ValueError("record times must be finite")
    try:
        tail = _AD_TAIL.pack(key_id, RECORD_SCHEMA_VERSION, created, expires)
    except struct.error as exc:
        raise ValueError(str(exc)) from exc
    return b"".join(
        (_AD_PREFIX, len(rid).to_bytes(4, "big"), rid, len(cat).to_bytes(4, "big"), cat, tail)
    )


def legacy_associated_data(record_id: str, category: str, key_id: int) -> bytes:
    """Build the version 1 associated data (no times bound), to open old payloads."""
    return (
        f"wking/v{LEGACY_ENVELOPE_VERSION}|{record_id}|{category}|{key_id}|{RECORD_SCHEMA_VERSION}"
    ).encode()


class Sealer:
    """Seals and opens payloads under one data key; keep one per key (an AESGCM object is costly).

    Args:
        key_id: The data key's id (bound into the associated data).
        key: The 32-byte data key.

    Nonces come from a block set with :meth:`set_block`; :meth:`seal` refuses to run past the
    block, so the caller must reserve a new block durably first (:meth:`remaining` tells when).
    """

    __slots__ = ("_aead", "_categories", "_counter", "_key_part", "_limit", "_prefix", "key_id")

    def __init__(self, key_id: int, key: bytes) -> None:
        if len(key) != 32:
            raise UsageError("a data key must be 32 bytes (AES-256)")
        self.key_id = key_id
        self._aead = AESGCM(key)
        self._categories: dict[str, bytes] = {}  # category -> its associated-data part
        self._key_part = b""  # the key id and schema version part (set on first use)
        self._prefix = b""
        self._counter = 0
        self._limit = 0

    def set_block(self, start: int, *, prefix: bytes | None = None) -> None:
        """Use counters ``[start, start + NONCE_BLOCK)`` under a fresh 4-byte prefix.

        Args:
            start: The first counter of a block the caller has durably reserved.
            prefix: The 4-byte nonce prefix (random by default; injectable for tests).
        """
        self._prefix = prefix if prefix is not None else os.urandom(4)
        self._counter = start
        self._limit = start + NONCE_BLOCK

    def remaining(self) -> int:
        """Return how many nonces are left in the current block."""
        return self._limit - self._counter

    def seal(
        self,
        record_id: str,
        category: str,
        plaintext: bytes,
        *,
        created_at: float,
        expires_at: float,
    ) -> bytes:
        """Encrypt one payload.

        Args:
            record_id: The record's id.
            category: The record's category.
            plaintext: The serialised body.
            created_at: The row's ``created_at``, exactly as it is stored.
            expires_at: The row's ``expires_at``, exactly as it is stored.

        Returns:
            The sealed payload (version, nonce, ciphertext and tag).

        Raises:
            UsageError: No nonce is left in the reserved block.
        """
        counter = self._counter
        if counter >= self._limit:
            raise UsageError("nonce block exhausted: reserve a new block before sealing")
        if (
            type(created_at) is float
            and type(expires_at) is float
            and _isfinite(created_at)
            and _isfinite(expires_at)
            and -(2**63) <= self.key_id < 2**63
        ):
            # the store's case (it seals every append here): the same bytes as
            # associated_data(), built inline
            rid = record_id.encode()
            cat = category.encode()
            ad = b"".join(
                (
                    _AD_PREFIX,
                    len(rid).to_bytes(4, "big"),
                    rid,
                    len(cat).to_bytes(4, "big"),
                    cat,
                    _AD_TAIL.pack(self.key_id, RECORD_SCHEMA_VERSION, created_at, expires_at),
                )
            )
        else:
            ad = associated_data(
                record_id, category, self.key_id, created_at=created_at, expires_at=expires_at
            )
        self._counter = counter + 1
        nonce = self._prefix + counter.to_bytes(8, "big")
        return _VERSION_BYTE + nonce + self._aead.encrypt(nonce, plaintext, ad)

    def open(
        self,
        record_id: str,
        category: str,
        sealed: bytes,
        *,
        created_at: float,
        expires_at: float,
    ) -> bytes:
        """Decrypt and authenticate one payload.

        Args:
            record_id: The record's id, as stored in its row.
            category: The record's category, as stored in its row.
            sealed: The sealed payload.
            created_at: The row's ``created_at``, as stored (bound from envelope version 2).
            expires_at: The row's ``expires_at``, as stored (bound from envelope version 2).

        Returns:
            The plaintext.

        Raises:
            RecordCorrupt: The payload does not authenticate for this row and key (or a column
                does not even have the right type).
        """
        if (
            type(sealed) is bytes
            and len(sealed) >= _HEADER + 16
            and sealed[0] == ENVELOPE_VERSION
            and type(record_id) is str
            and type(category) is str
            and type(created_at) is float
            and type(expires_at) is float
            and _isfinite(created_at)
            and _isfinite(expires_at)
        ):
            # the common case, checked above exactly as associated_data() would: build the same
            # associated data inline (the uploader opens every record it sends through here)
            rid = record_id.encode()
            cat = category.encode()
            ad = b"".join(
                (
                    _AD_PREFIX,
                    len(rid).to_bytes(4, "big"),
                    rid,
                    len(cat).to_bytes(4, "big"),
                    cat,
                    _AD_TAIL.pack(self.key_id, RECORD_SCHEMA_VERSION, created_at, expires_at),
                )
            )
            try:
                return self._aead.decrypt(sealed[1:_HEADER], sealed[_HEADER:], ad)
            except InvalidTag as exc:
                raise RecordCorrupt("record failed authentication", record_id=record_id) from exc
        if not isinstance(sealed, bytes) or len(sealed) < _HEADER + 16:
            raise RecordCorrupt("sealed payload is malformed", record_id=str(record_id))
        try:
            if sealed[0] == ENVELOPE_VERSION:
                ad = associated_data(
                    record_id, category, self.key_id, created_at=created_at, expires_at=expires_at
                )
            elif sealed[0] == LEGACY_ENVELOPE_VERSION:
                ad = legacy_associated_data(record_id, category, self.key_id)
            else:
                raise RecordCorrupt("sealed payload is malformed", record_id=str(record_id))
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise RecordCorrupt("record row is malformed", record_id=str(record_id)) from exc
        nonce = sealed[1:_HEADER]
        try:
            return self._aead.decrypt(nonce, sealed[_HEADER:], ad)
        except InvalidTag as exc:
            raise RecordCorrupt("record failed authentication", record_id=record_id) from exc

    def open_row(
        self, record_id: str, category: str, sealed: bytes, created_at: float, expires_at: float
    ) -> bytes:
        """:meth:`open` with positional arguments, for many rows of few categories (the claim).

        The same result and errors as :meth:`open`; a category's part of the associated data is
        built once and kept (bounded).

        Raises:
            RecordCorrupt: As :meth:`open`.
        """
        part = self._categories.get(category)
        if (
            part is None
            or type(sealed) is not bytes
            or len(sealed) < _HEADER + 16
            or sealed[0] != ENVELOPE_VERSION
            or type(record_id) is not str
            or type(created_at) is not float
            or type(expires_at) is not float
            or not _isfinite(created_at)
            or not _isfinite(expires_at)
        ):
            if type(category) is str and len(self._categories) < _CATEGORY_PARTS:
                cat = category.encode()
                self._categories[category] = len(cat).to_bytes(4, "big") + cat
                if not self._key_part:
                    self._key_part = _KEY_PART.pack(self.key_id, RECORD_SCHEMA_VERSION)
            return self.open(
                record_id, category, sealed, created_at=created_at, expires_at=expires_at
            )
        rid = record_id.encode()
        ad = b"".join(
            (
                _AD_PREFIX,
                len(rid).to_bytes(4, "big"),
                rid,
                part,
                self._key_part,
                _TIMES.pack(created_at, expires_at),
            )
        )
        try:
            return self._aead.decrypt(sealed[1:_HEADER], sealed[_HEADER:], ad)
        except InvalidTag as exc:
            raise RecordCorrupt("record failed authentication", record_id=record_id) from exc
