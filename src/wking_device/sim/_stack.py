"""The simulator's patched bumble parts: an in-process link, a controller and a quiet host.

This module owns every workaround for bumble 0.0.236's emulated controller and link (the gaps
listed in docs/testing.md and tested in tests/sim/test_sim_bumble_gaps.py):

- A/B: ``LE Create Connection Cancel`` really cancels the pending connection and reports the
  failure (stock bumble keeps the request: the next connect fails with ``COMMAND_DISALLOWED`` and
  the stale request later turns into a ghost connection).
- C: advertising reports are rebuilt from the sender's real state (connectable or not, the real
  scan response only to active scanners, a per-speaker RSSI), instead of "always connectable,
  scan response = advertising data, RSSI -50".
- D: a controller can leave the link ("out of range"): its traffic is dropped and every
  connection it has is terminated on both sides with reason 0x08 (connection timeout). Control
  PDUs to a peer that is gone are dropped instead of raising inside the controller.
- I: the answer to an HCI command whose waiter was just cancelled is dropped instead of raising
  ``InvalidStateError`` inside the host's packet callback.
- Cost: advertisements go only to controllers that scan or connect, addresses are looked up in
  a dict, and neither controller nor host formats packets for debug logging unless DEBUG is on.
- Noise: data sent on a connection the link has just dropped is discarded with a debug line
  (stock bumble logs a WARNING per packet, which users of ``--simulate`` and the examples saw).

It does not know about speakers, GATT or bleak; :mod:`wking_device.sim._world` wires these parts
together. Gaps E and F (GATT client) are handled in :mod:`wking_device.sim._client`, gap G (GATT
server permissions) in :mod:`wking_device.sim._speaker`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from bumble import hci, ll
from bumble.controller import Controller
from bumble.core import PhysicalTransport
from bumble.host import Host
from bumble.link import LocalLink

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CONNECTION_TIMEOUT",
    "SimController",
    "SimHost",
    "SimLink",
]

_LOGGER = logging.getLogger(__name__)

#: HCI reason 0x08: the link supervision timeout expired (what a peer out of range produces).
CONNECTION_TIMEOUT = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR
_CANCELLED = hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR
_RSSI_MIN, _RSSI_MAX = -127, 20

_ExtReport = hci.HCI_LE_Extended_Advertising_Report_Event
_ExtType = _ExtReport.EventType
_AdvProps = hci.HCI_LE_Set_Extended_Advertising_Parameters_Command.AdvertisingProperties
_LegacyType = hci.HCI_LE_Set_Advertising_Parameters_Command.AdvertisingType


def _key(address: hci.Address) -> bytes:
    # Address equality includes the address type; the link routes on the 6 bytes only.
    return bytes(address.address_bytes)


class SimLink(LocalLink):
    """An in-process link that routes by address and reaches only controllers that listen."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._by_address: dict[bytes, SimController] = {}
        self._listeners: dict[int, SimController] = {}

    # --- membership -------------------------------------------------------------------------

    def add_controller(self, controller: Controller) -> None:
        """Add a controller to the link."""
        self.controllers.add(controller)
        if isinstance(controller, SimController):
            self._by_address[_key(controller.random_address)] = controller

    def remove_controller(self, controller: Controller) -> None:
        """Remove a controller, first dropping its connections as if it went out of range."""
        if isinstance(controller, SimController):
            self.drop_connections(controller, CONNECTION_TIMEOUT)
            self._listeners.pop(id(controller), None)
            if self._by_address.get(_key(controller.random_address)) is controller:
                del self._by_address[_key(controller.random_address)]
        self.controllers.discard(controller)

    def on_address_changed(self, controller: Controller) -> None:
        """Re-index a controller whose random address changed."""
        if not isinstance(controller, SimController):
            return
        for key, value in list(self._by_address.items()):
            if value is controller:
                del self._by_address[key]
        self._by_address[_key(controller.random_address)] = controller

    def set_listening(self, controller: SimController, listening: bool) -> None:
        """Mark a controller as wanting advertisements (scanning or connecting) or not."""
        if listening:
            self._listeners[id(controller)] = controller
        else:
            self._listeners.pop(id(controller), None)

    def find_le_controller(self, address: hci.Address) -> Controller | None:
        """Return the controller that owns ``address`` (O(1))."""
        return self._by_address.get(_key(address))

    def find_sim_controller(self, address: hci.Address) -> SimController | None:
        """Like :meth:`find_le_controller`, typed."""
        return self._by_address.get(_key(address))

    # --- traffic ----------------------------------------------------------------------------

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: PhysicalTransport,
        data: bytes,
    ) -> None:
        """Deliver ACL data, dropping it when either end is out of range."""
        if transport != PhysicalTransport.LE:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        destination = self._by_address.get(_key(destination_address))
        if destination is None or destination.out_of_range:
            return
        if isinstance(sender_controller, SimController) and sender_controller.out_of_range:
            return
        source = sender_controller.random_address
        asyncio.get_running_loop().call_soon(destination.on_link_acl_data, source, transport, data)

    def send_advertising_pdu(
        self, sender_controller: Controller, packet: ll.AdvertisingPdu
    ) -> None:
        """Deliver an advertising PDU to the controllers that listen (gap C, cost)."""
        if not isinstance(sender_controller, SimController) or sender_controller.out_of_range:
            return
        loop = asyncio.get_running_loop()
        if isinstance(packet, ll.ConnectInd):
            target = self._by_address.get(_key(packet.advertiser_address))
            if target is not None and not target.out_of_range:
                loop.call_soon(target.on_ll_advertising_pdu, packet)
            return
        if not isinstance(packet, ll.AdvInd | ll.AdvExtInd) or sender_controller.silent:
            return
        for controller in list(self._listeners.values()):
            if controller is not sender_controller and not controller.out_of_range:
                loop.call_soon(controller.on_sim_advertising_pdu, sender_controller, packet)

    def send_ll_control_pdu(
        self, sender_address: hci.Address, receiver_address: hci.Address, packet: ll.ControlPdu
    ) -> None:
        """Deliver a link-layer control PDU; a peer that is gone is not an error (gap D)."""
        receiver = self._by_address.get(_key(receiver_address))
        sender = self._by_address.get(_key(sender_address))
        if (
            receiver is None
            or receiver.out_of_range
            or (sender is not None and sender.out_of_range)
        ):
            return
        asyncio.get_running_loop().call_soon(receiver.on_ll_control_pdu, sender_address, packet)

    def drop_connections(self, controller: SimController, reason: int) -> None:
        """Terminate every LE connection of ``controller`` on both ends with ``reason``."""
        for connection in list(controller.le_connections.values()):
            peer = self._by_address.get(_key(connection.peer_address))
            controller.on_le_disconnected(connection, reason)
            if peer is not None:
                peer_connection = peer.le_connections.get(connection.self_address)
                if peer_connection is None:
                    peer_connection = next(
                        (
                            c
                            for c in peer.le_connections.values()
                            if _key(c.peer_address) == _key(controller.random_address)
                        ),
                        None,
                    )
                if peer_connection is not None:
                    peer.on_le_disconnected(peer_connection, reason)

    def drop_connection(
        self, controller: SimController, peer_address: hci.Address, reason: int
    ) -> None:
        """Terminate one LE connection of ``controller`` (to ``peer_address``) on both ends."""
        for connection in list(controller.le_connections.values()):
            if _key(connection.peer_address) != _key(peer_address):
                continue
            controller.on_le_disconnected(connection, reason)
            peer = self._by_address.get(_key(peer_address))
            if peer is not None:
                for peer_connection in list(peer.le_connections.values()):
                    if _key(peer_connection.peer_address) == _key(controller.random_address):
                        peer.on_le_disconnected(peer_connection, reason)


