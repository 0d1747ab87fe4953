"""The ``wking`` command (under construction)."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Run the ``wking`` command."""
    raise SystemExit(1)
