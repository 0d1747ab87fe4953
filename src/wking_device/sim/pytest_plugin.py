"""pytest plugin for the simulator (fixtures arrive with the simulator itself)."""

from __future__ import annotations
