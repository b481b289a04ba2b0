#!/usr/bin/env bash
# Install Coda and run the main job: the migration guide's pipeline end to end (no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'pypi-more' || true
exec python3 -m migration_guide.demo "$@"
