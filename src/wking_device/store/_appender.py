"""The parent's side of the store's writer process: spawn, send, acknowledge, stop.

This module owns :class:`_Appender`, through which a :class:`~wking_device.store.RecordStore`
opened with ``writer_process=True`` has the appends of one event loop sealed and committed by
a child process (:mod:`wking_device._store_child`) instead of its writer thread. A process has
its own GIL: while it seals and commits one batch the event loop fills the next, which a thread
of the same process cannot do (both need the GIL for most of their work, so their phases run
one after the other; see docs/performance.md).

The appender is driven from that event loop (sending batches, reading acknowledgements with
``add_reader``, so no thread hand-off per commit) and from the writer thread (pausing the child
while keys are destroyed). Every batch sent stays held until the child acknowledges its commit;
when the child ends without acknowledging (killed, crashed, refused something), the held
batches go to the writer thread, once the child is dead, each marked with its child and number:
there the batches the child noted as committed (``COMMITS_ROW``, in the same transaction) are
settled as if acknowledged (a group whose permit was revoked meanwhile has the rows that commit
added deleted, then fails), and the others are checked again and written: nothing
acknowledged is lost, nothing is acknowledged twice and nothing refused is kept.

It does not check permits or records, choose keys or decide what the child may receive (the
store does); nor does it read or delete rows.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import pickle
import secrets
import subprocess
import sys
import termios
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

from wking_device._store_child import ACK, BATCH_NO, FRAME, READY
from wking_device.errors import ConsentError
from wking_device.store._batches import _Call, _settle_groups

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from wking_device.store._batches import _Batch, _Group

_LOGGER = logging.getLogger(__name__)

_MAX_FAILURES: Final = 3
"""Child processes that may end on their own before appends stay on the writer thread."""
_PIPE_SIZE: Final = 1 << 20
"""Bytes the pipe to the child may hold (Linux ``F_SETPIPE_SZ``; the default 64 KiB holds about
150 records). A batch that does not fit in what is free goes to the writer thread."""
_PIPE_FALLBACK: Final = 4096
"""The pipe's size where it cannot be read (POSIX promises at least this much)."""
_F_SETPIPE_SZ: Final = 1031
_STOP_WAIT: Final = 30.0
"""Seconds a stopping child may take to commit what it was sent before it is killed."""


