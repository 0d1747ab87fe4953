"""docs/api.md: every entry point of the library has a complete example in the docs.

The examples themselves are run by tests/test_doc_snippets.py (every ``python`` block of the
docs); this test keeps the list honest: an entry point added to ``wking_device`` without an
example in a Python block of the API page or the guides fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import wking_device

DOCS = Path(__file__).parents[1] / "docs"
PAGES = ("api.md", "library.md", "protocol.md", "testing.md")

ENTRY_POINTS = (
    # functions a program starts from
    "discover",
    "find",
    "read_all",
    "get_event_bus",
    "open_installation_gate",
    "open_store",
    "open_bindings",
    "resolve_paths",
    "load_settings",
    # resources a program holds
    "Speaker",
    "SpeakerScanner",
    "EventBus",
    "Agent",
    "FrameCodec",
    "SimWorld",
)


def _python_blocks() -> str:
    text = "\n".join((DOCS / page).read_text(encoding="utf-8") for page in PAGES)
    return "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


def test_every_exported_function_is_an_entry_point_with_an_example() -> None:
    functions = {
        name
        for name in wking_device.__all__
        if callable(getattr(wking_device, name)) and name[0].islower()
    }
    assert functions <= set(ENTRY_POINTS)


def test_every_entry_point_is_used_in_a_documented_program() -> None:
    code = _python_blocks()
    missing = [name for name in ENTRY_POINTS if not re.search(rf"\b{name}\b", code)]
    assert missing == []


def test_the_api_page_lists_every_entry_point() -> None:
    table = (DOCS / "api.md").read_text(encoding="utf-8").split("## `wking_device`")[0]
    missing = [name for name in ENTRY_POINTS if f"`{name}" not in table and name not in table]
    assert missing == []
