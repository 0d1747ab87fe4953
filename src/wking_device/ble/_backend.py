"""The bleak backend pair every BLE entry point accepts (real adapter or simulator)."""

from __future__ import annotations

from dataclasses import dataclass

# Imported at run time (this package loads it anyway) so that
# typing.get_type_hints resolves the public annotations that name them.
from bleak.backends.adapter import BaseBleakAdapter  # noqa: TC002
from bleak.backends.client import BaseBleakClient  # noqa: TC002
from bleak.backends.scanner import BaseBleakScanner  # noqa: TC002

__all__ = ["BleBackend"]


@dataclass(frozen=True, slots=True)
class BleBackend:
    """A pair of bleak backend classes, handed to ``BleakScanner``/``BleakClient`` as ``backend=``.

    ``None`` means bleak's platform default (BlueZ on Linux, CoreBluetooth on macOS, WinRT on
    Windows). The simulator (:mod:`wking_device.sim`) provides classes bound to a simulated world.

    Attributes:
        scanner: A subclass of ``bleak.backends.scanner.BaseBleakScanner``, or ``None``.
        client: A subclass of ``bleak.backends.client.BaseBleakClient``, or ``None``.
        adapter: A subclass of ``bleak.backends.adapter.BaseBleakAdapter`` (bleak 3.1: what the
            stack has connected), or ``None``: the platform's when scanner and client are the
            platform's, else none (stale connections are then not looked for).
    """

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
    adapter: type[BaseBleakAdapter] | None = None

    @property
    def is_default(self) -> bool:
        """Whether both classes are bleak's platform defaults."""
        return self.scanner is None and self.client is None
