"""Types of the simulator's pytest fixtures, importable without pytest or bumble.

This module owns only the annotation a test writes for the ``sim_fleet`` fixture
(:class:`SimFleet`); the fixtures themselves live in :mod:`wking_device.sim.pytest_plugin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wking_device.sim._world import SimWorld

__all__ = ["SimFleet"]


class SimFleet(Protocol):
    """The ``sim_fleet`` fixture: ``world = await sim_fleet(20, seed=7)``.

    Each call starts a :class:`~wking_device.sim.SimWorld` of ``count`` speakers (the keyword
    options are :meth:`SimWorld.fleet`'s); every world is closed when the test ends.
    """

    async def __call__(self, count: int, /, **options: Any) -> SimWorld:
        """Start a fleet of ``count`` speakers and return its running world."""
        ...
