"""Replacing a small file whole or not at all: the one checked atomic write of the package.

This module owns the temporary-file, write-everything, fsync, rename, fsync-the-directory dance
that the key store, the consent ledger's head, the bindings, the config file, the installation id
and the agent's status file use. It raises :class:`OSError` only: each caller translates it into
its own error (``StorageError``, ``KeyStoreError``…), where it knows what the file is for. It does
not append (the ledger's entries are appended and a short append is taken back there).

``os.write`` on a filling disk (or past a file-size limit) writes part of what it is asked and
returns without an error; a write that is not repeated renames a truncated file over a good one.
Here every write is repeated until all is written or one fails, and the temporary file is removed
on any failure, so the target keeps its old content.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["atomic_write", "fsync_dir", "write_all"]


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, repeating short writes.

    Raises:
        OSError: A write failed (``ENOSPC`` when one wrote nothing without an error).
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """Make a rename, a link or an unlink in ``directory`` durable.

    Raises:
        OSError: The directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    durable: bool = True,
    parents: bool = True,
    exclusive: bool = False,
) -> None:
    """Replace ``path`` with ``data`` whole, or leave it as it was.

    A temporary file beside it (``.<name>.<pid>.tmp``, created with ``O_EXCL``, so never through
    a link) receives every byte, is fsync'd and renamed over ``path``; then the directory is
    fsync'd. The temporary file is removed on any failure.

    Args:
        path: The file to replace.
        data: Its new content.
        mode: Permission bits of the new file.
        durable: fsync the file and its directory (``False`` for a file rewritten often that is
            only informative: it is still never seen half written).
        parents: Create a missing directory (and its parents), 0700.
        exclusive: Never replace: link the file into place, and raise ``FileExistsError`` when
            ``path`` exists (a file system without hard links replaces instead).

    Raises:
        OSError: The file could not be written; ``path`` is unchanged.
    """
    if parents:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # exactly these bits, whatever the umask
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            _link(tmp, path)
        else:
            tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def _link(tmp: Path, path: Path) -> None:
    """Link ``tmp`` to ``path`` (never replacing it), then remove ``tmp``."""
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno not in {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP}:
            raise
        tmp.replace(path)  # a file system without hard links (vfat): replace, still whole
        return
    with contextlib.suppress(OSError):
        tmp.unlink()
