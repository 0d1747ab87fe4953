"""Uploading records to a collector as OpenTelemetry logs (OTLP/HTTP) over verified TLS.

:class:`Uploader` drains the record store to a collector (``wking upload``, and ``wking agent
run`` every ``upload.interval``); :func:`open_uploader` builds one from an :class:`UploadTarget`
(the ``[upload]`` settings and command-line options). Its building blocks:

- :mod:`._tls`: the endpoint check (``https://`` only), the client ``SSLContext`` (TLS >= 1.2,
  verification always on, a CA bundle that replaces the system store, SHA-256 SPKI pins, mTLS),
  the bearer-token file;
- :mod:`._otlp`: ``LogRecord`` bytes encoded once per record, framed into requests, gzip;
- :mod:`._http`: :class:`OTLPSender`, one POST with a typed result;
- :mod:`._backoff`: exponential backoff with full jitter, ``Retry-After`` parsing;
- :mod:`._identity`: the pseudonymous installation id;
- :mod:`._uploader`: claim, consent, de-identification, send, acknowledge;
- :mod:`._probe`: the endpoint check of ``wking doctor``;
- :func:`mask_url`: an endpoint as messages and displays show it (query values masked).

Importing this package imports aiohttp (about half a second): the CLI imports it only on the
commands that upload. See docs/upload.md.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device._url_mask import mask_url
from wking_device.upload._backoff import BackoffPolicy, parse_retry_after
from wking_device.upload._connect import UploadTarget, open_uploader
from wking_device.upload._http import (
    Delivered,
    FailureKind,
    OTLPSender,
    Permanent,
    Retryable,
    SendResult,
    Timeouts,
    TooLarge,
)
from wking_device.upload._identity import forget_installation_id, installation_id
from wking_device.upload._otlp import (
    ATTR_CATEGORY,
    ATTR_CONSENT_ID,
    ATTR_INSTALLATION_ID,
    ATTR_IP_CONSENT,
    ATTR_POLICY_VERSION,
    ATTR_RECORD_ID,
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_PROTOBUF,
    SERVICE_NAME,
    LogsFramer,
    encode_log_record,
    encode_record,
    gzip_body,
)
from wking_device.upload._probe import EndpointReport, probe_endpoint
from wking_device.upload._tls import (
    Endpoint,
    TLSOptions,
    build_ssl_context,
    parse_endpoint,
    parse_pin,
    read_token,
    spki_sha256,
)
from wking_device.upload._uploader import NOT_DEIDENTIFIABLE, DrainResult, UploadCounters, Uploader

__all__ = [
    "ATTR_CATEGORY",
    "ATTR_CONSENT_ID",
    "ATTR_INSTALLATION_ID",
    "ATTR_IP_CONSENT",
    "ATTR_POLICY_VERSION",
    "ATTR_RECORD_ID",
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PROTOBUF",
    "NOT_DEIDENTIFIABLE",
    "SERVICE_NAME",
    "BackoffPolicy",
    "Delivered",
    "DrainResult",
    "Endpoint",
    "EndpointReport",
    "FailureKind",
    "LogsFramer",
    "OTLPSender",
    "Permanent",
    "Retryable",
    "SendResult",
    "TLSOptions",
    "Timeouts",
    "TooLarge",
    "UploadCounters",
    "UploadTarget",
    "Uploader",
    "build_ssl_context",
    "encode_log_record",
    "encode_record",
    "forget_installation_id",
    "gzip_body",
    "installation_id",
    "mask_url",
    "open_uploader",
    "parse_endpoint",
    "parse_pin",
    "parse_retry_after",
    "probe_endpoint",
    "read_token",
    "spki_sha256",
]

_publish(__name__, globals(), __all__)
