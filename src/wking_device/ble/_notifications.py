"""What a speaker session receives: notification decoding, response matching, event delivery.

This module owns :class:`SpeakerNotifications`, the base of :class:`~wking_device.ble.Speaker`
between its adapter choice and connection slot (:class:`~wking_device.ble._slots.SpeakerSlots`,
above its connection life cycle) and its public API: turning each vendor notification into
frames through the codec, handing a response to the command waiting under its sequence number
(a broken frame fails only the command it answered), checking standard battery notifications,
and delivering events to the session's subscribers (:class:`_Subscription`, each with its own
bounded queue) and event streams. It does not subscribe to characteristics or keep the link
(see :mod:`._connection`) and does not send commands (see :mod:`._speaker`); the state it uses
is initialised by ``Speaker.__init__``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from wking_device._subscription import Subscription
from wking_device.ble._slots import SpeakerSlots
from wking_device.ble._stream import unify
from wking_device.ble._values import BatteryReading, SpeakerEvent, _opcode_name
from wking_device.errors import MalformedResponse
from wking_device.models import OperationKind
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    BrokenFrame,
    Event,
    Frame,
    FrameType,
    Response,
    UnknownEvent,
)

if TYPE_CHECKING:
    from wking_device.ble._delivery import EventQueue
    from wking_device.ble._speaker import Speaker
    from wking_device.ble._stream import BatteryMemory

__all__ = ["SpeakerNotifications"]

_LOGGER = logging.getLogger(__name__)


class _Subscription(Subscription):
    """The :class:`~wking_device.Subscription` :meth:`Speaker.subscribe` returns."""

    __slots__ = ("_queue",)

    def __init__(self, speaker: Speaker, queue: EventQueue[SpeakerEvent]) -> None:
        super().__init__(functools.partial(_unsubscribe, speaker, queue))
        self._queue = queue

    @property
    def dropped(self) -> int:
        """Events dropped for this subscriber because it fell too far behind."""
        return self._queue.dropped


def _unsubscribe(speaker: Speaker, queue: EventQueue[SpeakerEvent]) -> None:
    with contextlib.suppress(ValueError):
        speaker._listeners.remove(queue)
    queue.close()


class SpeakerNotifications(SpeakerSlots):
    """What a :class:`~wking_device.ble.Speaker` receives (a base class; see the module)."""

    if TYPE_CHECKING:  # initialised by Speaker.__init__
        _battery: BatteryMemory
        _listeners: list[EventQueue[SpeakerEvent]]
        malformed: int

    def _stream(self, frame: Any) -> None:
        if not self._streams:
            return
        event = unify(frame, self._battery)
        if event is not None:
            for stream in list(self._streams):
                stream.put(event)

    def _deliver(self, event: SpeakerEvent) -> None:
        self._stream(event)
        for queue in self._listeners:
            queue.put(event)

    def _on_battery_data(self, data: bytes) -> None:
        timer = self._timer(OperationKind.NOTIFY, detail={"char": BATTERY_LEVEL_UUID})
        if len(data) != 1 or data[0] > 100:
            self.malformed += 1
            error = MalformedResponse(
                f"{self._address}: battery notification {data.hex()}", address=self._address
            )
            timer.fail(error)
            return
        timer.detail["battery"] = data[0]
        timer.ok()
        self._deliver(BatteryReading(data[0]))

    def _on_vendor_data(self, data: bytes) -> None:
        codec = self._codec
        if codec is None:
            return
        # One notification is one fragment: the codec resynchronises on fragment boundaries
        # (docs/protocol.md, "Resynchronisation"), so a broken frame fails only its command.
        self._on_received(codec.receive_fragment(data))

    def _on_received(self, received: list[Frame | BrokenFrame]) -> None:
        for item in received:
            if isinstance(item, Response):
                self._on_response(item)
            elif isinstance(item, BrokenFrame):
                self._on_broken(item)
            elif isinstance(item, Event | UnknownEvent):
                code = item.code
                self._timer(
                    OperationKind.NOTIFY,
                    detail={"char": self._profile.notify_uuid, "code": int(code)},
                ).ok()
                self._deliver(item)

    def _on_response(self, response: Response) -> None:
        seq = response.seq
        waiter = self._pending.pop(seq, None)
        if waiter is None or waiter[1].done():
            # A late answer to a command that already timed out or was cancelled: its seq is not
            # reused while it may still come (see _take_seq), so it is dropped here.
            self._abandoned.pop(seq, None)
            _LOGGER.debug("%s: dropped response seq=%d (no waiter)", self._address, seq)
            return
        opcode, future = waiter
        if int(response.opcode) != opcode:
            # Not the answer to the command waiting under this seq: a speaker bug, or an answer
            # so late that its seq was reused after all. Either way not this command's result.
            answered, asked = _opcode_name(int(response.opcode)), _opcode_name(opcode)
            future.set_exception(
                MalformedResponse(
                    f"{self._address}: response seq={seq} answers {answered}, not {asked}",
                    address=self._address,
                )
            )
            return
        future.set_result(response)

    def _on_broken(self, broken: BrokenFrame) -> None:
        """A frame the codec dropped: fail the command it answered, and only that one.

        The header is not confirmed by the CRC, so a waiting command is failed only when both
        its seq and its opcode match; any other command waits for its own answer.
        """
        self.malformed += 1
        _LOGGER.debug("%s: broken vendor frame dropped (%s)", self._address, broken.reason)
        error = MalformedResponse(
            f"{self._address}: malformed response ({broken.reason})", address=self._address
        )
        self._timer(OperationKind.NOTIFY, detail={"char": self._profile.notify_uuid}).fail(error)
        if broken.frame_type is not FrameType.RESPONSE or broken.seq is None:
            return
        waiter = self._pending.get(broken.seq)
        if waiter is not None and waiter[0] == broken.code and not waiter[1].done():
            del self._pending[broken.seq]
            waiter[1].set_exception(error)
