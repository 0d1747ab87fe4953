"""Wiring: ``[upload]`` settings and command-line options → a checked target → an uploader.

This module owns the precedence between the configuration file and the options of
``wking upload`` / ``wking agent run`` (an option replaces its setting; the others stay), and
building an :class:`~wking_device.upload.Uploader` from a target: the TLS context, the token, the
sender and the installation id. It does no I/O beyond reading those files.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wking_device  # annotations name wking_device.X: get_type_hints loads X lazily
from wking_device.upload._http import OTLPSender, Timeouts
from wking_device.upload._identity import installation_id
from wking_device.upload._tls import (
    Endpoint,
    TLSOptions,
    build_ssl_context,
    parse_endpoint,
    read_token,
)
from wking_device.upload._uploader import UploadCounters, Uploader

if TYPE_CHECKING:
    import wking_device.config


__all__ = ["UploadTarget", "open_uploader"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadTarget:
    """Where to upload and whom to trust.

    Attributes:
        endpoint: The checked ``https://`` endpoint.
        tls: CA bundle, pins, client certificate.
        token_file: The bearer-token file, if any.
        collector_region: The collector's region (``None``: the user's own).
        batch_size: Records per request.
        concurrency: Requests in flight.
        interval: Seconds between the agent's uploads.
    """

    endpoint: Endpoint
    tls: TLSOptions
    token_file: Path | None = None
    collector_region: str | None = None
    batch_size: int = 2000
    concurrency: int = 2
    interval: float = 30.0

    @classmethod
    def resolve(
        cls,
        upload: wking_device.config.UploadSettings,
        *,
        endpoint: str | None = None,
        ca_file: Path | None = None,
        pins: tuple[str, ...] = (),
        client_cert: Path | None = None,
        client_key: Path | None = None,
        token_file: Path | None = None,
    ) -> UploadTarget | None:
        """Combine the settings with command-line options (each option replaces its setting).

        Args:
            upload: The ``[upload]`` settings.
            endpoint: ``--endpoint``.
            ca_file: ``--ca-file``.
            pins: ``--pin`` (any given replace ``spki_pins``).
            client_cert: ``--client-cert``.
            client_key: ``--client-key``.
            token_file: ``--token-file``.

        Returns:
            The target, or ``None`` when no endpoint is configured or given.

        Raises:
            InsecureEndpoint: The endpoint is not ``https://``.
        """
        url = endpoint if endpoint is not None else upload.endpoint
        if url is None:
            return None
        cert = client_cert if client_cert is not None else upload.client_cert
        key = (
            client_key
            if client_key is not None
            else (upload.client_key if client_cert is None else None)
        )
        return cls(
            endpoint=parse_endpoint(url),
            tls=TLSOptions(
                ca_file=ca_file if ca_file is not None else upload.ca_bundle,
                pins=tuple(pins) if pins else tuple(upload.spki_pins),
                client_cert=cert,
                client_key=key,
            ),
            token_file=token_file if token_file is not None else upload.token_file,
            collector_region=upload.collector_region,
            batch_size=upload.batch_size,
            concurrency=upload.concurrency,
            interval=upload.interval,
        )

    def sender(self, *, timeouts: Timeouts | None = None) -> OTLPSender:
        """Build the TLS context and the sender (reads the CA, certificate and token files).

        Raises:
            CredentialError: A file cannot be used (missing, not private, not PEM...).
        """
        context = build_ssl_context(self.tls)
        token = read_token(self.token_file) if self.token_file is not None else None
        return OTLPSender(
            self.endpoint,
            ssl_context=context,
            token=token,
            timeouts=timeouts,
            max_connections=self.concurrency,
        )


def open_uploader(
    target: UploadTarget,
    *,
    store: wking_device.RecordStore,
    gate: wking_device.ConsentGate,
    data_dir: Path,
    max_attempts: int | None = 8,
    timeouts: Timeouts | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rng: random.Random | None = None,
    progress: Callable[[UploadCounters], None] | None = None,
) -> Uploader:
    """Build an uploader for a target (close it with ``await uploader.aclose()``).

    Args:
        target: Where to upload.
        store: The open record store.
        gate: The consent gate.
        data_dir: The installation's data directory (holds the installation id, created here
            on first upload).
        max_attempts: Failed requests of a batch in a row (splits included) before a drain
            gives up (``None``: never); see :class:`~wking_device.upload.Uploader`.
        timeouts: Request timeouts.
        sleep: Injected sleep (tests).
        rng: Injected jitter source (tests).
        progress: Called after each batch with the counters.

    Raises:
        CredentialError: The CA bundle, client certificate or token file cannot be used.
        StorageError: The installation id cannot be created.
    """
    sender = target.sender(timeouts=timeouts)
    return Uploader(
        store,
        gate,
        sender,
        installation_id=installation_id(data_dir, create=True) or "",
        collector_region=target.collector_region,
        batch_size=target.batch_size,
        concurrency=target.concurrency,
        max_attempts=max_attempts,
        sleep=sleep,
        rng=rng,
        progress=progress,
    )
