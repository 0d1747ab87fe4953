"""A reference OTLP/HTTP logs receiver over TLS, for tests, demos and benchmarks.

Public (like ``structlog.testing``); no core layer imports it. It owns a private CA and server
certificate (:func:`ensure_pki`), the request decoding, an SQLite file de-duplicating by
``wking.record_id`` and deterministic fault injection (:class:`FaultPlan`)::

    from wking_device.receiver import Receiver
    from wking_device.upload import OTLPSender, TLSOptions, build_ssl_context

    async with Receiver(data_dir, host="127.0.0.1", port=0) as rx:
        context = build_ssl_context(TLSOptions(ca_file=rx.ca_file))  # trust only its CA
        async with OTLPSender(rx.endpoint, ssl_context=context) as sender:
            ...

It is not a production collector: see docs/upload.md and docs/deploy.md.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.receiver._db import DB_FILE, export_records
from wking_device.receiver._faults import FaultDecision, FaultPicker, FaultPlan, load_fault_plan
from wking_device.receiver._pki import PKI, ensure_pki
from wking_device.receiver._server import Receiver, ReceiverStats

__all__ = [
    "DB_FILE",
    "PKI",
    "FaultDecision",
    "FaultPicker",
    "FaultPlan",
    "Receiver",
    "ReceiverStats",
    "ensure_pki",
    "export_records",
    "load_fault_plan",
]

_publish(__name__, globals(), __all__)
