"""Permits: proof, checked live, that collection of some categories is allowed right now.

This module owns the :class:`Permit` type, its revocation token and its seal. Only
:class:`~wking_device.consent.ConsentGate` issues permits: the constructor demands a private issuer
object that lives in this package, and a test inspects the source tree for constructions outside
``consent/``. Each permit carries an HMAC seal under a key derived from the installation's ledger
key, which the record store derives too (:func:`permit_key`): the store accepts a permit only when
:func:`issued_by` says this installation's gate issued it, so a duck-typed object or a permit of
another installation (another home, another key store) is refused. Permits are immutable. This
module does not decide *whether* a permit is granted; the gate does.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

from wking_device.errors import ConsentRequired, PermitRevoked, UsageError

__all__ = ["REVOCATION_REASONS", "Permit", "Revocation", "issued_by", "permit_key"]

_LOGGER = logging.getLogger(__name__)

REVOCATION_REASONS = frozenset(
    {"withdrawn", "policy_change", "do_not_track", "minor", "ledger_tampered"}
)
"""Why a permit can stop being valid."""

_ISSUER = object()
"""Only code holding this object (the gate, in this package) can construct a :class:`Permit`."""

_PERMIT_KEY_LABEL = b"wking/permit-seal/v1"


def permit_key(ledger_key: bytes) -> bytes:
    """Derive the key that seals an installation's permits from its ledger key.

    The gate holds the ledger key; the record store reads the same secret from the key store
    (``ledger-hmac``). Both derive this key, so a permit's seal proves which installation issued
    it without either sharing an object with the other.

    Args:
        ledger_key: The installation's ledger HMAC key.

    Returns:
        32 bytes.
    """
    return hmac.new(ledger_key, _PERMIT_KEY_LABEL, hashlib.sha256).digest()


def _seal(
    key: bytes,
    permit_id: str,
    consent_ids: Mapping[str, str],
    policy_versions: Mapping[str, str],
) -> bytes:
    body = repr((permit_id, sorted(consent_ids.items()), sorted(policy_versions.items())))
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def issued_by(permit: object, key: bytes) -> bool:
    """Tell whether ``permit`` is a :class:`Permit` sealed under ``key`` (see :func:`permit_key`).

    Args:
        permit: Whatever was offered as a permit.
        key: The installation's permit key.

    Returns:
        ``True`` only for a real, untampered permit of that installation's gate (valid or not:
        revocation is checked separately).
    """
    if type(permit) is not Permit:
        return False
    expected = _seal(key, permit.permit_id, permit.consent_ids, permit.policy_versions)
    return hmac.compare_digest(permit._seal, expected) and permit.categories == frozenset(
        permit.consent_ids
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """Collection of some categories stopped being allowed.

    Attributes:
        categories: The categories that lost their consent.
        reason: ``withdrawn``, ``policy_change``, ``do_not_track``, ``minor`` or
            ``ledger_tampered``.
    """

    categories: frozenset[str]
    reason: str


class _Token:
    """The shared revocation flag of one permit; the gate flips it.

    ``watch`` (the issuing gate's) is called before each check, so a gate notices withdrawals
    other processes recorded without its program calling ``refresh()`` (it is rate-limited and a
    no-op off the gate's thread, so a check stays cheap).
    """

    __slots__ = ("__weakref__", "reason", "watch")

    def __init__(self, watch: Callable[[], None] | None = None) -> None:
        self.reason: str | None = None
        self.watch = watch


class Permit:
    """Permission, issued by the consent gate, to collect the named categories.

    A permit stays valid until the gate revokes it (withdrawal, a significant policy change, Do
    Not Track, a minor profile, ledger tampering); it never becomes valid again — ask the gate for
    a new one. :attr:`valid` is a single attribute read, cheap enough for every event.

    A permit is bound to its installation's gate and does not travel: pickling one raises
    :class:`~wking_device.errors.UsageError` (another process asks its own gate for its own
    permit), and ``copy.copy``/``copy.deepcopy`` return the permit itself, so a copy is revoked
    with it (a copy with a revocation flag of its own would stay valid after a withdrawal).

    Attributes:
        permit_id: Unique id of this permit (for logs).
        categories: The categories it covers.
        consent_ids: For each category, the ledger entry id of the grant in force.
        policy_versions: For each category, the policy version its grant was made under.
        policy_version: The newest of those versions.
    """

    __slots__ = (
        "_seal",
        "_token",
        "categories",
        "consent_ids",
        "permit_id",
        "policy_version",
        "policy_versions",
    )

    permit_id: str
    categories: frozenset[str]
    consent_ids: Mapping[str, str]
    policy_versions: Mapping[str, str]
    policy_version: str
    _token: _Token
    _seal: bytes

    def __init__(
        self,
        *,
        permit_id: str,
        consent_ids: Mapping[str, str],
        policy_versions: Mapping[str, str],
        token: _Token,
        issuer: object,
        key: bytes,
    ) -> None:
        if issuer is not _ISSUER:
            raise TypeError("permits are issued by ConsentGate.permit(), never constructed")
        init = object.__setattr__
        init(self, "permit_id", permit_id)
        init(self, "categories", frozenset(consent_ids))
        init(self, "consent_ids", MappingProxyType(dict(consent_ids)))
        init(self, "policy_versions", MappingProxyType(dict(policy_versions)))
        init(
            self,
            "policy_version",
            max(
                policy_versions.values(),
                key=lambda v: tuple(int(p) if p.isdigit() else -1 for p in v.split(".")),
                default="",
            ),
        )
        init(self, "_token", token)
        init(self, "_seal", _seal(key, permit_id, self.consent_ids, self.policy_versions))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("permits are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("permits are immutable")

    def __copy__(self) -> Permit:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Permit:
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise UsageError(
            f"permit {self.permit_id} cannot be pickled: it is bound to this installation's "
            "consent gate and is revoked through it",
            remedy="let each process ask its own consent gate for a permit (gate.permit())",
        )

    def __repr__(self) -> str:
        state = "valid" if self._token.reason is None else f"revoked: {self._token.reason}"
        return f"<Permit {self.permit_id} {sorted(self.categories)} {state}>"

    @property
    def valid(self) -> bool:
        """``False`` once the gate revoked this permit."""
        token = self._token
        if token.reason is None and token.watch is not None:
            token.watch()
        return token.reason is None

    @property
    def revoked_reason(self) -> str | None:
        """Why the permit was revoked, or ``None`` while it is valid."""
        return self._token.reason

    def covers(self, category: str) -> bool:
        """Tell whether the permit is valid and covers ``category``."""
        return self.valid and category in self.categories

    def require(self, category: str) -> None:
        """Check that the permit allows ``category`` right now.

        Args:
            category: The category about to be collected, stored or sent.

        Raises:
            PermitRevoked: The permit was revoked.
            ConsentRequired: The permit does not cover the category.
        """
        token = self._token
        if token.reason is None and token.watch is not None:
            token.watch()  # picks up another process's withdrawal (cheap, rate-limited)
        if token.reason is not None:
            raise PermitRevoked(
                f"permit {self.permit_id} was revoked ({self._token.reason})",
                remedy="ask the consent gate for a new permit",
            )
        if category not in self.categories:
            raise ConsentRequired({category}, reason="not covered by this permit")
