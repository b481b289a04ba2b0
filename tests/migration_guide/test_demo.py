"""The main job runs to completion on the embedded default broker and on Redis, and says
clearly when the broker it was given is not there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _demo(env: dict[str, str], events: int = 12, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")} | env
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), full.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "migration_guide.demo", "--events", str(events)],
                          capture_output=True, text=True, env=full, timeout=240, cwd=cwd)


def _row(stdout: str, label: str) -> str:
    line = next(line for line in stdout.splitlines() if line.strip().startswith(label))
    return line.split()[-1]


def _stage(stdout: str, stage: str) -> tuple[str, int, int]:
    """(ran on, runs, retries) of a row of the summary's stage table."""
    line = next(line for line in stdout.splitlines() if line.split()[:1] == [stage] and line.split()[-1].isdigit())
    words = line.split()
    return " ".join(words[1:-2]), int(words[-2]), int(words[-1])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_demo_runs_to_completion(broker: str, request: pytest.FixtureRequest, tmp_path) -> None:  # noqa: ANN001
    from migration_guide.demo import make_events
    from migration_guide.examples import domain

    env = {"CODA_BROKER_URL": request.getfixturevalue("redis_url")} if broker == "redis" else {"CODA_BROKER_URL": ""}
    done = _demo(env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # it leaves nothing behind where it ran
    out = done.stdout
    events = [e for e in make_events(12) if e is not None][:12]
    symbolicated = [e for e in events if domain.needs_symbolication(e)]
    assert _row(out, "events fed") == "14"  # 12 events, one delivered twice, one missing payload
    assert _row(out, "workflow runs") == "13"
    assert _row(out, "events stored") == "12"
    assert _row(out, "events dropped (payload missing)") == "1"
    # Event 3 (javascript) breaks once in processing: its run reruns, and preprocess and
    # symbolicate come from the memo instead of running again.
    assert _row(out, "runs that failed and reran by themselves") == "1"
    assert _row(out, "memo hits on those reruns (steps not run again)") == "2"
    # Which processes ran each stage, and retries apart from runs: the flaky symbolicator's
    # calls are Celery retries, processing again is the rerun.
    assert _stage(out, "preprocess") == ("coda workers", 12, 0)
    assert _stage(out, "symbolicate") == ("celery worker", len(symbolicated),
                                          sum(e.get("flaky_symbolicator", 0) for e in symbolicated))
    assert _stage(out, "process") == ("coda workers", 12, 1)
    assert _stage(out, "save") == ("celery worker", 12, 0)
    assert "dropped" not in {line.split()[0] for line in out.splitlines() if line.split()}


def test_demo_names_a_missing_broker() -> None:
    done = _demo({"CODA_BROKER_URL": "redis://127.0.0.1:1/0"}, events=2)
    assert done.returncode == 2
    assert "cannot reach the broker at redis://127.0.0.1:1/0" in done.stderr
