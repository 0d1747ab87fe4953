"""Simulated W-KING speakers on bumble, and a bleak backend over them (``wking_device.sim``).

Public, documented testing support (like ``structlog.testing``): nothing in the core layers
imports it. :class:`SimWorld` runs speakers as real BLE peripherals on bumble's emulated
controllers on an in-process link, and ``world.backend`` gives the bleak backend classes that
drive a bumble central on the same link, so library code runs bleak's public API unchanged.
See docs/testing.md.

bumble lives in the ``sim`` extra. Names that need it (:class:`SimWorld`, :class:`SimSpeaker`,
the backend classes) are imported on first access and raise
:class:`~wking_device.errors.AdapterUnavailable` naming the extra when it is missing; fault
plans, specs and :func:`require_bumble` work without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wking_device._public import claim as _claim
from wking_device._public import publish as _publish
from wking_device.sim._compat import (
    BUMBLE_VERSION,
    INSTALL_HINT,
    bumble_available,
    require_bumble,
)
from wking_device.sim._faults import FaultPlan
from wking_device.sim._fixtures import SimFleet
from wking_device.sim._spec import SpeakerSpec, speaker_address
from wking_device.sim._vendor import SpeakerState

if TYPE_CHECKING:
    from wking_device.sim._client import SimClient
    from wking_device.sim._scanner import SimDeviceDetails, SimScanner
    from wking_device.sim._speaker import SimSpeaker
    from wking_device.sim._world import ADAPTER_ADDRESS, AdapterSpec, SimWorld

__all__ = [  # noqa: RUF022 - plain sorted(), as the package root's __all__ test expects
    "ADAPTER_ADDRESS",
    "AdapterSpec",
    "BUMBLE_VERSION",
    "FaultPlan",
    "INSTALL_HINT",
    "SimClient",
    "SimDeviceDetails",
    "SimFleet",
    "SimScanner",
    "SimSpeaker",
    "SimWorld",
    "SpeakerSpec",
    "SpeakerState",
    "bumble_available",
    "require_bumble",
    "speaker_address",
]

_publish(__name__, globals(), __all__)

_LAZY = {
    "ADAPTER_ADDRESS": "wking_device.sim._world",
    "AdapterSpec": "wking_device.sim._world",
    "SimWorld": "wking_device.sim._world",
    "SimSpeaker": "wking_device.sim._speaker",
    "SimClient": "wking_device.sim._client",
    "SimScanner": "wking_device.sim._scanner",
    "SimDeviceDetails": "wking_device.sim._scanner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_bumble()
    # the world first: it binds the name SimWorld in the modules it imports, for get_type_hints
    importlib.import_module("wking_device.sim._world")
    value = getattr(importlib.import_module(module), name)
    _claim(value, __name__)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