class _Appender:
    """One child process at a time, serving appends of one event loop.

    Args:
        database: The store's database file.
        requeue: Puts a batch the child did not acknowledge (or a call) on the writer
            thread's queue (called with the appender's lock held; must not block).
        committed: Called on the event loop for each acknowledged commit with
            ``(last row number, rows offered, rows inserted, bytes added or -1)``, before
            the callers' futures are settled.
        revoked: Called with ``(batch, group, error)`` for an acknowledged permit group whose
            permit was revoked by then (it may have been before the commit): the store deletes
            the rows the commit added for it, then fails its callers with the permit's error,
            as the writer thread would have (must not block).
    """

    def __init__(
        self,
        database: Path,
        *,
        requeue: Callable[[_Batch | _Call], None],
        committed: Callable[[int, int, int, int], None],
        revoked: Callable[[_Batch, _Group, ConsentError], None],
    ) -> None:
        self._database = database
        _LIVE.add(self)
        self._requeue = requeue
        self._committed = committed
        self._revoked = revoked
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._token = ""
        """The running child's token: the commits it notes are told from another child's."""
        self._fds = (-1, -1)
        """The child's pipes (to it, from it), kept after they are closed, to stop watching."""
        self._watched = -1
        """The pipe from a child the loop watches (-1: none)."""
        self._ready = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: dict[int, _Batch] = {}
        self._next = 0
        self._sent_keys: set[int] = set()
        self._pipe_size = _PIPE_FALLBACK
        self._acks = bytearray()  # a partial acknowledgement
        self._paused = 0
        self._held_off = 0
        """Holds (:meth:`hold`): a child starts and gets ready meanwhile, but takes nothing."""
        self._failures = 0
        self._disabled = False
        self._closed = False
        self.held_bytes = 0
        """Bytes of the held batches, as the size cap counts them (estimated before sealing)."""
        self.spawned = 0
        """Child processes started so far."""
        self.acknowledged = 0
        """Batches the child processes committed and acknowledged so far."""

    # -- state --------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running child's process id (None when there is none)."""
        proc = self._proc
        return None if proc is None else proc.pid

    @property
    def ready(self) -> bool:
        """Whether a child is running and said it is ready for batches."""
        return self._proc is not None and self._ready

    def usable(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a batch of ``loop`` may go to the child (else: the writer thread)."""
        return (
            not self._disabled
            and not self._closed
            and not self._paused
            and (self._loop is None or self._loop is loop)
        )

    def start(self) -> None:
        """Start a child now (when the store opens), so it is ready by the first batches."""
        with self._lock:
            if self._proc is None and not self._disabled and not self._closed:
                self._spawn()

    def hold(self) -> None:
        """Send nothing to a child until :meth:`resume` (the work queued at the open first)."""
        with self._lock:
            self._held_off += 1

    def resume(self) -> None:
        """End a :meth:`hold` (on the writer thread, once the work queued before it ran)."""
        with self._lock:
            self._held_off -= 1

    def prepare(self, loop: asyncio.AbstractEventLoop) -> bool:
        """On ``loop``, before a batch is built: whether the child will take it now.

        Binds the appender to the first loop that asks, watches a child's output there, and
        starts a child when none runs. A child that has not said it is ready yet (an
        interpreter starting, about 0.1-0.3 s) takes nothing: batches go to the writer thread
        meanwhile rather than wait for it.
        """
        with self._lock:
            if not self.usable(loop):
                return False
            if self._proc is None and not self._spawn():
                return False
            if self._loop is None:
                self._loop = loop
            if self._watched != self._fds[1]:
                loop.add_reader(self._fds[1], self._on_readable)
                self._watched = self._fds[1]
            return self._ready and not self._held_off

    # -- the event loop's side ----------------------------------------------------------------

    def send(
        self,
        batch: _Batch,
        *,
        rows: list[tuple[Any, ...]],
        key_ids: set[int],
        live_key: Callable[[int], bytes | None],
        size: int,
    ) -> bool:
        """Send a checked batch (on its loop); False when it must go to the writer thread.

        Args:
            batch: The batch; held until the child acknowledges it.
            rows: Its rows: ``(record_id, category, key_id, created_at, expires_at, plaintext)``.
            key_ids: The data keys its rows are to be sealed with.
            live_key: A data key's 32 bytes, or None once it was destroyed. Asked for every key
                of the batch while no pause can begin (:meth:`paused`): a key destroyed later
                is destroyed only after this child is stopped.
            size: The batch's bytes as the size cap counts them.
        """
        loop = batch.loop
        with self._lock:
            if (
                not self.usable(loop)
                or not self.ready
                or self._held_off
                or self._watched != self._fds[1]
            ):
                return False
            given: list[tuple[int, bytes]] = []
            for key_id in key_ids:
                key = live_key(key_id)
                if key is None:
                    return False  # destroyed: the writer thread seals with the key in force
                if key_id not in self._sent_keys:
                    given.append((key_id, key))
            messages: list[bytes] = []
            if given:
                messages.append(pickle.dumps(("keys", given), protocol=5))
            number = self._next
            self._next += 1
            # the lowest number held (sent in order, acknowledged in order): the child drops
            # its notes of the commits before it, acknowledged and read
            unread = next(iter(self._held), number)
            messages.append(pickle.dumps(("batch", number, rows, unread), protocol=5))
            data = b"".join(FRAME.pack(len(m)) + m for m in messages)
            if not self._write(data):
                return False
            self._sent_keys.update(key_id for key_id, _ in given)
            self._held[number] = batch
            self.held_bytes += size
            batch.size = size
            return True

    def _spawn(self) -> bool:
        """Start a child (lock held); False (and disabled) if it cannot start."""
        token = secrets.token_hex(8)
        try:
            proc = subprocess.Popen(  # noqa: S603 - our interpreter, our module, no shell
                # -P: the working directory is not put on the child's import path (a module
                # planted there must not run with the store's keys); and a parent that ignores
                # PYTHONPATH (-E, -I) or the user's site-packages (-s) has a child that does too
                [
                    sys.executable,
                    *_isolation_flags(),
                    "-m",
                    "wking_device._store_child",
                    str(self._database),
                    token,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                bufsize=0,
                # its own process group: a Ctrl-C in the terminal is for the parent, which
                # ends the child by closing its pipe (the child also ignores SIGINT and SIGTERM)
                process_group=0,
            )
        except OSError as exc:
            self._disabled = True
            _LOGGER.warning(
                "the store's writer process cannot start (%s); appends use the writer thread",
                exc.strerror or type(exc).__name__,
            )
            return False
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:  # Linux: room for about 2,500 records; elsewhere the system's size (at least 4 KiB)
            self._pipe_size = fcntl.fcntl(proc.stdin.fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)
        except (OSError, AttributeError):
            self._pipe_size = _PIPE_FALLBACK
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc = proc
        self._token = token
        self._fds = (proc.stdin.fileno(), proc.stdout.fileno())
        self._ready = False
        self._sent_keys = set()
        self._acks = bytearray()
        self.spawned += 1
        return True

    def _write(self, data: bytes) -> bool:
        """Write a whole message to the child if the pipe has room for it now (lock held).

        False when it has not (the child is far behind, or gone): the batch goes to the writer
        thread instead of waiting in this process. Nothing is ever left half written (the loop
        watches no pipe for writing: a pipe closed under such a watch could leave it on another
        file that takes the same number).
        """
        fd = self._fds[0]
        try:
            queued = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, queued)
            if self._pipe_size - queued[0] < len(data):
                return False
            written = os.write(fd, data)
        except OSError:  # gone (its end shows on the acknowledgement pipe), or full after all
            return False
        if written < len(data):  # not expected (nothing else writes to the pipe): no half frame
            _LOGGER.error("the store's writer process took part of a message; stopping it")
            self._kill()
        return True

    def _kill(self) -> None:
        """Kill the child (lock held): what it holds is handed back when its end is seen."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()

    def _on_readable(self) -> None:
        """Acknowledgements (or the child's end) on the loop: settle or hand back the batches."""
        settled: list[_Batch] = []
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdout is None:
                return
            try:
                data = os.read(self._fds[1], 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                settled, malformed = self._consume(data)
                if malformed:
                    # not an acknowledgement of batches it holds (a bug): stop it; what it
                    # holds is written again by the writer thread
                    _LOGGER.error("the store's writer process sent a malformed acknowledgement")
                    proc.kill()
                    self._ended()
            else:
                self._ended()
        if settled:
            _settle_groups(self._outcomes(settled))

    def _outcomes(
        self, settled: list[_Batch]
    ) -> list[tuple[list[asyncio.Future[None]], BaseException | None]]:
        """Acknowledged batches' outcomes: a group whose permit is revoked by now fails.

        The writer thread checks permits right before it writes; the loop checked them before
        the batch was sent, and the batch may have waited in the pipe since. A group whose
        permit was revoked meanwhile is left to the store's ``revoked``: deleted, then failed.
        """
        outcomes: list[tuple[list[asyncio.Future[None]], BaseException | None]] = []
        for batch in settled:
            for group in batch.groups.values():
                try:
                    for category in group.needed:
                        group.permit.require(category)
                except ConsentError as exc:
                    self._revoked(batch, group, exc)
                    continue
                outcomes.append((group.futures, None))
        return outcomes

    def _consume(self, data: bytes) -> tuple[list[_Batch], bool]:
        """The child's output: its ready mark first, then acknowledgements (lock held)."""
        if not self._ready:
            if data[:1] != READY:
                return [], True
            self._ready = True
            data = data[1:]
        return self._take_acks(data)

    def _take_acks(self, data: bytes) -> tuple[list[_Batch], bool]:
        """Batches the complete acknowledgements in ``data`` confirm; whether one is malformed.

        Called with the lock held. A malformed acknowledgement (naming a batch the child does
        not hold, or one batch twice) ends the parsing; the batches confirmed before it are
        returned.
        """
        acks = self._acks
        acks += data
        settled: list[_Batch] = []
        start = 0
        while len(acks) - start >= ACK.size:
            count, last, offered, inserted, size = ACK.unpack_from(acks, start)
            if not 0 < count <= len(self._held):
                return settled, True
            end = start + ACK.size + count * BATCH_NO.size
            if end > len(acks):
                break
            numbers = [number for (number,) in BATCH_NO.iter_unpack(acks[start + ACK.size : end])]
            if len(set(numbers)) != count or not all(number in self._held for number in numbers):
                return settled, True  # a batch it does not hold, or one named twice
            self._committed(last, offered, inserted, size)
            for number in numbers:
                batch = self._held.pop(number)
                # one transaction: the rows it inserted are numbered one after the other
                batch.after, batch.upto = last - inserted, last
                self.held_bytes -= batch.size
                settled.append(batch)
                self.acknowledged += 1
            start = end
        del acks[:start]
        return settled, False

    def _ended(self) -> None:
        """The child closed its output: hand the held batches to the writer thread (lock held)."""
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        if self._loop is not None and self._watched == self._fds[1]:
            _unwatch(self._loop, self._fds)
        self._watched = -1
        self._proc = None
        _close_pipes(proc)
        try:
            status = proc.wait(timeout=1.0)  # it closed its output: it is ending
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        # only now: a child still alive could commit a batch the writer thread finds uncommitted
        held = self._hand_back()
        if self._paused or self._closed:
            return  # ended on purpose
        self._failures += 1
        if self._failures >= _MAX_FAILURES:
            self._disabled = True
            _LOGGER.warning(
                "the store's writer process ended %d times (last exit status %s); appends use "
                "the writer thread",
                self._failures,
                status,
            )
        else:
            _LOGGER.info(
                "the store's writer process ended (exit status %s); %d batches go to the writer "
                "thread",
                status,
                len(held),
            )

    def _hand_back(self) -> list[_Batch]:
        """Give every held batch to the writer thread (lock held, the child dead); the batches.

        Each is marked with the child's token and its number: the writer thread tells by them
        which the child committed (see ``COMMITS_ROW``).
        """
        held = list(self._held.items())
        self._held.clear()
        self.held_bytes = 0
        for number, batch in held:
            batch.child = (self._token, number)
            self._requeue(batch)
        if held:
            # the next child takes nothing until the writer thread has read what this one
            # noted: its first commit replaces the note
            self._held_off += 1
            self._requeue(_Call(self.resume))
        return [batch for _, batch in held]

    # -- the writer thread's side --------------------------------------------------------------

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the child (killing it) and send nothing to a new one until the block ends.

        For the writer thread, around work that destroys data keys: a child may hold a key
        and batches sealed under it that it has not committed yet; once it is dead, what it
        committed is in the database and nothing more can arrive, so the keys it had can be
        destroyed (the batches it held go to the writer thread, behind this work).
        """
        with self._lock:
            self._paused += 1
            proc = self._proc
        try:
            if proc is not None:
                proc.kill()
                proc.wait()
            yield
        finally:
            with self._lock:
                self._paused -= 1
                if proc is not None and self._proc is proc and self._watched != self._fds[1]:
                    # no loop watches it (it was never sent anything): it ends here; a watched
                    # one ends on its loop (until then a batch sent to it finds its pipe closed)
                    self._proc = None
                    _close_pipes(proc)

    def close(self) -> None:
        """Have the child commit what it was sent and end; settle or hand back every batch.

        Blocking; from any thread. Acknowledgements read here are settled on the loop. A
        close interrupted while it waits for the child is finished by the next call.
        """
        with self._lock:
            self._closed = True
            proc = self._proc
            loop = self._loop
            if proc is None:
                return
            # the child commits every batch it received, then ends
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        try:
            proc.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        settled: list[_Batch] = []
        with self._lock:
            if self._proc is proc and proc.stdout is not None:
                with contextlib.suppress(OSError):
                    while data := os.read(self._fds[1], 1 << 16):
                        confirmed, malformed = self._consume(data)
                        settled += confirmed
                        if malformed:
                            break
                self._proc = None
                self._hand_back()
                watched, self._watched = self._watched == self._fds[1], -1
                if loop is None or not watched or not _on_loop(loop, self._fds, proc):
                    _close_pipes(proc)  # no loop watches them (or it is closed)
        if settled:
            outcomes = self._outcomes(settled)  # here: the deletions are queued before the stop
        if settled and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits them
                loop.call_soon_threadsafe(_settle_groups, outcomes)


def _isolation_flags() -> list[str]:
    """The interpreter options that keep the child importing what its parent may import.

    ``-P`` always (never the working directory); the parent's own ``-I``, ``-E`` and ``-s``
    too, else a parent run isolated from its environment would start a child that reads
    ``PYTHONPATH`` and could import a planted ``wking_device`` with the store's keys.
    """
    flags = sys.flags
    if flags.isolated:
        return ["-I"]  # -E, -s and -P
    return [
        "-P",
        *(["-E"] if flags.ignore_environment else []),
        *(["-s"] if flags.no_user_site else []),
    ]


_LIVE: Final[weakref.WeakSet[_Appender]] = weakref.WeakSet()
"""Every appender of this process (for :func:`_after_fork`)."""


def _after_fork() -> None:
    """In a process made by ``fork``: let go of the parent's writer processes.

    The copy of each pipe to a child would keep that child from seeing its input end when the
    parent closes the store (the parent's ``close`` would wait, then kill it); the copies are
    closed, and the appenders here send nothing (a store is not used across ``fork``).
    """
    for appender in list(_LIVE):
        appender._closed = True
        proc, appender._proc = appender._proc, None
        if proc is not None:
            _close_pipes(proc)  # through their file objects: nothing closes the numbers twice


os.register_at_fork(after_in_child=_after_fork)


def _on_loop(
    loop: asyncio.AbstractEventLoop, fds: tuple[int, int], proc: subprocess.Popen[bytes]
) -> bool:
    """Have ``loop`` stop watching a child's pipes, then close them; False if it is closed."""
    try:
        loop.call_soon_threadsafe(_unwatch, loop, fds)
        loop.call_soon_threadsafe(_close_pipes, proc)
    except RuntimeError:
        return False
    return True


def _unwatch(loop: asyncio.AbstractEventLoop, fds: tuple[int, int]) -> None:
    """Stop watching a child's output (on its loop; before it is closed)."""
    loop.remove_reader(fds[1])


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    """Close both pipes of a child through their file objects (each once)."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
