"""The bars issue 7 holds Coda to, and how a measured ratio is judged against them."""

from __future__ import annotations

from dataclasses import dataclass

from bench.workloads.base import CELERY_RABBITMQ, CELERY_REDIS, CODA, CODA_RUNS

__all__ = ["TARGETS", "Target", "target_for"]


@dataclass(frozen=True)
class Target:
    """``numerator / denominator`` (each a side's figure, paired repetition by repetition) must
    stay at most (or, with ``at_least``, at least) ``bound``."""

    workload: str
    numerator: tuple[str, str]  # (side, figure key)
    denominator: tuple[str, str]
    bound: float
    at_least: bool
    text: str

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.at_least else ratio <= self.bound

    @property
    def bound_text(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.bound:g}"


def _vs(workload: str, figure: str, celery: str, bound: float, at_least: bool, text: str) -> Target:
    return Target(workload, (CODA, figure), (celery, figure), bound, at_least, text)


TARGETS: tuple[Target, ...] = (
    _vs("round_trip", "p50_ms", CELERY_REDIS, 1 / 8, False, "Coda p50 ≤ 1/8 of Celery's p50 on Redis"),
    _vs("chain", "p50_ms", CELERY_REDIS, 1 / 8, False, "Coda p50 ≤ 1/8 of Celery's p50 on Redis"),
    # Where the issue names no broker, Coda is held to the bar against both.
    _vs("throughput", "tasks_per_s", CELERY_REDIS, 5, True, "≥ 5× Celery's tasks/s"),
    _vs("throughput", "tasks_per_s", CELERY_RABBITMQ, 5, True, "≥ 5× Celery's tasks/s"),
    _vs("fan_out", "wall_ms", CELERY_REDIS, 1 / 5, False, "≤ 1/5 of the chord's wall time"),
    Target("memo_rerun", (CODA, "first_run_ms"), (CODA, "rerun_ms"), 20, True, "rerun ≥ 20× faster than the first run"),
    _vs("bridge", "p50_ms", CELERY_REDIS, 1.25, False, "≤ 1.25× the direct delay().get()"),
    _vs("queue_takeover", "backlog_tasks_per_s", CELERY_REDIS, 1, True, "≥ 1× Celery's tasks/s"),
    _vs("queue_takeover", "live_tasks_per_s", CELERY_REDIS, 1, True, "≥ 1× Celery's tasks/s"),
    _vs("memory", "idle_rss_mib", CELERY_REDIS, 1, False, "idle ≤ Celery's idle"),
    _vs("memory", "idle_rss_mib", CELERY_RABBITMQ, 1, False, "idle ≤ Celery's idle"),
    Target(
        "memory", (CODA_RUNS, "rss_after_large_mib"), (CODA_RUNS, "rss_after_small_mib"), 1.2, False,
        "RSS after the large number of runs ≤ 1.2× RSS after the small one",
    ),
)


def target_for(workload: str, numerator: tuple[str, str], denominator: tuple[str, str]) -> Target | None:
    for target in TARGETS:
        if (target.workload, target.numerator, target.denominator) == (workload, numerator, denominator):
            return target
    return None
