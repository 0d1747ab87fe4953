"""Helper: keep a store's writer thread busy, so that what is queued after waits behind it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from wking_device.store._batches import _Call

if TYPE_CHECKING:
    from wking_device.store import RecordStore


def hold_writer(store: RecordStore) -> threading.Event:
    """Queue a call that waits (up to 30 s) for the returned event: set it to let the writer go.

    Returns once the writer is inside the call: whatever is queued from then on waits behind it.
    """
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    store._enqueue(_Call(hold))
    assert started.wait(30), "the writer did not start the queued call"
    return release
