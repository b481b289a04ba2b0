#!/usr/bin/env bash
# Install Coda with its test extras, make sure Redis and RabbitMQ are up, type-check, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
if ! python3 -m pip install -q --disable-pip-version-check -e '.[test,bench]' >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"
  echo "test: installing coda-workflows failed (see above)" >&2; exit 1
fi
rm -f "$log"
if ! bash scripts/services.sh; then
  if [ "${CI:-}" = "true" ]; then echo "test: the services above are required under CI=true" >&2; exit 1; fi
  echo "test: real-server tests will be skipped" >&2
fi
echo "== mypy --strict coda/"
python3 -m mypy
echo "== pytest"
exec python3 -m pytest "$@"
