"""The long-running agent: scan, sessions, collectors and retention under one supervisor.

Public names: :class:`Agent` and :class:`AgentSummary`. The agent owns no Bluetooth, consent or
storage logic; it wires :mod:`wking_device.ble`, :mod:`wking_device.collect`,
:mod:`wking_device.consent` and :mod:`wking_device.store` together for a run.
"""

from __future__ import annotations

from wking_device.agent._agent import Agent, AgentSummary

__all__ = ["Agent", "AgentSummary"]
