"""Opening an installation's consent gate with the ledger key from the key store.

This module owns the wiring the agent and the CLI share: paths + settings + the key store's
``ledger-hmac`` secret → a :class:`~wking_device.consent.ConsentGate`. It lives above
:mod:`wking_device.crypto` (the consent layer below it never imports crypto) and does nothing
else.
"""

from __future__ import annotations

import logging
import os

from wking_device.config import Paths, Settings, warn_loose_permissions
from wking_device.consent import ConsentGate, Ledger, ledger_path
from wking_device.crypto import LEDGER_SECRET, KeyStore, open_key_store
from wking_device.errors import KeyMissing
from wking_device.policy import PolicySet

__all__ = ["LEDGER_SECRET", "open_installation_gate"]

_LOGGER = logging.getLogger(__name__)


_ANCHOR = "consent-ledger"
"""The key store's name for the ledger's anchor (its head, kept away from the ledger)."""


class _KeyStoreAnchor:
    """The consent ledger's anchor, kept in the key store file (see docs/security.md)."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def read(self) -> str | None:
        return self._keys.anchor(_ANCHOR)

    def write(self, value: str) -> None:
        self._keys.set_anchor(_ANCHOR, value)


def open_installation_gate(
    paths: Paths,
    settings: Settings,
    *,
    policies: PolicySet | None = None,
    readonly: bool = False,
) -> ConsentGate:
    """Open the consent gate of an installation.

    The HMAC key comes from the installation's key store (created on first use), so it is kept
    apart from the ledger file; the key store also keeps the ledger's anchor, so a ledger rolled
    back to an older copy fails verification.

    Args:
        paths: The installation's paths.
        settings: Its settings (Do Not Track, minor, region).
        policies: The policy documents (default: shipped).
        readonly: Only report: create nothing (no directory, key store, secret or ledger
            entry), never repair or lock anything, so it works on a read-only home. Grants and
            withdrawals are refused (``UsageError``).

    Returns:
        The gate; closed (every category denied, ``tampered`` set) when the ledger fails
        verification.

    Raises:
        KeyStoreError: The key store cannot be opened (``KeyMissing`` — also when a ledger or a
            record database exists but the key store is gone —, ``WrongKey``).
    """
    from wking_device.crypto import key_dir  # noqa: PLC0415
    from wking_device.store import DB_FILE  # noqa: PLC0415 - the store is not needed otherwise

    warn_loose_permissions(paths)
    ledger_file = ledger_path(paths)
    on_disk = ledger_file.exists() or ledger_file.with_name(ledger_file.name + ".head").exists()
    if readonly:
        if not (key_dir(paths) / "keystore.json").exists():
            if on_disk or (paths.data_dir / DB_FILE).exists():
                open_key_store(paths, create=False)  # raises KeyMissing
            # nothing was ever recorded: nothing to verify, so any key reads the empty ledger
            ledger = Ledger(ledger_file, os.urandom(32), readonly=True)
            return ConsentGate.from_settings(ledger, settings, policies=policies)
        keys = open_key_store(paths, create=False)
        if LEDGER_SECRET in keys.secret_names():
            key = keys.secret(LEDGER_SECRET)
        elif on_disk:
            raise KeyMissing("the consent ledger's key is missing from the key store")
        else:
            key = os.urandom(32)
        ledger = Ledger(ledger_file, key, anchor=_KeyStoreAnchor(keys), readonly=True)
        return ConsentGate.from_settings(ledger, settings, policies=policies)
    paths.ensure()
    # With a ledger or records on disk, a missing key store is an error (KeyMissing), never a
    # fresh key that would make the ledger look tampered with or the records foreign.
    create = not on_disk and not (paths.data_dir / DB_FILE).exists()
    keys = open_key_store(paths, create=create)
    ledger = Ledger(ledger_file, keys.secret(LEDGER_SECRET), anchor=_KeyStoreAnchor(keys))
    return ConsentGate.from_settings(ledger, settings, policies=policies)
