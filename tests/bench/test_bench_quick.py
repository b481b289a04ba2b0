"""``python -m bench --quick`` end to end, so that the harness never rots. Benchmarks are not
timed tests: nothing here looks at a figure's value, only at the shape of what was written."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_server

REPO = Path(__file__).resolve().parents[2]
STATUSES = {"measured", "not available", "failed"}


def _run_bench(args: list[str], timeout: float) -> tuple[str, str, int]:
    """Run ``python -m bench`` in its own session; if it overstays, SIGTERM lets it stop what it
    started, and SIGKILL to the whole group makes sure nothing outlives the test."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"python -m bench {' '.join(args)} did not finish in {timeout:g}s\nstderr:\n{stderr[-6000:]}")
    return stdout, stderr, proc.returncode


@pytest.mark.timeout(330)
def test_quick_bench_writes_every_workload_it_claims(tmp_path: Path) -> None:
    require_server("Redis", 6379)
    require_server("RabbitMQ", 5672)
    stdout, stderr, code = _run_bench(["--quick", "--out", str(tmp_path)], timeout=270)
    assert code == 0, f"exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr[-6000:]}"
    results = json.loads((tmp_path / "latest.json").read_text())

    assert results["mode"] == "quick"
    assert results["machine"]["nproc"] >= 1
    workloads = {w["name"]: w for w in results["workloads"]}
    assert [w["number"] for w in results["workloads"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    for name, w in workloads.items():
        assert w["status"] in STATUSES, name
        assert w["status"] != "failed", f"{name}: {w['reason']}"
        if w["status"] == "not available":
            assert w["reason"], name
            assert f"not available: {w['reason']}" in stdout
            continue
        assert w["figures"], name
        for figure in w["figures"]:
            assert figure["min"] <= figure["median"] <= figure["max"], (name, figure)
            assert len(figure["values"]) >= 1
        for comparison in w["comparisons"]:
            assert comparison["ratio"]["median"] > 0, (name, comparison)
            if comparison["target"] is not None:
                assert comparison["verdict"] == "not judged", (name, comparison)  # --quick never judges
        if importlib.util.find_spec("matplotlib") is not None:  # the optional `bench` extra
            assert w["plot"] and (tmp_path / w["plot"]).stat().st_size > 0, name
        assert w["title"] in stdout

    # Coda is compared with Celery side by side wherever both ran.
    for name in ("round_trip", "chain", "throughput", "fan_out"):
        sides = {f["side"] for f in workloads[name]["figures"]}
        assert {"coda", "celery-redis"} <= sides, (name, sides)
    assert any(c["target"] for c in workloads["memo_rerun"]["comparisons"])
    memory_sides = {f["side"] for f in workloads["memory"]["figures"]}
    assert {"coda", "celery-redis", "celery-rabbitmq", "coda-runs"} <= memory_sides
