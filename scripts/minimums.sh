#!/usr/bin/env bash
# Prove the lower bounds pyproject.toml declares: a fresh venv, exactly the lowest declared
# version of every direct dependency (runtime, test and bench extras, the build backend), then
# the tests. Arguments go to pytest (default: the whole suite; services as in scripts/test.sh).
#
#   bash scripts/minimums.sh                        # everything
#   bash scripts/minimums.sh tests/compat -x        # one folder
#   CODA_MINIMUMS_VENV=/tmp/min bash scripts/minimums.sh   # keep the venv there (reused if present)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${CODA_MINIMUMS_VENV:-}
if [ -z "$venv" ]; then
  venv=$(mktemp -d -t coda-minimums-XXXXXX)
  trap 'rm -rf "$venv"' EXIT
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
constraints="$venv/minimums.txt"
python3 scripts/minimums.py >"$constraints"
echo "== installing the declared minimums: $(tr '\n' ' ' <"$constraints")"
log="$venv/install.log"
# The build backend too: the lowest setuptools builds the editable install, without isolation.
if ! { "$venv/bin/pip" install -q -c "$constraints" setuptools wheel &&
       "$venv/bin/pip" install --no-build-isolation -c "$constraints" -e '.[test,bench]'; } >"$log" 2>&1; then
  grep -v "^WARNING: Location" "$log" >&2 || true
  echo "minimums: installing the declared minimums failed (see above)" >&2; exit 1
fi
"$venv/bin/python" scripts/minimums.py --check
"$venv/bin/pip" check
if ! bash scripts/services.sh; then
  if [ "${CI:-}" = "true" ]; then echo "minimums: the services above are required under CI=true" >&2; exit 1; fi
  echo "minimums: real-server tests will be skipped" >&2
fi
echo "== pytest under the minimums"
PATH="$venv/bin:$PATH" exec "$venv/bin/python" -m pytest "$@"
