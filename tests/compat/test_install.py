"""``coda.compat.install()``: every ``@shared_task``/``@app.task`` a coda.compat task, one line.

Each test installs and uninstalls around itself; apps are made per test and closed after.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any
from unittest import mock

import celery
import pytest
from celery import Celery

import coda.compat
from coda.compat import CodaTaskMixin, CompatTask, CompatTaskProxy, _celery
from coda.registry import REGISTRY, task_name_of


@pytest.fixture
def app() -> Iterator[Celery]:
    made = Celery("coda_install_tests", set_as_current=False)
    made.conf.update(broker_url="memory://", result_backend="cache+memory://", task_always_eager=True)
    made.set_current()  # shared tasks resolve in the current app
    yield made
    coda.compat.uninstall()
    made.close()


def test_later_declarations_are_compat_tasks(app: Celery) -> None:
    coda.compat.install()

    @celery.shared_task(name="tests.install.shared")
    def shared(x: int) -> int:
        return x + 1

    @app.task(name="tests.install.bound", bind=True)
    def bound(self: Any, x: int) -> str:
        return f"{self.name}:{x}"

    @app.task
    def plain(x: int) -> int:  # no parentheses, default name
        return x * 2

    for declared in (shared, bound, plain):
        assert isinstance(declared, CompatTaskProxy) and isinstance(declared, celery.Task)
        assert isinstance(REGISTRY.tasks[declared.name], CompatTask)
        assert task_name_of(declared) == (declared.name, declared.__coda_task__)
        assert isinstance(app.tasks[declared.name], CodaTaskMixin)
    assert plain.name == app.gen_task_name("plain", __name__)
    assert shared.delay(1).get() == 2 and bound.delay(3).get() == "tests.install.bound:3" and plain(4) == 8
    assert bound.__coda_task__.bind and not shared.__coda_task__.bind


def test_tasks_declared_before_install_join_too(app: Celery) -> None:
    @app.task(name="tests.install.before", shared=False)
    def before() -> str:
        return "before"

    app.finalize()
    assert not isinstance(app.tasks["tests.install.before"], CodaTaskMixin)
    coda.compat.install()
    # The object the module holds stays Celery's own; the task behind it is a coda.compat task.
    assert not isinstance(before, CompatTaskProxy)
    assert isinstance(app.tasks["tests.install.before"], CodaTaskMixin)
    definition = REGISTRY.tasks["tests.install.before"]
    assert isinstance(definition, CompatTask) and task_name_of(before) == ("tests.install.before", definition)
    assert before.delay().get() == "before"
    # Celery's built-in tasks stay Celery's.
    assert not isinstance(app.tasks["celery.chord_unlock"], CodaTaskMixin)
    assert "celery.chord_unlock" not in REGISTRY.tasks


def test_a_decorator_bound_before_install_still_swaps_when_celery_creates_the_task(app: Celery) -> None:
    early = celery.shared_task  # as `from celery import shared_task` in a module imported first
    coda.compat.install()
    app.finalize()

    @early(name="tests.install.early")
    def made_early() -> int:
        return 7

    assert isinstance(app.tasks["tests.install.early"], CodaTaskMixin)
    assert isinstance(REGISTRY.tasks["tests.install.early"], CompatTask)
    assert made_early.delay().get() == 7


def test_install_is_idempotent_and_safe_against_itself(app: Celery) -> None:
    coda.compat.install()
    decorators = (celery.shared_task, celery.app.shared_task, Celery.task, Celery._task_from_fun)
    coda.compat.install()
    coda.compat.install(app)
    assert (celery.shared_task, celery.app.shared_task, Celery.task, Celery._task_from_fun) == decorators

    # coda.compat calls Celery's decorators itself: neither path recurses or wraps twice.
    @coda.compat.task(name="tests.install.explicit")
    def explicit() -> int:
        return 1

    @coda.compat.task
    @celery.shared_task(name="tests.install.stacked")
    def stacked() -> int:
        return 2

    for declared in (explicit, stacked):
        assert isinstance(declared, CompatTaskProxy)
        assert not issubclass(type(declared.__wrapped__), CompatTaskProxy)
        assert type(declared.__wrapped__) is celery.local.Proxy
    assert explicit.delay().get() == 1 and stacked.delay().get() == 2


def test_uninstall_puts_celery_back(app: Celery) -> None:
    originals = (celery.shared_task, Celery.task, Celery._task_from_fun)
    coda.compat.install()
    assert coda.compat.installed() and celery.shared_task is not originals[0]

    @app.task(name="tests.install.swapped", shared=False)
    def swapped() -> None: ...

    coda.compat.uninstall()
    coda.compat.uninstall()  # twice is fine
    assert not coda.compat.installed()
    assert (celery.shared_task, celery.app.shared_task, Celery.task, Celery._task_from_fun) == (originals[0], originals[0], *originals[1:])

    @app.task(name="tests.install.plain_again", shared=False)
    def plain_again() -> None: ...

    assert not isinstance(plain_again, CompatTaskProxy)
    assert not isinstance(app.tasks["tests.install.plain_again"], CodaTaskMixin)
    assert isinstance(swapped, CompatTaskProxy)  # what was swapped meanwhile stays swapped
    from celery import shared_task as looked_up_again

    assert looked_up_again is _celery.ORIGINAL_SHARED_TASK


def test_install_for_one_app_leaves_the_others(app: Celery) -> None:
    other = Celery("coda_install_other", set_as_current=False)
    other.conf.update(broker_url="memory://", task_always_eager=True)
    try:
        coda.compat.install(app)

        @app.task(name="tests.install.mine", shared=False)
        def mine() -> None: ...

        @other.task(name="tests.install.theirs", shared=False)
        def theirs() -> None: ...

        assert isinstance(mine, CompatTaskProxy) and isinstance(app.tasks["tests.install.mine"], CodaTaskMixin)
        assert not isinstance(theirs, CompatTaskProxy)
        assert not isinstance(other.tasks["tests.install.theirs"], CodaTaskMixin)
        assert not isinstance(REGISTRY.tasks.get("tests.install.theirs"), CompatTask)
    finally:
        other.close()


def test_declaring_stays_lazy(app: Celery) -> None:
    coda.compat.install()

    @app.task(name="tests.install.lazy", shared=False)
    def lazy() -> None: ...

    # Celery creates the task on first use and reads the app's configuration then; installing
    # and declaring must not do it earlier (nor finalize the app).
    assert not app.finalized and "tests.install.lazy" not in _celery.registered_tasks(app)
    app.conf.task_store_eager_result = True
    assert lazy.store_eager_result is True


def test_a_declaration_coda_refuses_stays_a_plain_celery_task(app: Celery, caplog: pytest.LogCaptureFixture) -> None:
    coda.compat.install()
    with caplog.at_level(logging.WARNING, logger="coda.compat._install"):

        @app.task(name="tests.install.refused", bind=True, shared=False)
        def refused(*, x: int) -> int:  # bind=True with nowhere to put self: Celery fails only when called
            return x

    assert type(refused) is celery.local.PromiseProxy  # Celery's own, still lazy
    assert not isinstance(app.tasks["tests.install.refused"], CodaTaskMixin)  # created: not adopted either
    assert "tests.install.refused" not in REGISTRY.tasks
    [record] = [r for r in caplog.records if r.getMessage() == "coda.compat.install.not_swapped"]
    assert record.function.endswith("<locals>.refused")  # type: ignore[attr-defined]
    assert "'tests.install.refused'" in record.reason and "bind=True" in record.reason  # type: ignore[attr-defined]


def test_class_level_patch_of_apply_async_sees_the_same_call(app: Celery) -> None:
    # sentry-python (and mock.patch.object in tests) patch celery.Task.apply_async on the class.
    def body(x: int, y: int) -> int:
        return x + y

    bare = app.task(name="tests.install.patch_bare", shared=False)(body)
    coda.compat.install()
    swapped = app.task(name="tests.install.patch_swapped", shared=False)(body)
    calls = []
    for declared in (bare, swapped):
        with mock.patch.object(celery.Task, "apply_async") as patched:
            declared.delay(1, y=2)
            declared.apply_async((1,), {"y": 2}, countdown=3)
            declared.s(5, 6).apply_async(priority=1)
        calls.append(patched.call_args_list)
    assert calls[0] == calls[1] and len(calls[0]) == 3


def test_importing_coda_compat_patches_nothing() -> None:
    coda.compat.uninstall()
    assert celery.shared_task is _celery.ORIGINAL_SHARED_TASK and Celery.task is _celery.ORIGINAL_APP_TASK
    assert "coda.compat._install" in sys.modules and not coda.compat.installed()


def test_a_celery_name_coda_could_not_know_is_told(caplog: pytest.LogCaptureFixture) -> None:
    class Prefixed(Celery):  # type: ignore[misc]
        def gen_task_name(self, name: str, module: str) -> str:
            return f"prefixed.{module}.{name}"

    renaming = Prefixed("coda_install_prefixed", set_as_current=False)
    renaming.conf.update(broker_url="memory://", task_always_eager=True)
    try:
        renaming.set_current()

        @coda.compat.task
        def renamed() -> int:
            return 5

        definition = renamed.__coda_task__
        assert definition.name == f"{__name__}.renamed"
        with caplog.at_level(logging.WARNING, logger="coda.compat._task"):
            found = definition.celery_task()
            definition.celery_task()  # told once
        assert found.name == f"prefixed.{__name__}.renamed"
        [record] = [r for r in caplog.records if r.getMessage() == "coda.compat.name_mismatch"]
        assert (record.task_name, record.celery_name) == (definition.name, found.name)  # type: ignore[attr-defined]
    finally:
        renaming.close()
