"""The uploader: claim a batch, re-check consent, de-identify, encode, send, acknowledge.

:class:`Uploader` drains the record store to one collector. One task claims up to ``batch_size``
records the current consent lets it send, de-identifies them when the transfer is cross-border and
not permitted, and encodes each record's ``LogRecord`` once, one batch ahead of the ``concurrency``
workers; each worker takes a prepared batch → checks every record against consent as it is right
before sending (withdrawn: purged, never sent) → frames, gzips (consent checked again after) → POSTs
→ acknowledges (the store deletes what the collector accepted, only after its 2xx; the delete runs
while the worker sends its next batch). Memory is bounded by ``(concurrency + 1) * batch_size``
records whatever the backlog: a batch holds one of ``concurrency + 1`` slots from before its claim
until it is deleted, set aside or released.

What happens to a record (docs/upload.md, "Delivery"):

======================================  ============================================================
sent and accepted (2xx)                 deleted locally (``sent``)
consent withdrawn (grant no longer      crypto-shredded (:meth:`RecordStore.purge`) or deleted;
live)                                   never sent (``purged``)
category suspended, denied, Do Not      not sent, kept pending (``deferred``): it goes when
Track, minor, or not de-identifiable    consent returns, or retention deletes it
cross-border (``location``,
``mac_addresses``)
collector ``partial_success``           OTLP forbids retrying and does not say which records it
                                        rejected: the whole batch is kept locally in state
                                        ``rejected`` for inspection (``rejected`` counts the
                                        collector's number), never claimed again
2xx answer that cannot be read          whether the collector stored or rejected records is
                                        unknown: the drain stops with
                                        :class:`~wking_device.errors.UploadRejected`, the
                                        records pending (neither deleted nor set aside)
413 Request Entity Too Large            the batch is split in halves down to one record; a single
                                        record still too large is set aside as rejected
                                        (``too_large``), a second in a row with no delivery
                                        between, or one no larger than a body delivered in
                                        the drain, ends it (``UploadRejected``); later
                                        bodies as large are split before they are sent, for
                                        the rest of the drain
timeout while the body was being sent   a slow uplink or collector: the batch is sent in halves,
                                        and later requests hold at most that many records
                                        (doubling again after 8 full ones in a row); a single
                                        record, or a request no larger than the last one
                                        delivered (a first time), is retried with backoff
                                        (``retried``: the records sent again, the halves'
                                        included); each such timeout is a failed attempt
429/503/5xx/connection failures         retried with exponential backoff and full jitter, never
                                        before ``Retry-After`` (``retried``); after
                                        ``max_attempts`` failed requests of a batch in a row
                                        (splits included; a delivery starts the count again)
                                        the drain stops with
                                        :class:`~wking_device.errors.UploadUnavailable`
400/401/403/404 and other permanent     the drain stops with
statuses, TLS failures                  :class:`~wking_device.errors.UploadRejected` /
                                        :class:`~wking_device.errors.TLSError`; nothing is lost
======================================  ============================================================

Records claimed and not acknowledged are released to pending on every way out (error,
cancellation); after a crash the store makes them pending again when it is reopened, so they are
re-sent and the collector de-duplicates them by ``wking.record_id`` (at-least-once delivery,
exactly-once in effect at a de-duplicating receiver).

Time is injected (``sleep``, ``rng``), so tests control backoff and ``Retry-After`` waits.
This module does not build TLS contexts (:mod:`._tls`), speak HTTP (:mod:`._http`) or decide
consent (the gate does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final

import orjson

import wking_device  # annotations name wking_device.X: get_type_hints loads X lazily
from wking_device._redact import MAC_RE
from wking_device._url_mask import mask_url
from wking_device.errors import (
    StorageError,
    UploadError,
    UploadRejected,
    UploadUnavailable,
    UsageError,
)
from wking_device.models import MAC_FIELDS
from wking_device.policy import CATALOG
from wking_device.upload._backoff import BackoffPolicy
from wking_device.upload._http import (
    Delivered,
    FailureKind,
    OTLPSender,
    Permanent,
    Retryable,
    TooLarge,
)
from wking_device.upload._otlp import LogRecordEncoder, LogsFramer, gzip_body
from wking_device.upload._parts import _Parts
from wking_device.upload._speaker_key import _SPEAKER_KEY, _SPEAKER_MARK, _without_speaker_key

if TYPE_CHECKING:
    import wking_device.crypto
    from wking_device.store import OpenedRecord
    from wking_device.upload._http import SendResult

__all__ = [
    "NOT_DEIDENTIFIABLE",
    "DrainResult",
    "UploadCounters",
    "Uploader",
]

_LOGGER = logging.getLogger(__name__)

NOT_DEIDENTIFIABLE: Final = frozenset({"location", "mac_addresses"})
"""Categories whose records *are* the identifying data: never sent cross-border without
``cross_border_transfer`` (kept locally, counted as deferred)."""

_MAC_CATEGORY: Final = "mac_addresses"
_GROW_AFTER: Final = 8
"""Full requests in a row at a lowered size (after a timeout while sending) before it doubles."""
_CROSS_BORDER: Final = "cross_border_transfer"
_IP_CATEGORY: Final = "ip_address"
_LOCATION_KEY: Final = "location"
_PERMANENT_REMEDY: Final = {
    400: "the collector could not read the request: check that the endpoint is an OTLP/HTTP "
    "logs endpoint of a compatible version",
    401: "the collector wants credentials: check upload.token_file / --token-file",
    403: "the collector refused these credentials: check the token or client certificate",
    404: "no OTLP logs endpoint at that URL: check the endpoint's path (usually /v1/logs)",
}


@dataclass(slots=True)
class UploadCounters:
    """What an uploader did (cumulative over its drains).

    Attributes:
        sent: Records the collector accepted (deleted locally).
        retried: Records sent again after a retryable failure (each re-send counts).
        rejected: Records the collector declared rejected (``partial_success``) or that were
            too large to send alone; kept locally in state ``rejected``.
        too_large: Of those, records set aside because one alone exceeded the collector's limit.
        deferred: Records left pending that current consent or the cross-border rule keeps
            local (as of the end of the last complete drain).
        purged: Records dropped at send time because their consent was withdrawn.
        bytes: Compressed request bytes posted (every attempt).
        requests: Requests posted.
    """

    sent: int = 0
    retried: int = 0
    rejected: int = 0
    too_large: int = 0
    deferred: int = 0
    purged: int = 0
    bytes: int = 0
    requests: int = 0

    def as_dict(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainResult:
    """What one :meth:`Uploader.drain` did.

    Attributes:
        counters: This drain's counts (``deferred``: records left pending at its end).
        duration_s: Wall time.
        cross_border: Whether records were de-identified for a collector in another region.
    """

    counters: UploadCounters
    duration_s: float
    cross_border: bool

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``wking upload --json``."""
        return {
            **self.counters.as_dict(),
            "duration_s": round(self.duration_s, 3),
            "cross_border": self.cross_border,
        }