class SimController(Controller):
    """A bumble controller with the simulator's fixes (gaps A/B, C, D and the cost).

    Attributes:
        rssi: The RSSI other controllers report for this one's advertisements (dBm), unless
            :attr:`rssi_by_receiver` says otherwise for a receiver.
        rssi_by_receiver: Per receiving controller (key: its address bytes), the RSSI it sees
            for this one, or ``None``: out of its reach (not heard, cannot connect).
        instant_connect: Connect at once when the target advertises, instead of waiting for its
            next advertisement (an option for large test fleets).
        connection_gate: Called with the initiator's address when a central tries to connect to
            this controller; returns ``None`` to accept or an HCI status to fail the attempt.
        connectable: Whether this controller accepts connections (its advertisements are then
            reported as non-connectable).
        silent: Send no advertisements (a powered-off speaker), without leaving the link.
    """

    def __init__(self, name: str, link: SimLink, address: hci.Address) -> None:
        self._pending: Any = None
        self._scanning = False
        self._out_of_range = False
        self.sim_link = link
        self.rssi = -60
        self.rssi_by_receiver: dict[bytes, int | None] = {}
        self.instant_connect = False
        self.connectable = True
        self.connection_gate: Callable[[hci.Address], int | None] | None = None
        self._active_scan = True
        self.silent = False
        super().__init__(name, link=None)
        self.link = link
        self.random_address = address
        link.add_controller(self)

    def rssi_seen_by(self, receiver: Controller) -> int | None:
        """The RSSI ``receiver`` sees for this controller; ``None``: out of its reach."""
        if not self.rssi_by_receiver:
            return int(self.rssi)
        return self.rssi_by_receiver.get(_key(receiver.random_address), int(self.rssi))

    # --- quiet HCI (cost) -------------------------------------------------------------------

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        """Dispatch a host packet without formatting it for the debug log."""
        if isinstance(packet, hci.HCI_Command):
            self.on_hci_command_packet(packet)
        elif isinstance(packet, hci.HCI_AclDataPacket):
            self.on_hci_acl_data_packet(packet)
        else:
            super().on_hci_packet(packet)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        """Send a packet to the host without formatting it for the debug log."""
        if self.host:
            asyncio.get_running_loop().call_soon(self.host.on_packet, bytes(packet))

    def on_hci_acl_data_packet(self, packet: hci.HCI_AclDataPacket) -> None:
        """Pass host data to its connection; data for a connection just dropped is discarded.

        When the link drops a connection (out of range, ``disconnect_after_ops``), the host may
        still send data on it before it hears of the disconnection, as on real hardware, where
        the controller discards it. Stock bumble logs a WARNING for each such packet, which
        examples and CLI users would see; it goes to the simulator's debug log instead.
        """
        if self.find_connection_by_handle(packet.connection_handle) is None:
            _LOGGER.debug(
                "%s: data for connection 0x%04X, which is gone, discarded",
                self.name,
                packet.connection_handle,
            )
            return
        super().on_hci_acl_data_packet(packet)

    # --- listening state (cost) -------------------------------------------------------------

    @property
    def pending_le_connection(self) -> Any:
        """The pending LE create-connection command, if any."""
        return self._pending

    @pending_le_connection.setter
    def pending_le_connection(self, value: Any) -> None:
        self._pending = value
        self._update_listening()
        if value is not None and self.instant_connect:
            asyncio.get_running_loop().call_soon(self._try_instant_connect)

    @property
    def le_scan_enable(self) -> bool:
        """Whether the controller scans."""
        return self._scanning

    @le_scan_enable.setter
    def le_scan_enable(self, value: bool) -> None:
        self._scanning = bool(value)
        self._update_listening()

    def _update_listening(self) -> None:
        link = getattr(self, "sim_link", None)
        if link is not None:
            link.set_listening(self, self._scanning or self._pending is not None)

    def on_hci_le_set_scan_parameters_command(self, command: Any) -> Any:
        """Record whether the scan is active (scan responses are only sent to active scans)."""
        result = super().on_hci_le_set_scan_parameters_command(command)
        self._active_scan = command.le_scan_type == 1
        return result

    def on_hci_le_set_extended_scan_parameters_command(self, command: Any) -> Any:
        """Record whether the scan is active (stock bumble ignores the scan type)."""
        result = super().on_hci_le_set_extended_scan_parameters_command(command)
        scan_types = list(getattr(command, "scan_types", []) or [1])
        self._active_scan = scan_types[0] == 1
        return result

    # --- range (gap D) ----------------------------------------------------------------------

    @property
    def out_of_range(self) -> bool:
        """Whether this controller has left the link (no traffic in or out)."""
        return self._out_of_range

    def set_out_of_range(self, value: bool) -> None:
        """Leave or re-enter the link; leaving drops every connection with reason 0x08."""
        if value and not self._out_of_range:
            self.sim_link.drop_connections(self, CONNECTION_TIMEOUT)
        self._out_of_range = value

    # --- connections (gaps A/B) -------------------------------------------------------------

    def on_hci_le_create_connection_cancel_command(self, _command: Any) -> Any:
        """Cancel the pending connection and report it as failed (stock bumble does neither)."""
        if self._pending is not None:
            peer = self._pending.peer_address
            self.pending_le_connection = None
            asyncio.get_running_loop().call_soon(self._report_connection_failure, peer, _CANCELLED)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def cancel_pending_connection(self) -> bool:
        """Drop a pending connection the host gave up on (e.g. its task was cancelled).

        Returns:
            Whether a connection was pending.
        """
        if self._pending is None:
            return False
        # No event: the host stopped listening, and a late failure event would be taken as
        # the answer to the host's next connection attempt.
        self.pending_le_connection = None
        return True

    def _report_connection_failure(self, peer: hci.Address, status: int) -> None:
        self.send_hci_packet(
            hci.HCI_LE_Connection_Complete_Event(
                status=status,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=peer.address_type,
                peer_address=peer,
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
        )

    def _try_instant_connect(self) -> None:
        pending = self._pending
        if pending is None:
            return
        target = self.sim_link.find_sim_controller(pending.peer_address)
        if (
            target is not None
            and target.is_connectable_now()
            and target.rssi_seen_by(self) is not None
        ):
            self.create_le_connection(pending.peer_address)

    def create_le_connection(self, peer_address: hci.Address) -> None:
        """Connect to an advertiser, unless its connection gate fails the attempt."""
        target = self.sim_link.find_sim_controller(peer_address)
        if target is None or not target.is_connectable_now() or target.rssi_seen_by(self) is None:
            return
        if target.connection_gate is not None:
            status = target.connection_gate(self.random_address)
            if status is not None:
                pending = self._pending
                self.pending_le_connection = None
                self._report_connection_failure(pending.peer_address, status)
                return
        super().create_le_connection(peer_address)

    def is_connectable_now(self) -> bool:
        """Whether this controller advertises connectably and is in range."""
        if self._out_of_range or self.silent or not self.connectable:
            return False
        state = self._advertiser_state(self.random_address)
        return state is not None and state[0]

    # --- advertising (gap C) ----------------------------------------------------------------

    def _advertiser_state(self, address: hci.Address) -> tuple[bool, bool, bytes, bytes] | None:
        """Return (connectable, scannable, advertising data, scan response) for ``address``."""
        legacy = self.le_legacy_advertiser
        if legacy.enabled and _key(legacy.address) == _key(address):
            adv_type = legacy.advertising_type
            connectable = adv_type in (
                _LegacyType.ADV_IND,
                _LegacyType.ADV_DIRECT_IND,
                _LegacyType.ADV_DIRECT_IND_LOW_DUTY,
            )
            scannable = adv_type in (_LegacyType.ADV_IND, _LegacyType.ADV_SCAN_IND)
            return connectable, scannable, legacy.advertising_data, legacy.scan_response_data
        for adv_set in self.advertising_sets.values():
            set_address = adv_set.address
            if adv_set.enabled and set_address is not None and _key(set_address) == _key(address):
                props = (
                    int(adv_set.parameters.advertising_event_properties)
                    if adv_set.parameters
                    else 0
                )
                return (
                    bool(props & _AdvProps.CONNECTABLE_ADVERTISING),
                    bool(props & _AdvProps.SCANNABLE_ADVERTISING),
                    bytes(adv_set.data),
                    bytes(adv_set.scan_response_data),
                )
        return None

    def on_sim_advertising_pdu(self, sender: SimController, pdu: ll.AdvInd | ll.AdvExtInd) -> None:
        """Turn an advertisement from ``sender`` into truthful reports (and connect if pending)."""
        if self._out_of_range or sender.out_of_range:
            return
        seen = sender.rssi_seen_by(self)
        if seen is None:
            return  # out of this receiver's reach
        address = pdu.advertiser_address
        state = sender._advertiser_state(address)
        if state is None:
            return
        connectable, scannable, adv_data, scan_rsp = state
        connectable = connectable and sender.connectable
        if self._scanning:
            rssi = max(_RSSI_MIN, min(_RSSI_MAX, seen))
            event_type = _ExtType.LEGACY_ADVERTISING_PDU_USED
            if connectable:
                event_type |= _ExtType.CONNECTABLE_ADVERTISING
            if scannable:
                event_type |= _ExtType.SCANNABLE_ADVERTISING
            reports = [self._ext_report(address, event_type, rssi, adv_data)]
            if scannable and self._active_scan:
                reports.append(
                    self._ext_report(address, event_type | _ExtType.SCAN_RESPONSE, rssi, scan_rsp)
                )
            for report in reports:
                self.send_hci_packet(_ExtReport([report]))
        pending = self._pending
        if pending is not None and connectable and _key(pending.peer_address) == _key(address):
            self.create_le_connection(pending.peer_address)

    @staticmethod
    def _ext_report(address: hci.Address, event_type: int, rssi: int, data: bytes) -> Any:
        return _ExtReport.Report(
            event_type=event_type,
            address_type=address.address_type,
            address=address,
            primary_phy=hci.Phy.LE_1M,
            secondary_phy=0,
            advertising_sid=0,
            tx_power=_ExtReport.TX_POWER_INFORMATION_NOT_AVAILABLE,
            rssi=rssi,
            periodic_advertising_interval=0,
            direct_address_type=0,
            direct_address=hci.Address.ANY,
            data=data,
        )

    def on_ll_advertising_pdu(self, packet: ll.AdvertisingPdu) -> None:
        """Handle a CONNECT_IND addressed to this controller (nothing else arrives here)."""
        if isinstance(packet, ll.ConnectInd) and not self._out_of_range:
            self.on_le_connect_ind(packet)


class SimHost(Host):
    """A bumble host that does not format every packet for the debug log (cost).

    Data sent on a connection the host has just seen dropped (a notification the speaker was
    sending when the link went, an ATT request racing the disconnection) is discarded with a
    debug line instead of bumble's WARNING: it is how a simulated link ends, not a fault.

    Gap I: when the waiter of an HCI command is cancelled (Ctrl-C while a device powers on),
    the stock host clears its pending command only once the cancelled task runs again; an
    answer arriving in between is handed to the cancelled future and ``set_result`` raises
    ``InvalidStateError`` inside the packet callback (printed as an asyncio error). The answer
    belongs to the abandoned command: it is dropped, and the cancelled task's clean-up releases
    the command slot as usual.
    """

    def send_acl_sdu(self, connection_handle: int, sdu: bytes) -> None:
        """Send an SDU; nothing (and no warning) for a connection that is gone."""
        if connection_handle not in self.connections:
            _LOGGER.debug("data for connection 0x%04X, which is gone, discarded", connection_handle)
            return
        super().send_acl_sdu(connection_handle, sdu)

    def on_command_processed(self, event: Any) -> None:
        """Hand a command's answer to its waiter, unless that waiter was cancelled."""
        pending = self.pending_response
        if pending is not None and pending.done():
            _LOGGER.debug("dropping the answer to a cancelled HCI command")
            return
        super().on_command_processed(event)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        """Send a packet to the controller."""
        if self.snooper:
            super().send_hci_packet(packet)
            return
        if self.hci_sink:
            self.hci_sink.on_packet(bytes(packet))

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        """Dispatch a controller packet without formatting it for the debug log."""
        if self.snooper or _LOGGER.isEnabledFor(logging.DEBUG):
            super().on_hci_packet(packet)
        elif isinstance(packet, hci.HCI_Event):
            self.on_hci_event_packet(packet)
        elif isinstance(packet, hci.HCI_AclDataPacket):
            self.on_hci_acl_data_packet(packet)
        else:
            super().on_hci_packet(packet)
