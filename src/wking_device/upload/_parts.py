"""A claimed batch on its way to the collector, held column by column.

This module owns :class:`_Parts`: the uploader's form of a claimed batch once encoded (record
ids, ``LogRecord`` bytes, and each record's consent key), with the slices the uploader takes of
it (the records a consent check keeps, the halves of a batch too large). It does not claim,
check consent or send (:mod:`._uploader`), or encode (:mod:`._otlp`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__: list[str] = []


@dataclass(slots=True)
class _Parts:
    """Claimed records on their way, column by column.

    ``ids`` and ``encoded`` (the ``LogRecord`` bytes) per record, and per record in ``kinds``
    the index of its consent key (scope, category, consent id) in ``keys``. No object per
    record that the garbage collector tracks: a batch lives from its claim to its delete (tens
    of milliseconds, several young collections), and 2,000 tuples per batch were traversed by
    each collection and promoted to the old generations, whose full collections then walked
    them again (with the store's tuple per claim, collections took ≈ 8 % of the uploader's CPU
    in a 200,000-record drain). Strings, bytes and small ints are not tracked.
    """

    ids: list[str]
    encoded: list[bytes]
    kinds: list[int]
    keys: list[tuple[str, str, str]]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indexes: Sequence[int]) -> _Parts:
        """The records at ``indexes``, in order."""
        ids, encoded, kinds = self.ids, self.encoded, self.kinds
        return _Parts(
            [ids[i] for i in indexes],
            [encoded[i] for i in indexes],
            [kinds[i] for i in indexes],
            self.keys,
        )

    def halves(self) -> list[_Parts]:
        """The first and the second half (for a 413)."""
        middle = len(self.ids) // 2
        return [
            _Parts(self.ids[:middle], self.encoded[:middle], self.kinds[:middle], self.keys),
            _Parts(self.ids[middle:], self.encoded[middle:], self.kinds[middle:], self.keys),
        ]
