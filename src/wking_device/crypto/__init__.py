"""Encryption and keys: the AEAD envelope, the key hierarchy, the key-store ladder, pseudonyms.

This package owns every cryptographic decision of ``wking_device``: AES-256-GCM records with
associated data and counter nonces, a master key (KEK) from the first available of a systemd
credential, a secure OS keyring or a 0600 key file, data keys per category and epoch wrapped under
it, crash-safe KEK rotation for crypto-shredding, named secrets (``ledger-hmac``) and keyed MAC
pseudonyms. It does not store records (:mod:`wking_device.store`) nor decide consent.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.crypto._backends import (
    CREDENTIAL_NAME,
    KekBackend,
    KeyFileBackend,
    KeyringBackend,
    SystemdCredentialBackend,
    secure_keyring,
)
from wking_device.crypto._envelope import (
    ENVELOPE_VERSION,
    LEGACY_ENVELOPE_VERSION,
    NONCE_BLOCK,
    RECORD_SCHEMA_VERSION,
    Sealer,
    associated_data,
)
from wking_device.crypto._keystore import (
    LEDGER_SECRET,
    DataKey,
    KeyStore,
    key_dir,
    open_key_store,
)
from wking_device.crypto._pseudonym import MacPseudonymizer, normalize_mac

__all__ = [
    "CREDENTIAL_NAME",
    "ENVELOPE_VERSION",
    "LEDGER_SECRET",
    "LEGACY_ENVELOPE_VERSION",
    "NONCE_BLOCK",
    "RECORD_SCHEMA_VERSION",
    "DataKey",
    "KekBackend",
    "KeyFileBackend",
    "KeyStore",
    "KeyringBackend",
    "MacPseudonymizer",
    "Sealer",
    "SystemdCredentialBackend",
    "associated_data",
    "key_dir",
    "normalize_mac",
    "open_key_store",
    "secure_keyring",
]

_publish(__name__, globals(), __all__)
