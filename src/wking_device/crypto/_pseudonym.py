"""Keyed MAC-address pseudonyms for de-identification.

This module owns turning a MAC address into a pseudonym with HMAC-SHA-256 under a local secret
that rotates per epoch (a plain hash of a 48-bit MAC is reversible by enumeration: 2**48 hashes
take hours on one GPU). Secrets of past epochs are destroyed, so pseudonyms from different epochs
cannot be linked afterwards. It does not decide when pseudonyms are needed (the uploader does).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Final

from wking_device.crypto._keystore import KeyStore
from wking_device.errors import UsageError

__all__ = ["MacPseudonymizer", "normalize_mac"]

_SECRET_PREFIX: Final = "mac-pseudonym:"  # noqa: S105 - a name prefix, not a secret
_MAC_RE: Final = re.compile(r"^[0-9A-Fa-f]{12}$")


def normalize_mac(address: str) -> str:
    """Return a MAC address as 12 upper-case hex digits (separators ``:``, ``-``, ``.`` dropped).

    Raises:
        UsageError: The text is not a MAC address.
    """
    digits = address.replace(":", "").replace("-", "").replace(".", "")
    if not _MAC_RE.match(digits):
        raise UsageError("not a MAC address")
    return digits.upper()


class MacPseudonymizer:
    """Pseudonyms ``mac:<32 hex>`` for MAC addresses, stable within an epoch.

    Args:
        keys: The key store holding the per-epoch secrets.
        epoch_seconds: Length of an epoch (30 days by default).
        clock: UTC time source (injectable for tests).
    """

    def __init__(
        self,
        keys: KeyStore,
        *,
        epoch_seconds: float = 30 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if epoch_seconds <= 0:
            raise UsageError("epoch_seconds must be positive")
        self._keys = keys
        self._epoch_seconds = epoch_seconds
        self._clock = clock
        self._epoch = -1
        self._secret = b""

    @property
    def epoch(self) -> int:
        """The current epoch number."""
        return int(self._clock() // self._epoch_seconds)

    def _secret_for_now(self) -> bytes:
        epoch = self.epoch
        if epoch != self._epoch:
            self._secret = self._keys.secret(f"{_SECRET_PREFIX}{epoch}")
            self._epoch = epoch
            stale = [
                name
                for name in self._keys.secret_names()
                if name.startswith(_SECRET_PREFIX) and name != f"{_SECRET_PREFIX}{epoch}"
            ]
            if stale:
                self._keys.forget_secrets(stale)
        return self._secret

    def pseudonym(self, address: str) -> str:
        """Return the pseudonym of a MAC address in the current epoch.

        Args:
            address: A MAC address in any common notation.

        Returns:
            ``"mac:"`` followed by 32 hex digits (128 bits of HMAC-SHA-256).
        """
        digest = hmac.new(
            self._secret_for_now(), normalize_mac(address).encode(), hashlib.sha256
        ).hexdigest()
        return f"mac:{digest[:32]}"
