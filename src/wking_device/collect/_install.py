"""Opening an installation's consent gate with the ledger key from the key store.

This module owns the wiring the agent and the CLI share: paths + settings + the key store's
``ledger-hmac`` secret → a :class:`~wking_device.consent.ConsentGate`. It lives above
:mod:`wking_device.crypto` (the consent layer below it never imports crypto) and does nothing
else.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wking_device.consent import ConsentGate, ledger_path, open_gate
from wking_device.crypto import LEDGER_SECRET, open_key_store

if TYPE_CHECKING:
    from wking_device.config import Paths, Settings
    from wking_device.policy import PolicySet

__all__ = ["LEDGER_SECRET", "open_installation_gate"]

_LOGGER = logging.getLogger(__name__)


def open_installation_gate(
    paths: Paths, settings: Settings, *, policies: PolicySet | None = None
) -> ConsentGate:
    """Open the consent gate of an installation.

    The HMAC key comes from the installation's key store (created on first use), so it is kept
    apart from the ledger file.

    Args:
        paths: The installation's paths.
        settings: Its settings (Do Not Track, minor, region).
        policies: The policy documents (default: shipped).

    Returns:
        The gate; closed (every category denied, ``tampered`` set) when the ledger fails
        verification.

    Raises:
        KeyStoreError: The key store cannot be opened (``KeyMissing`` — also when a ledger or a
            record database exists but the key store is gone —, ``WrongKey``).
    """
    from wking_device.store import DB_FILE  # noqa: PLC0415 - the store is not needed otherwise

    paths.ensure()
    # With a ledger or records on disk, a missing key store is an error (KeyMissing), never a
    # fresh key that would make the ledger look tampered with or the records foreign.
    create = not ledger_path(paths).exists() and not (paths.data_dir / DB_FILE).exists()
    key = open_key_store(paths, create=create).secret(LEDGER_SECRET)
    return open_gate(paths, settings, key=key, policies=policies)
