"""How to install: wking-device is not on PyPI yet, and nothing tells users it is (issue 7, 23).

Every ``pip install`` line that names the package from a registry (``pip install wking-device``,
``"wking-device[sim]"``) must say it is for when the package is published; the README must say
how to install from a checkout; the error hint for a missing bumble must be one that works today.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wking_device.errors import AdapterUnavailable
from wking_device.sim import _compat as compat

ROOT = Path(__file__).resolve().parent.parent
# `pip install wking-device`, `pip install "wking-device[sim]"`: the package from a registry
# (a path, `-e .` or a URL after `@` installs from a checkout instead).
_FROM_REGISTRY = re.compile(
    r"pip3? install[^`]{0,40}?(?<![\w/.-])[\"']?wking-device(?:\[[a-z,]+\])?(?![\w@ ]*@)"
)


def _files() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("*.py")),
        *sorted((ROOT / "src").rglob("*.py")),
    ]


def test_every_registry_install_line_says_it_is_for_when_published() -> None:
    offenders = []
    for path in _files():
        # paragraph by paragraph: an install line may be wrapped, and its note may sit beside it
        for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            text = " ".join(paragraph.split())
            if _FROM_REGISTRY.search(text) and "published" not in text:
                offenders.append(f"{path.relative_to(ROOT)}: {text[:160]}")
    assert not offenders, "\n".join(offenders)


def test_the_readme_says_how_to_install_from_a_checkout() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "not published" in readme
    assert 'pip install -e ".[sim]"' in readme
    assert "clone" in readme or "checkout" in readme


def test_docs_give_the_checkout_install() -> None:
    for doc in ("docs/cli.md", "docs/testing.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert 'pip install -e ".[sim]"' in text, doc


def test_the_missing_bumble_hint_works_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "bumble_available", lambda: False)
    with pytest.raises(AdapterUnavailable) as info:
        compat.require_bumble()
    message = str(info.value)
    assert f'pip install "bumble=={compat.BUMBLE_VERSION}"' in message
    assert 'pip install -e ".[sim]"' in message
    assert not _FROM_REGISTRY.search(message)
