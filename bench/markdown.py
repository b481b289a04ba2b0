"""The README's table from a results file: ``python -m bench.markdown [bench/results/latest.json]``.

One row per Coda/Celery ratio of each workload's headline figure (the first it declares) and per
ratio a target applies to; workloads that did not run say why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report import fmt

__all__ = ["table"]

_DEFAULT = Path(__file__).resolve().parent / "results" / "latest.json"


def _figure(workload: dict[str, Any], side: str, key: str) -> str:
    for f in workload["figures"]:
        if f["side"] == side and f["figure"] == key:
            unit = f" {f['unit']}" if f["unit"] else ""
            return f"{fmt(f['median'])}{unit} [{fmt(f['min'])}–{fmt(f['max'])}]"
    return "—"


def _rows(workload: dict[str, Any]) -> list[str]:
    number, title = workload["number"], workload["name"].replace("_", " ")
    if workload["status"] != "measured":
        return [f"| {number} | {title} | {workload['status']}: {workload['reason']} | | | | |"]
    headline = workload["figures"][0]["figure"] if workload["figures"] else None
    rows = []
    for c in workload["comparisons"]:
        top, bottom = c["numerator"], c["denominator"]
        if c["target"] is None and top["figure"] != headline:
            continue
        label = f"{c['label']}"
        ratio = c["ratio"]
        target = c["target"]
        bound = "" if target is None else f"{'≥' if target['at_least'] else '≤'} {target['bound']:.3g}"
        rows.append(
            f"| {number} | {title} — {label} | {_figure(workload, top['side'], top['figure'])} | "
            f"{_figure(workload, bottom['side'], bottom['figure'])} | {fmt(ratio['median'])} "
            f"[{fmt(ratio['min'])}–{fmt(ratio['max'])}] | {bound} | {c['verdict'] or ''} |"
        )
    return rows


def table(results: dict[str, Any]) -> str:
    lines = [
        "| # | figure | first side | second side | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in results["workloads"]:
        lines.extend(_rows(workload))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else _DEFAULT
    print(table(json.loads(path.read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
