"""Celery's own ``t/unit/tasks`` (from the sdist of the installed Celery), stock and with
``coda.compat.install()``, compared test by test: every test that passes stock passes swapped.

About two minutes (the two runs side by side); the integration half runs on demand with
``scripts/conformance.sh --integration``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import run

pytestmark = pytest.mark.timeout(900)


def test_every_stock_passing_celery_unit_test_passes_swapped(tmp_path: Path) -> None:
    code = run.main(["--work", str(tmp_path), "--json", str(tmp_path / "result.json")])
    [unit] = json.loads((tmp_path / "result.json").read_text())["suites"]
    # The stock run itself must have been a real one (a broken setup would compare 0 with 0).
    stock = unit["counts"]["stock"]
    assert stock.get("passed", 0) > 0.9 * sum(stock.values()), f"the stock run is not healthy: {stock}"
    assert unit["regressions"] == {}, "\n".join(f"{k}\n    {v}" for k, v in unit["regressions"].items())
    assert code == 0 and unit["swapped_passing"] == unit["stock_passing"]
