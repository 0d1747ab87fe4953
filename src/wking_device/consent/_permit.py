"""Permits: proof, checked live, that collection of some categories is allowed right now.

This module owns the :class:`Permit` type and its revocation token. Only
:class:`~wking_device.consent.ConsentGate` issues permits: the constructor demands a private issuer
object that lives in this package, and a test inspects the source tree for constructions outside
``consent/``. This module does not decide *whether* a permit is granted; the gate does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from wking_device.errors import ConsentRequired, PermitRevoked

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["REVOCATION_REASONS", "Permit", "Revocation"]

_LOGGER = logging.getLogger(__name__)

REVOCATION_REASONS = frozenset(
    {"withdrawn", "policy_change", "do_not_track", "minor", "ledger_tampered"}
)
"""Why a permit can stop being valid."""

_ISSUER = object()
"""Only code holding this object (the gate, in this package) can construct a :class:`Permit`."""


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

    Attributes:
        permit_id: Unique id of this permit (for logs).
        categories: The categories it covers.
        consent_ids: For each category, the ledger entry id of the grant in force.
        policy_versions: For each category, the policy version its grant was made under.
        policy_version: The newest of those versions.
    """

    __slots__ = (
        "_token",
        "categories",
        "consent_ids",
        "permit_id",
        "policy_version",
        "policy_versions",
    )

    def __init__(
        self,
        *,
        permit_id: str,
        consent_ids: Mapping[str, str],
        policy_versions: Mapping[str, str],
        token: _Token,
        issuer: object,
    ) -> None:
        if issuer is not _ISSUER:
            raise TypeError("permits are issued by ConsentGate.permit(), never constructed")
        self.permit_id = permit_id
        self.categories = frozenset(consent_ids)
        self.consent_ids: Mapping[str, str] = MappingProxyType(dict(consent_ids))
        self.policy_versions: Mapping[str, str] = MappingProxyType(dict(policy_versions))
        self.policy_version = max(
            policy_versions.values(),
            key=lambda v: tuple(int(p) if p.isdigit() else -1 for p in v.split(".")),
            default="",
        )
        self._token = token

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
