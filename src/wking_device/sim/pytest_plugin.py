"""pytest plugin of the simulator: fixtures for simulated worlds (registered as ``wking_sim``).

pytest loads this module in every environment where wking-device is installed (entry point
``pytest11``), including ones without the ``sim`` extra. It therefore imports nothing of bumble,
nor of the simulator, at load time: the fixtures import lazily and skip the test with the install
hint when bumble is missing.

Fixtures:

- ``sim_world``: a running :class:`~wking_device.sim.SimWorld` with three speakers.
- ``sim_backend``: ``sim_world.backend`` (a :class:`~wking_device.ble.BleBackend`).
- ``sim_fleet``: a factory, ``world = await sim_fleet(50, instant_connect=True)``; every world it
  made is closed after the test.

The fixtures are async and need pytest-asyncio (``asyncio_mode = "auto"``, or mark the tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from wking_device.ble import BleBackend
    from wking_device.sim import SimFleet, SimWorld

try:  # pytest-asyncio is a test dependency, not a runtime one
    import pytest_asyncio

    _FIXTURE: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - depends on the environment
    _FIXTURE = pytest.fixture

_F = TypeVar("_F", bound="Callable[..., Any]")


def _async_fixture(*, name: str) -> Callable[[_F], _F]:
    return cast("Callable[[_F], _F]", _FIXTURE(name=name))


__all__ = ["fixture_sim_backend", "fixture_sim_fleet", "fixture_sim_world"]


def _require_sim() -> None:
    from wking_device.sim._compat import INSTALL_HINT, bumble_available  # noqa: PLC0415

    if not bumble_available():
        pytest.skip(f"the simulator needs bumble: {INSTALL_HINT}")


@_async_fixture(name="sim_world")
async def fixture_sim_world() -> AsyncIterator[SimWorld]:
    """A running simulated world with three speakers (fleet indices 1-3)."""
    _require_sim()
    from wking_device.sim import SimWorld  # noqa: PLC0415

    async with SimWorld.fleet(3) as world:
        yield world


@_async_fixture(name="sim_backend")
async def fixture_sim_backend(sim_world: SimWorld) -> BleBackend:
    """The bleak backend classes of ``sim_world``."""
    return sim_world.backend


@_async_fixture(name="sim_fleet")
async def fixture_sim_fleet() -> AsyncIterator[SimFleet]:
    """A factory of running fleets: ``await sim_fleet(n, **SimWorld.fleet options)``."""
    _require_sim()
    from wking_device.sim import SimWorld  # noqa: PLC0415

    worlds: list[SimWorld] = []

    async def make(count: int, **options: Any) -> SimWorld:
        world = SimWorld.fleet(count, **options)
        await world.start()
        worlds.append(world)
        return world

    try:
        yield make  # type: ignore[misc]  # the factory is a SimFleet
    finally:
        for world in reversed(worlds):
            await world.close()
