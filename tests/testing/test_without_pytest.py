"""What a user imports at run time needs no test dependency: the launcher, in-process mode and
the demo work where pytest cannot be imported. (tests/test_fresh_install.py checks the same
for real, in a virtualenv without the test extras.)

A ``sitecustomize`` on PYTHONPATH makes pytest unimportable in the interpreter it starts and in
every process that one starts (supervisor, workers, the Celery worker), as it is when Coda is
installed without extras.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKER = '''
import sys

class _NoTestDependencies:
    """pytest and its plugins are not installed here."""
    blocked = ("pytest", "_pytest", "pytest_asyncio", "pytest_timeout", "pluggy", "fakeredis")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed here)", name=name)
        return None

sys.meta_path.insert(0, _NoTestDependencies())
'''

SCRIPT = '''
import sys

import coda.testing
import coda.supervisor.launcher
import migration_guide.demo
from coda.testing import SupervisorProcess, run_workflow
from examples import readme

event = {"event_id": "e1", "message": " hi "}
assert run_workflow(readme.process_event, {"project_id": 1, "event_data": event}) == {"event_id": "e1", "stored": True}
with SupervisorProcess(["examples.readme"], workers=1) as supervisor:
    result = supervisor.sync_client().run(readme.process_event, {"project_id": 1, "event_data": event}, timeout=30)
    assert result == {"event_id": "e1", "stored": True}, result
    assert "Traceback" not in supervisor.log(), supervisor.log()
try:
    import pytest  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("the blocker let pytest in: this test proves nothing")
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("pytest", "_pytest", "pluggy"))
assert not loaded, loaded
print("ok")
'''


def test_launcher_in_process_mode_and_demo_import_no_pytest(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")


def test_the_pytest_plugin_is_its_own_module() -> None:
    """Installing Coda enables the plugin through its entry point, a module of its own."""
    from importlib import metadata

    (entry,) = [e for e in metadata.entry_points(group="pytest11") if e.name == "coda"]
    assert entry.value == "coda.testing.plugin"
