"""A speaker session's vendor exchange: sequence numbers, writing a command, waiting for its answer.

This module owns :class:`SpeakerCommands`, the base of :class:`~wking_device.ble.Speaker` that
carries one vendor command across the link: choosing a sequence number no waiting or unanswered
command holds, writing the command's fragments and waiting for the response (the link's loss
and the command timeout bound both), dropping a truncated response so the next one starts clean,
and turning a response's status and every failure into :mod:`wking_device.errors`. The public
request/response primitive (:meth:`~wking_device.ble.Speaker.command`) and the commands built on
it stay on :class:`~wking_device.ble.Speaker`; matching responses to waiting commands is
:mod:`._notifications`', keeping the link :mod:`._connection`'s.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from wking_device.ble._notifications import SpeakerNotifications
from wking_device.ble._translate import is_caller_cancelled, translate
from wking_device.ble._values import CommandFrame, _opcode_name, _resolve
from wking_device.errors import (
    BluetoothError,
    CommandRejected,
    DeviceDisconnected,
    MalformedResponse,
    OperationTimeout,
    ProtocolError,
    UnsupportedOperation,
    UsageError,
)
from wking_device.protocol import Response, Status

if TYPE_CHECKING:
    from bleak import BleakClient

    from wking_device.protocol import FrameCodec

__all__ = ["SpeakerCommands"]

_SEQ_SPACE = 256
"""Sequence numbers are one byte (docs/protocol.md): they wrap after 256 commands."""


class SpeakerCommands(SpeakerNotifications):
    """How a :class:`~wking_device.ble.Speaker` exchanges vendor commands (a base class)."""

    if TYPE_CHECKING:  # initialised by Speaker.__init__
        _write_lock: asyncio.Lock

    def _take_seq(self, codec: FrameCodec) -> int:
        """The next sequence number that no waiting or unanswered command holds.

        A command that timed out may still be answered; were its seq handed out again (256
        commands later), the late answer would be taken for the new command's. Such seqs are
        skipped until their answer came or every other seq is taken too (then the oldest goes).

        Raises:
            UsageError: All 256 sequence numbers belong to commands still waiting.
        """
        for _ in range(_SEQ_SPACE):
            seq = codec.next_seq()
            if seq not in self._pending and seq not in self._abandoned:
                return seq
        if self._abandoned:
            oldest = next(iter(self._abandoned))
            del self._abandoned[oldest]
            return oldest
        raise UsageError(
            f"{_SEQ_SPACE} commands to {self._address} already wait for their responses; "
            "await some before sending more"
        )

    async def _exchange(
        self,
        client: BleakClient,
        codec: FrameCodec,
        frame: CommandFrame,
        future: asyncio.Future[Response],
        lost: asyncio.Future[None],
    ) -> Response:
        """Write the command's fragments and wait for its response, translating failures."""
        what = _opcode_name(int(frame.opcode))
        try:
            async with asyncio.timeout(self._command_timeout):
                fragments = codec.send(frame)
                command_char = _resolve(client, self._profile.command_uuid)
                async with self._write_lock:
                    for fragment in fragments:
                        await self._race(
                            client.write_gatt_char(
                                command_char, fragment, response=self._write_response
                            ),
                            lost,
                        )
                return await self._race(asyncio.shield(future), lost)
        except TimeoutError as exc:
            raise self._timeout_error(codec, frame.seq, what) from exc
        except asyncio.CancelledError as exc:
            if is_caller_cancelled():
                raise
            raise DeviceDisconnected(
                f"{what} on {self._address}: the link was lost", address=self._address
            ) from exc
        except BluetoothError:
            raise
        except ProtocolError as exc:
            # The codec refused to encode (it never enters ERROR on received bytes, so this is
            # a bug or misuse); report it as what it is for this session.
            raise MalformedResponse(
                f"{what} on {self._address}: {exc.message}", address=self._address
            ) from exc
        except Exception as exc:
            translated = translate(exc, address=self._address, operation=what)
            if lost.done():
                translated = DeviceDisconnected(
                    f"{what} on {self._address}: the link was lost", address=self._address
                )
            raise translated from exc

    def _check_status(self, response: Response, what: str) -> None:
        if response.status is Status.UNSUPPORTED:
            raise UnsupportedOperation(
                f"{self._address} does not support {what}", address=self._address
            )
        if response.status is not Status.OK:
            raise CommandRejected(
                f"{self._address} rejected {what}: {response.status.name}",
                address=self._address,
                status=int(response.status),
                remedy=_REJECT_REMEDIES.get(response.status),
            )

    def _timeout_error(self, codec: FrameCodec, seq: int, what: str) -> BluetoothError:
        header = codec.partial_header
        if codec.buffered and (
            header is None or header[1] == seq or header[1] not in self._pending
        ):
            # Part of a frame arrived and the rest never will (a truncated response, or noise
            # no waiting command claims): drop it so the next response starts on a clean
            # buffer. A frame in progress for another waiting command is left alone.
            received = codec.drop_partial(f"{what} timed out with the response incomplete")
            self.malformed += 1
            self._on_received(received[1:])
            if header is not None and header[1] == seq:
                return MalformedResponse(
                    f"{what} on {self._address}: truncated response", address=self._address
                )
        return OperationTimeout(
            f"{what} on {self._address}: no response within {self._command_timeout:g} s",
            address=self._address,
        )


_REJECT_REMEDIES: dict[Status, str] = {
    Status.BAD_PARAM: "check the value against 'wking control --help'",
    Status.BUSY: "the speaker is busy; retry in a moment",
    Status.LOW_BATTERY: "charge the speaker and retry",
    Status.FAILED: "retry; if it persists, power-cycle the speaker",
}
