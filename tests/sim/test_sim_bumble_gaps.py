"""Gaps A-F and the smaller traps of stock bumble 0.0.236, and the simulator's fix for each.

Each gap has two tests: ``test_stock_*`` reproduces the behaviour with stock bumble alone and
FAILS when a bumble upgrade changes it (time to re-check the workaround and the version pin);
``test_fixed_*`` shows the simulator's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError
from bumble import att, core, hci
from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import AdvertisingType, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.host import Host
from bumble.link import LocalLink
from tests._waiting import until

from wking_device.errors import UsageError
from wking_device.protocol import BATTERY_LEVEL_UUID, MODEL_NUMBER_UUID
from wking_device.sim import FaultPlan, SimWorld, SpeakerSpec
from wking_device.sim._compat import BUMBLE_VERSION, installed_bumble_version
from wking_device.sim._scanner import address_string, parse_ad_structures
from wking_device.sim._stack import SimController, SimHost, SimLink

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

CENTRAL = "F0:00:00:00:00:01"
PERIPHERAL = "C0:00:00:00:00:02"
SERVICE = "12345678-1234-5678-1234-56789abcdef0"
SLOW_CHAR = "12345678-1234-5678-1234-56789abcdef1"
FAST_CHAR = "12345678-1234-5678-1234-56789abcdef2"


def test_bumble_is_the_pinned_version() -> None:
    # The workarounds below are written for this version; an upgrade must re-run this file.
    assert installed_bumble_version() == BUMBLE_VERSION


async def _device(link: LocalLink, name: str, address: str, *, sim: bool = False) -> Device:
    if sim:
        assert isinstance(link, SimLink)
        controller: Controller = SimController(name, link, hci.Address(address))
        host: Host = SimHost(controller_source=controller, controller_sink=controller)
    else:
        controller = Controller(name, link=link)
        host = Host(controller_source=controller, controller_sink=controller)
    device = Device(name=name, address=hci.Address(address), host=host)
    device.sim_controller = controller  # type: ignore[attr-defined]
    await device.power_on()
    return device


async def _peripheral(link: LocalLink, *, sim: bool = False, slow_s: float = 0.3) -> Device:
    device = await _device(link, "peripheral", PERIPHERAL, sim=sim)
    calls = [0]

    async def slow(_connection: object) -> bytes:
        calls[0] += 1
        answer = str(calls[0]).encode()
        await asyncio.sleep(slow_s)
        return answer

    readable = Characteristic.Permissions.READABLE
    device.add_service(
        Service(
            SERVICE,
            [
                Characteristic(SLOW_CHAR, Characteristic.READ, readable, CharacteristicValue(slow)),
                Characteristic(FAST_CHAR, Characteristic.READ, readable, b"fast"),
            ],
        )
    )
    await device.start_advertising(advertising_interval_min=20, advertising_interval_max=20)
    return device


async def _stock_pair(slow_s: float = 0.3) -> tuple[LocalLink, Device, Device, object, list]:
    link = LocalLink()
    central = await _device(link, "central", CENTRAL)
    peripheral = await _peripheral(link, slow_s=slow_s)
    connection = await central.connect(hci.Address(PERIPHERAL), timeout=2)
    peer = Peer(connection)
    await peer.discover_services()
    for service in peer.services:
        await service.discover_characteristics()
    chars = sorted(
        (c for s in peer.services for c in s.characteristics if s.uuid == core.UUID(SERVICE)),
        key=lambda c: c.handle,
    )
    return link, central, peripheral, connection, chars


# --- A/B: a connect timeout leaves a pending connection ------------------------------------------


async def test_stock_gap_ab_timeout_leaves_pending_connection() -> None:
    link = LocalLink()
    central = await _device(link, "central", CENTRAL)
    controller = central.sim_controller  # type: ignore[attr-defined]
    # bumble's own timeout sends a cancel the stock controller ignores: the connect hangs
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(central.connect(hci.Address(PERIPHERAL), timeout=0.1), 0.5)
    assert controller.pending_le_connection is not None
    with pytest.raises(hci.HCI_Error) as info:
        await asyncio.wait_for(central.connect(hci.Address("C0:00:00:00:00:03"), timeout=0.1), 0.5)
    assert info.value.error_code == hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR


async def test_fixed_gap_ab_timeout_cancels_and_next_connect_works() -> None:
    link = SimLink()
    central = await _device(link, "central", CENTRAL, sim=True)
    controller = central.sim_controller  # type: ignore[attr-defined]
    started = time.perf_counter()
    with pytest.raises(core.TimeoutError):
        await central.connect(hci.Address(PERIPHERAL), timeout=0.1)
    assert time.perf_counter() - started < 5.0  # the timeout is honoured (no hang)
    assert controller.pending_le_connection is None
    peripheral = await _peripheral(link, sim=True)
    await asyncio.sleep(0.1)
    assert not central.connections  # no ghost connection from the abandoned request
    connection = await central.connect(hci.Address(PERIPHERAL), timeout=1)
    assert connection.peer_address == peripheral.random_address


async def test_fixed_gap_ab_cancelled_bleak_connect_leaves_nothing_pending() -> None:
    async with SimWorld([SpeakerSpec.for_index(1, adv_interval_ms=3000)]) as world:
        speaker = world.speakers[0]
        # found from its first advertisement (a client from an address string would scan first)
        device = await BleakScanner.find_device_by_address(
            speaker.address, 2.0, backend=world.backend.scanner
        )
        assert device is not None
        # 1 s: well before the next advertisement (3 s), long enough to be seen pending when loaded
        client = BleakClient(device, timeout=1.0, backend=world.backend.client)
        adapter = world._running_adapter()
        task = asyncio.create_task(client.connect())
        # waiting for an advert
        await until(lambda: adapter.controller.pending_le_connection is not None)
        assert not task.done()
        with pytest.raises(TimeoutError):
            await task
        assert adapter.controller.pending_le_connection is None
        world._running_adapter().controller.instant_connect = True
        await client.connect()
        assert client.is_connected
        await client.disconnect()


# --- C: advertising reports lie ------------------------------------------------------------------


async def _scan_nonconnectable(link: LocalLink, *, sim: bool) -> list:
    central = await _device(link, "central", CENTRAL, sim=sim)
    peripheral = await _device(link, "peripheral", PERIPHERAL, sim=sim)
    if sim:
        peripheral.sim_controller.rssi = -77  # type: ignore[attr-defined]
    seen: list = []
    central.on("advertisement", seen.append)
    await central.start_scanning()
    await peripheral.start_advertising(
        advertising_type=AdvertisingType.UNDIRECTED_SCANNABLE,
        advertising_data=bytes((2, 1, 6)),
        scan_response_data=bytes((4, 9)) + b"abc",
        advertising_interval_min=20,
        advertising_interval_max=20,
    )
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.01)
    await central.stop_scanning()
    return seen


async def test_stock_gap_c_reports_lie() -> None:
    seen = await _scan_nonconnectable(LocalLink(), sim=False)
    assert seen
    report = seen[-1]
    assert report.is_connectable  # it is not
    assert report.rssi == -50
    structures = [(int(t), bytes(v)) for t, v in report.data.ad_structures]
    assert (9, b"abc") not in structures  # the scan response repeated the advertising data


async def test_fixed_gap_c_reports_truthful() -> None:
    seen = await _scan_nonconnectable(SimLink(), sim=True)
    assert seen
    report = seen[-1]
    assert not report.is_connectable
    assert report.rssi == -77
    structures = [(int(t), bytes(v)) for t, v in report.data.ad_structures]
    assert structures == [(1, b"\x06"), (9, b"abc")]


async def test_fixed_gap_c_rssi_and_connectable_through_bleak() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        speaker = world.speakers[0]
        speaker.rssi = -88
        # the first report of the speaker, however long a loaded machine takes to deliver it
        first: asyncio.Future[tuple[BLEDevice, AdvertisementData]] = (
            asyncio.get_running_loop().create_future()
        )

        def seen(device: BLEDevice, adv: AdvertisementData) -> None:
            if device.address == speaker.address and not first.done():
                first.set_result((device, adv))

        async with BleakScanner(seen, backend=world.backend.scanner):
            device, adv = await asyncio.wait_for(first, 10.0)
        assert adv.rssi == -88
        speaker.faults.connectable = False
        client = BleakClient(device, timeout=0.3, backend=world.backend.client)
        with pytest.raises(TimeoutError):
            await client.connect()


# --- D: leaving the link is silent ---------------------------------------------------------------


async def test_stock_gap_d_removed_peer_hangs() -> None:
    link, _central, peripheral, connection, (_slow, fast) = await _stock_pair()
    events: list[int] = []
    connection.on("disconnection", events.append)
    link.remove_controller(peripheral.sim_controller)  # type: ignore[attr-defined]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fast.read_value(), 0.2)  # hangs until bumble's 30 s ATT timeout
    assert events == []  # and no disconnection is ever reported
    with pytest.raises(core.InvalidArgumentError):
        await asyncio.wait_for(connection.disconnect(), 0.5)  # a local disconnect fails too


async def test_fixed_gap_d_out_of_range_disconnects_both_sides() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        reasons: list[int] = []
        speaker.device.on("connection", lambda c: c.on("disconnection", reasons.append))
        called = asyncio.Event()
        async with BleakClient(
            speaker.address,
            lambda _c: called.set(),
            timeout=2,
            backend=world.backend.client,
        ) as client:
            speaker.faults.in_range = False
            await asyncio.wait_for(called.wait(), 1.0)
            assert not client.is_connected
            assert reasons == [hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR]
            started = time.perf_counter()
            # As on BlueZ, the services were reset on disconnection: bleak refuses to resolve the
            # UUID before asking the backend.
            with pytest.raises(BleakError, match="Service Discovery has not been performed"):
                await client.read_gatt_char(BATTERY_LEVEL_UUID)
            # fails at once, not after bumble's 30 s ATT timeout (the bound is generous for CI)
            assert time.perf_counter() - started < 5.0
        # not advertising while out of range; back in range it is found again
        assert not await BleakScanner.discover(0.3, backend=world.backend.scanner)
        speaker.faults.in_range = True
        assert await BleakScanner.find_device_by_address(
            speaker.address, 1.0, backend=world.backend.scanner
        )


# --- E: link loss during a read raises CancelledError --------------------------------------------


async def test_stock_gap_e_link_loss_is_cancelled_error() -> None:
    _link, _central, peripheral, _connection, (slow, _fast) = await _stock_pair(slow_s=0.5)
    task = asyncio.create_task(slow.read_value())
    await asyncio.sleep(0.05)
    await next(iter(peripheral.connections.values())).disconnect()
    await asyncio.wait([task])
    assert task.cancelled()  # not an error: looks like the caller was cancelled


async def test_fixed_gap_e_link_loss_is_bleak_error_but_cancel_propagates() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        speaker.faults.response_delay_s = 0.5
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            task = asyncio.create_task(client.read_gatt_char(MODEL_NUMBER_UUID))
            await asyncio.sleep(0.05)
            speaker.faults.in_range = False
            with pytest.raises(BleakDBusError, match="Not connected"):
                await task
        speaker.faults.in_range = True
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            task = asyncio.create_task(client.read_gatt_char(MODEL_NUMBER_UUID))
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.wait([task])
            assert task.cancelled()  # a real cancellation of the caller still propagates


# --- F: a late response is taken for the next request --------------------------------------------


async def test_stock_gap_f_late_response_answers_next_request() -> None:
    _link, _central, _peripheral, _connection, (slow, _fast) = await _stock_pair(slow_s=0.3)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow.read_value(), 0.1)
    assert await slow.read_value() == b"1"  # the answer to the abandoned first read


async def test_fixed_gap_f_late_response_is_discarded() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            speaker.faults.response_delay_s = 0.3
            speaker.state.battery = 11
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.read_gatt_char(BATTERY_LEVEL_UUID), 0.1)
            speaker.state.battery = 22
            speaker.faults.response_delay_s = 0.0
            assert (await client.read_gatt_char(BATTERY_LEVEL_UUID))[0] == 22


async def test_fixed_gap_f_survives_a_cancelled_wait_for_the_late_answer() -> None:
    # Issue 10, defect 1: a request queued behind an abandoned one times out too; the late
    # answer to the first must still not be taken for the third request's.
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            speaker.state.battery = 44
            speaker.faults.response_delay_s = 1.1
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.read_gatt_char(BATTERY_LEVEL_UUID), 0.5)
            speaker.faults.response_delay_s = 0.0
            with pytest.raises(TimeoutError):  # queued behind the first: its wait is cancelled
                await asyncio.wait_for(client.read_gatt_char(MODEL_NUMBER_UUID), 0.5)
            speaker.faults.response_delay_s = 0.2
            value = await asyncio.wait_for(client.read_gatt_char(MODEL_NUMBER_UUID), 5.0)
            assert bytes(value).startswith(b"WK-")  # not the battery byte (44)


# --- H: an answer to a request whose waiter was just cancelled -----------------------------------


async def _until(condition: Callable[[], bool], steps: int = 10_000) -> None:
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_stock_gap_h_answer_to_a_just_cancelled_request_raises() -> None:
    _link, _central, _peripheral, connection, (slow, _fast) = await _stock_pair(slow_s=0.3)
    client = connection.gatt_client  # type: ignore[attr-defined]
    task = asyncio.create_task(slow.read_value())
    await _until(lambda: client.pending_response is not None)
    client.pending_response.cancel()  # what wait_for does when its caller is cancelled
    # the answer arrives before the cancelled task ran its clean-up
    with pytest.raises(asyncio.InvalidStateError):
        client.on_gatt_pdu(att.ATT_Read_Response(attribute_value=b"1"))
    await asyncio.wait([task])


async def test_fixed_gap_h_answer_to_a_just_cancelled_request_is_dropped() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            gatt = client._backend._connection.gatt_client  # type: ignore[attr-defined]
            speaker.faults.response_delay_s = 0.3
            task = asyncio.create_task(client.read_gatt_char(BATTERY_LEVEL_UUID))
            await _until(lambda: gatt.pending_response is not None)
            task.cancel()
            gatt.pending_response.cancel()
            gatt.on_gatt_pdu(att.ATT_Read_Response(attribute_value=b"\x01"))  # no error
            await asyncio.wait([task])
            assert task.cancelled()
            # the abandoned request was answered: the next one neither waits for it nor takes it
            speaker.faults.response_delay_s = 0.0
            speaker.state.battery = 33
            value = await asyncio.wait_for(client.read_gatt_char(BATTERY_LEVEL_UUID), 5.0)
            assert value[0] == 33


# --- I: a controller's answer to an HCI command whose waiter was just cancelled ------------------


async def _command_in_flight(host: Host) -> asyncio.Task[object]:
    """Send an HCI command and return once the host waits for its answer (not yet delivered)."""
    task: asyncio.Task[object] = asyncio.create_task(
        host.send_command(hci.HCI_Read_BD_ADDR_Command())
    )
    await _until(lambda: host.pending_response is not None)
    return task


async def test_stock_gap_i_answer_to_a_just_cancelled_command_raises() -> None:
    # Ctrl-C while a bumble device powers on (the first second of every --simulate command):
    # the command's waiter is cancelled, the controller's answer is already on its way, and the
    # stock host calls set_result on the cancelled future inside its packet callback.
    host = Host()  # type: ignore[no-untyped-call]
    host.hci_sink = type("Sink", (), {"on_packet": lambda self, packet: None})()
    task = await _command_in_flight(host)
    host.pending_response.cancel()  # what the caller's cancellation does to the awaited future
    answer = hci.HCI_Command_Complete_Event(
        num_hci_command_packets=1,
        command_opcode=hci.HCI_READ_BD_ADDR_COMMAND,
        return_parameters=bytes(7),
    )
    with pytest.raises(asyncio.InvalidStateError):
        host.on_command_processed(answer)
    await asyncio.wait([task])


async def test_fixed_gap_i_answer_to_a_just_cancelled_command_is_dropped() -> None:
    host = SimHost()
    host.hci_sink = type("Sink", (), {"on_packet": lambda self, packet: None})()
    task = await _command_in_flight(host)
    task.cancel()
    host.pending_response.cancel()
    answer = hci.HCI_Command_Complete_Event(
        num_hci_command_packets=1,
        command_opcode=hci.HCI_READ_BD_ADDR_COMMAND,
        return_parameters=bytes(7),
    )
    host.on_command_processed(answer)  # no error: the abandoned command's answer is dropped
    await asyncio.wait([task])
    assert task.cancelled()
    # the host is usable: the next command is sent and answered
    task = await _command_in_flight(host)
    host.on_command_processed(answer)
    assert await asyncio.wait_for(task, 5.0) is answer


# --- G: the GATT server checks no permissions; a missing handler sends no answer ----------------


async def test_stock_gap_g_write_to_read_only_value_gets_no_answer() -> None:
    _link, _central, _peripheral, _connection, (slow, fast) = await _stock_pair()
    await fast.write_value(b"changed", with_response=True)  # READ-only, yet accepted
    assert await fast.read_value() == b"changed"
    with pytest.raises(TimeoutError):  # no write function: no response until the 30 s timeout
        await asyncio.wait_for(slow.write_value(b"x", with_response=True), 0.3)


async def test_fixed_gap_g_speaker_answers_not_permitted() -> None:
    async with (
        SimWorld.fleet(1) as world,
        BleakClient(world.speakers[0].address, timeout=2, backend=world.backend.client) as client,
    ):
        started = time.perf_counter()
        with pytest.raises(BleakGATTProtocolError) as info:
            await client.write_gatt_char(MODEL_NUMBER_UUID, b"x", response=True)
        assert info.value.args[0] == 0x03
        assert time.perf_counter() - started < 5.0  # an answer, not bumble's 30 s silence


# --- cost ----------------------------------------------------------------------------------------


class _Probe(hci.HCI_AclDataPacket):
    formatted = 0

    def __str__(self) -> str:
        type(self).formatted += 1
        return "probe"


def _probe() -> _Probe:
    _Probe.formatted = 0
    return _Probe(connection_handle=0x0EFF, pb_flag=2, bc_flag=0, data_total_length=1, data=b"x")


async def test_stock_cost_debug_formatting_and_adverts_to_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    link = LocalLink()
    controller = Controller("c", link=link)
    controller.on_hci_packet(_probe())
    assert _Probe.formatted == 1  # formatted for a DEBUG line nobody logs
    host = Host()
    host.on_hci_packet(_probe())
    assert _Probe.formatted == 1
    # every advertisement reaches every controller, scanning or not
    idle = await _device(link, "idle", "C0:00:00:00:00:09")
    received: list = []
    idle.sim_controller.on_ll_advertising_pdu = received.append  # type: ignore[attr-defined]
    advertiser = await _device(link, "adv", PERIPHERAL)
    await advertiser.start_advertising(advertising_interval_min=20, advertising_interval_max=20)
    await asyncio.sleep(0.05)
    assert received


async def test_fixed_cost_no_formatting_and_adverts_only_to_listeners(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    link = SimLink()
    controller = SimController("c", link, hci.Address("C0:00:00:00:00:08"))
    controller.on_hci_packet(_probe())
    assert _Probe.formatted == 0
    idle = await _device(link, "idle", "C0:00:00:00:00:09", sim=True)
    received: list = []
    idle.sim_controller.on_sim_advertising_pdu = lambda *a: received.append(a)  # type: ignore[attr-defined]
    advertiser = await _device(link, "adv", PERIPHERAL, sim=True)
    await advertiser.start_advertising(advertising_interval_min=20, advertising_interval_max=20)
    await asyncio.sleep(0.05)
    assert received == []
    await idle.start_scanning()
    await asyncio.sleep(0.05)
    assert received


# --- smaller traps -------------------------------------------------------------------------------


def test_stock_trap_tx_power_unsigned_and_fixed() -> None:
    raw = bytes((2, AdvertisingData.TX_POWER_LEVEL, 0xF8))
    assert AdvertisingData.from_bytes(raw).get(AdvertisingData.TX_POWER_LEVEL) == 248
    assert parse_ad_structures([(AdvertisingData.TX_POWER_LEVEL, b"\xf8")])[4] == -8


async def test_stock_trap_31_bytes_not_enforced_and_fixed() -> None:
    link = LocalLink()
    device = await _device(link, "p", PERIPHERAL)
    await device.start_advertising(advertising_data=bytes((40, 0xFF)) + bytes(39))  # accepted
    long_name = SpeakerSpec.for_index(1, name="W-KING " + "X" * 30)
    with pytest.raises(UsageError, match="at most"):
        async with SimWorld([long_name]):
            pass


def test_stock_trap_address_string_and_type() -> None:
    public = hci.Address("C0:57:4B:00:00:01", hci.Address.PUBLIC_DEVICE_ADDRESS)
    random_ = hci.Address("C0:57:4B:00:00:01", hci.Address.RANDOM_DEVICE_ADDRESS)
    assert str(public).endswith("/P")
    assert public != random_  # equality includes the type, which bleak's string loses
    assert address_string(public) == address_string(random_) == "C0:57:4B:00:00:01"


async def test_fixed_trap_details_keep_bumble_address() -> None:
    async with SimWorld.fleet(1) as world:
        device = await BleakScanner.find_device_by_address(
            world.speakers[0].address, 1.0, backend=world.backend.scanner
        )
        assert device is not None
        assert device.details.address == world.speakers[0].bumble_address


def test_stock_trap_controller_needs_running_loop_and_world_is_per_loop() -> None:
    with pytest.raises(RuntimeError):
        Controller("outside a loop", link=LocalLink())
    world = SimWorld.fleet(1)
    asyncio.run(world.start())
    try:
        with pytest.raises(UsageError, match="another event loop"):
            asyncio.run(BleakScanner.discover(0.05, backend=world.backend.scanner))
    finally:
        world._closed = True  # its loop is gone; nothing left to close in it


async def test_stock_trap_one_pending_connection_and_fixed() -> None:
    link = LocalLink()
    central = await _device(link, "central", CENTRAL)
    first = asyncio.create_task(central.connect(hci.Address(PERIPHERAL), timeout=5))
    # pending once the controller took the command (a fixed 10 ms was not always enough)
    for _ in range(1000):  # at least 5 s
        if central.is_le_connecting:
            break
        await asyncio.sleep(0.005)
    with pytest.raises(core.InvalidStateError):
        await central.connect(hci.Address("C0:00:00:00:00:03"), timeout=0.2)
    first.cancel()
    await asyncio.wait([first])
    async with SimWorld.fleet(4) as world:
        clients = [
            BleakClient(s.address, timeout=3, backend=world.backend.client) for s in world.speakers
        ]
        await asyncio.gather(*(c.connect() for c in clients))
        assert all(c.is_connected for c in clients)
        await asyncio.gather(*(c.disconnect() for c in clients))


async def test_stock_trap_connect_waits_for_the_next_advertisement() -> None:
    link = LocalLink()
    central = await _device(link, "central", CENTRAL)
    peripheral = await _device(link, "peripheral", PERIPHERAL)
    await peripheral.start_advertising(advertising_interval_min=500, advertising_interval_max=500)
    await asyncio.sleep(0.05)  # the first advertisement went out at start
    started = time.perf_counter()
    await central.connect(hci.Address(PERIPHERAL), timeout=2)
    assert time.perf_counter() - started > 0.3


async def test_fixed_trap_instant_connect_does_not_wait_for_an_advertisement() -> None:
    specs = [SpeakerSpec.for_index(1, adv_interval_ms=2000)]
    async with SimWorld(specs, instant_connect=True) as world:
        await asyncio.sleep(0.05)  # the first advertisement went out at start
        started = time.perf_counter()
        async with BleakClient(specs[0].address, timeout=2, backend=world.backend.client):
            assert time.perf_counter() - started < 0.5


def test_fault_plan_validates_on_assignment() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError, match="less than or equal"):
        plan.drop_responses = 2.0
