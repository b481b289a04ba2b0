"""Supervisor settings: one frozen dataclass; precedence CLI > environment > defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from coda.address import DEFAULT_ADDRESS, parse_address
from coda.errors import CodaError
from coda.framing import DEFAULT_MAX_FRAME

__all__ = ["SupervisorConfig"]

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
            (self.workers >= 1, f"--workers must be >= 1, got {self.workers}"),
            (self.concurrency >= 1, f"--concurrency must be >= 1, got {self.concurrency}"),
            (self.workflow_capacity >= 1, f"workflow capacity must be >= 1, got {self.workflow_capacity}"),
            (self.grace >= 0, f"--grace must be >= 0, got {self.grace}"),
            (self.retention >= 0, f"--retention must be >= 0, got {self.retention}"),
            (self.max_runs >= 1, f"--max-runs must be >= 1, got {self.max_runs}"),
            (self.max_worker_deaths >= 1, f"max worker deaths must be >= 1, got {self.max_worker_deaths}"),
            (self.max_frame >= 1024, f"--max-frame must be >= 1024, got {self.max_frame}"),
            (self.bridge_pickup_timeout > 0, f"bridge pickup timeout must be > 0, got {self.bridge_pickup_timeout}"),
            (self.bridge_result_timeout > 0, f"bridge result timeout must be > 0, got {self.bridge_result_timeout}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CodaError(message)
        parse_address(self.listen)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SupervisorConfig:
        """Defaults, then ``CODA_*`` variables, then ``overrides`` (the CLI's, None = not given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name in types:
            raw = env.get(f"CODA_{name.upper()}")
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
            return tuple(item for item in raw.split(",") if item)
    except ValueError:
        raise CodaError(f"CODA_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