@dataclass(slots=True)
class _Prepared:
    """A claimed batch encoded ahead of its send, and whether it was de-identified."""

    parts: _Parts
    restricted: bool
    acks: list[asyncio.Task[None]] = field(default_factory=list)
    """The deletes of its accepted parts, still running (the batch's slot waits for them)."""


@dataclass(slots=True)
class _Failures:
    """Failed requests of one claimed batch since one of its requests was last delivered."""

    count: int = 0


@dataclass(slots=True)
class _Plan:
    """What may be sent now: computed from the gate before each claim and each send."""

    generation: int
    scopes: frozenset[str]
    restricted: bool
    ip_consent: bool
    withdrawn: frozenset[str] = field(default_factory=frozenset)


class Uploader:
    """Drains the record store to one collector (see the module docstring).

    Args:
        store: The open record store (read-write).
        gate: The consent gate (refreshed before each claim, consulted before each send).
        sender: The HTTP sender (owns the TLS connections); closed by :meth:`aclose`.
        installation_id: The pseudonymous installation id for the resource.
        collector_region: The collector's region; ``None`` means the user's own.
        pseudonymizer: MAC pseudonyms for cross-border de-identification (built from the
            store's key store when needed and not given).
        batch_size: Records per request (and per claim).
        concurrency: Requests in flight (workers); one more batch is claimed ahead of them.
        backoff: Retry timing.
        max_attempts: Failed requests of a batch in a row (a timeout that splits it
            included; a delivery of any of its records starts the count again) before the drain
            gives up with :class:`~wking_device.errors.UploadUnavailable` (``None``: keep
            trying). 1: no retry and no split.
        sleep: ``asyncio.sleep`` (inject a fake in tests).
        rng: The random source for jitter.
        progress: Called with the cumulative counters after each batch is settled (its
            accepted records deleted).
    """

    def __init__(
        self,
        store: wking_device.RecordStore,
        gate: wking_device.ConsentGate,
        sender: OTLPSender,
        *,
        installation_id: str,
        collector_region: str | None = None,
        pseudonymizer: wking_device.crypto.MacPseudonymizer | None = None,
        batch_size: int = 2000,
        concurrency: int = 2,
        backoff: BackoffPolicy | None = None,
        max_attempts: int | None = 8,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        progress: Callable[[UploadCounters], None] | None = None,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise UsageError(
                "batch_size and concurrency must be at least 1, not "
                f"batch_size={batch_size}, concurrency={concurrency}"
            )
        if max_attempts is not None and max_attempts < 1:
            raise UsageError(f"max_attempts must be at least 1 (or None), not {max_attempts}")
        self._store = store
        self._gate = gate
        self._sender = sender
        self._installation_id = installation_id
        self._collector_region = collector_region
        self._pseudonymizer = pseudonymizer
        self._batch_size = batch_size
        self._send_limit = batch_size
        """Records per request: halved when a request timed out while its body went out (a
        slow uplink or collector), doubled again after _GROW_AFTER full requests in a row."""
        self._fitted = 0
        self._refused_bytes: int | None = None
        """The smallest body the collector answered 413 in this drain: a body as large is
        split before it is sent (413 means "over my size limit"), not posted in vain again.
        Doubled after _GROW_AFTER deliveries in a row: a collector that refused a small body
        once (flaky, hostile) cannot make the rest of the drain go one record at a time."""
        self._since_refused = 0
        self._accepted = (0, 0)
        """The largest body delivered in this drain: (gzip bytes, framed bytes). A record alone
        no larger in both is not over the collector's size limit, whatever a 413 says."""
        self._set_aside_alone = False
        """A record alone was set aside as too large (413) in this drain, and nothing was
        delivered since: a second one ends the drain (a collector refusing everything)."""
        self._went = 0
        """Records in the last request delivered: a timeout at a size no larger is first
        retried as it is (a blip, not a request too large)."""
        self._concurrency = concurrency
        self._backoff = backoff or BackoffPolicy()
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._progress = progress
        self._framers: dict[bool, LogsFramer] = {}
        self._encoder = LogRecordEncoder()
        self._plan: _Plan | None = None
        self.counters = UploadCounters()
        self.last_error: str | None = None
        self._late: set[asyncio.Future[int]] = set()  # releases of claims cut short
        self._claiming: set[asyncio.Future[list[OpenedRecord]]] = set()  # claims running
        self._acking: set[asyncio.Task[None]] = set()  # batches whose deletes are running
        self._ack_failure: BaseException | None = None

    @property
    def endpoint(self) -> str:
        """The collector's URL, as it is sent to.

        Its query may hold a secret (``?api_key=…``): messages and displays use
        :func:`~wking_device.upload.mask_url` of it (as this uploader's errors do), never this.
        """
        return self._sender.endpoint.url

    async def aclose(self) -> None:
        """Close the connections to the collector (idempotent).

        A closed uploader stays closed: :meth:`drain` and :meth:`run` raise
        :class:`~wking_device.errors.UsageError` and claim, open and send nothing.
        """
        await self._sender.close()

    async def __aenter__(self) -> Uploader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- consent --------------------------------------------------------------------------------

    def _current_plan(self) -> _Plan:
        """What may be sent under the gate's state now (cached per gate generation)."""
        gate = self._gate
        plan = self._plan
        if plan is not None and plan.generation == gate.generation:
            return plan
        allowed = {category for category in CATALOG if gate.allows(category)}
        restricted = (
            self._collector_region is not None
            and self._collector_region.casefold() != gate.region.casefold()
            and _CROSS_BORDER not in allowed
        )
        sendable = allowed - NOT_DEIDENTIFIABLE if restricted else set(allowed)
        scopes = set(sendable)
        if _MAC_CATEGORY in allowed:
            scopes.update(f"{category}+{_MAC_CATEGORY}" for category in sendable)
        withdrawn = frozenset(
            category for category, state in gate.states().items() if state.reason == "withdrawn"
        )
        plan = _Plan(
            generation=gate.generation,
            scopes=frozenset(scopes),
            restricted=restricted,
            ip_consent=_IP_CATEGORY in allowed and not restricted,
            withdrawn=withdrawn,
        )
        self._plan = plan
        return plan

    def _framer(self, ip_consent: bool) -> LogsFramer:
        framer = self._framers.get(ip_consent)
        if framer is None:
            framer = self._framers[ip_consent] = LogsFramer(
                self._installation_id, ip_address_consent=ip_consent
            )
        return framer

    # --- encoding -------------------------------------------------------------------------------

    def _pseudonym(self, value: str) -> str:
        if self._pseudonymizer is None:
            from wking_device.crypto import MacPseudonymizer  # noqa: PLC0415

            self._pseudonymizer = MacPseudonymizer(self._store.keys)
        try:
            return self._pseudonymizer.pseudonym(value)
        except Exception:  # noqa: BLE001 - not a MAC after all: never send it as it is
            return "[MAC]"

    def _deidentify(self, value: Any, depth: int = 0) -> Any:
        """MAC addresses (any spelling) → keyed pseudonyms; ``location``, ``speaker`` dropped."""
        if isinstance(value, str):
            return MAC_RE.sub(lambda match: self._pseudonym(match.group(0)), value)
        if depth > 32:
            return None
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if key == _LOCATION_KEY or (depth == 0 and key == _SPEAKER_KEY):
                    continue
                if key in MAC_FIELDS and isinstance(item, str):
                    out[key] = self._pseudonym(item)
                else:
                    out[key] = self._deidentify(item, depth + 1)
            return out
        if isinstance(value, list):
            return [self._deidentify(item, depth + 1) for item in value]
        return value

    def _encode(self, rows: list[OpenedRecord], *, restricted: bool) -> _Parts:
        """Encode each record's ``LogRecord`` from its body's JSON text (no object built)."""
        if restricted:
            deidentified = [
                row._replace(body=orjson.dumps(self._deidentify(orjson.loads(row.body))))
                for row in rows
            ]
            encoded = self._encoder.encode_many(deidentified, time.time_ns(), framed=True)
        else:
            # the encoder reads the first six fields: a plain tuple, not a named one, when the
            # body changes (``_replace`` costs more than the rest of the row's encoding)
            mark = _SPEAKER_MARK
            strip = _without_speaker_key
            sendable = [
                (row[0], row[1], row[2], row[3], strip(row[4]), row[5]) if mark in row[4] else row
                for row in rows
            ]
            encoded = self._encoder.encode_many(sendable, time.time_ns(), framed=True)
        ids: list[str] = []
        kinds: list[int] = []
        index: dict[tuple[str, str, str], int] = {}
        for record_id, category, consent_id, _, _, _, scope in rows:
            key = (scope, category, consent_id)
            kind = index.get(key)
            if kind is None:
                kind = index[key] = len(index)
            ids.append(record_id)
            kinds.append(kind)
        return _Parts(ids, encoded, kinds, list(index))

    # --- draining -------------------------------------------------------------------------------

    async def drain(self) -> DrainResult:
        """Send everything the current consent lets go, then return.

        Whatever goes wrong, the records not acknowledged are pending again.

        Returns:
            What this drain did.

        Raises:
            TLSError: The collector's certificate or key did not verify; nothing was sent.
            UploadRejected: The collector refused the upload permanently (4xx).
            UploadUnavailable: It stayed unavailable for ``max_attempts`` attempts of a batch.
            StorageError: The store failed.
            UsageError: The uploader was closed (:meth:`aclose`).
        """
        if self._sender.closed:
            raise UsageError(
                f"cannot drain to {mask_url(self.endpoint)}: this uploader was closed",
                remedy="open a new uploader (open_uploader) instead of reusing a closed one",
            )
        started = time.monotonic()
        before = UploadCounters(**self.counters.as_dict())
        self._refused_bytes = None  # each drain asks again: the collector's limit may have grown
        self._since_refused = 0
        self._set_aside_alone = False
        self._accepted = (0, 0)
        self._ack_failure = None
        ready: asyncio.Queue[_Prepared | None] = asyncio.Queue()
        # a batch holds a slot from before its claim until it is settled (acknowledged, set
        # aside or released): ``concurrency`` batches in flight and one prepared ahead
        slots = asyncio.Semaphore(self._concurrency + 1)
        tasks = [asyncio.create_task(self._prefetch(ready, slots), name="wking-upload-claim")]
        tasks += [
            asyncio.create_task(self._worker(ready, slots), name=f"wking-upload-{n}")
            for n in range(self._concurrency)
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failure = next(
                (task.exception() for task in done if not task.cancelled() and task.exception()),
                None,
            )
            if failure is None:
                await self._acked()
        except BaseException:
            await self._stop(tasks, ready)
            raise
        if failure is None:
            failure = self._ack_failure
        if failure is not None:
            await self._stop(tasks, ready)
            if isinstance(failure, UploadError):
                self.last_error = str(failure)
            raise failure
        stats = await self._store.stats()
        self.counters.deferred = stats.pending
        self.last_error = None
        now = self.counters.as_dict()
        delta = UploadCounters(**{key: now[key] - getattr(before, key) for key in now})
        delta.deferred = stats.pending
        result = DrainResult(
            counters=delta,
            duration_s=time.monotonic() - started,
            cross_border=self._current_plan().restricted,
        )
        if delta.sent or delta.rejected or delta.purged:
            _LOGGER.info(
                "uploaded %d records (%d rejected, %d purged, %d deferred) in %.1f s",
                delta.sent,
                delta.rejected,
                delta.purged,
                delta.deferred,
                result.duration_s,
            )
        return result

    async def _stop(
        self, tasks: list[asyncio.Task[None]], ready: asyncio.Queue[_Prepared | None]
    ) -> None:
        """Cancel the drain's tasks; the batches prepared and not taken are pending again."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # a claim cut short runs on in the store's thread and is then released: the drain
        # returns with nothing of it left claimed
        if self._claiming:
            await asyncio.shield(asyncio.gather(*self._claiming, return_exceptions=True))
        if self._late:
            await asyncio.shield(asyncio.gather(*self._late, return_exceptions=True))
        # deletes of what the collector accepted run to their end
        await asyncio.shield(asyncio.gather(*self._acking, return_exceptions=True))
        left: set[str] = set()
        while not ready.empty():
            prepared = ready.get_nowait()
            if prepared is not None:
                left.update(prepared.parts.ids)
        if left:
            await asyncio.shield(self._store.release(left))

    async def _prefetch(
        self, ready: asyncio.Queue[_Prepared | None], slots: asyncio.Semaphore
    ) -> None:
        """Claim and encode batches ahead of the workers (at most one waits for a worker).

        Claiming and encoding the next batch overlaps the requests in flight, so a worker sends
        its next batch as soon as its last one is answered. Nothing prepared here is sent
        without the consent check of the moment it is sent (:meth:`_deliver`).
        """
        try:
            while True:
                await slots.acquire()
                self._gate.refresh()  # another process may have withdrawn (cheap when unchanged)
                plan = self._current_plan()
                if not plan.scopes:
                    slots.release()
                    return
                try:
                    parts = await self._claim_encoded(plan)
                except asyncio.CancelledError:
                    raise  # the drain is stopping: its slots go with it
                except BaseException:
                    slots.release()
                    raise
                if parts is None:
                    slots.release()
                    return
                ready.put_nowait(_Prepared(parts, plan.restricted))
        finally:
            for _ in range(self._concurrency):
                ready.put_nowait(None)  # no more batches: each worker stops

    async def _claim_encoded(self, plan: _Plan) -> _Parts | None:
        """Claim a batch and encode it (``None``: nothing to claim).

        The opened records die here: only the encoded parts live on until the batch is settled.
        """
        claiming = asyncio.ensure_future(
            self._store.claim_opened(self._batch_size, scopes=plan.scopes)
        )
        self._claiming.add(claiming)
        claiming.add_done_callback(self._claiming.discard)
        try:
            rows = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # the claim goes on in the store's thread: what it takes is pending again
            claiming.add_done_callback(self._release_late)
            raise
        if not rows:
            return None
        try:
            return self._encode(rows, restricted=plan.restricted)
        except BaseException:
            await asyncio.shield(self._store.release([row.record_id for row in rows]))
            raise

    async def _worker(
        self, ready: asyncio.Queue[_Prepared | None], slots: asyncio.Semaphore
    ) -> None:
        while True:
            if self._ack_failure is not None:
                raise self._ack_failure  # the store failed: stop sending
            prepared = await ready.get()
            if prepared is None:
                return
            outstanding = set(prepared.parts.ids)
            try:
                await self._settle(prepared, outstanding)
            finally:
                if prepared.acks:
                    # the batch keeps its slot until its deletes are done; meanwhile this
                    # worker sends the batch prepared behind it
                    finishing = asyncio.ensure_future(self._finish(prepared.acks, slots))
                    self._acking.add(finishing)
                    finishing.add_done_callback(self._acking.discard)
                else:
                    slots.release()
                if outstanding:
                    # an error or a cancellation: whatever was not settled is pending again
                    await asyncio.shield(self._store.release(outstanding))
            if self._progress is not None and not prepared.acks:
                self._progress(self.counters)

    async def _finish(self, acks: list[asyncio.Task[None]], slots: asyncio.Semaphore) -> None:
        """Wait for a batch's deletes, then free its slot (a failure stops the drain)."""
        try:
            for outcome in await asyncio.gather(*acks, return_exceptions=True):
                if isinstance(outcome, BaseException) and self._ack_failure is None:
                    self._ack_failure = outcome
        finally:
            slots.release()
        if self._progress is not None:
            self._progress(self.counters)  # the batch is settled: its records counted as sent

    async def _acked(self) -> None:
        """Wait for every delete still running.

        Shielded: a cancelled drain must not cancel the deletes. The store's thread completes a
        delete handed over anyway, and a cancelled one never counted its records as ``sent``;
        :meth:`_stop` waits for them to their end.
        """
        while self._acking:
            await asyncio.shield(asyncio.gather(*self._acking, return_exceptions=True))

    async def _ack(self, ids: list[str]) -> None:
        """Delete records the collector accepted (see :meth:`_delivered`)."""
        try:
            # no fsync of its own: a power loss may undo the delete, and the records are then
            # re-sent and de-duplicated by the collector (they are never lost)
            await self._store.ack(ids, sync=False)
        except BaseException:
            # what was not deleted is pending again (or at the store's reopening)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.release(ids))
            raise
        self.counters.sent += len(ids)

    def _release_late(self, claiming: asyncio.Future[list[OpenedRecord]]) -> None:
        """Release what a claim cut short by a cancellation took (else claimed until reopen)."""
        if claiming.cancelled() or claiming.exception() is not None or not claiming.result():
            return
        ids = {record.record_id for record in claiming.result()}
        releasing = asyncio.ensure_future(self._store.release(ids))
        self._late.add(releasing)
        releasing.add_done_callback(self._late.discard)
        releasing.add_done_callback(_quiet)

    async def _check(self, parts: _Parts, outstanding: set[str]) -> _Parts:
        """Consent, right before a send: keep what may go; purge or defer the rest.

        Every record is checked against the gate's state of this moment; records of one key
        scope, category and grant get the same answer, so the gate is asked once for each.
        """
        self._gate.refresh()
        plan = self._current_plan()
        allows = self._gate.allows
        scopes = plan.scopes
        verdicts = [
            scope in scopes and allows(category, consent_id)
            for scope, category, consent_id in parts.keys
        ]
        if all(verdicts[kind] for kind in set(parts.kinds)):
            return parts  # every record may go (the common case): nothing to filter
        # what may not go now: withdrawn (purged, never sent) or deferred (kept pending)
        gone = [
            not verdict
            and (category in plan.withdrawn or not self._grant_live(category, consent_id))
            for verdict, (_, category, consent_id) in zip(verdicts, parts.keys, strict=True)
        ]
        keep: list[int] = []
        withdrawn: list[str] = []
        deferred: list[str] = []
        categories: set[str] = set()
        for i, (record_id, kind) in enumerate(zip(parts.ids, parts.kinds, strict=True)):
            if verdicts[kind]:
                keep.append(i)
            elif gone[kind]:
                withdrawn.append(record_id)
                categories.add(parts.keys[kind][1])
            else:
                deferred.append(record_id)
        if withdrawn:
            await self._drop_withdrawn(withdrawn, categories, plan)
            outstanding.difference_update(withdrawn)
        if deferred:
            await self._store.release(deferred)
            outstanding.difference_update(deferred)
        return parts.take(keep)

    def _consent_unchanged(self, generation: int) -> bool:
        """Whether the gate is as it was at ``generation`` (other processes' changes included)."""
        self._gate.refresh()
        return self._gate.generation == generation

    def _grant_live(self, category: str, consent_id: str) -> bool:
        """Whether a record's own grant is still live (withdrawn-and-granted-again is not)."""
        state = self._gate.states().get(category)
        if state is None or not state.granted:
            return True  # denied for another reason (DNT, suspended...): defer, not purge
        return self._gate.allows(category, consent_id)

    async def _drop_withdrawn(self, ids: list[str], categories: set[str], plan: _Plan) -> None:
        for category in sorted(categories & plan.withdrawn):
            await self._store.purge(category)  # crypto-shred what is left of it
        # records of a grant withdrawn and since given again: delete them one by one
        await self._store.ack(ids)
        self.counters.purged += len(ids)
        _LOGGER.info("%d records not sent: their consent was withdrawn", len(ids))

    async def _settle(self, prepared: _Prepared, outstanding: set[str]) -> None:
        """Send one claimed batch until every record is acknowledged, set aside or released."""
        # each part with whether it went out before (its halves after a timeout while it was
        # sent): its first request then counts as a re-send (``retried``)
        stack: list[tuple[_Parts, bool]] = [(prepared.parts, False)]
        failures = _Failures()
        while stack:
            batch, again = stack.pop()
            if len(batch) > self._send_limit:
                stack.extend((half, again) for half in reversed(batch.halves()))
                continue
            halves, again = await self._deliver(batch, prepared, outstanding, failures, again=again)
            stack.extend((half, again) for half in reversed(halves))

    async def _deliver(
        self,
        batch: _Parts,
        prepared: _Prepared,
        outstanding: set[str],
        failures: _Failures,
        *,
        again: bool = False,
    ) -> tuple[list[_Parts], bool]:
        """Send one request (with retries); return the halves to send next, if any.

        The halves are those of a request too large (413), or of one that timed out while it
        was sent (then True: they went out once already). ``again``: ``batch`` went out before
        (its first request counts as a re-send). ``failures``: the claimed batch's failed
        requests since its last delivery, this part's and its halves' included: a drain gives
        up after ``max_attempts`` of them, whether they were retried as they were or split.

        Raises:
            UploadUnavailable: ``max_attempts`` requests of the batch failed in a row.
            UploadRejected: A permanent refusal.
        """
        restricted = prepared.restricted
        tries = 0  # requests of this part sent so far
        timed_out = False  # this part timed out while it was sent
        while True:
            # consent right before each attempt: it may have changed since the claim (the
            # batch was prepared ahead) or while a retry waited
            batch = await self._recheck(batch, restricted, outstanding)
            if not batch:
                return [], False
            plan = self._current_plan()
            framer = self._framer(plan.ip_consent)
            # framing is a join and zlib releases the GIL: off the event loop, the compression
            # of one batch overlaps the claim, decryption and encoding of the next
            generation = self._gate.generation
            body = await asyncio.to_thread(_frame_gzip, framer, batch.encoded)
            if not self._consent_unchanged(generation):
                continue  # consent changed while the body was framed: check again first
            if len(batch) > 1 and len(body) >= (self._refused_bytes or len(body) + 1):
                # a body as large was refused (413): not sent; its halves are re-sends if it
                # went out before (a retry, when another worker's 413 lowered the size)
                return batch.halves(), again or tries > 0
            self.counters.requests += 1
            self.counters.bytes += len(body)
            resent = len(batch) if tries or again else 0
            tries += 1
            self.counters.retried += resent
            # the guard: a consent change during the connection's set-up keeps the body back
            result: SendResult = await self._sender.send(
                body, guard=functools.partial(self._consent_unchanged, generation)
            )
            if isinstance(result, Retryable) and result.kind is FailureKind.WITHHELD:
                self.counters.requests -= 1
                self.counters.bytes -= len(body)
                self.counters.retried -= resent
                continue  # nothing was sent: check consent again, no retry counted
            if isinstance(result, Delivered):
                await self._delivered(batch, result, prepared, outstanding)
                failures.count = 0  # progress: the budget starts again
                self._set_aside_alone = False
                self._went_through(batch, len(body))
                return [], False
            if isinstance(result, TooLarge):
                self._refused_bytes = min(self._refused_bytes or len(body), len(body))
                self._since_refused = 0
                if len(batch) == 1:
                    self._too_large_alone(result, len(body), _framed_size(batch))
                    await self._set_aside(batch, outstanding, too_large=True)
                    _LOGGER.warning("a record too large for the collector was set aside")
                    return [], False
                return batch.halves(), False
            if isinstance(result, Permanent):
                raise _permanent(result, mask_url(self.endpoint))
            assert isinstance(result, Retryable)
            # a timeout while the body went out: smaller requests, unless no larger than one
            # that went through (then once more as it is: random timeouts would otherwise
            # shrink every request to a few records)
            split = (
                result.while_sending and len(batch) > 1 and (timed_out or len(batch) > self._went)
            )
            timed_out = timed_out or result.while_sending
            if split:
                self._too_slow(batch)  # also for the next drain, if this one ends now
            self._count_failure(failures, result)
            if split:
                return batch.halves(), True  # no backoff: the timeout was the wait
            delay = self._backoff.delay(
                failures.count - 1, retry_after=result.retry_after, rng=self._rng
            )
            _LOGGER.info("upload failed (%s); retrying in %.1f s", result.detail, delay)
            await self._sleep(delay)

    def _too_large_alone(self, result: TooLarge, gzipped: int, framed: int) -> None:
        """One record alone was answered 413: set it aside, unless that happened just before.

        A record set aside as too large is never sent again. One may be a giant; a second in a
        row with nothing delivered between says the collector refuses everything (a proxy's
        tiny body limit, a hostile collector), which would otherwise set aside the whole store
        one record at a time: the drain ends instead, the rest pending. So does a record whose
        body (``gzipped`` bytes, ``framed`` before compression) is no larger than one the
        collector took in this drain: it is not over the size limit (a flaky proxy, a hostile
        collector, a limit lowered meanwhile), and the next drain asks again.

        Raises:
            UploadRejected: A record alone was already refused since the last delivery, or a
                larger body was delivered in this drain.
        """
        taken = gzipped <= self._accepted[0] and framed <= self._accepted[1]
        if not self._set_aside_alone and not taken:
            self._set_aside_alone = True
            return
        detail = f": {result.message}" if result.message else ""
        what = "after it accepted larger requests" if taken else "and accepted nothing between"
        error = UploadRejected(
            f"the collector at {mask_url(self.endpoint)} refused single records as too large "
            f"(HTTP 413{detail}) {what}; nothing was lost, the records stay pending",
            status=413,
        )
        error.remedy = "check the collector's (or its proxy's) request size limit"
        raise error

    def _count_failure(self, failures: _Failures, result: Retryable) -> None:
        """A request of the batch failed: the drain ends after ``max_attempts`` in a row.

        Every failed request counts, a timeout that splits the batch too: a collector that
        never answers in time ends the drain after ``max_attempts`` timeouts, not after
        log2(batch_size) more (each a whole timeout). A delivery starts the count again, so a
        slow uplink has ``max_attempts - 1`` halvings to find a size that goes through (and the
        next drain starts at the size reached).

        Raises:
            UploadUnavailable: That was the ``max_attempts``-th.
        """
        failures.count += 1
        if self._max_attempts is not None and failures.count >= self._max_attempts:
            attempts = "attempt" if failures.count == 1 else "attempts"
            raise UploadUnavailable(
                f"the collector at {mask_url(self.endpoint)} stayed unavailable after "
                f"{failures.count} {attempts} ({result.detail}); the records stay pending",
                retry_after=result.retry_after,
            )

    def _too_slow(self, batch: _Parts) -> None:
        """A request timed out while it was sent: smaller requests from now on (its halves).

        A slow uplink or collector: smaller requests may get through where a retry of the same
        size never would (and the records would wait until retention or the cap took them).
        Called when the request was larger than the last one delivered, or timed out a second
        time: a request of a size that went through is first retried as it is.
        """
        self._send_limit = min(self._send_limit, (len(batch) + 1) // 2)
        self._fitted = 0
        _LOGGER.info(
            "a request of %d records timed out while it was sent; sending at most %d at a time",
            len(batch),
            self._send_limit,
        )

    def _went_through(self, batch: _Parts, gzipped: int) -> None:
        """A request (``gzipped`` bytes) was delivered: after enough full ones, try larger."""
        size = self._went = len(batch)
        accepted, framed = self._accepted
        self._accepted = (max(accepted, gzipped), max(framed, _framed_size(batch)))
        if self._refused_bytes is not None:
            self._since_refused += 1
            if self._since_refused >= _GROW_AFTER:
                self._refused_bytes *= 2  # a larger body may go through now: ask again
                self._since_refused = 0
        if size >= self._send_limit and self._send_limit < self._batch_size:
            self._fitted += 1
            if self._fitted >= _GROW_AFTER:
                self._send_limit = min(self._batch_size, 2 * self._send_limit)
                self._fitted = 0

    async def _recheck(self, batch: _Parts, restricted: bool, outstanding: set[str]) -> _Parts:
        """Before each send: every record checked against consent as it is now."""
        if self._current_plan().restricted != restricted:
            # the cross-border decision changed: release them; a new claim encodes them anew
            await self._store.release(batch.ids)
            outstanding.difference_update(batch.ids)
            return batch.take([])
        return await self._check(batch, outstanding)

    async def _delivered(
        self, batch: _Parts, result: Delivered, prepared: _Prepared, outstanding: set[str]
    ) -> None:
        """A 2xx: delete the batch here, or keep it as rejected after a partial success.

        Raises:
            UploadRejected: The answer is no readable OTLP logs response (records pending).
        """
        if not result.understood:
            raise _unreadable(result, mask_url(self.endpoint))
        ids = batch.ids
        if result.rejected:
            # OTLP: never retry a partial success; it does not say which records were rejected
            rejected = min(result.rejected, len(batch))
            await self._reject(ids, outstanding, sent=len(batch) - rejected, rejected=rejected)
            _LOGGER.warning(
                "the collector rejected %d of %d records (%s); the batch is kept locally "
                "as rejected",
                rejected,
                len(batch),
                result.error_message or "no reason given",
            )
            return
        # the delete runs while the worker sends its next batch; the records stay claimed
        # until it is done, so no claim takes them again (and the batch keeps its slot)
        prepared.acks.append(asyncio.ensure_future(self._ack(ids)))
        outstanding.difference_update(ids)

    async def _set_aside(self, batch: _Parts, outstanding: set[str], *, too_large: bool) -> None:
        ids = batch.ids
        await self._reject(
            ids, outstanding, rejected=len(ids), too_large=len(ids) if too_large else 0
        )

    async def _reject(
        self,
        ids: list[str],
        outstanding: set[str],
        *,
        rejected: int,
        sent: int = 0,
        too_large: int = 0,
    ) -> None:
        """Set records aside as rejected and count them, to the end even if the drain stops.

        The store's thread completes a reject handed over whatever happens to the worker (a
        drain ended by another worker's error, a cancellation): the counting goes with it, and
        the drain waits for it (:meth:`_stop`, :meth:`_acked`), as for a delete.
        """
        rejecting = asyncio.ensure_future(self._rejected(ids, rejected, sent, too_large))
        self._acking.add(rejecting)
        rejecting.add_done_callback(self._acking.discard)
        await asyncio.shield(rejecting)
        outstanding.difference_update(ids)

    async def _rejected(self, ids: list[str], rejected: int, sent: int, too_large: int) -> None:
        await self._store.reject(ids)
        self.counters.sent += sent
        self.counters.rejected += rejected
        self.counters.too_large += too_large

    # --- the agent's loop -----------------------------------------------------------------------

    async def run(self, interval: float, *, max_pause: float = 3600.0) -> None:
        """Drain every ``interval`` seconds until cancelled (the agent runs this as a task).

        A failure is logged once (not again while it stays the same) and the next drain waits
        longer each time it fails again (doubling, up to ``max_pause``), and never less than
        the collector's last ``Retry-After`` (capped like the backoff's): a refused token or a
        bad certificate never turns into a tight loop. Nothing is lost meanwhile.

        Args:
            interval: Seconds between drains.
            max_pause: The longest wait after repeated failures.

        Raises:
            UsageError: ``interval`` is not a positive number of seconds, or the uploader was
                closed.
        """
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval < float("inf")
        ):
            raise UsageError(f"interval must be a positive number of seconds, not {interval!r}")
        failures = 0
        reported: str | None = None
        while True:
            try:
                await self.drain()
            except (UploadError, StorageError) as exc:
                failures += 1
                message = str(exc)
                if message != reported:
                    _LOGGER.error("upload paused: %s", message)  # noqa: TRY400 - one line, no traceback
                    reported = message
                self.last_error = message
                wait = min(max_pause, interval * (2 ** min(failures, 20)))
                if isinstance(exc, UploadUnavailable) and exc.retry_after is not None:
                    # the next drain does not come before the collector's Retry-After either
                    wait = max(wait, min(exc.retry_after, self._backoff.max_retry_after))
            else:
                if reported is not None:
                    _LOGGER.info("upload resumed")
                failures, reported = 0, None
                wait = interval
            await self._sleep(wait)


def _framed_size(batch: _Parts) -> int:
    """The bytes of a batch's records as framed, before compression (the headers aside)."""
    return sum(map(len, batch.encoded))


def _frame_gzip(framer: LogsFramer, encoded: list[bytes]) -> bytes:
    return gzip_body(framer.frame_framed(encoded))


def _quiet(task: asyncio.Future[Any]) -> None:
    """A late release that failed (the store closed): the records are pending at reopen."""
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.debug("a late release failed: %s", task.exception())


def _unreadable(result: Delivered, endpoint: str) -> UploadRejected:
    """The error of a 2xx answer that is no readable OTLP logs response.

    Whether the collector stored the records, or rejected some (OTLP says so in
    ``partial_success``), is unknown: the drain ends and they stay pending, so neither a
    deletion as if all went through nor a set-aside of the whole store follows from an
    endpoint that is not an OTLP collector (a web server's page at the wrong path). Sent
    again later, they are de-duplicated by record id where the collector does it.
    """
    error = UploadRejected(
        f"the endpoint {endpoint} answered {result.error_message}; whether it stored the "
        "records is unknown, they stay pending",
        status=result.status,
    )
    error.remedy = "check that the endpoint is an OTLP/HTTP logs endpoint (its path: /v1/logs)"
    return error


def _permanent(result: Permanent, endpoint: str) -> UploadRejected:
    """The error of a permanent refusal (``endpoint``: the masked URL, shown to people)."""
    detail = f": {result.message}" if result.message else ""
    error = UploadRejected(
        f"the collector at {endpoint} refused the upload with HTTP {result.status}{detail}; "
        "nothing was lost, the records stay pending",
        status=result.status,
    )
    remedy = _PERMANENT_REMEDY.get(result.status)
    if remedy is not None:
        error.remedy = remedy
    return error
