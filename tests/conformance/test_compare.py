"""The conformance runner's own pieces: the per-test record plugin and the comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conformance import run

ROOT = Path(__file__).resolve().parents[2]


def outcome(name: str, detail: str = "") -> dict[str, str]:
    return {"outcome": name, "detail": detail}


def test_compare_is_per_test_against_the_stock_run() -> None:
    stock = {"a": outcome("passed"), "b": outcome("passed"), "c": outcome("failed"), "d": outcome("passed"),
             "e": outcome("skipped")}
    swapped = {"a": outcome("passed"), "b": outcome("failed", "E KeyError"), "c": outcome("passed"),
               "e": outcome("passed")}
    result = run.compare("unit", stock, swapped, {"stock": 1.0, "swapped": 2.0})
    assert result.summary() == "unit: 1/3 of stock-passing tests pass"
    assert result.regressions == {"b": "E KeyError", "d": "not run"}
    assert result.only_swapped == ["c", "e"]  # a stock flake is not held against the swapped run
    assert result.counts == {"stock": {"passed": 3, "failed": 1, "skipped": 1}, "swapped": {"passed": 3, "failed": 1}}


def test_the_record_plugin_writes_one_outcome_per_test(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent('''
        import pytest

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown broke")

        def test_pass(): pass
        def test_fail(): assert 1 == 2
        def test_skip(): pytest.skip("no")
        @pytest.mark.xfail(strict=True)
        def test_xfail(): assert False
        @pytest.mark.xfail(strict=True)
        def test_xpass_strict(): pass
        def test_teardown_error(broken_teardown): pass
    '''))
    record = tmp_path / "record.json"
    env = {**os.environ, "CODA_CONFORMANCE_RECORD": str(record), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conformance.record", "-p", "no:cacheprovider",
                    "-p", "no:coda", str(tmp_path / "test_sample.py")], cwd=tmp_path, env=env, capture_output=True)
    got = {k.split("::")[1]: v["outcome"] for k, v in json.loads(record.read_text()).items()}
    assert got == {"test_pass": "passed", "test_fail": "failed", "test_skip": "skipped", "test_xfail": "skipped",
                   "test_xpass_strict": "failed", "test_teardown_error": "failed"}
    details = json.loads(record.read_text())
    assert "assert 1 == 2" in details["test_sample.py::test_fail"]["detail"]
    assert details["test_sample.py::test_teardown_error"]["detail"].startswith("[teardown]")
