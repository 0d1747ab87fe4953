"""Consent receipts: the ledger exported in a shape modelled on ISO/IEC TS 27560 and Kantara.

The shape follows ISO/IEC TS 27560 (consent records) and the Kantara Initiative Consent Receipt
Specification v1.1.

This module owns the receipt document's shape. It reads a gate's verified history and states; it
does not write files (the CLI does) and it does not sign receipts — each receipt names the ledger
entry (id and hash) it comes from, and the ledger's HMAC chain is what makes them checkable.

One receipt per grant event (Kantara: one receipt per consent transaction), with the TS 27560
record fields added: the current ``status`` of each category it covers and the ``event_history``
of later withdrawals, suspensions and re-grants concerning it.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from wking_device.consent._gate import ConsentGate
from wking_device.consent._ledger import LedgerEntry
from wking_device.policy import CATALOG

__all__ = ["RECEIPT_SCHEMA", "build_receipts"]

_LOGGER = logging.getLogger(__name__)

RECEIPT_SCHEMA = "wking-consent-receipts/1"
"""The version of this export's shape."""

_KANTARA_VERSION = "KI-CR-v1.1.0"

_COLLECTION_METHOD = {
    "api": "a program using the wking_device library, stating that the user agreed",
    "cli-prompt": "interactive confirmation in the wking command",
    "cli-yes": "explicitly named categories with --yes in the wking command",
    "demo": "the wking demo command, in its own temporary home, for simulated speakers only",
    "guardian": "a parent or guardian confirmed for a minor's profile",
}


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def _status(gate: ConsentGate, entry: LedgerEntry, category: str) -> str:
    state = gate.state(category)
    if state.consent_id != entry.id:
        return "superseded" if state.consent_id else "withdrawn"
    return {"granted": "active", "suspended": "suspended"}.get(state.state, "denied")


def build_receipts(gate: ConsentGate, *, now: float | None = None) -> dict[str, Any]:
    """Build the receipts document for every grant in the gate's ledger.

    Args:
        gate: An open gate (its ledger verified).
        now: The export time (seconds since the epoch), injectable for tests.

    Returns:
        A JSON-ready dict: ``schema``, ``generated_at``, ``ledger`` (entries, head hash) and
        ``receipts``.

    Raises:
        LedgerTampered: The ledger failed verification; receipts from it would prove nothing.
    """
    gate.refresh()
    if gate.tampered is not None:
        raise gate.tampered
    history = gate.history()
    principal = f"installation:{history[0].id}" if history else None
    receipts: list[dict[str, Any]] = []
    for entry in history:
        if entry.event != "grant":
            continue
        categories = [c for c in entry.categories if c in CATALOG]
        later = [
            e.to_dict()
            for e in history[entry.seq + 1 :]
            if set(e.categories) & set(categories) or e.event in {"dnt_on", "dnt_off"}
        ]
        receipts.append(
            {
                # Kantara Consent Receipt v1.1 fields
                "version": _KANTARA_VERSION,
                "jurisdiction": entry.region,
                "consentTimestamp": _epoch(entry.time),
                "collectionMethod": _COLLECTION_METHOD.get(entry.method, entry.method),
                "consentReceiptID": entry.id,
                "language": "en",
                "piiPrincipalId": principal,
                "piiControllers": [
                    {
                        "piiController": "the operator of the collector this installation "
                        "uploads to",
                        "onBehalf": False,
                    }
                ],
                "policyUrl": f"wking-device:policy/{entry.policy_version}",
                "services": [
                    {
                        "service": "wking_device Bluetooth operation log collection",
                        "purposes": [
                            {
                                "purpose": CATALOG[c].purpose,
                                "purposeCategory": [c],
                                "consentType": "EXPLICIT",
                                "piiCategory": [CATALOG[c].title],
                                "primaryPurpose": True,
                                "termination": (
                                    f"until withdrawn; records kept at most "
                                    f"{CATALOG[c].retention_days} days"
                                ),
                                "thirdPartyDisclosure": False,
                            }
                            for c in categories
                        ],
                    }
                ],
                "sensitive": any(CATALOG[c].sensitive for c in categories),
                "spiCat": [c for c in categories if CATALOG[c].sensitive],
                # ISO/IEC TS 27560 consent record fields
                "notice": {
                    "policy_version": entry.policy_version,
                    "policy_digest": entry.policy_digest,
                },
                "method": entry.method,
                "status": {c: _status(gate, entry, c) for c in categories},
                "event_history": later,
                "ledger_entry": {"seq": entry.seq, "hash": entry.hash},
            }
        )
    generated = time.time() if now is None else now
    return {
        "schema": RECEIPT_SCHEMA,
        "modelled_on": ["ISO/IEC TS 27560:2023", "Kantara Consent Receipt v1.1"],
        "generated_at": datetime.fromtimestamp(generated, UTC).isoformat(),
        "policy_version": gate.policy.version,
        "do_not_track": gate.do_not_track,
        "ledger": {
            "entries": len(history),
            "head": history[-1].hash if history else None,
            "verified": True,
        },
        "receipts": receipts,
    }
