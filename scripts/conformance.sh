#!/usr/bin/env bash
# Celery's own test suites, stock and with Coda swapped in, compared test by test
# (see conformance/run.py). Default: the unit half (t/unit/tasks, ~2 min);
# --integration: t/integration/test_canvas.py with a coda supervisor as the worker (~20 min);
# --all: both.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" --integration "*|*" --all "*)
    # The integration suite marks its flaky tests for reruns (its own requirement).
    python3 -c "import pytest_rerunfailures" 2>/dev/null \
      || python3 -m pip install -q --disable-pip-version-check 'pytest-rerunfailures>=14'
    ;;
esac
exec python3 -m conformance.run "$@"
