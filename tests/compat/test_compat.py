"""coda.compat.task against real Celery and a real Coda supervisor.

The parity tests run one body over a bare ``@shared_task`` and over ``@coda.compat.task``
(``tests/compat/tasks.py`` declares every task both ways): eagerly, and on a real
``celery worker`` subprocess over Redis and over RabbitMQ. Then the compat tasks are spawned
from workflows on a real supervisor, and the rollout switch moves ``delay()`` calls between a
real Celery worker and a real supervisor.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import celery
import pytest
from celery import Celery, chain, chord, group
from celery.exceptions import CDeprecationWarning, MaxRetriesExceededError
from celery.exceptions import TimeoutError as CeleryTimeoutError

import coda.compat
from coda.compat import CodaAsyncResult, CodaTaskMixin, CompatTaskProxy
from coda.errors import CompatError, RegistrationError
from coda.testing import CeleryWorkerProcess
from tests.compat import tasks
from tests.compat.celeryapp import make_app
from tests.compat.tasks import KINDS, TASKS, attempts, read_signals
from tests.conftest import RUN_TAG, require_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REDIS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"

# What Celery passes to each signal's receivers (besides sender): the contract a Coda
# execution must keep for existing instrumentation (task_success gained runtime= in 5.7).
CELERY_VERSION = tuple(int(part) for part in celery.__version__.split(".")[:2])
SIGNAL_KEYS = {
    "task_prerun": ["args", "kwargs", "signal", "task", "task_id"],
    "task_postrun": ["args", "kwargs", "retval", "signal", "state", "task", "task_id"],
    "task_success": ["result", "runtime", "signal"] if CELERY_VERSION >= (5, 7) else ["result", "signal"],
    "task_failure": ["args", "einfo", "exception", "kwargs", "signal", "task_id", "traceback"],
    "task_retry": ["einfo", "reason", "request", "signal"],
}


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def eager_app() -> Iterator[Celery]:
    app = make_app({"CODA_TEST_EAGER": "1"})
    app.set_current()
    yield app
    app.close()


# -- parity, eagerly -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_attributes_repr_pickle_match_celery(kind: str, eager_app: Celery) -> None:
    add = TASKS[kind]["add"]
    registered = eager_app.tasks[add.name]
    assert isinstance(add, celery.Task)
    assert add.name == f"tests.compat.tasks.{kind}.add"
    assert (add.__name__, add.__doc__, add.__module__) == ("add", "Add two numbers.", "tests.compat.tasks")
    assert str(inspect.signature(add)) == "(x: 'int', y: 'int') -> 'int'"
    assert repr(add) == repr(registered) == f"<@task: {add.name} of coda_compat_tests at {id(eager_app):#x}>"
    assert pickle.loads(pickle.dumps(add)) is registered
    assert add._get_current_object() is registered
    assert add.app is eager_app
    assert add(2, 3) == 5  # a direct call runs the function
    # The registered task carries Coda's mixin only for compat tasks, and keeps Celery's class.
    assert isinstance(registered, CodaTaskMixin) == (kind == "compat")
    assert type(registered).__name__ == "add" and type(registered).__doc__ == "Add two numbers."


@pytest.mark.parametrize("kind", KINDS)
def test_eager_calls_and_canvas(kind: str, eager_app: Celery) -> None:
    t = TASKS[kind]
    assert t["add"].delay(1, 2).get() == 3
    assert t["add"].apply_async((1, 2), countdown=5, queue="elsewhere", headers={"h": 1}).get() == 3
    assert t["add"].apply((4, 5)).get() == 9
    assert t["add"].s(1, 2).delay().get() == 3
    assert t["add"].si(1, 1).apply_async().get() == 2
    assert (t["add"].s(1, 2) | t["add"].s(10)).apply_async().get() == 13
    assert chain(t["add"].s(1, 2), t["add"].s(3), t["add"].s(4)).apply_async().get() == 10
    assert group(t["add"].s(i, i) for i in range(4)).apply_async().get() == [0, 2, 4, 6]
    assert chord([t["add"].s(i, i) for i in range(3)], t["total"].s(extra=1)).apply_async().get() == 7
    assert t["total"].map([[1, 1], [2, 2]]).apply_async().get() == [2, 4]
    assert t["add"].starmap([(1, 1), (2, 2)]).apply_async().get() == [2, 4]
    assert t["add"].chunks([(i, i) for i in range(4)], 2).apply_async().get() == [[0, 2], [4, 6]]
    # Called through app.tasks (what canvas and send_task use), not through the proxy.
    assert eager_app.tasks[t["add"].name].delay(2, 2).get() == 4
    info = t["request_info"].delay(value=1).get()
    assert (info["is_eager"], info["called_directly"], info["is_self"]) == (True, False, True)


@pytest.mark.parametrize("kind", KINDS)
def test_eager_retries_and_signals(kind: str, eager_app: Celery, tmp_path: Any) -> None:
    t, d = TASKS[kind], str(tmp_path)
    tasks.SIGNALS.clear()
    result = t["retry_countdown"].delay(dir=d, key="rc", fails=2, countdown=60)
    assert result.get() == {"attempts": 3, "retries": 2}  # eager retries run at once
    assert t["autoretry_backoff"].delay(dir=d, key="ab", fails=2).get() == 3
    failed = t["retry_default_max"].delay(dir=d, key="dm")
    assert failed.state == "FAILURE" and isinstance(failed.result, MaxRetriesExceededError)
    assert len(attempts(d, "dm")) == 4  # Celery's default max_retries is 3
    assert t["ignored"].delay(dir=d, key="ig").state == "IGNORED"
    signals = [s for s in tasks.SIGNALS if s["task"] == t["retry_countdown"].name]
    assert [s["signal"] for s in signals].count("task_retry") == 2
    assert [s["signal"] for s in signals].count("task_success") == 1
    for entry in tasks.SIGNALS:
        assert entry["keys"] == SIGNAL_KEYS[entry["signal"]], entry


@pytest.mark.parametrize("kind", KINDS)
def test_class_level_patch_of_celery_task_sees_calls(kind: str, eager_app: Celery, monkeypatch: Any) -> None:
    seen: list[str] = []
    original = celery.Task.apply_async

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(celery.Task, "apply_async", patched)
    assert TASKS[kind]["add"].delay(1, 1).get() == 2
    assert seen == [TASKS[kind]["add"].name]


def test_exported_members() -> None:
    assert coda.compat.__all__ == sorted(coda.compat.__all__)
    assert {"task", "CodaAsyncResult", "configure_rollout", "ENV_ROLLOUT", "ENV_SEED"} <= set(coda.compat.__all__)
    assert all(hasattr(coda.compat, name) for name in coda.compat.__all__)
    assert (coda.compat.ENV_ROLLOUT, coda.compat.ENV_SEED) == ("CODA_COMPAT_ROLLOUT", "CODA_COMPAT_ROLLOUT_SEED")


# -- laziness and import side effects ----------------------------------------------------------------


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_starts_no_thread_and_decoration_stays_lazy() -> None:
    out = run_python(
        "import os, threading\n"
        "import celery._state as state\n"
        "import coda.compat\n"
        "def sockets():\n"
        "    links = []\n"
        "    for fd in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            links.append(os.readlink(f'/proc/self/fd/{fd}'))\n"
        "        except FileNotFoundError:\n"
        "            pass  # the fd of the listing itself\n"
        "    return sum(link.startswith('socket:') for link in links)\n"
        "print(threading.active_count(), sockets())\n"
        "@coda.compat.task(name='late.add', bind=True, max_retries=2)\n"
        "def add(self, x, y):\n"
        "    return x + y\n"
        "print(state.default_app is None, list(state._get_active_apps()))\n"
        "from celery import Celery\n"
        "app = Celery('defined_later', set_as_current=True)\n"
        "app.conf.task_always_eager = True\n"
        "print(add.app is app, add.delay(1, 2).get(), add.max_retries, type(app.tasks['late.add']).__mro__[1].__name__)\n"
    )
    assert out.splitlines() == ["1 0", "True []", "True 3 2 CodaTaskMixin"]


def test_wrapping_an_existing_task(eager_app: Celery) -> None:
    @eager_app.task(name="tests.compat.legacy_mul", bind=True)
    def legacy_mul(self: Any, x: int, y: int) -> int:
        return x * y

    assert not isinstance(eager_app.tasks["tests.compat.legacy_mul"], CodaTaskMixin)
    wrapped = coda.compat.task(legacy_mul)
    assert isinstance(eager_app.tasks["tests.compat.legacy_mul"], CodaTaskMixin)
    assert wrapped.__coda_task__.name == "tests.compat.legacy_mul" and wrapped.__coda_task__.bind
    assert wrapped.delay(3, 4).get() == 12 and wrapped(2, 5) == 10
    assert repr(wrapped) == repr(legacy_mul)
    assert pickle.loads(pickle.dumps(wrapped)) is eager_app.tasks["tests.compat.legacy_mul"]
    assert coda.compat.task(wrapped) is wrapped


# -- bad input -------------------------------------------------------------------------------------


def test_options_celery_accepts_are_accepted(eager_app: Celery, caplog: pytest.LogCaptureFixture) -> None:
    # Celery accepts any keyword on its decorator (it becomes an attribute of the task class);
    # an application that declares one must import under coda.compat as under Celery.
    caplog.set_level(logging.DEBUG, logger="coda.compat._task")

    def options() -> int:
        return 1

    for kind, decorator in (("bare", celery.shared_task), ("compat", coda.compat.task)):
        declared = decorator(name=f"tests.compat.options.{kind}", acks_late=True, max_retry=3, iterations=10)(options)
        assert declared.delay().get() == 1
        registered = eager_app.tasks[f"tests.compat.options.{kind}"]
        assert (registered.acks_late, registered.max_retry, registered.iterations) == (True, 3, 10)
    # delivery_mode (deprecated by Celery >= 5.5, which warns when it creates the task): on a
    # task of this app only (shared=False), since every later app would create a shared one again.
    try:
        coda.compat.install(eager_app)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CDeprecationWarning)  # Celery's own business
            moded = eager_app.task(name="tests.compat.options.moded", shared=False, delivery_mode=2, lazy=False)(options)
        assert isinstance(moded, CompatTaskProxy) and moded.delivery_mode == 2 and moded.delay().get() == 1
    finally:
        coda.compat.uninstall()
    # Only a debug line for what neither Celery nor Coda knows, with the likely typo named.
    unknown = sorted(r.option for r in caplog.records if r.getMessage().startswith("coda.compat.unknown_option"))  # type: ignore[attr-defined]
    assert unknown == ["iterations", "max_retry"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "coda.compat._task")
    assert {r.option: r.did_you_mean for r in caplog.records if r.getMessage() == "coda.compat.unknown_option"} == {  # type: ignore[attr-defined]
        "iterations": None, "max_retry": "max_retries"}


def test_bad_input_names_the_task_and_the_problem() -> None:
    with pytest.raises(RegistrationError, match=r"'tests.compat.bad2': bind=True .* no positional parameter"):

        @coda.compat.task(name="tests.compat.bad2", bind=True)
        def no_self(*, x: int) -> int:
            return x

    with pytest.raises(RegistrationError, match="decorates a function or wraps a Celery task, not 42"):
        coda.compat.task(42)
    with pytest.raises(RegistrationError, match="is a task class"):
        coda.compat.task(celery.Task)
    with pytest.raises(RegistrationError, match=r"'tests.compat.bad3': cache_key= takes a callable"):
        coda.compat.task(name="tests.compat.bad3", cache_key=["x"])(lambda: None)
    with pytest.raises(RegistrationError, match=r"'tests.compat.bad4': a rollout share is a number from 0 to 1, got 2"):
        coda.compat.task(name="tests.compat.bad4", rollout=2)(lambda: None)
    with pytest.raises(RegistrationError, match="base= must be a celery.Task subclass"):
        coda.compat.task(name="tests.compat.bad5", base=dict)(lambda: None)
    with pytest.raises(RegistrationError, match="max_retries cannot be applied to a task Celery already created"):
        coda.compat.task(TASKS["bare"]["add"], max_retries=2)
    # Options a custom base declares are accepted, as Celery accepts them.

    class Custom(celery.Task):  # type: ignore[misc]
        owner_team = "ingest"

    @coda.compat.task(name="tests.compat.custom", base=Custom, owner_team="search")
    def custom() -> None:
        return None

    assert custom.__coda_task__.name == "tests.compat.custom"


def test_rollout_precedence_and_bad_env(monkeypatch: Any) -> None:
    name = "tests.compat.tasks.compat.where"
    monkeypatch.delenv(coda.compat.ENV_ROLLOUT, raising=False)
    assert coda.compat.share_for(name, 0.25) == 0.25
    monkeypatch.setenv(coda.compat.ENV_ROLLOUT, "*=0.5")
    assert coda.compat.share_for(name, 0.25) == 0.5
    monkeypatch.setenv(coda.compat.ENV_ROLLOUT, f"other=1, {name}=0.75 ,*=0.5")
    assert coda.compat.share_for(name, 0.25) == 0.75
    coda.compat.configure_rollout(source=lambda task_name: 1.0 if task_name == name else None)
    try:
        assert coda.compat.share_for(name, 0.25) == 1.0
        assert coda.compat.share_for("other", 0.0) == 1.0  # the source said None: the env decides
    finally:
        coda.compat.configure_rollout()
    monkeypatch.setenv(coda.compat.ENV_ROLLOUT, f"{name}=lots")
    with pytest.raises(CompatError, match=r"CODA_COMPAT_ROLLOUT entry .*lots.*: a rollout share is a number from 0 to 1"):
        coda.compat.share_for(name, 0.0)


# -- parity on a real celery worker ----------------------------------------------------------------


def _celery_worker(env: dict[str, str]) -> CeleryWorkerProcess:
    """A stock `celery worker` (solo pool) on the test's queue, with the app the test uses."""
    return CeleryWorkerProcess("tests.compat.worker_app", [env["CODA_TEST_QUEUE"]], pool="solo",
                               name=f"celery-{env['CODA_TEST_QUEUE']}", env=env, startup_timeout=30.0).start()


