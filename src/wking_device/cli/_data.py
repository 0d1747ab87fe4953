"""Commands of the `wking` CLI (placeholder until its layer lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    del group
