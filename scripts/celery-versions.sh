#!/usr/bin/env bash
# Run coda.compat's tests against every Celery version pyproject.toml declares (the private
# Celery API that coda/compat/_celery.py fences is checked on each), one virtualenv per version
# under $CODA_CONFORMANCE_CACHE (default ~/.cache/coda-conformance).
#   scripts/celery-versions.sh [VERSION ...]      default: every release pyproject.toml declares (>= 5.7)
#   CELERY_VERSIONS_TESTS="tests/compat ..."       what to run (default: below)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${CODA_CONFORMANCE_CACHE:-$HOME/.cache/coda-conformance}"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(5.7.0)
tests=${CELERY_VERSIONS_TESTS:-"tests/compat tests/test_registry.py"}
status=0
for version in "${versions[@]}"; do
  venv="$cache/venv-celery-$version"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  log="$cache/venv-celery-$version.log"
  # kombu of the same minor: a newer kombu's Redis transport wants a redis-py that an older
  # Celery's [redis] extra does not allow.
  minor=${version%.*}
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' "celery[redis]==$version" \
      "kombu~=$minor.0" >"$log" 2>&1; then
    cat "$log" >&2; echo "celery-versions: installing celery $version failed" >&2; exit 2
  fi
  installed=$("$venv/bin/python" -c 'import celery; print(celery.__version__)')
  echo "== celery $installed: $tests"
  # shellcheck disable=SC2086
  if ! "$venv/bin/python" -m pytest $tests -q -p no:cacheprovider; then
    echo "celery-versions: FAILED on celery $installed" >&2; status=1
  fi
done
exit $status
