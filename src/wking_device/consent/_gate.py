"""The consent gate: the only issuer of permits, and the keeper of consent state.

This module owns turning the ledger's events, the Do Not Track and minor flags and the installed
policy version into a state for every category (``denied``, ``granted`` or ``suspended``);
recording grants and withdrawals; issuing :class:`~wking_device.consent.Permit` objects and
revoking them, at once, when a category loses its consent. It does not collect, store or upload
anything, and it does not own the ledger key (the installation wiring passes it in).

Rules (DESIGN §3): default denied; Do Not Track denies everything; a minor's profile denies
sensitive categories unless a guardian granted them; a grant made under an older policy whose
terms for the category changed significantly is suspended until the user grants again; a category
whose prerequisite is not in force is suspended; a ledger that fails verification closes the gate
(everything denied) until it is reset.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import wking_device  # annotations name wking_device.X: get_type_hints loads X lazily
from wking_device._config_values import _region_problem
from wking_device._subscription import Subscription
from wking_device.config import _dnt_in_environment
from wking_device.consent._ledger import Ledger, LedgerEntry
from wking_device.consent._permit import _ISSUER, Permit, Revocation, _Token, permit_key
from wking_device.errors import (
    ConsentRequired,
    GuardianRequired,
    LedgerTampered,
    PrerequisiteMissing,
    UsageError,
    WkingError,
)
from wking_device.models import new_record_id
from wking_device.policy import (
    CATALOG,
    CATEGORY_IDS,
    PolicyDocument,
    PolicySet,
    dependents_of,
    shipped_policies,
    validate_categories,
)

__all__ = [
    "GRANT_METHODS",
    "CategoryState",
    "ConsentGate",
    "LedgerView",
    "ledger_path",
    "ledger_view",
    "open_gate",
]

_LOGGER = logging.getLogger(__name__)

WATCH_INTERVAL = 0.1
"""Seconds between two looks at the ledger file's stat from permit checks (see ``watch``)."""

GRANT_METHODS = frozenset({"api", "cli-prompt", "cli-yes", "demo", "guardian"})
"""How a grant or withdrawal can be made; the method is recorded in the ledger.

``demo`` is the grant ``wking demo`` records in its own temporary home, on simulated speakers.
"""

_STATE_GRANTED = "granted"
_STATE_DENIED = "denied"
_STATE_SUSPENDED = "suspended"

