"""The pseudonymous installation id sent as the ``wking.installation_id`` resource attribute.

It is 128 random bits (32 hex digits), derived from nothing about the user, the machine or the
speakers, kept in ``<data dir>/installation_id`` (mode 0600). A full local deletion removes the
file (:func:`forget_installation_id`), so the next upload starts a new, unlinkable id.

Reading never creates it: a read-only command (``status``, ``export``, ``doctor``) passes
``create=False`` and gets ``None`` when there is none yet. This module does not decide when to
rotate; the caller of a full deletion does.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Final

from wking_device._atomic import atomic_write, fsync_dir
from wking_device.errors import StorageError

__all__ = ["INSTALLATION_ID_FILE", "forget_installation_id", "installation_id"]

_LOGGER = logging.getLogger(__name__)

INSTALLATION_ID_FILE: Final = "installation_id"
_ID_RE: Final = re.compile(r"[0-9a-f]{32}")


def installation_id(data_dir: Path, *, create: bool) -> str | None:
    """Return this installation's id, creating it only when asked.

    Args:
        data_dir: The installation's data directory (``Paths.data_dir``).
        create: Create the id (and the directory, 0700) when there is none; ``False`` for
            read-only commands.

    Returns:
        The id (32 lowercase hex digits), or ``None`` when there is none and ``create`` is false.

    Raises:
        StorageError: The file exists but is malformed, or cannot be read or written.
    """
    path = data_dir / INSTALLATION_ID_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            return None
        return _create(data_dir, path)
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read the installation id {path}: {exc}") from exc
    if not _ID_RE.fullmatch(text):
        raise StorageError(
            f"the installation id file {path} is malformed",
            remedy="delete it; a new pseudonymous id is created on the next upload",
        )
    return text


def _create(data_dir: Path, path: Path) -> str:
    """Create the id file whole or not at all.

    The id is written to a temporary file first and linked into place: a crash or a full disk
    never leaves an empty or partial id file (which every later upload would refuse as malformed),
    and a link never replaces an id another process created meanwhile.
    """
    new_id = secrets.token_hex(16)
    try:
        atomic_write(path, f"{new_id}\n".encode("ascii"), exclusive=True)
    except FileExistsError:
        # another process created it between our read and our create: use theirs
        return installation_id(data_dir, create=False) or new_id
    except OSError as exc:
        raise StorageError(
            f"cannot create the installation id {path}: {exc.strerror or exc}"
        ) from exc
    _LOGGER.info("created a new pseudonymous installation id")
    return new_id


def forget_installation_id(data_dir: Path) -> bool:
    """Delete the installation id (part of a full local deletion): the next one is new.

    Args:
        data_dir: The installation's data directory.

    Returns:
        Whether there was an id to delete.

    Raises:
        StorageError: The file exists but cannot be removed, or its removal cannot be made
            durable (the directory cannot be synced).
    """
    try:
        (data_dir / INSTALLATION_ID_FILE).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot delete the installation id: {exc}") from exc
    try:
        # the unlink is durable only once the directory is: else a power loss brings it back
        fsync_dir(data_dir)
    except OSError as exc:
        raise StorageError(
            f"the installation id was deleted, but the deletion may not survive a power loss: "
            f"{exc.strerror or exc}"
        ) from exc
    return True
