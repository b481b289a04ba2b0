"""What a workload is, and the running services it measures."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.scale import Scale
from bench.services import CeleryWorker
from coda.client import Client
from coda.supervisor.launcher import SupervisorProcess

__all__ = ["CELERY_RABBITMQ", "CELERY_REDIS", "CODA", "CODA_PINNED", "CODA_RUNS", "Figure", "Services", "Workload", "is_coda"]

T = TypeVar("T")

# The sides a workload can measure. Coda's ratios are taken against each Celery side.
CODA = "coda"
CODA_PINNED = "coda-pinned"
CELERY_REDIS = "celery-redis"
CELERY_RABBITMQ = "celery-rabbitmq"
CODA_RUNS = "coda-runs"  # a supervisor measured after many finished runs (the memory workload)


def is_coda(side: str) -> bool:
    return side.startswith("coda")


@dataclass(frozen=True)
class Figure:
    """A measured quantity: its key in the results, how it reads, its unit, which way is better."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    compare: bool = True  # False: shown per side, but no Coda/Celery ratio is taken


@dataclass
class Services:
    """Everything started once per invocation and shared by the workloads."""

    scale: Scale
    tag: str
    loop: asyncio.AbstractEventLoop
    supervisor: SupervisorProcess
    client: Client
    celery: dict[str, CeleryWorker] = field(default_factory=dict)  # by side: CELERY_REDIS, CELERY_RABBITMQ
    unavailable: dict[str, str] = field(default_factory=dict)  # side → why it could not start

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the bench's one event loop (the Coda client lives there)."""
        return self.loop.run_until_complete(coro)


class Workload:
    """One benchmark. The runner calls :meth:`measure` once per side per repetition, sides in
    turn (A B A B ...), and pairs the values of the same repetition for the ratios."""

    number: int
    name: str
    title: str

    def figures(self, scale: Scale) -> list[Figure]:
        raise NotImplementedError

    def repetitions(self, scale: Scale) -> int:
        return scale.repetitions

    def sides(self, services: Services, repetition: int) -> list[str]:
        """The sides measured in this repetition, in order: Coda first, then each Celery side up."""
        return [CODA, *(s for s in (CELERY_REDIS, CELERY_RABBITMQ) if s in services.celery)]

    def unavailable(self, services: Services) -> str | None:
        """Why this workload cannot run here at all, or None."""
        return None

    def measure(self, services: Services, side: str) -> dict[str, float]:
        """One repetition on ``side``: figure key → value."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop whatever this workload started for itself."""
