"""The printed table: each figure as median [min–max] per side, then the ratios and verdicts."""

from __future__ import annotations

from collections.abc import Iterable

from bench.results import BenchResult, Comparison, WorkloadResult

__all__ = ["fmt", "ratio_text", "render"]


def fmt(value: float) -> str:
    magnitude = abs(value)
    if value == int(value) and magnitude < 1000:
        return str(int(value))
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio_text(comparison: Comparison) -> str:
    r = comparison.ratio
    return f"{fmt(r.median)} [{fmt(r.min)}–{fmt(r.max)}]"


def verdict_text(comparison: Comparison) -> str:
    if comparison.target is None:
        return ""
    verdict = (comparison.verdict or "").upper()
    return f"target {comparison.target.bound_text}: {verdict}"


def _workload(w: WorkloadResult) -> Iterable[str]:
    yield f"{w.number}. {w.title}"
    if w.status != "measured":
        yield f"   {w.status}: {w.reason}"
    if w.status == "failed" and not w.figures:
        return
    order = list(dict.fromkeys(f.figure.key for f in w.figures))
    for f in sorted(w.figures, key=lambda f: order.index(f.figure.key)):
        s = f.summary
        unit = f" {f.figure.unit}" if f.figure.unit else ""
        yield f"   {f.figure.label:<36} {f.side:<16} {fmt(s.median):>9}{unit}  [{fmt(s.min)}–{fmt(s.max)}]"
    if w.comparisons:
        yield "   ratios, repetition by repetition:"
        for c in w.comparisons:
            yield f"   {c.label:<58} {ratio_text(c):<24} {verdict_text(c)}".rstrip()
    unavailable = w.params.get("sides_unavailable")
    if unavailable:
        for side, reason in unavailable.items():
            yield f"   ({side} not measured: {reason})"


def render(result: BenchResult) -> str:
    machine = result.machine
    lines = [
        f"coda bench ({result.mode}) {result.date}: {machine['nproc']} × {machine['cpu_model']}, "
        f"Python {machine['python']}, Celery {machine['celery']}, Redis {machine['redis_server']}, "
        f"RabbitMQ {machine['rabbitmq_server']}",
        "each figure: median [min–max] over repetitions; each ratio: the first side over the second, repetition by repetition",
        "",
    ]
    for w in result.workloads:
        lines.extend(_workload(w))
        lines.append("")
    lines.extend(result.notes)
    return "\n".join(lines).rstrip() + "\n"
