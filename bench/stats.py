"""Summaries of repeated measurements: percentiles of samples, median [min–max] of repetitions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "percentile", "summarize"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """One figure over its repetitions."""

    median: float
    min: float
    max: float
    values: tuple[float, ...]

    def to_json(self) -> dict[str, object]:
        return {"median": self.median, "min": self.min, "max": self.max, "values": list(self.values)}


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("summary of no values")
    return Summary(statistics.median(values), min(values), max(values), tuple(values))
