"""Whether the simulator can run here: bumble (the ``sim`` extra) and its pinned version.

This module owns the check and the error message only; it imports bumble lazily and never at
import time, so the CLI and the pytest plugin can call it where the extra is missing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys

from wking_device.errors import AdapterUnavailable

__all__ = ["BUMBLE_VERSION", "INSTALL_HINT", "bumble_available", "require_bumble"]

#: The bumble version the simulator's workarounds are written and tested against.
BUMBLE_VERSION = "0.0.236"
#: What to run when the extra is missing. wking-device is not published on PyPI yet, so the hint
#: names bumble itself (what the ``sim`` extra installs), which works however wking-device was
#: installed; the remedy adds the checkout form.
INSTALL_HINT = f'pip install "bumble=={BUMBLE_VERSION}"'
#: The same from a checkout of wking_device.
CHECKOUT_HINT = 'pip install -e ".[sim]" in a checkout of wking_device'


def bumble_available() -> bool:
    """Whether bumble is importable (without importing it)."""
    if "bumble" in sys.modules:
        # None there means "blocked" (how tests and some tools hide a package)
        return sys.modules["bumble"] is not None
    try:
        return importlib.util.find_spec("bumble") is not None
    except (ImportError, ValueError):
        return False


def require_bumble() -> None:
    """Raise a clear error when the simulator cannot run because bumble is missing.

    A different bumble version is allowed (a warning is not raised; the gap tests in
    tests/sim/ catch behaviour changes), but the pinned one is what is supported.

    Raises:
        AdapterUnavailable: bumble is not installed; the remedy names the ``sim`` extra.
    """
    if not bumble_available():
        raise AdapterUnavailable(
            "the simulator needs the 'bumble' package, which is not installed",
            remedy=f"install the simulator extra: {INSTALL_HINT}, or {CHECKOUT_HINT}",
        )


def installed_bumble_version() -> str | None:
    """The installed bumble version, or ``None`` when it is missing."""
    try:
        return importlib.metadata.version("bumble")
    except importlib.metadata.PackageNotFoundError:
        return None
