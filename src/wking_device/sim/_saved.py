"""What ``wking --simulate N`` keeps of its simulated speakers between processes.

Each ``wking`` command builds a fresh simulated world, so without this file ``wking --simulate 3
control … volume 40`` would be forgotten by the next ``wking --simulate 3 info …`` (issue 7, item
20). This module owns the small JSON file that carries each fleet speaker's volume, EQ preset and
light mode from one process to the next, keyed by the speaker's fleet index (``"2"``), never by
its address: the project keeps no MAC address in plain text on disk, even a simulated one.

It reads and writes that file only; building the world from it is the CLI's job
(:mod:`wking_device.cli._ble`). It imports nothing of bumble. Power and battery are not kept: a
speaker switched off in one process is switched on again in the next (nothing else could switch
it on), and nothing in the CLI changes a simulated battery.

The file is untrusted input: anything but a small regular file holding exactly the expected
shape is ignored as a whole, with one line saying why (the reason never quotes the file's
content), and the speakers start from their fleet defaults.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from wking_device.protocol import EqPreset, LightMode

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["STATE_FILE", "SavedFleet", "SavedSpeaker", "changes"]

_E = TypeVar("_E", EqPreset, LightMode)

#: The file's name in the installation's data directory.
STATE_FILE = "sim-state.json"
_VERSION = 1
_MAX_BYTES = 1 << 20  # a fleet of 1,000 speakers needs about 60 KB
_MAX_INDEX = 0xFFFFFF  # the fleet's address scheme (sim._spec.speaker_address)


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedSpeaker:
    """The kept state of one fleet speaker.

    Attributes:
        volume: 0-100.
        eq: The EQ preset.
        light: The light mode.
    """

    volume: int
    eq: EqPreset
    light: LightMode

    def to_json(self) -> dict[str, Any]:
        """The file's form: enum members by lower-case name."""
        return {"volume": self.volume, "eq": self.eq.name.lower(), "light": self.light.name.lower()}

    def overrides(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`SpeakerSpec.for_index <wking_device.sim.SpeakerSpec>`."""
        return {"volume": self.volume, "eq": self.eq, "light": self.light}


class _Invalid(Exception):
    """The file is not what this module writes (the message says why, without its content)."""


class SavedFleet:
    """The simulated fleet's kept state in one installation (``<data dir>/sim-state.json``).

    Args:
        path: The file. Nothing is created until :meth:`save` has something to keep.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[dict[int, SavedSpeaker], str | None]:
        """Read the kept state.

        Returns:
            The speakers by fleet index (1-based), and ``None`` — or nothing and the reason the
            file was ignored (it is not a small regular file, not JSON, or not of the expected
            shape). A missing file is not a problem.
        """
        try:
            raw = self._read()
        except FileNotFoundError:
            return {}, None
        except _Invalid as exc:
            return {}, str(exc)
        except OSError as exc:
            return {}, f"cannot read it: {exc.strerror or type(exc).__name__}"
        try:
            return _parse(raw), None
        except _Invalid as exc:
            return {}, str(exc)

    def save(self, changed: Mapping[int, SavedSpeaker]) -> None:
        """Keep the state of the speakers that changed; the others' entries are left as they are.

        The file is re-read first (another process may have changed other speakers meanwhile;
        the last change of one speaker wins) and replaced atomically, private to the user. A
        damaged file is replaced by one holding only ``changed``.

        Args:
            changed: The speakers whose state this process changed, by fleet index.

        Raises:
            OSError: The file or its directory cannot be written.
        """
        if not changed:
            return
        kept, _problem = self.load()
        kept.update(changed)
        document = {
            "version": _VERSION,
            "speakers": {str(index): kept[index].to_json() for index in sorted(kept)},
        }
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
        directory = self.path.parent
        # mkstemp creates the file 0600; os.replace swaps a symlink or anything else in the
        # way for the new file instead of writing through it.
        fd, temporary = tempfile.mkstemp(prefix=f".{STATE_FILE}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            Path(temporary).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise

    def _read(self) -> bytes:
        # O_NONBLOCK: a FIFO put in the file's place must not hang the command; O_NOFOLLOW: the
        # file is ours, a symlink in its place is not.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Invalid("it is a symbolic link") from exc
            raise
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _Invalid("it is not a regular file")
            if info.st_size > _MAX_BYTES:
                raise _Invalid(f"it is larger than {_MAX_BYTES} bytes")
            return file.read(_MAX_BYTES + 1)


def _parse(raw: bytes) -> dict[int, SavedSpeaker]:
    if len(raw) > _MAX_BYTES:
        raise _Invalid(f"it is larger than {_MAX_BYTES} bytes")
    try:
        document = orjson.loads(raw)  # rejects invalid UTF-8 and nesting deeper than 1024
    except orjson.JSONDecodeError as exc:
        raise _Invalid("it is not valid JSON") from exc
    if not isinstance(document, dict) or set(document) != {"version", "speakers"}:
        raise _Invalid("it is not a simulated-state file")
    if document["version"] != _VERSION or isinstance(document["version"], bool):
        raise _Invalid("it has an unknown version")
    speakers = document["speakers"]
    if not isinstance(speakers, dict):
        raise _Invalid("'speakers' is not an object")
    return {_index(key): _speaker(key, value) for key, value in speakers.items()}


def _index(key: str) -> int:
    if not (key.isascii() and key.isdigit() and 1 <= int(key) <= _MAX_INDEX):
        raise _Invalid("a speaker index is not a number from 1 to 16777215")
    return int(key)


def _speaker(key: str, value: object) -> SavedSpeaker:
    index = _index(key)
    if not isinstance(value, dict) or set(value) != {"volume", "eq", "light"}:
        raise _Invalid(f"speaker {index}: expected volume, eq and light")
    volume = value["volume"]
    if type(volume) is not int or not 0 <= volume <= 100:
        raise _Invalid(f"speaker {index}: volume is not a whole number from 0 to 100")
    return SavedSpeaker(
        volume=volume,
        eq=_member(EqPreset, value["eq"], index, "eq"),
        light=_member(LightMode, value["light"], index, "light"),
    )


def _member(enum_cls: type[_E], value: object, index: int, what: str) -> _E:
    names = {member.name.lower(): member for member in enum_cls}
    if not isinstance(value, str) or value not in names:
        raise _Invalid(f"speaker {index}: {what} is not one of {', '.join(names)}")
    return names[value]


def changes(
    before: Mapping[int, SavedSpeaker], now: Iterable[tuple[int, SavedSpeaker]]
) -> dict[int, SavedSpeaker]:
    """The speakers whose state differs from what they started with.

    Args:
        before: The state each speaker started with, by fleet index.
        now: ``(index, state)`` of every speaker at the end of the command.
    """
    return {index: state for index, state in now if before.get(index) != state}
