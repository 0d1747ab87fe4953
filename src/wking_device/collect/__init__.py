"""Collectors: each declares its categories and needs a valid consent permit to emit a record.

Public names: the :class:`Collector` base, the concrete collectors
(:class:`OperationLogCollector`, :class:`DeviceInfoCollector`, :class:`SoftwareInfoCollector`,
:class:`DiagnosticsCollector`, :class:`LocationCollector`), the :class:`RecordSink` protocol with
:class:`MemorySink`, and :func:`open_installation_gate`. This package does not keep records (the
store does) nor decide consent (the gate does).
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.collect._base import Collector, CollectorStats
from wking_device.collect._collectors import (
    DeviceInfoCollector,
    DiagnosticsCollector,
    EventSource,
    LocationCollector,
    OperationLogCollector,
    SoftwareInfoCollector,
    host_adapter_mac,
    host_info,
    scrub,
)
from wking_device.collect._install import LEDGER_SECRET, open_installation_gate
from wking_device.collect._sink import (
    MAC_FIELDS,
    MAC_PATTERN,
    MemorySink,
    RecordSink,
    check_records,
)

__all__ = [
    "LEDGER_SECRET",
    "MAC_FIELDS",
    "MAC_PATTERN",
    "Collector",
    "CollectorStats",
    "DeviceInfoCollector",
    "DiagnosticsCollector",
    "EventSource",
    "LocationCollector",
    "MemorySink",
    "OperationLogCollector",
    "RecordSink",
    "SoftwareInfoCollector",
    "check_records",
    "host_adapter_mac",
    "host_info",
    "open_installation_gate",
    "scrub",
]

_publish(__name__, globals(), __all__)
