from __future__ import annotations

import types

import wking_device


def test_all_matches_public_names() -> None:
    public = {
        name
        for name in dir(wking_device)
        if not name.startswith("_")
        and name != "annotations"  # the __future__ feature, not API
        and not isinstance(getattr(wking_device, name), types.ModuleType)
    }
    assert set(wking_device.__all__) - {"__version__"} == public


def test_all_is_sorted() -> None:
    assert wking_device.__all__ == sorted(wking_device.__all__)
