"""The long-running agent: scan, sessions, collectors and retention under one supervisor.

Public names: :class:`Agent` and :class:`AgentSummary`; :data:`STATUS_FILE` and
:func:`agent_status` (what ``wking agent status`` reports). The agent owns no Bluetooth, consent or
storage logic; it wires :mod:`wking_device.ble`, :mod:`wking_device.collect`,
:mod:`wking_device.consent` and :mod:`wking_device.store` together for a run.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.agent._agent import Agent, AgentSummary
from wking_device.agent._status import STATUS_FILE, agent_status

__all__ = ["STATUS_FILE", "Agent", "AgentSummary", "agent_status"]

_publish(__name__, globals(), __all__)
