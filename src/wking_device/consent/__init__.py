"""The consent gate, its permits, the hash-chained consent ledger and consent receipts.

Public names: :class:`ConsentGate` (the only issuer of :class:`Permit` objects),
:class:`Revocation`, :class:`CategoryState`, :class:`Ledger` / :class:`LedgerEntry`,
:func:`open_gate`, :func:`ledger_path` and :func:`build_receipts`. This package does not collect,
store or upload anything; collectors (:mod:`wking_device.collect`), the store and the uploader ask
it for permits and subscribe to revocations.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.consent._gate import (
    GRANT_METHODS,
    CategoryState,
    ConsentGate,
    ledger_path,
    open_gate,
)
from wking_device.consent._ledger import GENESIS, Ledger, LedgerAnchor, LedgerEntry
from wking_device.consent._permit import (
    REVOCATION_REASONS,
    Permit,
    Revocation,
    issued_by,
    permit_key,
)
from wking_device.consent._receipts import RECEIPT_SCHEMA, build_receipts

__all__ = [
    "GENESIS",
    "GRANT_METHODS",
    "RECEIPT_SCHEMA",
    "REVOCATION_REASONS",
    "CategoryState",
    "ConsentGate",
    "Ledger",
    "LedgerAnchor",
    "LedgerEntry",
    "Permit",
    "Revocation",
    "build_receipts",
    "issued_by",
    "ledger_path",
    "open_gate",
    "permit_key",
]

_publish(__name__, globals(), __all__)
