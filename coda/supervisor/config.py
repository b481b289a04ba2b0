"""Supervisor settings: one frozen dataclass; precedence CLI > environment > defaults.

Every field is a flag of ``coda supervisor`` (``max_runs`` is ``--max-runs``, ``apps`` is
``-A/--app``) and an environment variable (``CODA_MAX_RUNS``, ``CODA_APPS``); :func:`flag` and
:func:`env_var` spell them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from coda.address import DEFAULT_ADDRESS, parse_address
from coda.errors import CodaError
from coda.framing import DEFAULT_MAX_FRAME

__all__ = ["LOG_LEVELS", "MIN_FRAME", "SupervisorConfig", "env_var", "flag"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_FRAME = 1024


_FLAG_NAMES = {"apps": "app"}  # -A/--app, as celery spells it


def flag(name: str) -> str:
    """The ``coda supervisor`` flag of config field ``name``."""
    return "--" + _FLAG_NAMES.get(name, name).replace("_", "-")


def env_var(name: str) -> str:
    """The environment variable of config field ``name``."""
    return f"CODA_{name.upper()}"


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything ``coda supervisor`` can be told."""

    apps: tuple[str, ...] = ()
    workers: int = 2
    concurrency: int = 1
    workflow_capacity: int = 1000
    listen: str = DEFAULT_ADDRESS
    token: str | None = None
    grace: float = 30.0
    retention: float = 600.0
    max_runs: int = 2_000
    max_worker_deaths: int = 3
    max_frame: int = DEFAULT_MAX_FRAME
    log_level: str = "INFO"
    celery_app: str | None = None
    queues: tuple[str, ...] = ()
    broker: str | None = None
    # Bridge bounds: for a worker to start a message (when workers report starts), for a result.
    bridge_pickup_timeout: float = 60.0
    bridge_result_timeout: float = 3600.0

    def __post_init__(self) -> None:
        checks = [
            ("workers", self.workers >= 1, ">= 1"),
            ("concurrency", self.concurrency >= 1, ">= 1"),
            ("workflow_capacity", self.workflow_capacity >= 1, ">= 1"),
            ("grace", self.grace >= 0, ">= 0"),
            ("retention", self.retention >= 0, ">= 0"),
            ("max_runs", self.max_runs >= 1, ">= 1"),
            ("max_worker_deaths", self.max_worker_deaths >= 1, ">= 1"),
            ("max_frame", self.max_frame >= MIN_FRAME, f">= {MIN_FRAME}"),
            ("log_level", self.log_level.upper() in LOG_LEVELS, f"one of {', '.join(LOG_LEVELS)}"),
            ("bridge_pickup_timeout", self.bridge_pickup_timeout > 0, "> 0"),
            ("bridge_result_timeout", self.bridge_result_timeout > 0, "> 0"),
        ]
        for name, ok, requirement in checks:
            if not ok:
                raise CodaError(f"{flag(name)} ({env_var(name)}) must be {requirement}, got {getattr(self, name)!r}")
        try:
            parse_address(self.listen)
        except CodaError as exc:
            raise CodaError(f"{flag('listen')}: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SupervisorConfig:
        """Defaults, then ``CODA_*`` variables, then ``overrides`` (None = not given). ``coda
        supervisor`` reads the same variables through its flags."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name in types:
            raw = env.get(env_var(name))
            if raw is None:
                continue
            values[name] = _convert(name, str(types[name]), raw)
        if "listen" not in values and env.get("CODA_URL"):
            values["listen"] = env["CODA_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
        return cls(**values)

    def with_(self, **changes: Any) -> SupervisorConfig:
        return replace(self, **changes)


def _convert(name: str, kind: str, raw: str) -> Any:
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(item.strip() for item in raw.replace(",", " ").split() if item.strip())
    except ValueError:
        raise CodaError(f"{env_var(name)}={raw!r} is not a valid {kind}") from None
    return raw
