"""Runs the chosen workloads on shared services, alternating sides repetition by repetition."""

from __future__ import annotations

import logging
import time
import traceback

from bench.results import Measured, SideFigure, WorkloadResult, compare
from bench.stats import summarize
from bench.workloads.base import Services, Workload

__all__ = ["run_workload"]

logger = logging.getLogger(__name__)


def _brief(values: dict[str, float]) -> str:
    return " ".join(f"{key}={value:.4g}" for key, value in values.items())


def run_workload(workload: Workload, services: Services) -> WorkloadResult:
    """Measure ``workload``: every side once per repetition, in turn (A B A B ...)."""
    scale = services.scale
    result = WorkloadResult(workload.number, workload.name, workload.title, "measured",
                            params={"scale": scale.name, "repetitions": workload.repetitions(scale)})
    started = time.perf_counter()
    reason = workload.unavailable(services)
    if reason is not None:
        result.status, result.reason = "not available", reason
        logger.info("bench.workload.not_available: %s: %s", workload.name, reason)
        return result
    figures = workload.figures(scale)
    measured: Measured = {}
    try:
        for repetition in range(workload.repetitions(scale)):
            for side in workload.sides(services, repetition):
                values = workload.measure(services, side)
                measured.setdefault(side, {})[repetition] = values
                logger.info("bench.measured: %s #%s %s: %s", workload.name, repetition + 1, side, _brief(values))
    except Exception as exc:  # one broken workload must not cost the others their figures
        logger.error("bench.workload.failed: %s\n%s", workload.name, traceback.format_exc())
        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        workload.close()
    for side, by_repetition in measured.items():
        for figure in figures:
            series = [v[figure.key] for v in by_repetition.values() if figure.key in v]
            if series:
                result.figures.append(SideFigure(side, figure, summarize(series)))
    result.comparisons = compare(workload.name, figures, measured, scale.judge_targets)
    for side, reason in services.unavailable.items():
        result.params.setdefault("sides_unavailable", {})[side] = reason
    result.seconds = time.perf_counter() - started
    return result
