from __future__ import annotations

import subprocess
import sys
import types

import wking_device

# Names every module has that are not API: the __future__ feature and typing helpers.
_NOT_API = {"annotations", "TYPE_CHECKING", "Any"}


def test_every_exported_name_resolves() -> None:
    for name in wking_device.__all__:
        assert getattr(wking_device, name) is not None, name


def test_all_matches_public_names() -> None:
    for name in wking_device.__all__:
        getattr(wking_device, name)  # load the lazy ones
    public = {
        name
        for name, value in vars(wking_device).items()
        if not name.startswith("_")
        and name not in _NOT_API
        and not isinstance(value, types.ModuleType)
    }
    assert set(wking_device.__all__) - {"__version__"} == public


def test_all_is_sorted() -> None:
    assert wking_device.__all__ == sorted(wking_device.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    assert not hasattr(wking_device, "NoSuchThing")


def test_import_is_cheap() -> None:
    # bleak, cryptography and sqlite3 load on first use of the names that need them
    code = (
        "import sys, wking_device; "
        "print(sorted(m for m in ('bleak', 'cryptography', 'sqlite3', 'aiohttp', 'bumble') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
