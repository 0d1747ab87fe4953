from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wking_device.consent import ConsentGate, Ledger, Permit, Revocation
from wking_device.errors import (
    ConsentRequired,
    GuardianRequired,
    LedgerTampered,
    PermitRevoked,
    PrerequisiteMissing,
    UsageError,
)
from wking_device.policy import CATEGORY_IDS, PolicyDocument, PolicySet, shipped_policies

if TYPE_CHECKING:
    from collections.abc import Callable

KEY = b"g" * 32


@pytest.fixture(name="ledger_file")
def fixture_ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "consent" / "ledger.jsonl"


@pytest.fixture(name="make_gate")
def fixture_make_gate(ledger_file: Path) -> Callable[..., ConsentGate]:
    def make(**kwargs: object) -> ConsentGate:
        return ConsentGate(Ledger(ledger_file, KEY), **kwargs)  # type: ignore[arg-type]

    return make


def _upgrade(gate: ConsentGate, *significant: str, version: str = "9.0") -> None:
    doc = PolicyDocument(
        version=version,
        date=date(2030, 1, 1),
        text=f"v{version}",
        significant=frozenset(significant),
    )
    gate.apply_policies(gate.policies.with_document(doc))


def test_default_denied(make_gate: Callable[..., ConsentGate]) -> None:
    gate = make_gate()
    assert all(s.state == "denied" for s in gate.states().values())
    assert list(gate.states()) == list(CATEGORY_IDS)
    with pytest.raises(ConsentRequired) as info:
        gate.permit(["operation_logs", "device_info"])
    assert info.value.missing == {"operation_logs", "device_info"}
    assert gate.try_permit(["operation_logs"]) is None


def test_grant_gives_a_permit_with_consent_ids(make_gate: Callable[..., ConsentGate]) -> None:
    gate = make_gate()
    entry = gate.grant(["operation_logs", "device_info"], method="cli-yes")
    permit = gate.permit(["operation_logs"])
    assert permit.valid
    assert permit.covers("operation_logs")
    assert not permit.covers("device_info")
    assert permit.consent_ids == {"operation_logs": entry.id}
    assert permit.policy_version == shipped_policies().current.version
    permit.require("operation_logs")
    with pytest.raises(ConsentRequired):
        permit.require("device_info")
    assert gate.state("operation_logs").method == "cli-yes"


def test_permits_cannot_be_constructed_outside_the_gate() -> None:
    with pytest.raises(TypeError, match="issued by ConsentGate"):
        Permit(
            permit_id="x",
            consent_ids={"operation_logs": "x"},
            policy_versions={"operation_logs": "1.1"},
            token=object(),  # type: ignore[arg-type]
            issuer=object(),
            key=b"k" * 32,
        )


def test_bad_method_and_empty_requests_are_usage_errors(
    make_gate: Callable[..., ConsentGate],
) -> None:
    gate = make_gate()
    with pytest.raises(UsageError):
        gate.grant(["operation_logs"], method="implied")
    with pytest.raises(UsageError):
        gate.grant([], method="api")
    with pytest.raises(UsageError):
        gate.permit([])


def test_prerequisites_are_enforced(make_gate: Callable[..., ConsentGate]) -> None:
    gate = make_gate()
    with pytest.raises(PrerequisiteMissing) as info:
        gate.grant(["mac_addresses"], method="api")
    assert info.value.requires == {"operation_logs"}
    assert gate.history() == ()
    gate.grant(["operation_logs", "mac_addresses"], method="api")
    assert gate.permit(["mac_addresses"]).valid


def test_withdrawal_revokes_at_once_and_cascades(make_gate: Callable[..., ConsentGate]) -> None:
    gate = make_gate()
    seen: list[Revocation] = []
    gate.subscribe(seen.append)
    gate.grant(["operation_logs", "mac_addresses", "device_info"], method="api")
    permit = gate.permit(["operation_logs", "mac_addresses"])
    other = gate.permit(["device_info"])
    entry = gate.withdraw(["operation_logs"])
    assert entry is not None
    assert set(entry.categories) == {"operation_logs", "mac_addresses"}
    assert not permit.valid
    assert permit.revoked_reason == "withdrawn"
    assert other.valid
    assert seen == [Revocation(categories=frozenset(entry.categories), reason="withdrawn")]
    with pytest.raises(PermitRevoked):
        permit.require("operation_logs")
    assert gate.state("mac_addresses").reason == "withdrawn"
    assert gate.withdraw(["location"]) is None


def test_unsubscribe_stops_notifications_and_a_failing_listener_is_isolated(
    make_gate: Callable[..., ConsentGate],
) -> None:
    gate = make_gate()
    seen: list[Revocation] = []

    def broken(revocation: Revocation) -> None:
        raise RuntimeError("boom")

    gate.subscribe(broken)
    unsubscribe = gate.subscribe(seen.append)
    gate.grant(["device_info"], method="api")
    gate.withdraw(["device_info"])
    assert len(seen) == 1
    unsubscribe()
    gate.grant(["device_info"], method="api")
    gate.withdraw(["device_info"])
    assert len(seen) == 1


