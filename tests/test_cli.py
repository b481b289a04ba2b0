"""The ``coda`` command in the idiom of celery/arq: --version, every CODA_* variable in --help,
bad values as usage errors naming a flag that exists, given before any worker starts."""

from __future__ import annotations

import re
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import coda
from coda.cli import main, render_status
from coda.supervisor import config as config_module
from coda.supervisor.cli import supervisor
from coda.supervisor.config import SupervisorConfig, env_var, flag

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, prog_name="coda")


def _flags(command: click.Command) -> set[str]:
    return {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}


def _help(*command: str) -> str:
    # Wide enough that click does not break a variable's name across lines.
    return CliRunner().invoke(main, [*command, "--help"], prog_name="coda", terminal_width=400).output


@pytest.fixture
def no_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the supervisor would start (workers and all)."""
    import coda.supervisor.server

    async def serve(config: SupervisorConfig, **_: object) -> int:
        raise AssertionError(f"the supervisor started with {config}")

    monkeypatch.setattr(coda.supervisor.server, "serve", serve)


def test_version_is_the_installed_distribution() -> None:
    done = _run("--version")
    assert done.exit_code == 0
    assert done.output == f"coda {coda.__version__}\n"
    assert coda.__version__ == metadata.version("coda-workflows")
    assert _run("-V").output == done.output


def test_every_config_field_is_a_flag_with_its_variable_in_help() -> None:
    text = _help("supervisor")
    options = {param.name: param for param in supervisor.params if isinstance(param, click.Option)}
    for field in fields(SupervisorConfig):
        assert field.name in options, f"SupervisorConfig.{field.name} has no flag"
        assert flag(field.name) in options[field.name].opts
        assert env_var(field.name) in text, f"{env_var(field.name)} is not shown in coda supervisor --help"


def test_every_coda_variable_the_code_reads_is_in_some_help() -> None:
    read = set()  # every "CODA_..." string in the code: the names of environment variables
    for path in (ROOT / "coda").rglob("*.py"):
        read |= set(re.findall(r"""["'](CODA_[A-Z0-9_]+)["']""", path.read_text()))
    read |= {env_var(f.name) for f in fields(SupervisorConfig)}
    # Set by the supervisor for its own workers, not by users.
    internal = {"CODA_LOG_LEVEL", "CODA_CELERY_APP"} - {env_var(f.name) for f in fields(SupervisorConfig)}
    assert {"CODA_URL", "CODA_TOKEN", "CODA_COMPAT_ROLLOUT", "CODA_COMPAT_ROLLOUT_SEED"} <= read
    shown = _help() + _help("supervisor") + _help("status")
    missing = sorted(v for v in read - internal if v not in shown)
    assert not missing, f"read from the environment but shown in no --help: {missing}"


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--log-level", "LOUD"], {}, "Invalid value for '--log-level'"),
    ([], {"CODA_LOG_LEVEL": "LOUD"}, "'LOUD' is not one of"),
    (["--listen", "127.0.0.1:99999"], {}, "port 99999 is out of range (0-65535)"),
    (["--listen", "http://127.0.0.1:5000"], {}, "is a URL; give host:port without http://, e.g. 127.0.0.1:5000"),
    (["--listen", "localhost"], {}, "is not host:port"),
    ([], {"CODA_URL": "127.0.0.1:70000"}, "port 70000 is out of range"),
    (["--workers", "0"], {}, "Invalid value for '--workers'"),
    ([], {"CODA_WORKERS": "many"}, "Invalid value for '--workers' (env var: 'CODA_WORKERS')"),
    (["--max-frame", "10"], {}, "Invalid value for '--max-frame'"),
    (["--grace", "-1"], {}, "Invalid value for '--grace'"),
    (["--bridge-result-timeout", "0"], {}, "Invalid value for '--bridge-result-timeout'"),
    (["-Q", "events"], {}, "-Q needs --celery-app"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_values_are_usage_errors_before_anything_starts(args: list[str], env: dict[str, str], message: str,
                                                             no_serve: None) -> None:
    done = _run("supervisor", "-A", "examples.readme", *args, env=env)
    assert done.exit_code == 2, done.output
    assert message in done.output, done.output
    assert "Traceback" not in done.output
    named = set(re.findall(r"(?<![\w-])(-{1,2}[a-zA-Z][\w-]*)", done.output.split("Error:", 1)[1]))
    assert named <= _flags(supervisor), f"names a flag that does not exist: {named - _flags(supervisor)}"


def test_a_port_in_use_is_refused_before_any_worker_starts(no_serve: None) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("supervisor", "-A", "examples.readme", "--listen", f"127.0.0.1:{port}")
    assert done.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.output


def test_no_app_is_a_usage_error(no_serve: None) -> None:
    done = _run("supervisor")
    assert done.exit_code == 2 and "give at least one -A module" in done.output


def test_flags_and_variables_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import coda.supervisor.server

    seen: list[SupervisorConfig] = []

    async def serve(config: SupervisorConfig, **_: object) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(coda.supervisor.server, "serve", serve)
    env = {"CODA_WORKERS": "3", "CODA_APPS": "examples.readme, tests.e2e.app", "CODA_URL": "127.0.0.1:0",
           "CODA_QUEUES": "a,b", "CODA_CELERY_APP": "proj:app"}
    done = _run("supervisor", "--max-frame", "4096", "--log-level", "debug", env=env)
    assert done.exit_code == 0, done.output
    (config,) = seen
    assert config.apps == ("examples.readme", "tests.e2e.app") and config.workers == 3 and config.listen == "127.0.0.1:0"
    assert config.max_frame == 4096 and config.log_level.upper() == "DEBUG" and config.queues == ("a", "b")
    seen.clear()
    assert _run("supervisor", "-A", "a,b", "-A", "c", "--workers", "1", env=env).exit_code == 0  # the flag wins
    assert seen[0].apps == ("a", "b", "c") and seen[0].workers == 1


def test_config_errors_name_flags_that_exist() -> None:
    """Configs built in code (in_process, tests) get the same names as the command line."""
    bad = {"workers": 0, "concurrency": 0, "workflow_capacity": 0, "grace": -1.0, "retention": -1.0, "max_runs": 0,
           "max_worker_deaths": 0, "max_frame": 10, "log_level": "LOUD", "listen": "http://x:1",
           "bridge_pickup_timeout": 0.0, "bridge_result_timeout": 0.0}
    for name, value in bad.items():
        with pytest.raises(coda.CodaError) as caught:
            SupervisorConfig(**{name: value})
        named = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", str(caught.value)))
        assert named == {flag(name)}, str(caught.value)
        assert flag(name) in _flags(supervisor) and env_var(name) in str(caught.value) + env_var("listen")


def test_no_error_text_in_the_code_names_a_flag_that_does_not_exist() -> None:
    known = _flags(supervisor) | _flags(main) | {o for c in main.commands.values() for o in _flags(c)} | {"--help"}
    # Argument lists for other programs: the worker process and a stock celery worker.
    skip = {"worker.py", "processes.py", "launcher.py"}
    for path in (ROOT / "coda").rglob("*.py"):
        if path.name in skip:
            continue
        for name in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", path.read_text()):
            assert name in known, f"{path.relative_to(ROOT)} names {name}, which no coda command has"
    for doc in [ROOT / "README.md", *sorted((ROOT / "migration_guide").glob("*.md"))]:
        for command in re.findall(r"^\s*coda (?:supervisor|status)\b.*(?:\\\n.*)*", doc.read_text(), re.M):
            for name in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", command):
                assert name in known, f"{doc.name}: `{command.strip()}` names {name}"


def test_status_shows_what_an_operator_needs() -> None:
    info = {
        "workers": [{"slot": 0, "pid": 41, "running_tasks": 1, "running_workflows": 3, "capacity": 1, "uptime": 725.0,
                     "tasks": 4, "workflows": 1}],
        "bridge": {"running_tasks": 2},
        "runs": {"succeeded": 10, "running": 2, "failed": 1},
        "queues": {"tasks_waiting": 4, "tasks_retrying": 1, "workflows_waiting": 0, "runs_rerunning": 2},
        "celery_queues": ["events"],
        "draining": True,
        "registered": {"tasks": [], "workflows": []},
    }
    text = render_status("127.0.0.1:42069", info)
    assert text.splitlines() == [
        "supervisor 127.0.0.1:42069  (draining: takes no new runs)",
        "workers (1):",
        "  pid 41       tasks 1/1  workflows 3  up 12m",
        "runs: 2 running, 10 succeeded, 1 failed",
        "queued: 4 tasks waiting for a worker, 1 waiting to retry, 0 workflows waiting, 2 runs waiting to rerun",
        "celery bridge: 2 tasks on Celery workers",
        "taking over celery queues: events",
    ]


def test_config_module_names_every_flag_it_uses() -> None:
    """The config's own messages and docs spell flags through flag(); nothing is hard-coded."""
    source = Path(config_module.__file__).read_text()
    assert not re.findall(r"""["']--[a-z]""", source)
