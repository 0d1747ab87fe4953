"""Configuration paths: where an installation keeps its files, and who else may read them.

This module owns path resolution (``WKING_HOME`` / ``--home`` or the platform's user directories
from ``platformdirs``), creating the two directories private to the user, and the check of the
directories' and private files' permissions. It does not create keys, databases or ledgers (the
layers that own those files create them under these paths), and it does not read settings:
that is :mod:`wking_device.config`, which re-exports every public name defined here.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from wking_device.errors import ConfigError, StorageError

# The public module's name, as before the split: warnings are filtered and tested by it.
_LOGGER = logging.getLogger("wking_device.config")


APP_NAME = "wking"


@dataclass(frozen=True, slots=True)
class Paths:
    """The directories of one installation.

    Attributes:
        home: The ``WKING_HOME`` directory, or ``None`` when platform directories are used.
        config_dir: Holds ``config.toml`` and device bindings.
        data_dir: Holds the consent ledger, the encrypted store and (lowest key-store level) keys.
    """

    home: Path | None
    config_dir: Path
    data_dir: Path

    @property
    def config_file(self) -> Path:
        """The TOML settings file."""
        return self.config_dir / "config.toml"

    def ensure(self) -> None:
        """Create the directories, private to the user (0700).

        Raises:
            StorageError: A directory cannot be created (a file in the way, no permission, a
                read-only file system).
        """
        directories: tuple[Path, ...] = (self.config_dir, self.data_dir)
        if self.home is not None:
            directories = (self.home, *directories)
        for directory in directories:
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                if directory is not self.home:
                    directory.chmod(0o700)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the directory {directory}: {exc.strerror or exc}",
                    remedy="choose another --home (or WKING_HOME), or fix that path",
                ) from exc


def resolve_paths(home: str | os.PathLike[str] | None = None) -> Paths:
    """Resolve the installation's directories.

    Args:
        home: An explicit home (``--home``); defaults to ``$WKING_HOME``, then platform dirs.

    Returns:
        The paths; nothing is created.

    Raises:
        ConfigError: The home cannot be resolved (``~user`` of an unknown user, a symlink loop),
            or is empty (``--home ""``, ``WKING_HOME=""``).
    """
    chosen = home if home is not None else os.environ.get("WKING_HOME")
    if chosen is not None and not os.fspath(chosen).strip():
        # `--home ""` or `WKING_HOME=` would otherwise mean the current directory (Path("")).
        raise ConfigError(
            "the home directory is empty",
            remedy="give --home (or WKING_HOME) a directory, or unset WKING_HOME",
        )
    if chosen is not None:
        try:
            root = Path(chosen).expanduser().resolve()
        except (RuntimeError, OSError) as exc:  # unknown ~user, symlink loop
            raise ConfigError(
                f"cannot use {os.fspath(chosen)!r} as the home directory: {exc}",
                remedy="give --home (or WKING_HOME) an existing or creatable directory",
            ) from exc
        return Paths(home=root, config_dir=root / "config", data_dir=root / "data")
    return Paths(
        home=None,
        config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
    )


# Files that hold secrets or personal data, relative to the data (d) or config (c) directory.
_PRIVATE_FILES = (
    ("d", "records.sqlite3"),
    ("d", "records.sqlite3-wal"),
    ("d", "records.sqlite3-shm"),
    ("d", "consent/ledger.jsonl"),
    ("d", "consent/ledger.jsonl.head"),
    ("d", "keys/keystore.json"),
    ("d", "keys/master.key"),
    ("d", "keys/master.key.sealed"),
    ("c", "devices.bin"),
)
_warned_permissions: set[str] = set()


def permission_problems(paths: Paths) -> list[str]:
    """List what others could read or change among an installation's directories and files.

    Directories (the home, the config and data directories, ``consent/``, ``keys/``) writable
    by group or others, and private files (records, ledger, key store, key file, bindings)
    readable or writable by group or others. Nothing is created or changed.

    Returns:
        One line per problem (empty when every existing path is private).
    """
    problems: list[str] = []
    directories = [paths.config_dir, paths.data_dir, paths.data_dir / "consent"]
    directories.append(paths.data_dir / "keys")
    if paths.home is not None:
        directories.insert(0, paths.home)
    for directory in directories:
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except OSError:
            continue
        if mode & 0o022:
            problems.append(f"{directory} is writable by others ({mode:04o}; chmod 700 it)")
    for base, name in _PRIVATE_FILES:
        file = (paths.data_dir if base == "d" else paths.config_dir) / name
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            problems.append(f"{file} is open to others ({mode:04o}; chmod 600 it)")
    return problems


def warn_loose_permissions(paths: Paths) -> list[str]:
    """Log each permission problem of :func:`permission_problems` once per process (WARNING).

    Refusals are elsewhere: a key file open to group or others is refused by the key store.

    Returns:
        The problems found.
    """
    problems = permission_problems(paths)
    for problem in problems:
        if problem not in _warned_permissions:
            _warned_permissions.add(problem)
            _LOGGER.warning("loose permissions: %s", problem)
    return problems