def _cleanup_broker(broker: str, queue: str) -> None:
    with contextlib.suppress(Exception):
        if broker.startswith("redis"):
            import redis

            client = redis.Redis.from_url(broker)
            client.delete(queue, f"_kombu.binding.{queue}")
            client.close()
        else:
            from kombu import Connection

            with Connection(broker) as conn:
                conn.default_channel.queue_delete(queue)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def celery_worker(request: pytest.FixtureRequest) -> Iterator[tuple[Celery, dict[str, str], CeleryWorker]]:
    broker_name = request.param
    require_server("Redis" if broker_name == "redis" else "RabbitMQ", 6379 if broker_name == "redis" else 5672)
    tag = f"{RUN_TAG}-{uuid.uuid4().hex[:6]}"
    state = tempfile.mkdtemp(prefix="coda-compat-")
    env = {
        "CODA_TEST_BROKER": REDIS if broker_name == "redis" else AMQP,
        "CODA_TEST_BACKEND": REDIS if broker_name == "redis" else "rpc://",
        "CODA_TEST_QUEUE": f"coda-compat-{broker_name}-{tag}",
        "CODA_TEST_SIGNALS": os.path.join(state, "signals.jsonl"),
    }
    worker = _celery_worker(env)
    app = make_app(env)
    try:
        yield app, env, worker
    finally:
        worker.kill()
        app.close()
        _cleanup_broker(env["CODA_TEST_BROKER"], env["CODA_TEST_QUEUE"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_parity_on_a_real_celery_worker(kind: str, celery_worker: tuple[Celery, dict[str, str], CeleryWorker], tmp_path: Any) -> None:
    app, env, worker = celery_worker
    app.set_current()
    t, d = TASKS[kind], str(tmp_path)
    # Start the slow ones first: the worker holds their countdowns while the rest run.
    backoff = t["autoretry_backoff"].delay(dir=d, key="ab", fails=2)
    countdown = t["retry_countdown"].delay(dir=d, key="rc", fails=2, countdown=0.3)
    exhaust = t["retry_exhaust"].delay(dir=d, key="re")
    added = t["add"].delay(2, 3)
    assert isinstance(added, celery.result.AsyncResult)
    assert added.get(timeout=15) == 5
    info = t["request_info"].delay(value=7).get(timeout=15)
    assert info["is_eager"] is False and info["called_directly"] is False and info["is_self"] is True
    assert info["kwargs"] == {"value": 7} and info["retries"] == 0 and info["routing_key"] == env["CODA_TEST_QUEUE"]
    assert (t["add"].s(1, 2) | t["add"].s(3)).apply_async().get(timeout=15) == 6
    assert group(t["add"].s(i, i) for i in range(3)).apply_async().get(timeout=15) == [0, 2, 4]
    if env["CODA_TEST_BACKEND"].startswith("redis"):  # chords need a backend that stores results
        assert chord([t["add"].s(i, i) for i in range(3)], t["total"].s()).apply_async().get(timeout=15) == 6
    assert countdown.get(timeout=15) == {"attempts": 3, "retries": 2}
    assert all(gap >= 0.29 for gap in gaps(attempts(d, "rc"))), gaps(attempts(d, "rc"))
    with pytest.raises(KeyError, match="still missing"):
        exhaust.get(timeout=15)
    assert len(attempts(d, "re")) == 2
    assert backoff.get(timeout=20) == 3
    first, second = gaps(attempts(d, "ab"))
    assert 0.95 <= first < 1.9 and 1.95 <= second < 2.9, (first, second)
    with pytest.raises(CeleryTimeoutError):
        app.AsyncResult(str(uuid.uuid4())).get(timeout=0.2)
    # Signals, in the worker process, with Celery's arguments.
    signals = read_signals(env["CODA_TEST_SIGNALS"])
    names = {"add", "retry_countdown", "retry_exhaust"}
    mine = [s for s in signals if s["task"] in {t[n].name for n in names}]
    assert all(s["keys"] == SIGNAL_KEYS[s["signal"]] for s in mine)
    by_task = {n: [s["signal"] for s in mine if s["task"] == t[n].name] for n in names}
    assert by_task["add"].count("task_success") >= 2
    assert by_task["retry_countdown"].count("task_retry") == 2 and by_task["retry_countdown"].count("task_success") == 1
    assert by_task["retry_exhaust"].count("task_retry") == 1 and by_task["retry_exhaust"].count("task_failure") == 1


# -- spawned from Coda workflows --------------------------------------------------------------------


@pytest.fixture
def supervisor(coda_supervisor_factory: Any, tmp_path: Any) -> Any:
    signals = str(tmp_path / "coda-signals.jsonl")
    sup = coda_supervisor_factory(["tests.compat.worker_app"], workers=2, env={"CODA_TEST_SIGNALS": signals})
    sup.signals_path = signals
    return sup


@pytest.mark.timeout(60)
def test_spawned_from_a_workflow_with_celery_retry_semantics(supervisor: Any, tmp_path: Any) -> None:
    client, d = supervisor.sync_client(), str(tmp_path / "effects")
    os.mkdir(d)

    def spawn(task: str, **args: Any) -> dict[str, Any]:
        return client.run("tests.compat.workflows.spawn_one", {"task": task, "args": args}, timeout=30)  # type: ignore[no-any-return]

    # Start the slow one (backoff 1 s then 2 s) and let it run while the others do.
    backoff = client.start("tests.compat.workflows.spawn_one",
                           {"task": "autoretry_backoff", "args": {"dir": d, "key": "ab", "fails": 2}})
    assert spawn("add", x=2, y=3) == {"ok": 5}
    info = spawn("request_info", value=7)["ok"]
    assert info["is_eager"] is False and info["called_directly"] is False and info["is_self"] is True
    assert info["kwargs"] == {"value": 7} and info["args"] == [] and info["retries"] == 0 and info["routing_key"] == "celery"
    assert spawn("retry_countdown", dir=d, key="rc", fails=2, countdown=0.3) == {"ok": {"attempts": 3, "retries": 2}}
    assert all(gap >= 0.29 for gap in gaps(attempts(d, "rc"))), gaps(attempts(d, "rc"))
    failed = spawn("retry_exhaust", dir=d, key="re")["failed"]
    assert (failed["class"], failed["exc_type"], failed["message"]) == ("TaskFailed", "KeyError", "'still missing'")
    assert len(attempts(d, "re")) == 2
    assert spawn("retry_default_max", dir=d, key="dm")["failed"]["exc_type"] == "celery.exceptions.MaxRetriesExceededError"
    assert len(attempts(d, "dm")) == 4
    assert spawn("retry_override_max", dir=d, key="om")["failed"]["exc_type"] == "RuntimeError"
    assert len(attempts(d, "om")) == 2
    assert spawn("autoretry_except", dir=d, key="ae1", exc="ValueError")["failed"]["exc_type"] == "ValueError"
    assert len(attempts(d, "ae1")) == 1  # dont_autoretry_for
    assert spawn("autoretry_except", dir=d, key="ae2", exc="OSError")["failed"]["exc_type"] == "OSError"
    assert len(attempts(d, "ae2")) == 4  # autoretry_for, Celery's default max_retries
    assert spawn("ignored", dir=d, key="ig")["failed"]["exc_type"] == "celery.exceptions.Ignore"
    assert len(attempts(d, "ig")) == 1
    assert spawn("rejected", dir=d, key="rq", requeue_until=3) == {"ok": 3}
    assert spawn("rejected", dir=d, key="rj", requeue_until=0)["failed"]["exc_type"] == "celery.exceptions.Reject"
    assert len(attempts(d, "rj")) == 1
    assert backoff.result(timeout=30) == {"ok": 3}
    first, second = gaps(attempts(d, "ab"))
    assert 0.95 <= first < 1.9 and 1.95 <= second < 2.9, (first, second)
    # The same signals, with the same arguments, fired in the Coda worker.
    signals = read_signals(supervisor.signals_path)
    assert signals and all(s["keys"] == SIGNAL_KEYS[s["signal"]] for s in signals)
    compat = TASKS["compat"]
    per_task = {n: [s["signal"] for s in signals if s["task"] == compat[n].name] for n in ("add", "retry_countdown", "retry_exhaust")}
    assert per_task["add"] == ["task_prerun", "task_success", "task_postrun"]
    assert per_task["retry_countdown"].count("task_retry") == 2 and per_task["retry_countdown"].count("task_success") == 1
    assert per_task["retry_exhaust"].count("task_retry") == 1 and per_task["retry_exhaust"].count("task_failure") == 1
    retry_ids = {s["task_id"] for s in signals if s["task"] == compat["retry_countdown"].name and s["task_id"]}
    assert len(retry_ids) == 1  # one task id across the retries, as under Celery


@pytest.mark.timeout(60)
def test_memo_on_rerun_and_default_cache_key(supervisor: Any, tmp_path: Any) -> None:
    client, d = supervisor.sync_client(), str(tmp_path)
    handle = client.start("tests.compat.workflows.memo_pipeline", {"dir": d, "tag": "e1"})
    assert handle.result(timeout=30) == ["coda", "stored e1", "stored e1", 2]
    assert len(attempts(d, "pipeline-failed")) == 1
    assert len(attempts(d, "where")) == 1 and len(attempts(d, "keyed")) == 1  # memoized across the rerun
    status = client.status(handle.run_id)
    assert status.attempt == 2 and status.tasks["memo_hits"] >= 3
    bad = client.run("tests.compat.workflows.bad_default_key", {"task": "tests.compat.tasks.bad_key"}, timeout=30)
    assert bad == "DataError: task 'tests.compat.tasks.bad_key': its cache_key callable must return a list, not tuple"
    raising = client.run("tests.compat.workflows.bad_default_key", {"task": "tests.compat.tasks.raising_key"}, timeout=30)
    assert raising.startswith("CompatError: task 'tests.compat.tasks.raising_key': its cache_key callable raised ZeroDivisionError")


# -- the rollout switch ----------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_rollout_switch_moves_calls_between_celery_and_coda(
    coda_supervisor_factory: Any, monkeypatch: Any, run_tag: str, redis_url: str, tmp_path: Any
) -> None:
    env = {"CODA_TEST_BROKER": redis_url, "CODA_TEST_BACKEND": redis_url, "CODA_TEST_QUEUE": f"coda-compat-rollout-{run_tag}"}
    sup = coda_supervisor_factory(["tests.compat.worker_app"], workers=2, env=env)
    worker = _celery_worker(env)
    app = make_app(env)
    app.set_current()
    monkeypatch.setenv("CODA_URL", sup.address)
    where = TASKS["compat"]["where"]
    try:
        # 0 (the default): every call goes to Celery.
        monkeypatch.delenv(coda.compat.ENV_ROLLOUT, raising=False)
        results = [where.delay() for _ in range(5)]
        assert all(isinstance(r, celery.result.AsyncResult) for r in results)
        assert [r.get(timeout=15) for r in results] == ["celery"] * 5
        # 100 (from the environment): every plain call goes to Coda.
        monkeypatch.setenv(coda.compat.ENV_ROLLOUT, f"{where.name}=1")
        results = [where.delay(), where.apply_async(kwargs={}, task_id="rollout-" + run_tag)]
        assert all(isinstance(r, CodaAsyncResult) for r in results)
        assert results[1].id == "rollout-" + run_tag
        assert [r.get(timeout=15) for r in results] == ["coda", "coda"]
        assert results[0].ready() and results[0].successful() and results[0].state == "SUCCESS"
        # ... but not what only Celery can do: a countdown, a chain.
        assert where.apply_async(countdown=0.01).get(timeout=15) == "celery"
        assert (where.si() | where.si()).apply_async().get(timeout=15) == "celery"
        # A failure on Coda is raised as the task's own exception type.
        monkeypatch.setenv(coda.compat.ENV_ROLLOUT, "*=1")
        failing = TASKS["compat"]["boom"].delay("bad event")
        with pytest.raises(ValueError, match="bad event"):
            failing.get(timeout=15)
        assert failing.failed() and failing.state == "FAILURE" and "bad event" in (failing.traceback or "")
        assert isinstance(failing.get(propagate=False), ValueError)
        # A fraction, deterministic with a seed.
        monkeypatch.setenv(coda.compat.ENV_ROLLOUT, f"{where.name}=0.4")
        coda.compat.configure_rollout(seed=1234)
        rng = random.Random(1234)
        expected = ["coda" if rng.random() < 0.4 else "celery" for _ in range(20)]
        results = [where.delay() for _ in range(20)]
        routed = ["coda" if isinstance(r, CodaAsyncResult) else "celery" for r in results]
        assert routed == expected and 0 < routed.count("coda") < 20
        assert [r.get(timeout=15) for r in results] == expected  # each ran where it was routed
    finally:
        coda.compat.configure_rollout()
        worker.kill()
        app.close()
        _cleanup_broker(redis_url, env["CODA_TEST_QUEUE"])
