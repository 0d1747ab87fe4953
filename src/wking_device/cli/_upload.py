"""``wking upload``: drain pending records to the collector now, and the shared upload options.

This module parses the upload options (also used by ``wking agent run``), opens the
installation (gate, store), runs one :meth:`wking_device.upload.Uploader.drain` and prints what
it did, with a progress line on a terminal when the drain takes more than a second. aiohttp
and the uploader are imported inside the command, never at ``wking`` start-up.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from wking_device._url_mask import mask_url
from wking_device.cli._app import AppContext, pass_app
from wking_device.cli._term import markup

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from wking_device.upload import UploadCounters, UploadTarget

__all__ = ["check_endpoint", "register", "resolve_target", "upload_options"]

_PROGRESS_AFTER = 1.0


def upload_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--endpoint --ca-file --pin --client-cert --client-key --token-file`` to a command.

    Each option given replaces its ``[upload]`` setting for this run.
    """
    options = [
        click.option(
            "--endpoint",
            metavar="URL",
            default=None,
            help="The collector's OTLP/HTTP logs URL, https:// only (default: upload.endpoint).",
        ),
        click.option(
            "--ca-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            metavar="FILE",
            help="Trust only the CAs in this PEM file (default: upload.ca_bundle, else the "
            "system's).",
        ),
        click.option(
            "--pin",
            "pins",
            multiple=True,
            metavar="SHA256",
            help="A SHA-256 SPKI pin of the collector's key (repeatable; sha256//BASE64, base64 "
            "or hex).",
        ),
        click.option(
            "--client-cert",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            metavar="FILE",
            help="A PEM client certificate for mutual TLS.",
        ),
        click.option(
            "--client-key",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            metavar="FILE",
            help="Its private key, when not in the certificate file.",
        ),
        click.option(
            "--token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            metavar="FILE",
            help="A file (mode 0600) holding a bearer token (never the token itself on the "
            "command line).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def resolve_target(app: AppContext, options: dict[str, Any]) -> UploadTarget | None:
    """The upload target of the settings with the command's options applied (``None``: none)."""
    from wking_device.upload import UploadTarget  # noqa: PLC0415 - aiohttp is slow to import

    return UploadTarget.resolve(
        app.settings.upload,
        endpoint=options.get("endpoint"),
        ca_file=options.get("ca_file"),
        pins=tuple(options.get("pins") or ()),
        client_cert=options.get("client_cert"),
        client_key=options.get("client_key"),
        token_file=options.get("token_file"),
    )


def check_endpoint(app: AppContext) -> dict[str, Any] | None:
    """``wking doctor``'s check of the configured collector (``None`` when there is none).

    Raises:
        TLSError: The handshake failed (unknown CA, host name, expiry, pin).
        UploadError: The collector cannot be reached, or a configured file is unusable.
    """
    if app.settings.upload.endpoint is None:
        return None  # nothing to check, and no need to import aiohttp
    target = resolve_target(app, {})
    if target is None:
        return None
    from wking_device.upload import probe_endpoint  # noqa: PLC0415 - aiohttp is slow to import

    return app.run(probe_endpoint(target)).as_dict()


@click.command("upload", short_help="Send what consent allows to the collector now, over TLS.")
@upload_options
@pass_app
def upload(app: AppContext, /, **options: Any) -> None:
    """Send the pending records that consent allows to the collector now, over TLS.

    Exits 5 on a TLS or upload error, with every record not acknowledged still pending.
    """
    from wking_device.errors import UsageError  # noqa: PLC0415

    target = resolve_target(app, options)
    if target is None:
        raise UsageError(
            "no collector configured", remedy="give --endpoint URL or set upload.endpoint"
        )
    result = app.run(_drain(app, target))

    def render(console: Console) -> None:
        table = Table(title=f"Upload to {markup(result['endpoint'])}", show_header=False)
        for key in ("sent", "rejected", "deferred", "purged", "retried", "requests", "bytes"):
            table.add_row(key, str(result[key]))
        table.add_row("duration_s", str(result["duration_s"]))
        console.print(table)
        if result["cross_border"]:
            console.print(
                "the collector is outside your region: MAC addresses were pseudonymised and "
                "location kept here (grant cross_border_transfer to send them as they are)"
            )
        if not result["requests"]:
            console.print(
                "nothing was sent, so the collector was not contacted ('wking doctor' checks "
                "the connection)"
            )
        if result["deferred"]:
            console.print(
                f"{result['deferred']} records stay here: consent or the cross-border rule "
                "does not let them go now ('wking consent status')"
            )

    app.out(result, render)


async def _drain(app: AppContext, target: UploadTarget) -> dict[str, Any]:
    from wking_device.collect import open_installation_gate  # noqa: PLC0415
    from wking_device.store import DB_FILE, open_store  # noqa: PLC0415
    from wking_device.upload import open_uploader  # noqa: PLC0415

    paths, settings = app.paths, app.settings
    gate = open_installation_gate(paths, settings)
    if gate.tampered is not None:
        raise gate.tampered  # the ledger was altered: nothing may be sent (exit 7)
    base = {"endpoint": mask_url(target.endpoint.url)}  # its query may hold a secret
    db = paths.data_dir / DB_FILE
    if not db.exists() or db.stat().st_size == 0:
        empty = dict.fromkeys(
            ("sent", "retried", "rejected", "too_large", "deferred", "purged", "bytes"), 0
        )
        return {**base, **empty, "requests": 0, "duration_s": 0.0, "cross_border": False}
    progress = _Progress(enabled=not app.json and sys.stderr.isatty())
    async with open_store(paths, settings) as store:
        detach = store.attach(gate)  # a withdrawal seen meanwhile shreds at once
        try:
            uploader = open_uploader(
                target,
                store=store,
                gate=gate,
                data_dir=paths.data_dir,
                progress=progress.update,
            )
            async with uploader:
                result = await uploader.drain()
        finally:
            progress.close()
            detach()
    return {**base, **result.as_dict()}


class _Progress:
    """A one-line status on stderr, shown only on a terminal and after the first second."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._started = time.monotonic()
        self._status: Any = None

    def update(self, counters: UploadCounters) -> None:
        if not self._enabled:
            return
        elapsed = time.monotonic() - self._started
        if elapsed < _PROGRESS_AFTER:
            return
        text = f"uploading: {counters.sent} sent ({counters.sent / elapsed:,.0f}/s)"
        if self._status is None:
            from rich.console import Console  # noqa: PLC0415

            self._status = Console(stderr=True).status(text)
            self._status.start()
        else:
            self._status.update(text)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def register(group: click.Group) -> None:
    """Add ``upload`` to the root group."""
    group.add_command(upload)
