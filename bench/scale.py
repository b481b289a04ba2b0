"""How much each workload does: the full figures for the README, or ``--quick`` for CI."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Scale"]


@dataclass(frozen=True)
class Scale:
    name: str
    repetitions: int  # A B A B ... rounds for each workload
    round_trips: int  # samples per repetition
    chains: int
    throughput_tasks: int
    throughput_repetitions: int
    fan_out_width: int
    fan_outs: int  # runs per repetition; the repetition's figure is their median
    memo_steps: int
    memo_step_ms: float
    memory_repetitions: int
    memory_small_runs: int
    memory_large_runs: int
    judge_targets: bool  # pass/miss against the targets; --quick only shows the ratios


FULL = Scale(
    name="full",
    repetitions=5,
    round_trips=1000,
    chains=300,
    throughput_tasks=10_000,
    throughput_repetitions=3,
    fan_out_width=100,
    fan_outs=5,
    memo_steps=100,
    memo_step_ms=10.0,
    memory_repetitions=3,
    memory_small_runs=1_000,
    memory_large_runs=100_000,
    judge_targets=True,
)

# Small enough to finish well within a minute on a busy 2-core machine; the figures mean little.
QUICK = Scale(
    name="quick",
    repetitions=2,
    round_trips=50,
    chains=20,
    throughput_tasks=300,
    throughput_repetitions=2,
    fan_out_width=100,
    fan_outs=1,
    memo_steps=10,
    memo_step_ms=10.0,
    memory_repetitions=1,
    memory_small_runs=100,
    memory_large_runs=1_000,
    judge_targets=False,
)
