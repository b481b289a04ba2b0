#!/usr/bin/env bash
# Celery's own test suites, stock and with Coda swapped in, compared test by test
# (see conformance/run.py). Default: the unit half (t/unit/tasks, ~2 min);
# --integration: t/integration/test_canvas.py with a coda supervisor as the worker (~20 min);
# --all: both.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" --integration "*|*" --all "*)
    # What the integration suite needs besides Celery (from its requirements/test.txt): its
    # tasks use pydantic, and it marks its flaky tests for reruns.
    python3 -c "import pydantic, pytest_rerunfailures" 2>/dev/null \
      || python3 -m pip install -q --disable-pip-version-check pydantic 'pytest-rerunfailures>=14'
    ;;
esac
exec python3 -m conformance.run "$@"
