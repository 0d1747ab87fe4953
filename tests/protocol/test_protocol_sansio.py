"""The sans-IO rule: protocol/ imports no I/O or event-loop modules (STYLE.md, item 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import wking_device.protocol

FORBIDDEN = {"asyncio", "bleak", "bumble", "sqlite3", "ssl", "socket", "aiohttp", "selectors"}
PACKAGE_DIR = Path(wking_device.protocol.__file__).parent


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
            in {"__import__", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_protocol_sources_import_no_io_modules() -> None:
    sources = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(sources) >= 5
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): sorted(imported_roots(path.read_text()) & FORBIDDEN)
        for path in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_protocol_depends_only_on_errors_among_our_modules() -> None:
    # DESIGN.md section 2: dependencies point downwards; protocol/ sits on errors.py only (and
    # on _public, the leaf helper every public package re-homes its names with)
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wking_device"):
                module = node.module or ""
                assert module in {
                    "wking_device.errors",
                    "wking_device._public",
                } or module.startswith("wking_device.protocol"), f"{path.name} imports {module}"


def test_detector_catches_forbidden_imports() -> None:
    # The check must be able to fail: feed it the forms it has to see.
    assert imported_roots("import asyncio") == {"asyncio"}
    assert imported_roots("from bleak.backends import client") == {"bleak"}
    assert imported_roots("import sqlite3 as db, os") == {"sqlite3", "os"}
    assert imported_roots("importlib.import_module('ssl')") >= {"ssl"}
    assert imported_roots("def f():\n    import socket\n") == {"socket"}
