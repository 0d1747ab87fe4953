"""Every resource is a context manager; every subscribe()/attach() returns a Subscription.

Real parts: a consent gate over a real ledger in a temporary home, the real record store, the
process's event bus, a simulated speaker. A Subscription is still callable (code written against
the unsubscribe functions these methods returned keeps working).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from wking_device import (
    ConsentGate,
    OperationEvent,
    OperationKind,
    Outcome,
    PermitRevoked,
    Revocation,
    Speaker,
    Subscription,
    UsageError,
    load_settings,
    open_installation_gate,
    open_store,
    resolve_paths,
)
from wking_device.ble import EventBus
from wking_device.collect import MemorySink, OperationLogCollector
from wking_device.sim import SimWorld


@pytest.fixture(name="gate")
def fixture_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConsentGate:
    monkeypatch.setenv("WKING_HOME", str(tmp_path / "home"))
    paths = resolve_paths()
    return open_installation_gate(paths, load_settings(paths))


def test_a_subscription_ends_once_whichever_way() -> None:
    ended: list[int] = []
    sub = Subscription(lambda: ended.append(1))
    assert sub.active
    with sub as same:
        assert same is sub
    assert not sub.active
    sub()
    sub.close()
    assert ended == [1]
    assert "ended" in repr(sub)


def test_gate_subscriptions_are_context_managers(gate: ConsentGate) -> None:
    seen: list[Revocation] = []
    gate.grant(["operation_logs"], method="api")
    with gate.subscribe(seen.append) as sub:
        assert isinstance(sub, Subscription)
        gate.withdraw(["operation_logs"], method="api")
    gate.grant(["operation_logs"], method="api")
    gate.withdraw(["operation_logs"], method="api")
    assert [r.categories for r in seen] == [frozenset({"operation_logs"})]
    legacy = gate.subscribe(seen.append)
    legacy()  # still callable, as the unsubscribe function it was
    gate.grant(["operation_logs"], method="api")
    gate.withdraw(["operation_logs"], method="api")
    assert len(seen) == 1


def test_leaving_the_gate_revokes_its_permits_and_keeps_consent(
    gate: ConsentGate, tmp_path: Path
) -> None:
    seen: list[Revocation] = []
    with gate:
        gate.grant(["operation_logs"], method="api")
        permit = gate.permit(["operation_logs"])
        gate.subscribe(seen.append)
        permit.require("operation_logs")
    assert gate.closed
    with pytest.raises(PermitRevoked, match="gate_closed"):
        permit.require("operation_logs")
    assert seen == []  # subscribers are not told: nothing was withdrawn
    with pytest.raises(UsageError, match="closed"):
        gate.permit(["operation_logs"])
    with pytest.raises(UsageError, match="closed"):
        gate.grant(["device_info"], method="api")
    with pytest.raises(UsageError, match="closed"):
        gate.withdraw(["operation_logs"], method="api")
    gate.close()  # idempotent
    paths = resolve_paths()
    with open_installation_gate(paths, load_settings(paths)) as again:
        assert again.states()["operation_logs"].granted  # consent unchanged
        assert again.permit(["operation_logs"]).valid
    assert (tmp_path / "home").exists()


async def test_store_attach_and_collector_attach_return_subscriptions(gate: ConsentGate) -> None:
    paths = resolve_paths()
    gate.grant(["operation_logs"], method="api")
    bus = EventBus()
    async with open_store(paths, load_settings(paths)) as store:
        with store.attach(gate) as attached:
            assert isinstance(attached, Subscription)
        assert not attached.active
    collector = OperationLogCollector(gate, MemorySink(), adapter_mac="")
    with collector.attach(bus) as sub:
        assert isinstance(sub, Subscription)
        bus.emit(OperationEvent(kind=OperationKind.SCAN, outcome=Outcome.OK))
    bus.emit(OperationEvent(kind=OperationKind.SCAN, outcome=Outcome.OK))
    assert collector.stats.emitted == 1
    assert bus.subscriber_count == 0


async def test_speaker_subscribe_warns_and_returns_a_subscription() -> None:
    async with (
        SimWorld.fleet(1, adv_interval_ms=20) as world,
        Speaker(world.speakers[0].address, backend=world.backend) as speaker,
    ):
        with pytest.warns(DeprecationWarning, match=r"speaker\.events\(\)") as caught:
            sub = speaker.subscribe(lambda _event: None)
        assert caught[0].filename == __file__  # points at the caller
        assert isinstance(sub, Subscription)
        with sub:
            pass
        assert not sub.active
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            async with speaker.events():  # the replacement does not warn
                pass
