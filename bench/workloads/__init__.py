"""The workloads of issue 7, in its order."""

from __future__ import annotations

from bench.workloads.base import Figure, Services, Workload
from bench.workloads.bridge import Bridge
from bench.workloads.chain import Chain
from bench.workloads.fanout import FanOut
from bench.workloads.memo import MemoRerun
from bench.workloads.memory import Memory
from bench.workloads.roundtrip import RoundTrip
from bench.workloads.takeover import Takeover
from bench.workloads.throughput import Throughput

__all__ = ["Figure", "Services", "Workload", "all_workloads"]


def all_workloads() -> list[Workload]:
    """A fresh instance of every workload (some hold processes between repetitions)."""
    return [RoundTrip(), Chain(), Throughput(), FanOut(), MemoRerun(), Bridge(), Takeover(), Memory()]
