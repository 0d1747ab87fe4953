"""The speaker's own description: :class:`DeviceInfo`, exported by :mod:`wking_device.models`.

A pydantic model, because it is built from untrusted speaker data and validates on construction.
It lives apart from the other value types so that importing those (the store, the consent
commands) does not import pydantic; :mod:`wking_device.models` loads it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from wking_device._redact import redact

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["DeviceInfo"]


class DeviceInfo(BaseModel):
    """What a speaker tells about itself (Device Information, Battery and the vendor channel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    model_number: str | None = None
    firmware: str | None = None
    hardware: str | None = None
    battery: int | None = Field(default=None, ge=0, le=100)
    rssi: int | None = None
    volume: int | None = Field(default=None, ge=0, le=100)
    eq: str | None = None
    light: str | None = None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr() and str() end up in log lines and tracebacks: the address and MAC-shaped text
        # in the speaker's strings are redacted (their control characters repr() escapes)
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value
