"""The package version, kept in this one place (hatch reads it from here)."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
