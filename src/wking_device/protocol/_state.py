"""The codec's roles, states and its one transition table.

This module owns which operations a :class:`~wking_device.protocol.FrameCodec` allows in which
state, and which frame types each role may send and receive, with the message each misuse gets.
It does not parse bytes (``_wire``) or buffer them (``_codec``).
"""

from __future__ import annotations

import enum
from typing import Final

from wking_device.protocol._vocabulary import FrameType

__all__ = [
    "RECEIVES",
    "SENDS",
    "CodecState",
    "Op",
    "Role",
    "misuse_message",
    "role_receive_message",
    "role_send_message",
    "transition",
]


class Role(enum.StrEnum):
    """Which end of the link a codec sits on."""

    #: The host (bleak): sends commands, receives responses and events.
    CENTRAL = "central"
    #: The speaker (simulator): receives commands, sends responses and events.
    PERIPHERAL = "peripheral"


class CodecState(enum.StrEnum):
    """The codec's state.

    ``READY`` accepts bytes and frames; ``ERROR`` (after any error) accepts only ``reset()``.
    """

    READY = "ready"
    ERROR = "error"


class Op(enum.StrEnum):
    """Operations that drive the state machine."""

    RECEIVE_DATA = "receive_data"
    NEXT_EVENT = "next_event"
    SEND = "send"
    SET_MTU = "set_mtu"
    FAIL = "fail"
    RESET = "reset"


#: (state, operation) -> next state. A pair that is absent is misuse in that state.
_TRANSITIONS: Final[dict[tuple[CodecState, Op], CodecState]] = {
    (CodecState.READY, Op.RECEIVE_DATA): CodecState.READY,
    (CodecState.READY, Op.NEXT_EVENT): CodecState.READY,
    (CodecState.READY, Op.SEND): CodecState.READY,
    (CodecState.READY, Op.SET_MTU): CodecState.READY,
    (CodecState.READY, Op.FAIL): CodecState.ERROR,
    (CodecState.READY, Op.RESET): CodecState.READY,
    (CodecState.ERROR, Op.FAIL): CodecState.ERROR,
    (CodecState.ERROR, Op.RESET): CodecState.READY,
    # Changing the MTU after an error is harmless (a reconnect renegotiates it before reset()).
    (CodecState.ERROR, Op.SET_MTU): CodecState.ERROR,
}

#: Frame types each role may send; the peer's role receives exactly these.
SENDS: Final[dict[Role, frozenset[FrameType]]] = {
    Role.CENTRAL: frozenset({FrameType.COMMAND}),
    Role.PERIPHERAL: frozenset({FrameType.RESPONSE, FrameType.EVENT}),
}
#: Frame types each role may receive.
RECEIVES: Final[dict[Role, frozenset[FrameType]]] = {
    Role.CENTRAL: SENDS[Role.PERIPHERAL],
    Role.PERIPHERAL: SENDS[Role.CENTRAL],
}


def transition(state: CodecState, op: Op) -> CodecState | None:
    """The state after ``op`` in ``state``, or ``None`` when ``op`` is not allowed there."""
    return _TRANSITIONS.get((state, op))


def misuse_message(state: CodecState, op: Op, cause: str | None) -> str:
    """A message naming the state, the refused operation and what to do.

    Args:
        state: The current state.
        op: The refused operation.
        cause: The error that put the codec in ``state``, when there was one.
    """
    if state is CodecState.ERROR:
        because = f" after: {cause}" if cause else ""
        return (
            f"cannot {op.value}(): the codec is in the ERROR state{because}; "
            "call reset() (and resynchronise the link) first"
        )
    return f"cannot {op.value}() in the {state.value.upper()} state"


def role_send_message(role: Role, ftype: FrameType, frame_name: str) -> str:
    """The message for a role sending a frame type it may not send."""
    allowed = " and ".join(sorted(f"{t.name.lower()}s" for t in SENDS[role]))
    return f"a {role.value} cannot send a {ftype.name.lower()} ({frame_name}); it sends {allowed}"


def role_receive_message(role: Role, ftype: FrameType, code: int) -> str:
    """The message for receiving a frame type the role never receives."""
    allowed = " and ".join(sorted(f"{t.name.lower()}s" for t in RECEIVES[role]))
    return (
        f"received a {ftype.name.lower()} frame (code 0x{code:02x}), but a {role.value} "
        f"only receives {allowed}"
    )
