"""The scrub every record plaintext passes through right before it is sealed.

This module owns :func:`scrub_plaintext`. It runs where records are sealed — the record
store's writer thread and its writer process (:mod:`wking_device._store_child`), and
:func:`wking_device.store._schema.encode_body` for re-sealed rows — so the scrub and the seal
are one step, whichever writer takes a batch. The event loop only serialises an appended
record: the MAC pre-check cost it 2-2.7 µs of ≈ 15 per record at 1,000 producers
(benchmarks/ingest.py, in-process A/B), and a writer process has a core of its own.

It does not serialise records (:mod:`wking_device.store._schema` does), seal them or choose
their keys; the definition of "MAC-shaped" is :mod:`wking_device._redact`'s.
"""

from __future__ import annotations

import logging
from typing import Final

import orjson

from wking_device._redact import mac_hint, redact_macs
from wking_device.models import MAC_FIELDS

__all__ = ["scrub_plaintext"]

_LOGGER = logging.getLogger(__name__)

_MAC_CATEGORY: Final = "mac_addresses"
_KEEP: Final = frozenset(MAC_FIELDS)
_BODY: Final = b',"b":'
_HEADS: dict[bytes, bool] = {}
"""Whether a plaintext's head (``{"c":…,"p":…``, one per grant) needs the exact check."""
_HEADS_KEPT: Final = 64


def _needs_scrub(plaintext: bytes) -> bool:
    """Whether ``plaintext`` may hold something MAC-shaped (:func:`~wking_device._redact.mac_hint`).

    The head, the same for every record of a grant, is checked once (its consent id, a UUID,
    and its policy version, a date, take the pre-check's slower paths every time); the rest
    per record. Cut at the first ``,"b":``, which no MAC form and no JSON string holds (a
    quote inside a string is escaped), so no MAC-shaped text spans the cut.
    """
    cut = plaintext.find(_BODY)
    if cut < 0:
        return mac_hint(plaintext)
    head = plaintext[:cut]
    verdict = _HEADS.get(head)
    if verdict is None:
        verdict = mac_hint(head)
        if len(_HEADS) >= _HEADS_KEPT:
            _HEADS.clear()
        _HEADS[head] = verdict
    return verdict or mac_hint(plaintext[cut:])


def scrub_plaintext(plaintext: bytes, category: str) -> bytes:
    """Return a record's plaintext as it may be sealed: MAC-shaped text redacted.

    Unless ``category`` is ``mac_addresses``, MAC-shaped text
    (:data:`~wking_device._redact.MAC_RE`, every common notation) in any string — nested
    values, dict keys, the consent id and the policy version — becomes ``[MAC]``. Only the MAC
    fields themselves (:data:`~wking_device.models.MAC_FIELDS`, present only under a
    ``mac_addresses`` permit, whose records are sealed under that category's key) are kept.
    Strings from a speaker, an exception or a caller are untrusted; a MAC in them must never
    be kept where withdrawing ``mac_addresses`` would not shred it.

    Cost: one :func:`~wking_device._redact.mac_hint` pass over the text (~2 µs for 300
    bytes); only a plaintext that holds something MAC-shaped (or a JSON escape) is read back,
    walked and serialised again. Scrubbing twice gives the same bytes as once.

    Args:
        plaintext: ``{"c": <consent id>, "p": <policy version>, "b": <body>}`` as JSON
            (:func:`wking_device.store._schema.serialize_body`).
        category: The record's category.

    Returns:
        The plaintext to seal.
    """
    if category == _MAC_CATEGORY or not _needs_scrub(plaintext):
        return plaintext
    # what was written, read back: plain JSON values only, so every string orjson wrote on its
    # own (a dataclass's fields, an enum's value) is redacted too, not only the caller's str
    written = orjson.loads(plaintext)
    return orjson.dumps(
        {
            "c": redact_macs(written["c"]),
            "p": redact_macs(written["p"]),
            "b": redact_macs(written["b"], keep=_KEEP),
        }
    )