def test_do_not_track_denies_everything_and_is_recorded(
    make_gate: Callable[..., ConsentGate],
) -> None:
    gate = make_gate()
    gate.grant(["operation_logs", "device_info"], method="api")
    permit = gate.permit(["device_info"])
    seen: list[Revocation] = []
    gate.subscribe(seen.append)
    gate.set_do_not_track(True)
    assert not permit.valid
    assert seen[-1].reason == "do_not_track"
    assert seen[-1].categories == {"operation_logs", "device_info"}
    assert all(not s.granted for s in gate.states().values())
    assert gate.history()[-1].event == "dnt_on"
    # a new process with DNT still on records nothing new; with it off, records dnt_off
    assert len(make_gate(do_not_track=True).history()) == len(gate.history())
    reopened = make_gate(do_not_track=False)
    assert reopened.history()[-1].event == "dnt_off"
    assert reopened.permit(["device_info"]).valid


def test_minor_needs_a_guardian_for_sensitive_categories(
    make_gate: Callable[..., ConsentGate],
) -> None:
    gate = make_gate()
    gate.grant(["operation_logs", "location"], method="api")
    location = gate.permit(["location"])
    gate.set_minor(True)
    assert not location.valid
    assert location.revoked_reason == "minor"
    assert gate.permit(["operation_logs"]).valid  # not sensitive
    with pytest.raises(GuardianRequired):
        gate.grant(["ip_address"], method="api")
    gate.grant(["location"], method="guardian")
    assert gate.permit(["location"]).valid
    assert gate.history()[-2].event == "minor_on"


def test_significant_policy_change_suspends_until_regranted(
    make_gate: Callable[..., ConsentGate],
) -> None:
    gate = make_gate()
    gate.grant(["operation_logs", "mac_addresses", "diagnostics"], method="api")
    logs = gate.permit(["operation_logs"])
    macs = gate.permit(["mac_addresses"])
    diag = gate.permit(["diagnostics"])
    seen: list[Revocation] = []
    gate.subscribe(seen.append)
    _upgrade(gate, "operation_logs")
    assert not logs.valid
    assert not macs.valid  # its prerequisite is suspended
    assert diag.valid
    assert seen == [
        Revocation(
            categories=frozenset({"operation_logs", "mac_addresses"}), reason="policy_change"
        )
    ]
    assert gate.state("operation_logs").state == "suspended"
    assert gate.state("mac_addresses").reason == "prerequisite"
    assert gate.history()[-1].event == "policy_installed"
    # mac_addresses' own terms did not change: its grant comes back with its prerequisite
    gate.grant(["operation_logs"], method="api")
    assert gate.permit(["operation_logs", "mac_addresses"]).valid
    assert gate.state("operation_logs").policy_version == "9.0"


def test_a_new_process_with_a_newer_policy_records_the_upgrade(
    make_gate: Callable[..., ConsentGate],
) -> None:
    gate = make_gate()
    gate.grant(["location"], method="api")
    doc = PolicyDocument(
        version="9.0", date=date(2030, 1, 1), text="new", significant=frozenset({"location"})
    )
    upgraded = make_gate(policies=shipped_policies().with_document(doc))
    assert upgraded.state("location").state == "suspended"
    assert upgraded.history()[-1].event == "policy_installed"
    assert upgraded.history()[-1].categories == ("location",)


def test_notice_1_2_suspends_every_grant_made_under_1_1(
    make_gate: Callable[..., ConsentGate],
) -> None:
    # 1.2 discloses the installation id that links every upload: no grant under 1.1 carries over
    under_1_1 = PolicySet(doc for doc in shipped_policies() if doc.version in {"1.0", "1.1"})
    old = make_gate(policies=under_1_1)
    old.grant(sorted(CATEGORY_IDS), method="api")
    assert old.permit(sorted(CATEGORY_IDS)).valid
    upgraded = make_gate()
    assert {upgraded.state(c).state for c in CATEGORY_IDS} == {"suspended"}
    upgraded.grant(sorted(CATEGORY_IDS), method="api")
    assert upgraded.permit(sorted(CATEGORY_IDS)).policy_version == "1.2"


def test_refresh_picks_up_other_processes(make_gate: Callable[..., ConsentGate]) -> None:
    agent = make_gate()
    cli = make_gate()
    assert not agent.refresh()
    cli.grant(["device_info"], method="api")
    assert agent.refresh()
    permit = agent.permit(["device_info"])
    seen: list[Revocation] = []
    agent.subscribe(seen.append)
    cli.withdraw(["device_info"])
    agent.refresh()
    assert not permit.valid
    assert seen == [Revocation(categories=frozenset({"device_info"}), reason="withdrawn")]