# A category's state reason -> the reason a revocation reports.
_REVOCATION_REASON = {
    "not_granted": "withdrawn",
    "withdrawn": "withdrawn",
    "do_not_track": "do_not_track",
    "minor": "minor",
    "policy_change": "policy_change",
    "ledger_tampered": "ledger_tampered",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoryState:
    """Where one category stands right now.

    Attributes:
        category: The category id.
        state: ``granted`` (collection allowed), ``suspended`` (a grant is on record but not in
            force: policy change or prerequisite) or ``denied``.
        reason: Why it is not granted: ``not_granted``, ``withdrawn``, ``do_not_track``,
            ``minor``, ``policy_change``, ``prerequisite`` or ``ledger_tampered``; ``None`` when
            granted.
        consent_id: The ledger entry id of the grant on record, if any.
        policy_version: The policy version that grant was made under.
        method: How that grant was made.
        granted_at: When (UTC, ISO 8601).
    """

    category: str
    state: str
    reason: str | None = None
    consent_id: str | None = None
    policy_version: str | None = None
    method: str | None = None
    granted_at: str | None = None

    @property
    def granted(self) -> bool:
        """``True`` when collection of the category is allowed now."""
        return self.state == _STATE_GRANTED

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, with the catalog's title and sensitivity."""
        category = CATALOG[self.category]
        return {
            "category": self.category,
            "title": category.title,
            "sensitive": category.sensitive,
            "requires": sorted(category.requires),
            "state": self.state,
            "reason": self.reason,
            "consent_id": self.consent_id,
            "policy_version": self.policy_version,
            "method": self.method,
            "granted_at": self.granted_at,
        }


@dataclass(slots=True)
class _Replay:
    """What the ledger says, before flags and policy versions are applied."""

    grants: dict[str, LedgerEntry] = field(default_factory=dict)
    withdrawn: set[str] = field(default_factory=set)
    live: dict[str, set[str]] = field(default_factory=dict)
    """Per category, the ids of the grants made since its last withdrawal."""
    do_not_track: bool = False
    minor: bool = False
    policy_version: str | None = None


def _replay(entries: Iterable[LedgerEntry]) -> _Replay:
    result = _Replay()
    for entry in entries:
        result.policy_version = entry.policy_version
        known = [c for c in entry.categories if c in CATALOG]
        if entry.event == "grant":
            for category in known:
                result.grants[category] = entry
                result.withdrawn.discard(category)
                result.live.setdefault(category, set()).add(entry.id)
        elif entry.event == "withdraw":
            for category in known:
                result.grants.pop(category, None)
                result.withdrawn.add(category)
                result.live.pop(category, None)
        elif entry.event in {"dnt_on", "dnt_off"}:
            result.do_not_track = entry.event == "dnt_on"
        elif entry.event in {"minor_on", "minor_off"}:
            result.minor = entry.event == "minor_on"
    return result


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What the ledger alone says of the grants permits were issued under.

    For a part that holds permits another object's gate issued (the record store's writer): a
    gate that has not re-read the ledger yet (its ``watch`` rate limit, ``watch=None``, or a
    check made off its thread) still holds valid permits after another process withdrew, turned
    Do Not Track on, marked the profile a minor's or installed a policy that suspends the grant.
    Built with :func:`ledger_view`; ``None`` entries (a ledger that failed verification) lapse
    every grant.
    """

    replay: _Replay | None
    changed_at: Mapping[str, int]
    """Per category, the seq of the last ``policy_installed`` event that suspends older grants."""
    grant_seq: Mapping[str, int]
    """The seq of every grant entry, by its id (the ``consent_id`` of permits and records)."""

    def lapsed(self, category: str, consent_id: str) -> str | None:
        """Return why the grant ``consent_id`` of ``category`` is no longer in force, or None.

        Returns:
            ``ledger_tampered``, ``withdrawn``, ``do_not_track``, ``minor`` or
            ``policy_change``; ``None`` while the ledger keeps the grant in force.
        """
        replay = self.replay
        if replay is None:
            return "ledger_tampered"
        if consent_id not in replay.live.get(category, ()):
            return "withdrawn"
        if replay.do_not_track:
            return "do_not_track"
        entry = replay.grants[category]
        if replay.minor and CATALOG[category].sensitive and entry.method != "guardian":
            return "minor"
        if self.changed_at.get(category, -1) > self.grant_seq[consent_id]:
            return "policy_change"
        return None


def ledger_view(entries: Iterable[LedgerEntry] | None) -> LedgerView:
    """Replay verified ledger entries into a :class:`LedgerView` (``None``: failed verification)."""
    if entries is None:
        return LedgerView(None, {}, {})
    listed = list(entries)
    changed_at: dict[str, int] = {}
    grant_seq: dict[str, int] = {}
    for entry in listed:
        if entry.event == "policy_installed":
            changed_at.update(dict.fromkeys(entry.categories, entry.seq))
        elif entry.event == "grant":
            grant_seq[entry.id] = entry.seq
    return LedgerView(_replay(listed), changed_at, grant_seq)


class ConsentGate:
    """Decides, records and enforces consent for one installation.

    Construction reads and verifies the ledger. If it fails verification the gate is closed:
    every category is denied, :attr:`tampered` holds the error, and grants and withdrawals raise
    it until the ledger is reset. Otherwise changes of the Do Not Track or minor flag and a newly
    installed policy version are recorded in the ledger.

    Not thread-safe: use one gate from one thread (the event loop's). Other processes' changes
    (a ``wking consent withdraw``) are picked up without the program's help: every permit check
    (:meth:`Permit.require`, :attr:`Permit.valid`), :meth:`permit`, :meth:`allows`,
    :meth:`state` and :meth:`states` made on the thread that built the gate compares the
    ledger files' stat with what the gate last read, at most once per ``watch`` seconds, and
    re-reads the ledger (:meth:`refresh`) when it changed — revoking permits at once.

    A context manager: ``with open_installation_gate(paths, settings) as gate: ...`` calls
    :meth:`close` on the way out, which revokes the permits it issued and ends its
    subscriptions (it holds no file open: the ledger is opened per read and write).

    Args:
        ledger: The installation's ledger.
        policies: The policy documents; the newest is the installed version (default: the ones
            shipped in this package).
        do_not_track: Deny everything (``DO_NOT_TRACK=1`` / ``do_not_track = true``).
        minor: The profile belongs to a minor.
        region: The user's region, recorded with every event.
        watch: Seconds between two looks at the ledger from permit checks (``0``: at every
            check; ``None``: never, only :meth:`refresh`).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        policies: PolicySet | None = None,
        do_not_track: bool = False,
        minor: bool = False,
        region: str = "EU",
        watch: float | None = WATCH_INTERVAL,
    ) -> None:
        _check_types(ledger, policies, watch)
        problem = _region_problem(region)
        if problem is not None:
            # recorded in plaintext with every ledger entry and shown by `wking consent history`
            raise UsageError(
                f"the region is refused (its value is not repeated): {problem}",
                remedy="pass a code such as 'EU'",
            )
        self._ledger = ledger
        self._watch_every = watch
        self._next_watch = 0.0
        self._owner = threading.get_ident()
        self._permit_key = permit_key(ledger.key)
        self._policies = policies if policies is not None else shipped_policies()
        # Do Not Track in the environment binds every gate, however its flags were given
        self._dnt = do_not_track or _dnt_in_environment()
        self._minor = minor
        self._region = region
        self._tampered: LedgerTampered | None = None
        self._ended = False
        self._replayed = _Replay()
        self._listeners: list[Callable[[Revocation], None]] = []
        self._tokens: dict[str, weakref.WeakSet[_Token]] = {c: weakref.WeakSet() for c in CATALOG}
        self._generation = 0
        self._load()
        self._states = self._compute()
        self._record_facts()
        self._states = self._compute()  # with this gate's flags now on record
        if watch is not None:
            self._next_watch = time.monotonic() + watch

    def _watch(self) -> None:
        """Re-read the ledger if another process changed it (rate-limited; owner thread only).

        Called from every permit check, so it must stay cheap: one clock read and a compare
        when not due; one ``stat`` of the two ledger files when due.
        """
        every = self._watch_every
        if every is None:
            return
        now = time.monotonic()
        if now < self._next_watch or threading.get_ident() != self._owner:
            return
        self._next_watch = now + every  # first: a listener's own permit checks do not recurse
        try:
            self.refresh()
        except WkingError as exc:  # a file-system error: keep the state, try again later
            _LOGGER.debug("cannot re-read the consent ledger: %s", exc)

    # --- construction helpers -----------------------------------------------------------------

    @classmethod
    def from_settings(
        cls, ledger: Ledger, settings: wking_device.Settings, *, policies: PolicySet | None = None
    ) -> ConsentGate:
        """Build a gate with the flags and region of an installation's settings.

        Args:
            ledger: The installation's ledger.
            settings: Its settings (``do_not_track``, ``minor``, ``region``).
            policies: The policy documents (default: shipped).

        Returns:
            The gate.
        """
        return cls(
            ledger,
            policies=policies,
            do_not_track=settings.do_not_track,
            minor=settings.minor,
            region=settings.region,
        )

    def _load(self) -> None:
        try:
            entries = self._ledger.load()
        except LedgerTampered as exc:
            # Reported by whoever opened the gate (the CLI exits 7, the agent logs an error);
            # a warning here too would say it twice.
            _LOGGER.debug("consent ledger failed verification, every category is denied: %s", exc)
            self._tampered = exc
            self._replayed = _Replay()
        else:
            self._tampered = None
            self._replayed = _replay(entries)

    def _record_facts(self) -> None:
        """Record flag changes and a newly installed policy version (never on a closed gate).

        A gate over a read-only ledger records nothing: its flags apply in memory only.
        """
        if self._tampered is not None or self._ledger.readonly:
            return
        before = self._replayed
        if before.do_not_track != self._dnt:
            self._append("dnt_on" if self._dnt else "dnt_off", (), "settings")
        if before.minor != self._minor:
            self._append("minor_on" if self._minor else "minor_off", (), "settings")
        if before.policy_version is not None and before.policy_version != self.policy.version:
            self._append(
                "policy_installed", self._policies.changed_since(before.policy_version), "system"
            )

    def _append(self, event: str, categories: Iterable[str], method: str) -> LedgerEntry:
        current = self._policies.current
        try:
            entry = self._ledger.append(
                event,
                categories,
                method=method,
                policy_version=current.version,
                policy_digest=current.digest,
                region=self._region,
            )
        except LedgerTampered as exc:
            self._close(exc)
            raise
        self._replayed = _replay(self._ledger.entries)
        return entry

    def _close(self, exc: LedgerTampered) -> None:
        self._tampered = exc
        self._replayed = _Replay()
        self._update(_Replay())

    # --- state --------------------------------------------------------------------------------

    @property
    def policies(self) -> PolicySet:
        """The policy documents in force."""
        return self._policies

    @property
    def policy(self) -> PolicyDocument:
        """The installed policy document (the newest of :attr:`policies`)."""
        return self._policies.current

    @property
    def do_not_track(self) -> bool:
        """Whether Do Not Track is on: in this gate's settings, or as last recorded in the ledger.

        Another process that runs with ``DO_NOT_TRACK=1`` records ``dnt_on``; a gate that picks
        it up (:meth:`refresh`) honours it until a ``dnt_off`` is recorded, so nothing is
        collected while the ledger says Do Not Track is on.
        """
        return self._dnt or self._replayed.do_not_track

    @property
    def minor(self) -> bool:
        """Whether the profile is a minor's: in this gate's settings, or as last recorded."""
        return self._minor or self._replayed.minor

    @property
    def region(self) -> str:
        """The user's region."""
        return self._region

    @property
    def tampered(self) -> LedgerTampered | None:
        """The verification error when the ledger failed verification (gate closed), else None."""
        return self._tampered

    @property
    def generation(self) -> int:
        """A counter that changes whenever any category's state may have changed (cheap)."""
        return self._generation

    @property
    def ledger(self) -> Ledger:
        """The ledger behind this gate."""
        return self._ledger

    def history(self) -> tuple[LedgerEntry, ...]:
        """Return every ledger entry, oldest first (empty when the ledger failed verification)."""
        return () if self._tampered is not None else self._ledger.entries

    def state(self, category: str) -> CategoryState:
        """Return one category's state.

        Raises:
            UsageError: Unknown category.
        """
        validate_categories([category])
        self._watch()
        return self._states[category]

    def states(self) -> Mapping[str, CategoryState]:
        """Return every category's state, in catalog order."""
        self._watch()
        return dict(self._states)

    def allows(self, category: str, consent_id: str | None = None) -> bool:
        """Tell, cheaply, whether a record of ``category`` may be kept or sent right now.

        For the uploader's last check before sending: with ``consent_id`` (the record's), the
        grant it names must also not have been withdrawn since, so a record collected before a
        withdrawal is not sent under a later, new grant.

        Args:
            category: The record's category (unknown categories are not allowed).
            consent_id: The record's ``consent_id``, to check too.

        Returns:
            Whether the category is granted now (and the record's grant was never withdrawn).
        """
        self._watch()
        state = self._states.get(category)
        if state is None or state.state != _STATE_GRANTED:
            return False
        return consent_id is None or consent_id in self._replayed.live.get(category, ())

    def _grant_current(self, category: str) -> bool:
        """A grant is on record and no significant policy change happened since."""
        entry = self._replayed.grants.get(category)
        return entry is not None and category not in self._policies.changed_since(
            entry.policy_version
        )

    def _compute(self) -> dict[str, CategoryState]:
        states: dict[str, CategoryState] = {}
        for category_id, category in CATALOG.items():
            if self._tampered is not None:
                states[category_id] = CategoryState(
                    category=category_id, state=_STATE_DENIED, reason="ledger_tampered"
                )
                continue
            entry = self._replayed.grants.get(category_id)
            if entry is None:
                reason = "withdrawn" if category_id in self._replayed.withdrawn else "not_granted"
                states[category_id] = CategoryState(
                    category=category_id, state=_STATE_DENIED, reason=reason
                )
                continue
            on_record = {
                "consent_id": entry.id,
                "policy_version": entry.policy_version,
                "method": entry.method,
                "granted_at": entry.time,
            }
            if self.do_not_track:
                state, reason_ = _STATE_DENIED, "do_not_track"
            elif self.minor and category.sensitive and entry.method != "guardian":
                state, reason_ = _STATE_DENIED, "minor"
            elif category_id in self._policies.changed_since(entry.policy_version):
                state, reason_ = _STATE_SUSPENDED, "policy_change"
            else:
                state, reason_ = _STATE_GRANTED, None
            states[category_id] = CategoryState(
                category=category_id, state=state, reason=reason_, **on_record
            )
        # A grant is in force only while everything it requires is (catalog order is not
        # topological in general, so iterate to a fixed point).
        changed = True
        while changed:
            changed = False
            for category_id, category in CATALOG.items():
                current = states[category_id]
                if current.granted and not all(states[p].granted for p in category.requires):
                    states[category_id] = CategoryState(
                        category=category_id,
                        state=_STATE_SUSPENDED,
                        reason="prerequisite",
                        consent_id=current.consent_id,
                        policy_version=current.policy_version,
                        method=current.method,
                        granted_at=current.granted_at,
                    )
                    changed = True
        return states

    def _root_reason(self, states: Mapping[str, CategoryState], category_id: str) -> str:
        state = states[category_id]
        if state.reason == "prerequisite":
            for prerequisite in sorted(CATALOG[category_id].requires):
                if not states[prerequisite].granted:
                    return self._root_reason(states, prerequisite)
        return _REVOCATION_REASON.get(state.reason or "", "withdrawn")

    def _update(self, before: _Replay) -> None:
        """Recompute states; revoke permits and tell subscribers about everything lost."""
        old = self._states
        new = self._compute()
        self._states = new
        self._generation += 1
        lost: dict[str, set[str]] = {}
        live = self._replayed.live
        for category_id in CATEGORY_IDS:
            # Withdrawn: the grant in force before is no longer live, even when another process
            # granted the category again since (withdraw + grant between two refreshes) — the
            # permits and the records made under that grant must not ride on the new one.
            previous = before.grants.get(category_id)
            withdrawn = (
                previous is not None
                and previous.id not in live.get(category_id, ())
                and self._tampered is None
            )
            if withdrawn:
                lost.setdefault("withdrawn", set()).add(category_id)
            elif old[category_id].granted and not new[category_id].granted:
                lost.setdefault(self._root_reason(new, category_id), set()).add(category_id)
        for reason, categories in lost.items():
            for category_id in categories:
                for token in list(self._tokens[category_id]):
                    if token.reason is None:
                        token.reason = reason
                self._tokens[category_id] = weakref.WeakSet()
        for reason, categories in lost.items():
            self._notify(Revocation(categories=frozenset(categories), reason=reason))

    def _notify(self, revocation: Revocation) -> None:
        _LOGGER.info(
            "consent revoked for %s (%s)",
            ", ".join(sorted(revocation.categories)),
            revocation.reason,
        )
        for listener in list(self._listeners):
            try:
                listener(revocation)
            except Exception:  # one failing subscriber must not stop the others
                _LOGGER.exception("a revocation subscriber failed")

    # --- permits ------------------------------------------------------------------------------

    def permit(self, categories: Iterable[str]) -> Permit:
        """Issue a permit for the categories, if every one of them is granted now.

        Args:
            categories: The categories to collect (prerequisites are checked, not added).

        Returns:
            A permit, valid until the gate revokes it.

        Raises:
            ConsentRequired: Some categories are not granted (``missing`` names them).
            UsageError: No categories, or an unknown one.
        """
        self._refuse_if_closed()
        wanted = validate_categories(categories)
        if not wanted:
            raise UsageError("a permit needs at least one category")
        self._watch()
        states = self._states
        missing = {c for c in wanted if not states[c].granted}
        if missing:
            reasons = sorted({f"{c}: {states[c].reason}" for c in missing})
            raise ConsentRequired(missing, reason="; ".join(reasons))
        token = _Token(self._watch if self._watch_every is not None else None)
        for category_id in wanted:
            self._tokens[category_id].add(token)
        return Permit(
            permit_id=new_record_id(),
            consent_ids={c: states[c].consent_id or "" for c in wanted},
            policy_versions={c: states[c].policy_version or "" for c in wanted},
            token=token,
            issuer=_ISSUER,
            key=self._permit_key,
        )

    def try_permit(self, categories: Iterable[str]) -> Permit | None:
        """Like :meth:`permit`, but return ``None`` instead of raising ``ConsentRequired``."""
        try:
            return self.permit(categories)
        except ConsentRequired:
            return None

    def subscribe(self, listener: Callable[[Revocation], None]) -> Subscription:
        """Be told of every revocation, synchronously, as it happens.

        Args:
            listener: Called with each :class:`Revocation` (after the permits are invalid).

        Returns:
            A :class:`~wking_device.Subscription`: call it, ``close()`` it or leave its
            ``with`` block to unsubscribe.
        """
        if not callable(listener):
            raise UsageError(
                f"listener must be callable, not {type(listener).__name__}",
                remedy="pass a function taking a Revocation",
            )
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return Subscription(unsubscribe)

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a tampered ledger is :attr:`tampered` instead)."""
        return self._ended

    def close(self) -> None:
        """Stop using this gate: it issues no permit and records nothing more (idempotent).

        Every permit it issued is revoked (``PermitRevoked``, reason ``gate_closed``) and its
        subscriptions end, without telling the subscribers: consent itself is unchanged (no
        ledger entry, nothing withdrawn or shredded), and a new gate over the same ledger sees
        the same state. Close collectors first (nest them inside ``with gate:``): records
        they still buffer are discarded with their permits.
        """
        if self._ended:
            return
        self._ended = True
        self._listeners.clear()
        for tokens in self._tokens.values():
            for token in list(tokens):
                if token.reason is None:
                    token.reason = "gate_closed"
        self._tokens = {c: weakref.WeakSet() for c in CATALOG}
        self._watch_every = None

    def __enter__(self) -> ConsentGate:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _refuse_if_closed(self) -> None:
        if self._ended:
            raise UsageError(
                "this ConsentGate is closed", remedy="open the installation's gate again"
            )

    # --- changes ------------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        self._refuse_if_closed()
        self.refresh()
        if self._tampered is not None:
            raise self._tampered

    def grant(self, categories: Iterable[str], *, method: str = "api") -> LedgerEntry:
        """Record an affirmative grant for the categories.

        Args:
            categories: The categories the user agreed to.
            method: How the user agreed: ``api``, ``cli-prompt``, ``cli-yes``, ``demo`` or
                ``guardian``.

        Returns:
            The ledger entry (its id is the ``consent_id`` of records collected under it).

        Raises:
            UsageError: No categories, an unknown one, or an unknown method.
            PrerequisiteMissing: A category needs another that is neither granted nor included.
            GuardianRequired: A minor's profile, a sensitive category and no guardian method.
            LedgerTampered: The ledger failed verification; nothing is recorded.
        """
        wanted = self._request(categories, method, "grant")
        for category_id in sorted(wanted):
            needed = {
                p
                for p in CATALOG[category_id].requires
                if p not in wanted and not self._grant_current(p)
            }
            if needed:
                raise PrerequisiteMissing(category_id, needed)
        if self.minor and method != "guardian":
            sensitive = {c for c in wanted if CATALOG[c].sensitive}
            if sensitive:
                raise GuardianRequired(sensitive)
        before = self._replayed
        entry = self._append("grant", wanted, method)
        self._update(before)
        return entry

    def _request(self, categories: Iterable[str], method: str, verb: str) -> frozenset[str]:
        """Check a grant or withdrawal request: known method, known categories, open gate."""
        if method not in GRANT_METHODS:
            raise UsageError(
                f"unknown consent method {method!r}", remedy=f"use one of {sorted(GRANT_METHODS)}"
            )
        wanted = validate_categories(categories)
        if not wanted:
            raise UsageError(f"name at least one category to {verb}")
        self._ensure_open()
        return wanted

    def withdraw(self, categories: Iterable[str], *, method: str = "api") -> LedgerEntry | None:
        """Record a withdrawal, effective at once; categories that need them are withdrawn too.

        Permits for the categories are revoked and subscribers told (reason ``withdrawn``) even
        when the grant was not in force (suspended or denied by Do Not Track), so that pending
        records of the category are destroyed.

        Args:
            categories: The categories to withdraw.
            method: How the user asked: ``api``, ``cli-prompt``, ``cli-yes``, ``demo`` or
                ``guardian``.

        Returns:
            The ledger entry, or ``None`` when none of the categories had a grant on record.

        Raises:
            UsageError: No categories, an unknown one, or an unknown method.
            LedgerTampered: The ledger failed verification; nothing is recorded.
        """
        wanted = self._request(categories, method, "withdraw")
        affected = wanted | dependents_of(wanted)
        on_record = {c for c in affected if c in self._replayed.grants}
        if not on_record:
            return None
        before = self._replayed
        entry = self._append("withdraw", on_record, method)
        self._update(before)
        return entry

    def set_do_not_track(self, on: bool) -> None:
        """Switch Do Not Track; the change is recorded and, when on, revokes every permit.

        Raises:
            UsageError: ``on`` is not a ``bool``, the gate is closed, or ``on`` is ``False``
                while a Do Not Track variable in the environment says on (no source switches
                off what another switched on).
        """
        self._check_switch(on)
        if not on and _dnt_in_environment():
            raise UsageError(
                "Do Not Track stays on: DO_NOT_TRACK (or WKING_DO_NOT_TRACK) in the environment "
                "says on",
                remedy="unset the variable (or set it to 0) and start the program again",
            )
        if on == self._dnt == self._replayed.do_not_track:
            return
        self._dnt = on
        before = self._replayed
        self._record_facts()
        self._update(before)

    def set_minor(self, on: bool) -> None:
        """Mark the profile as a minor's (or not); sensitive non-guardian grants stop at once.

        Raises:
            UsageError: ``on`` is not a ``bool``, or the gate is closed.
        """
        self._check_switch(on)
        if on == self._minor == self._replayed.minor:
            return
        self._minor = on
        before = self._replayed
        self._record_facts()
        self._update(before)

    def _check_switch(self, on: object) -> None:
        if not isinstance(on, bool):
            raise UsageError(
                f"on must be True or False, not {type(on).__name__}",
                remedy="pass a bool: a string such as 'no' would be true",
            )
        self._refuse_if_closed()

    def apply_policies(self, policies: PolicySet) -> None:
        """Install another set of policy documents (an upgrade); suspended grants are revoked.

        Args:
            policies: The new set; its newest document becomes the installed version.

        Raises:
            UsageError: The gate is closed.
        """
        self._refuse_if_closed()
        _check_types(self._ledger, policies, None)
        self._policies = policies
        before = self._replayed
        self._record_facts()
        self._update(before)

    def refresh(self) -> bool:
        """Pick up changes other processes made to the ledger (cheap when nothing changed).

        Returns:
            ``True`` when the ledger was re-read.
        """
        if not self._ledger.changed_on_disk():
            return False
        if self._watch_every is not None:
            self._next_watch = time.monotonic() + self._watch_every
        before = self._replayed
        was_tampered = self._tampered
        self._load()
        if self._tampered is not None and was_tampered is None:
            self._update(_Replay())
        else:
            self._update(before)
        return True

    def report(self) -> dict[str, Any]:
        """Return the whole consent status as a JSON-ready dict (``wking consent status``)."""
        return {
            "policy_version": self.policy.version,
            "do_not_track": self.do_not_track,
            "minor": self.minor,
            "region": self._region,
            "ledger": {
                "path": str(self._ledger.path),
                "verified": self._tampered is None,
                "entries": len(self.history()),
                "error": None if self._tampered is None else self._tampered.message,
            },
            "categories": [state.to_dict() for state in self._states.values()],
        }


def _check_types(ledger: object, policies: object, watch: object) -> None:
    """Refuse constructor arguments of the wrong type (else a later call fails half-way).

    Raises:
        UsageError: Naming the argument.
    """
    if not isinstance(ledger, Ledger):
        raise UsageError(
            f"ledger must be a Ledger, not {type(ledger).__name__}",
            remedy="open the installation's gate with open_installation_gate(paths, settings)",
        )
    if policies is not None and not isinstance(policies, PolicySet):
        raise UsageError(
            f"policies must be a PolicySet, not {type(policies).__name__}",
            remedy="pass shipped_policies() or one built from it, or leave it out",
        )
    if watch is not None and (isinstance(watch, bool) or not isinstance(watch, int | float)):
        raise UsageError(
            f"watch must be a number of seconds or None, not {type(watch).__name__}",
            remedy="e.g. watch=0.1",
        )


def ledger_path(paths: wking_device.Paths) -> Path:
    """Return where an installation keeps its consent ledger."""
    return paths.data_dir / "consent" / "ledger.jsonl"


def open_gate(
    paths: wking_device.Paths,
    settings: wking_device.Settings,
    *,
    key: bytes,
    policies: PolicySet | None = None,
) -> ConsentGate:
    """Open the consent gate of an installation.

    Args:
        paths: The installation's paths (the ledger lives under ``data_dir/consent/``).
        settings: Its settings (Do Not Track, minor, region).
        key: The ledger's HMAC key (the key store's ``ledger-hmac`` secret).
        policies: The policy documents (default: shipped).

    Returns:
        The gate (closed, with :attr:`ConsentGate.tampered` set, if the ledger fails
        verification).
    """
    return ConsentGate.from_settings(Ledger(ledger_path(paths), key), settings, policies=policies)
