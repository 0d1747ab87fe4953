"""Fault plans: deterministic misbehaviour of the reference receiver, for tests and demos.

A plan is a TOML or JSON file (or a :class:`FaultPlan` built in code)::

    seed = 7
    latency = 0.05              # seconds added before every answer
    answer_latency = 0.0        # seconds between storing a request's records and answering
    reset_rate = 0.1            # drop the connection mid-request (after reading the body)
    reset_after_store = true    # ... after storing its records (the client cannot know)
    truncate_rate = 0.05        # announce a body, send half of it, close
    slow_read = 0.01            # seconds of pause per 16 KiB read of the request body
    retry_after = 2             # Retry-After (seconds) on injected 429 and 503
    reject_categories = ["location"]  # not stored; answered with an OTLP partial_success
    [status]                    # error rates by status code, drawn before anything else
    500 = 0.1
    503 = 0.05
    429 = 0.05

Decisions are drawn from ``random.Random(seed)`` in request order, one :class:`FaultDecision`
per request, so a run with the same requests in the same order sees the same faults. Injected
statuses are answered without storing anything. This module decides; the server acts.
"""

from __future__ import annotations

import json
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wking_device.errors import ConfigError

__all__ = ["FaultDecision", "FaultPicker", "FaultPlan", "load_fault_plan"]


class FaultPlan(BaseModel):
    """What faults to inject, and how often (rates are probabilities per request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    status: dict[int, float] = Field(default_factory=dict)
    retry_after: float | None = Field(default=None, ge=0)
    latency: float = Field(default=0.0, ge=0, le=60)
    answer_latency: float = Field(default=0.0, ge=0, le=60)
    """Seconds between storing a request's records and answering it: a collector slow to answer
    (a client that gives up meanwhile cannot know its records were stored)."""
    reset_rate: float = Field(default=0.0, ge=0, le=1)
    reset_after_store: bool = True
    truncate_rate: float = Field(default=0.0, ge=0, le=1)
    slow_read: float = Field(default=0.0, ge=0, le=10)
    reject_categories: frozenset[str] = frozenset()
    """Records of these categories are not stored: the answer is a 200 whose
    ``partial_success`` counts them (as a collector that refuses some records does)."""

    @field_validator("status")
    @classmethod
    def _check_status(cls, value: dict[int, float]) -> dict[int, float]:
        for code, rate in value.items():
            if not 400 <= code <= 599:
                raise ValueError(f"status {code} is not an HTTP error status (400-599)")
            if not 0 <= rate <= 1:
                raise ValueError(f"rate {rate} for status {code} is not between 0 and 1")
        if sum(value.values()) > 1:
            raise ValueError("the status rates add up to more than 1")
        return value


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one request.

    Attributes:
        status: Answer with this error status (nothing stored), or ``None``.
        reset: Drop the connection instead of answering.
        truncate: Send a truncated answer.
    """

    status: int | None = None
    reset: bool = False
    truncate: bool = False


class FaultPicker:
    """Draws one :class:`FaultDecision` per request from a plan's seeded random source."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)  # noqa: S311 - reproducible faults, not crypto
        self._statuses = sorted(plan.status.items())

    def next(self) -> FaultDecision:
        """The decision for the next request."""
        draw = self._rng.random()
        cumulative = 0.0
        for code, rate in self._statuses:
            cumulative += rate
            if draw < cumulative:
                return FaultDecision(status=code)
        reset = self._rng.random() < self.plan.reset_rate
        truncate = not reset and self._rng.random() < self.plan.truncate_rate
        return FaultDecision(reset=reset, truncate=truncate)


def load_fault_plan(path: Path) -> FaultPlan:
    """Read and validate a fault plan (``.toml``, else JSON).

    Raises:
        ConfigError: The file cannot be read, is not valid TOML/JSON, or breaks the schema
            (names the file and the key).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the fault plan: {exc}", file=str(path)) from exc
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}", file=str(path)
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError("a fault plan is a table/object", file=str(path))
    try:
        return FaultPlan.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ConfigError(error["msg"], file=str(path), key=key or None) from exc