def test_tampered_ledger_closes_the_gate(
    make_gate: Callable[..., ConsentGate], ledger_file: Path
) -> None:
    gate = make_gate()
    gate.grant(["device_info", "operation_logs"], method="api")
    permit = gate.permit(["device_info"])
    seen: list[Revocation] = []
    gate.subscribe(seen.append)
    lines = ledger_file.read_bytes().replace(b"device_info", b"location__x")
    ledger_file.write_bytes(lines)
    gate.refresh()
    assert not permit.valid
    assert seen[-1].reason == "ledger_tampered"
    closed = make_gate()
    assert isinstance(closed.tampered, LedgerTampered)
    assert all(s.reason == "ledger_tampered" for s in closed.states().values())
    with pytest.raises(LedgerTampered):
        closed.grant(["device_info"], method="api")
    with pytest.raises(LedgerTampered):
        closed.withdraw(["device_info"])
    assert closed.report()["ledger"]["verified"] is False
    # reset: set aside, start empty, everything denied
    moved = closed.ledger.quarantine()
    assert moved is not None
    assert moved.exists()
    fresh = make_gate()
    assert fresh.tampered is None
    assert fresh.history() == ()


def test_allows_checks_the_records_grant_was_never_withdrawn(
    make_gate: Callable[..., ConsentGate],
) -> None:
    gate = make_gate()
    assert not gate.allows("device_info")
    assert not gate.allows("no_such_category")
    first = gate.grant(["device_info"], method="api")
    again = gate.grant(["device_info"], method="api")  # a re-grant keeps the first in force
    assert gate.allows("device_info", first.id)
    assert gate.allows("device_info", again.id)
    gate.withdraw(["device_info"])
    assert not gate.allows("device_info", first.id)
    new = gate.grant(["device_info"], method="api")
    assert gate.allows("device_info")
    assert gate.allows("device_info", new.id)
    assert not gate.allows("device_info", first.id)  # collected before the withdrawal


def test_a_withdrawal_and_regrant_between_refreshes_still_revokes(
    make_gate: Callable[..., ConsentGate],
) -> None:
    # Another process withdraws and grants again before this gate looks at the ledger: the
    # category is granted before and after, but the grant this gate's permits name is gone.
    agent = make_gate()
    cli = make_gate()
    first = cli.grant(["device_info"], method="api")
    agent.refresh()
    permit = agent.permit(["device_info"])
    seen: list[Revocation] = []
    agent.subscribe(seen.append)
    cli.withdraw(["device_info"])
    second = cli.grant(["device_info"], method="api")
    assert agent.refresh()
    assert not permit.valid
    assert permit.revoked_reason == "withdrawn"
    assert seen == [Revocation(categories=frozenset({"device_info"}), reason="withdrawn")]
    fresh = agent.permit(["device_info"])
    assert fresh.consent_ids == {"device_info": second.id} != {"device_info": first.id}


def test_a_regrant_without_withdrawal_revokes_nothing(
    make_gate: Callable[..., ConsentGate],
) -> None:
    agent = make_gate()
    cli = make_gate()
    cli.grant(["device_info"], method="api")
    agent.refresh()
    permit = agent.permit(["device_info"])
    cli.grant(["device_info"], method="api")  # a second grant keeps the first in force
    assert agent.refresh()
    assert permit.valid


def test_do_not_track_recorded_by_another_process_is_honoured(
    make_gate: Callable[..., ConsentGate],
) -> None:
    agent = make_gate()
    agent.grant(["device_info", "location"], method="api")
    permit = agent.permit(["device_info"])
    make_gate(do_not_track=True)  # `DO_NOT_TRACK=1 wking consent status` elsewhere: dnt_on
    assert agent.refresh()
    assert not permit.valid
    assert permit.revoked_reason == "do_not_track"
    assert agent.do_not_track
    assert agent.state("device_info").reason == "do_not_track"
    make_gate()  # a process without Do Not Track records dnt_off
    assert agent.refresh()
    assert not agent.do_not_track
    assert agent.permit(["device_info"]).valid
    # the same for a minor's profile recorded elsewhere: sensitive grants stop
    sensitive = agent.permit(["location"])
    make_gate(minor=True)
    assert agent.refresh()
    assert not sensitive.valid
    assert agent.state("location").reason == "minor"
    assert agent.state("device_info").granted


def test_switching_do_not_track_off_here_records_it(
    make_gate: Callable[..., ConsentGate],
) -> None:
    agent = make_gate()
    agent.grant(["device_info"], method="api")
    make_gate(do_not_track=True)
    agent.refresh()
    assert agent.do_not_track
    agent.set_do_not_track(False)
    assert agent.history()[-1].event == "dnt_off"
    assert agent.permit(["device_info"]).valid
