"""Source-tree rules (issue 3, done-when 2): only consent/ constructs permits; collectors emit
only through the permit-checking path."""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path

import pytest

import wking_device
import wking_device.collect as collect_pkg
from wking_device.collect import Collector, MemorySink
from wking_device.consent import ConsentGate, Ledger
from wking_device.errors import PermitRevoked
from wking_device.models import DeviceInfo, OperationEvent, OperationKind, Outcome
from wking_device.policy import CATALOG

SRC = Path(wking_device.__file__).parent
PRIVATE_PERMIT_NAMES = {"_ISSUER", "_Token"}
ENTRY_POINTS = {"on_event", "on_info", "on_exception", "snapshot"}


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _permit_violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "Permit":
                found.append(f"{path}:{node.lineno} constructs Permit")
            if name == "__new__" and any(
                isinstance(arg, ast.Name) and arg.id == "Permit" for arg in node.args
            ):
                found.append(f"{path}:{node.lineno} Permit.__new__")
        if isinstance(node, ast.Name) and node.id in PRIVATE_PERMIT_NAMES:
            found.append(f"{path}:{node.lineno} uses {node.id}")
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_PERMIT_NAMES:
            found.append(f"{path}:{node.lineno} uses {node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "wking_device.consent._permit":
            found.append(f"{path}:{node.lineno} imports the permit internals")
        if isinstance(node, ast.alias) and node.name in PRIVATE_PERMIT_NAMES:
            found.append(f"{path}:{node.lineno} imports {node.name}")
    return found


def test_nothing_outside_consent_constructs_a_permit() -> None:
    consent_dir = SRC / "consent"
    violations = [
        v
        for path in _modules(SRC)
        if consent_dir not in path.parents
        for v in _permit_violations(path)
    ]
    assert violations == []


def test_the_rule_checker_catches_a_construction(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from wking_device.consent._permit import _ISSUER, Permit\n"
        "p = Permit(permit_id='x', consent_ids={}, policy_versions={},\n"
        "           token=None, issuer=_ISSUER)\n"
    )
    assert len(_permit_violations(bad)) >= 3


def _functions_calling(tree: ast.AST, attr: str) -> list[ast.FunctionDef]:
    result = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == attr
                ):
                    result.append(node)
                    break
    return result


def test_collectors_emit_only_through_the_permit_path() -> None:
    collect_dir = SRC / "collect"
    for path in _modules(collect_dir):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # the sink is only called by the base's flush, which re-checks the permits
        for func in _functions_calling(tree, "append"):
            for call in ast.walk(func):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "append"
                    and isinstance(call.func.value, ast.Attribute)
                    and call.func.value.attr in {"_sink", "_buffer"}
                ):
                    assert path.name == "_base.py", f"{path}:{call.lineno}"
                    assert func.name in {"flush", "_emit"}, f"{path}:{call.lineno}"
        # records are made only by _emit (permit.require first) or _salvage (with a new permit)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                makes_record = any(
                    isinstance(c, ast.Call)
                    and isinstance(c.func, ast.Name)
                    and c.func.id == "Record"
                    for c in ast.walk(node)
                )
                if makes_record:
                    assert node.name in {"_emit", "_salvage"}, f"{path}:{node.lineno}"
                    assert any(
                        isinstance(c, ast.Call)
                        and isinstance(c.func, ast.Attribute)
                        and c.func.attr in {"require", "_permit"}
                        for c in ast.walk(node)
                    ), f"{path}:{node.name} makes a record without a permit check"
        # every entry point that emits asks the gate for a permit first
        for func in _functions_calling(tree, "_emit"):
            if func.name in ENTRY_POINTS:
                assert any(
                    isinstance(c, ast.Call)
                    and isinstance(c.func, ast.Attribute)
                    and c.func.attr == "_permit"
                    for c in ast.walk(func)
                ), f"{path}:{func.name}"


def _all_collector_classes() -> list[type[Collector]]:
    classes = [
        obj
        for _, obj in inspect.getmembers(collect_pkg, inspect.isclass)
        if issubclass(obj, Collector) and obj is not Collector
    ]
    assert len(classes) >= 5
    return classes


def test_every_collector_declares_catalog_categories() -> None:
    for cls in _all_collector_classes():
        assert cls.categories, cls
        assert cls.categories <= set(CATALOG), cls


@pytest.fixture(name="closed_gate")
def fixture_closed_gate(tmp_path: Path) -> ConsentGate:
    return ConsentGate(Ledger(tmp_path / "ledger.jsonl", b"r" * 32))


async def test_no_collector_emits_without_a_permit(closed_gate: ConsentGate) -> None:
    sink = MemorySink()
    event = OperationEvent(
        kind=OperationKind.CONNECT, outcome=Outcome.ERROR, address="C0:FF:EE:00:00:01"
    )
    for cls in _all_collector_classes():
        kwargs = {"location": "Berlin"} if cls.__name__ == "LocationCollector" else {}
        if cls.__name__ == "OperationLogCollector":
            kwargs = {"adapter_mac": "00:11:22:33:44:55"}
        collector = cls(closed_gate, sink, **kwargs)
        for name in ENTRY_POINTS:
            method = getattr(collector, name, None)
            if method is None:
                continue
            if name == "on_event":
                method(event)
            elif name == "on_info":
                method(DeviceInfo(address="C0:FF:EE:00:00:01", model="X"))
            elif name == "on_exception":
                method(RuntimeError("x"), where="test")
            else:
                method()
        assert collector.pending == 0, cls
        assert await collector.flush() == 0
    assert sink.records == []


async def test_emit_refuses_a_revoked_permit(tmp_path: Path) -> None:
    gate = ConsentGate(Ledger(tmp_path / "ledger.jsonl", b"r" * 32))
    gate.grant(["diagnostics"], method="api")
    permit = gate.permit(["diagnostics"])
    collector = collect_pkg.DiagnosticsCollector(gate, MemorySink())
    gate.withdraw(["diagnostics"])
    with pytest.raises(PermitRevoked):
        collector._emit("diagnostics", {}, permit)
    await asyncio.sleep(0)
