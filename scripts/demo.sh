#!/usr/bin/env bash
# Install Coda and run the main job: the migration guide's pipeline end to end (no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
if ! python3 -m pip install -q --disable-pip-version-check -e . >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"
  echo "demo: installing coda-workflows failed (see above)" >&2; exit 1
fi
rm -f "$log"
exec python3 -m migration_guide.demo "$@"
