"""The AEAD envelope: AES-256-GCM with counter nonces and associated data binding each record.

This module owns the byte layout of one sealed record and the nonce discipline under one data key
(DEK). It does not know where keys come from (:mod:`wking_device.crypto._keystore`) nor where the
ciphertext is kept (:mod:`wking_device.store`).

Layout of a sealed payload::

    version (1 byte) | nonce (12 bytes) | ciphertext + 16-byte GCM tag

The associated data binds the envelope version, the record id, the category, the key id and the
record schema version, so a ciphertext copied to another row (another id, category or key) fails
authentication.

Nonces are ``prefix (4 bytes) | counter (8 bytes, big endian)``. The store reserves counter blocks
per key in its database (committed before any nonce of the block is used) and draws a fresh random
prefix for each block, so a nonce never repeats under one key even across crashes; a database
restored from an old backup would replay counters, and the random per-block prefix still makes a
collision a 2**-32 event per replayed block rather than a certainty (see docs/security.md).
"""

from __future__ import annotations

import os
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

ENVELOPE_VERSION: Final = 1
"""The first byte of every sealed payload."""

RECORD_SCHEMA_VERSION: Final = 1
"""Version of the plaintext body layout inside the envelope (bound into the associated data)."""

NONCE_BLOCK: Final = 1 << 20
"""Counters reserved per block: one durable reservation per ~1 million records per key."""

_VERSION_BYTE: Final = bytes([ENVELOPE_VERSION])
_HEADER: Final = 1 + 12


def associated_data(record_id: str, category: str, key_id: int) -> bytes:
    """Build the associated data that binds a ciphertext to its row.

    Args:
        record_id: The record's id.
        category: The record's data category.
        key_id: The id of the data key that seals it.

    Returns:
        The bytes passed to AES-GCM as associated data.
    """
    return (
        f"wking/v{ENVELOPE_VERSION}|{record_id}|{category}|{key_id}|{RECORD_SCHEMA_VERSION}"
    ).encode()


class Sealer:
    """Seals and opens payloads under one data key; keep one per key (an AESGCM object is costly).

    Args:
        key_id: The data key's id (bound into the associated data).
        key: The 32-byte data key.

    Nonces come from a block set with :meth:`set_block`; :meth:`seal` refuses to run past the
    block, so the caller must reserve a new block durably first (:meth:`remaining` tells when).
    """

    __slots__ = ("_aead", "_counter", "_limit", "_prefix", "key_id")

    def __init__(self, key_id: int, key: bytes) -> None:
        if len(key) != 32:
            raise UsageError("a data key must be 32 bytes (AES-256)")
        self.key_id = key_id
        self._aead = AESGCM(key)
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

    def seal(self, record_id: str, category: str, plaintext: bytes) -> bytes:
        """Encrypt one payload.

        Args:
            record_id: The record's id.
            category: The record's category.
            plaintext: The serialised body.

        Returns:
            The sealed payload (version, nonce, ciphertext and tag).

        Raises:
            UsageError: No nonce is left in the reserved block.
        """
        counter = self._counter
        if counter >= self._limit:
            raise UsageError("nonce block exhausted: reserve a new block before sealing")
        self._counter = counter + 1
        nonce = self._prefix + counter.to_bytes(8, "big")
        ad = associated_data(record_id, category, self.key_id)
        return _VERSION_BYTE + nonce + self._aead.encrypt(nonce, plaintext, ad)

    def open(self, record_id: str, category: str, sealed: bytes) -> bytes:
        """Decrypt and authenticate one payload.

        Args:
            record_id: The record's id, as stored in its row.
            category: The record's category, as stored in its row.
            sealed: The sealed payload.

        Returns:
            The plaintext.

        Raises:
            RecordCorrupt: The payload does not authenticate for this row and key.
        """
        if len(sealed) < _HEADER + 16 or sealed[0] != ENVELOPE_VERSION:
            raise RecordCorrupt("sealed payload is malformed", record_id=record_id)
        nonce = sealed[1:_HEADER]
        ad = associated_data(record_id, category, self.key_id)
        try:
            return self._aead.decrypt(nonce, sealed[_HEADER:], ad)
        except InvalidTag as exc:
            raise RecordCorrupt("record failed authentication", record_id=record_id) from exc
