"""Random sequences of consent changes and collection attempts (issue 3, done-when 1).

Invariant: a record of category C is accepted exactly when a valid consent for C (and its
prerequisites) exists at that moment — checked through the real collectors and sink, and through
permits held across changes (a revoked permit never comes back).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from wking_device.collect import (
    DeviceInfoCollector,
    DiagnosticsCollector,
    LocationCollector,
    MemorySink,
    OperationLogCollector,
    SoftwareInfoCollector,
    check_records,
)
from wking_device.consent import ConsentGate, Ledger, Permit
from wking_device.errors import (
    ConsentError,
    GuardianRequired,
    PrerequisiteMissing,
)
from wking_device.models import DeviceInfo, OperationEvent, OperationKind, Outcome, Record
from wking_device.policy import (
    CATALOG,
    CATEGORY_IDS,
    PolicyDocument,
    dependents_of,
    shipped_policies,
)

KEY = b"s" * 32
SPEAKER = "C0:00:00:00:00:01"
ADAPTER = "00:1A:7D:DA:71:13"
categories_st = st.sets(st.sampled_from(CATEGORY_IDS), min_size=1, max_size=3)


class ConsentMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wking-consent-"))
        self.path = self.dir / "ledger.jsonl"
        self.policies = shipped_policies()
        self.gate = ConsentGate(Ledger(self.path, KEY), policies=self.policies)
        # the model
        self.grants: dict[str, tuple[str, bool]] = {}  # category -> (policy version, guardian)
        self.dnt = False
        self.minor = False
        self.next_major = 10
        self.held: dict[str, Permit] = {}
        self._make_collectors()

    def _make_collectors(self) -> None:
        self.sink = MemorySink()
        gate, sink = self.gate, self.sink
        self.ops = OperationLogCollector(gate, sink, adapter_mac=ADAPTER)
        self.info = DeviceInfoCollector(gate, sink, host={"os": "Linux"})
        self.software = SoftwareInfoCollector(gate, sink)
        self.diag = DiagnosticsCollector(gate, sink)
        self.location = LocationCollector(gate, sink, location="Berlin")

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the model ----------------------------------------------------------------------------

    def valid(self, category: str) -> bool:
        if category not in self.grants or self.dnt:
            return False
        version, guardian = self.grants[category]
        if self.minor and CATALOG[category].sensitive and not guardian:
            return False
        if category in self.policies.changed_since(version):
            return False
        return all(self.valid(p) for p in CATALOG[category].requires)

    def current_grant(self, category: str) -> bool:
        return category in self.grants and category not in self.policies.changed_since(
            self.grants[category][0]
        )

    # --- rules --------------------------------------------------------------------------------

    @rule(categories=categories_st, guardian=st.booleans())
    def grant(self, categories: set[str], guardian: bool) -> None:
        missing = any(
            p not in categories and not self.current_grant(p)
            for c in categories
            for p in CATALOG[c].requires
        )
        needs_guardian = (
            self.minor and not guardian and any(CATALOG[c].sensitive for c in categories)
        )
        try:
            self.gate.grant(categories, method="guardian" if guardian else "api")
        except PrerequisiteMissing:
            assert missing
            return
        except GuardianRequired:
            assert needs_guardian
            assert not missing
            return
        assert not missing
        assert not needs_guardian
        for category in categories:
            self.grants[category] = (self.policies.current.version, guardian)

    @rule(categories=categories_st)
    def withdraw(self, categories: set[str]) -> None:
        self.gate.withdraw(categories)
        for category in categories | dependents_of(categories):
            self.grants.pop(category, None)

    @rule(significant=st.sets(st.sampled_from(CATEGORY_IDS), max_size=3))
    def upgrade_policy(self, significant: set[str]) -> None:
        version = f"{self.next_major}.0"
        self.next_major += 1
        doc = PolicyDocument(
            version=version,
            date=date(2030, 1, 1),
            text=f"notice {version}",
            significant=frozenset(significant),
        )
        self.policies = self.policies.with_document(doc)
        self.gate.apply_policies(self.policies)

    @rule(on=st.booleans())
    def do_not_track(self, on: bool) -> None:
        self.gate.set_do_not_track(on)
        self.dnt = on

    @rule(on=st.booleans())
    def minor_flag(self, on: bool) -> None:
        self.gate.set_minor(on)
        self.minor = on

    @rule()
    def restart(self) -> None:
        """A new process: same ledger, same flags and policies; nothing may change."""
        for collector in (self.ops, self.info, self.software, self.diag, self.location):
            collector.close()
        self.gate = ConsentGate(
            Ledger(self.path, KEY), policies=self.policies, do_not_track=self.dnt, minor=self.minor
        )
        self.held = {}
        self._make_collectors()

    @rule(category=st.sampled_from(CATEGORY_IDS))
    def hold_permit(self, category: str) -> None:
        permit = self.gate.try_permit([category])
        assert (permit is not None) == self.valid(category)
        if permit is not None:
            self.held[category] = permit

    @rule(category=st.sampled_from(CATEGORY_IDS))
    def collect(self, category: str) -> None:
        before = len(self.sink.records)
        if category in {"operation_logs", "mac_addresses"}:
            self.ops.on_event(
                OperationEvent(kind=OperationKind.CONNECT, outcome=Outcome.OK, address=SPEAKER)
            )
            collector: Any = self.ops
        elif category == "device_info":
            self.info.on_info(DeviceInfo(address=SPEAKER, model="X8", battery=50))
            collector = self.info
        elif category == "software_info":
            self.software.snapshot()
            collector = self.software
        elif category == "diagnostics":
            self.diag.on_event(
                OperationEvent(kind=OperationKind.READ, outcome=Outcome.ERROR, error="timeout")
            )
            collector = self.diag
        elif category == "location":
            self.location.snapshot()
            collector = self.location
        else:
            # no collector for these: a sink check with whatever permit the gate gives
            permit = self.gate.try_permit([category])
            assert (permit is not None) == self.valid(category)
            return
        asyncio.run(collector.flush())
        new = self.sink.records[before:]
        if category == "mac_addresses":
            assert len(new) == (1 if self.valid("operation_logs") else 0)
            has_mac = bool(new) and "speaker_mac" in new[0].body
            assert has_mac == self.valid("mac_addresses")
            if new and not has_mac:
                assert "adapter_mac" not in new[0].body
        else:
            assert len(new) == (1 if self.valid(category) else 0), category
        history = self.gate.history()
        for record in new:
            # the grant named is one in force: a grant of the category never withdrawn since (a
            # permit outlives a re-grant of a category that stayed granted throughout)
            (grant,) = [e for e in history if e.id == record.consent_id]
            assert grant.event == "grant"
            assert record.category in grant.categories
            assert not any(
                e.event == "withdraw" and record.category in e.categories
                for e in history[grant.seq + 1 :]
            )

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def states_match_the_model(self) -> None:
        for category, state in self.gate.states().items():
            assert state.granted == self.valid(category), (category, state)
            assert self.gate.allows(category) == self.valid(category)

    @invariant()
    def held_permits_never_outlive_consent(self) -> None:
        for category, permit in self.held.items():
            if permit.valid:
                assert self.valid(category)
            record = Record(category=category, consent_id="x", policy_version="1", body={})
            try:
                check_records([record], permit)
                accepted = True
            except ConsentError:
                accepted = False
            assert accepted == permit.valid


TestConsentStateful = ConsentMachine.TestCase
TestConsentStateful.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
