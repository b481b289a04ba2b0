"""The results of one invocation as data: per-side figures, Coda/Celery ratios pair by pair with
their verdicts, and the JSON written to ``latest.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import Summary, summarize
from bench.targets import TARGETS, Target, target_for
from bench.workloads.base import Figure, is_coda

__all__ = ["BenchResult", "Comparison", "SideFigure", "WorkloadResult", "compare"]

# One value per (repetition, side): repetition index → figure key → value.
Measured = dict[str, dict[int, dict[str, float]]]


@dataclass(frozen=True)
class SideFigure:
    side: str
    figure: Figure
    summary: Summary

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "figure": self.figure.key, "label": self.figure.label, "unit": self.figure.unit,
                "higher_is_better": self.figure.higher_is_better, **self.summary.to_json()}


@dataclass(frozen=True)
class Comparison:
    """``numerator / denominator`` per repetition pair; judged if a target applies."""

    label: str
    numerator: tuple[str, str]
    denominator: tuple[str, str]
    ratio: Summary
    target: Target | None
    verdict: str | None  # "pass", "miss", "not judged", or None without a target

    def to_json(self) -> dict[str, Any]:
        target = self.target
        return {
            "label": self.label,
            "numerator": {"side": self.numerator[0], "figure": self.numerator[1]},
            "denominator": {"side": self.denominator[0], "figure": self.denominator[1]},
            "ratio": self.ratio.to_json(),
            "target": None if target is None else {"text": target.text, "bound": target.bound, "at_least": target.at_least},
            "verdict": self.verdict,
        }


@dataclass
class WorkloadResult:
    number: int
    name: str
    title: str
    status: str  # "measured", "not available" or "failed"
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[SideFigure] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    plot: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number, "name": self.name, "title": self.title, "status": self.status,
            "reason": self.reason, "params": self.params, "seconds": round(self.seconds, 2), "plot": self.plot,
            "figures": [f.to_json() for f in self.figures],
            "comparisons": [c.to_json() for c in self.comparisons],
        }


@dataclass
class BenchResult:
    date: str
    mode: str
    command: str
    machine: dict[str, Any]
    workloads: list[WorkloadResult] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date, "mode": self.mode, "command": self.command, "machine": self.machine,
            "seconds": round(self.seconds, 2), "notes": self.notes,
            "workloads": [w.to_json() for w in self.workloads],
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        tmp.replace(path)


def _pairs(measured: Measured, numerator: tuple[str, str], denominator: tuple[str, str]) -> list[float]:
    """Ratios of the values measured in the same repetition (the A B A B pairing)."""
    top, bottom = measured.get(numerator[0], {}), measured.get(denominator[0], {})
    ratios = []
    for repetition in sorted(set(top) & set(bottom)):
        a, b = top[repetition].get(numerator[1]), bottom[repetition].get(denominator[1])
        if a is not None and b:
            ratios.append(a / b)
    return ratios


def compare(workload: str, figures: list[Figure], measured: Measured, judge: bool) -> list[Comparison]:
    """Every Coda side against every Celery side on each shared figure, then the targets that
    compare two Coda figures (a rerun against its first run, RSS after many runs)."""
    wanted: list[tuple[str, tuple[str, str], tuple[str, str]]] = []
    sides = list(measured)
    for figure in figures:
        if not figure.compare:
            continue
        for mine in (s for s in sides if is_coda(s)):
            for theirs in (s for s in sides if not is_coda(s)):
                wanted.append((f"{figure.label}: {mine} / {theirs}", (mine, figure.key), (theirs, figure.key)))
    labels = {f.key: f.label for f in figures}
    for target in TARGETS:
        if target.workload == workload and is_coda(target.denominator[0]):
            label = f"{labels.get(target.numerator[1], target.numerator[1])} / {labels.get(target.denominator[1], target.denominator[1])}"
            wanted.append((label, target.numerator, target.denominator))
    comparisons = []
    for label, numerator, denominator in wanted:
        ratios = _pairs(measured, numerator, denominator)
        if not ratios:
            continue
        summary = summarize(ratios)
        bar = target_for(workload, numerator, denominator)
        verdict = None
        if bar is not None:
            verdict = ("pass" if bar.met(summary.median) else "miss") if judge else "not judged"
        comparisons.append(Comparison(label, numerator, denominator, summary, bar, verdict))
    return comparisons
