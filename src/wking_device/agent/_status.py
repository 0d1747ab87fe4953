"""The agent's status file: written by a running agent, read by ``wking agent status``.

This module owns the file's name, its atomic private writing and its reading, and the answer to
"does an agent run for this home?". It owns no counters (the agent builds the status).

The file (``agent-status.json`` in the data directory, mode 0600) holds counts and timestamps
only — never an address or a speaker name (the agent redacts the messages of the last errors and
takes the names it saw out of them). It is replaced atomically (a temporary file in the same
directory, ``fsync``-free: it is rewritten every cycle and only informative) so a reader never
sees half of it.

Whether an agent runs is not read from the file: a killed agent leaves it behind. An agent runs
when the process named in it is alive **and** some process holds the store's writer lock
(:func:`wking_device.store.store_in_use`); otherwise the file tells when it was last seen.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from wking_device._atomic import atomic_write
from wking_device.config import Paths
from wking_device.errors import StorageError

__all__ = ["STATUS_FILE", "StatusWriter", "agent_status", "read_status"]

_LOGGER = logging.getLogger(__name__)

STATUS_FILE = "agent-status.json"
"""The status file's name in the data directory."""

_MAX_BYTES = 64 * 1024  # a status file larger than this is not ours


class StatusWriter:
    """Replaces the status file atomically, private to the user.

    Args:
        path: The status file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned = False

    def write(self, status: dict[str, Any]) -> None:
        """Write the status (blocking, small).

        Raises:
            OSError: The file cannot be written (see :meth:`failed`).
        """
        data = orjson.dumps(status, option=orjson.OPT_SORT_KEYS)
        # never seen half written; fsync-free: it is rewritten every cycle and only informative
        atomic_write(self.path, data, durable=False, parents=False)
        self._warned = False

    def failed(self, exc: OSError) -> None:
        """Warn once that the status cannot be written (until it can again)."""
        if not self._warned:
            self._warned = True
            _LOGGER.warning("the agent status cannot be written: %s", exc.strerror or exc)


def read_status(path: Path) -> dict[str, Any] | None:
    """Read a status file without writing anything; ``None`` when there is none.

    Raises:
        StorageError: It exists but is not a status file (unreadable, too large, not JSON).
    """
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        status = orjson.loads(data) if len(data) <= _MAX_BYTES else None
    except orjson.JSONDecodeError:
        status = None
    if not isinstance(status, dict):
        raise StorageError(
            f"{path} is not an agent status file",
            remedy="delete it; a running agent writes it again at its next cycle",
        )
    return status


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def agent_status(paths: Paths) -> dict[str, Any]:
    """What ``wking agent status`` reports for an installation (creates nothing).

    Returns:
        ``running`` (bool), ``status`` (the file's content or ``None``) and ``file``.
    """
    from wking_device.store import store_in_use  # noqa: PLC0415 - keeps this module light

    path = paths.data_dir / STATUS_FILE
    status = read_status(path)
    running = (
        status is not None
        and status.get("state") == "running"
        and _alive(status.get("pid"))
        and store_in_use(paths)
    )
    return {"running": running, "file": str(path), "status": status}
