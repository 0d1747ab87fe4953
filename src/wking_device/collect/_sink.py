"""Where collectors put their records: the :class:`RecordSink` protocol and an in-memory sink.

This module owns the contract between collectors and whatever keeps records (the encrypted store
implements :class:`RecordSink`; :class:`MemorySink` serves tests and examples). It does not
encrypt or persist anything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from wking_device._redact import MAC_RE
from wking_device.consent import Permit
from wking_device.models import MAC_FIELDS, Record

__all__ = ["MAC_FIELDS", "MAC_PATTERN", "MemorySink", "RecordSink", "check_records"]

_LOGGER = logging.getLogger(__name__)

MAC_PATTERN: re.Pattern[str] = MAC_RE
"""A Bluetooth/Ethernet MAC address in text, in any common notation (``AA:BB:…``, ``aa-bb-…``,
BlueZ's ``dev_AA_BB_…``, ``aabb.ccdd.eeff``, bare hex): the log filter's pattern."""


@runtime_checkable
class RecordSink(Protocol):
    """Something that accepts records under a permit (the store implements it).

    ``append`` must refuse (:class:`~wking_device.errors.PermitRevoked` /
    :class:`~wking_device.errors.ConsentRequired`) any record whose category the permit does not
    cover, or any record at all once the permit is revoked, and must return only once the records
    are kept.
    """

    async def append(self, records: Sequence[Record], permit: Permit) -> None:
        """Keep the records, collected under ``permit``."""


def check_records(records: Sequence[Record], permit: Permit) -> None:
    """Check a batch against its permit, as every sink must before keeping it.

    Args:
        records: The batch.
        permit: The permit it was collected under.

    Raises:
        PermitRevoked: The permit was revoked.
        ConsentRequired: A record's category (or ``mac_addresses``, for a record holding a MAC
            field) is not covered.
    """
    for record in records:
        permit.require(record.category)
        if any(name in record.body for name in MAC_FIELDS):
            permit.require("mac_addresses")


class MemorySink:
    """A :class:`RecordSink` that keeps records in a list (tests, examples, dry runs).

    Attributes:
        records: Everything accepted, in order.
        refused: How many records were refused.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.refused = 0

    async def append(self, records: Sequence[Record], permit: Permit) -> None:
        """Keep the batch, all or nothing, if the permit allows every record in it.

        Raises:
            PermitRevoked: The permit was revoked.
            ConsentRequired: A record is not covered by the permit.
        """
        try:
            check_records(records, permit)
        except Exception:
            self.refused += len(records)
            raise
        self.records.extend(records)
