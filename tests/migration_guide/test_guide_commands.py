"""The guide's shell blocks work pasted as written, in the order given.

Each ```bash block of a chapter runs the way migration_guide/README.md ("Running the steps")
tells a reader to: in a folder holding a copy of the guide, every line that starts a
long-running process (``celery ... worker``, ``coda supervisor``) in a terminal of its own
(here: in the background, in its own process group, until its ready line shows), the other
lines in order (each must exit 0), and at the end Ctrl-C (SIGINT) to the long-running ones,
which must then exit cleanly. The only settings given are environment variables the guide
documents, so that the run shares Redis with other tests without meeting them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from migration_guide import render

ROOT = Path(render.__file__).resolve().parent.parent
_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
_LONG_RUNNING = re.compile(r"^(?:\w+=\S+\s+)*(?:celery\s.*\sworker\b|coda\s+supervisor\b)")
_READY = {"celery": " ready.", "coda": "coda supervisor listening on "}


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def blocks() -> list[tuple[str, int, list[str]]]:
    """(chapter, index of the block in it, its commands) for every ```bash block."""
    found = []
    for chapter in render.chapters():
        for index, block in enumerate(_BLOCK.findall(chapter.read_text())):
            found.append((chapter.name, index, commands(block)))
    return found


@dataclass
class Background:
    command: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(command: str, cwd: Path, env: dict[str, str], log: Path, timeout: float = 60.0) -> Background:
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    started = Background(command, proc, log)
    ready = _READY["coda" if re.search(r"\bcoda\s+supervisor\b", command) else "celery"]
    deadline = time.monotonic() + timeout
    while ready not in started.output():
        if proc.poll() is not None or time.monotonic() > deadline:
            _interrupt(started)
            raise AssertionError(f"{command!r} never got ready (exit code {proc.poll()}):\n{started.output()}")
        time.sleep(0.05)
    return started


def _interrupt(process: Background, timeout: float = 30.0) -> int | None:
    """Ctrl-C: SIGINT to its process group; SIGKILL if it is still there after ``timeout``."""
    if process.proc.poll() is None:
        os.killpg(process.proc.pid, signal.SIGINT)
        try:
            process.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait(10)
            return None
    return process.proc.returncode


def test_every_block_is_run_here() -> None:
    """Each ```bash block is a runnable step that ends by showing its result; nothing else is
    marked bash (a snippet goes in a plain block), so the test below covers every one."""
    found = blocks()
    assert {chapter for chapter, _, _ in found} == {"0-today.md", "1-wrap.md", "2-takeover.md", "3-workflow.md", "4-retire.md"}
    for chapter, index, lines in found:
        assert lines[0] == "rm -f pipeline-events.sqlite3", (chapter, index)
        assert lines[-1] == "python -m migration_guide.examples.show", (chapter, index)
        assert any(_LONG_RUNNING.match(line) for line in lines), (chapter, index)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("chapter", "index", "lines"),
                         [pytest.param(*block, id=f"{block[0]}#{block[1]}") for block in blocks()])
def test_block_runs_as_written(chapter: str, index: int, lines: list[str], redis_url: str, run_tag: str,
                               tmp_path: Path) -> None:
    import redis

    shutil.copytree(ROOT / "migration_guide", tmp_path / "migration_guide",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "CODA_")) and k != "PYTHONPATH"}
    env |= {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]),
        "PIPELINE_BROKER_PREFIX": f"guide-{run_tag}:",
        "PIPELINE_STORE_PREFIX": f"guide-{run_tag}:",
        "CODA_URL": f"127.0.0.1:{_free_port()}",
    }
    background: list[Background] = []
    shown = ""
    try:
        for n, command in enumerate(lines):
            if _LONG_RUNNING.match(command):
                background.append(_start(command, tmp_path, env, tmp_path / f"background-{n}.log"))
                continue
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=180)
            logs = "\n".join(f"--- {b.command}\n{b.output()}" for b in background)
            assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}{done.stderr}\n{logs}"
            shown = done.stdout
    finally:
        codes = {b.command: _interrupt(b) for b in background}
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"guide-{run_tag}:*", count=1000):
            client.delete(key)
        client.close()
    assert "4 of 4 events stored, as the acceptance test expects" in shown, shown
    assert "symbolicator calls for ev-flaky: 3" in shown and "ev-missing (payload gone" in shown and "dropped" in shown
    for process in background:
        code = codes[process.command]
        if re.search(r"\bcoda\s+supervisor\b", process.command):
            assert code == 0, f"{process.command!r} did not drain and exit 0 on Ctrl-C (exit code {code})"
        else:  # Celery's warm shutdown on SIGINT exits 1 by its own convention (0 on SIGTERM)
            assert code == 1 and "Warm shutdown" in process.output(), f"{process.command!r}: exit code {code}"
