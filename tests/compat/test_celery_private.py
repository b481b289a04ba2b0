"""Every private Celery name ``coda.compat._celery`` reads, pinned: if a Celery release moves
one, this file says which. ``scripts/celery-versions.sh`` runs it on each declared version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celery
import celery.app
import pytest
from celery import Celery

from coda.compat import _celery


@pytest.fixture
def app() -> Iterator[Celery]:
    made = Celery("coda_private_tests", set_as_current=False)
    made.conf.update(broker_url="memory://", task_always_eager=True)
    yield made
    made.close()


def test_the_originals_are_celerys_own() -> None:
    assert _celery.ORIGINAL_SHARED_TASK.__module__ == "celery.app"
    assert _celery.ORIGINAL_SHARED_TASK.__name__ == "shared_task"
    assert _celery.ORIGINAL_APP_TASK.__qualname__ == "Celery.task"
    assert _celery.ORIGINAL_TASK_FROM_FUN.__qualname__ == "Celery._task_from_fun"


def test_active_apps_and_finalize_callbacks(app: Celery) -> None:
    assert app in _celery.active_apps()
    seen: list[tuple[Any, bool]] = []
    _celery.on_app_finalize(lambda finalized: seen.append((finalized, "tests.private.pending" in finalized._tasks)))

    @app.task(name="tests.private.pending", shared=False)
    def pending() -> None: ...

    assert seen == []
    app.finalize()
    # Called during finalize, before the app's pending @app.task declarations are created.
    assert (app, False) in seen and "tests.private.pending" in _celery.registered_tasks(app)


def test_registered_tasks_does_not_finalize(app: Celery) -> None:
    tasks = _celery.registered_tasks(app)
    assert not app.finalized and "celery.chord_unlock" not in tasks
    app.finalize()
    assert "celery.chord_unlock" in _celery.registered_tasks(app)


def test_lazy_proxies_are_told_by_type_without_evaluating(app: Celery) -> None:
    @app.task(name="tests.private.promise", shared=False)
    def promise() -> int:
        return 1

    @celery.shared_task(name="tests.private.shared")
    def shared() -> int:
        return 2

    assert _celery.is_lazy(promise) and _celery.is_lazy(shared)
    assert "tests.private.promise" not in _celery.registered_tasks(app)  # still not evaluated
    found = _celery.current_object(promise)
    assert type(found).__name__ == "promise" and not _celery.is_lazy(found)
    app.set_current()
    assert _celery.current_object(shared).name == "tests.private.shared"


def test_task_function_for_every_kind_of_task(app: Celery) -> None:
    def plain(x: int) -> int:
        return x

    def bound(self: Any, x: int) -> int:
        return x

    def retried(x: int) -> int:
        return x

    class ClassBased(celery.Task):  # type: ignore[misc]
        name = "tests.private.class_based"

        def run(self, x: int) -> int:
            return x

    made = {
        "plain": app.task(name="tests.private.plain", shared=False, lazy=False)(plain),
        "bound": app.task(name="tests.private.bound", shared=False, lazy=False, bind=True)(bound),
        "retried": app.task(name="tests.private.retried", shared=False, lazy=False, autoretry_for=(ValueError,))(retried),
    }
    assert _celery.task_function(made["plain"]) == (plain, False)
    assert _celery.task_function(made["bound"]) == (bound, True)
    assert _celery.task_function(made["retried"]) == (retried, False)  # not the autoretry wrapper
    assert all(_celery.is_decorated(t) for t in made.values())
    class_based = app.register_task(ClassBased())
    assert not _celery.is_decorated(class_based)
    assert _celery.task_function(class_based) == (ClassBased.run, True)


def test_the_creation_hook_sees_every_path_and_comes_off(app: Celery) -> None:
    def noop() -> None: ...

    created: list[str] = []
    _celery.task_from_fun_hook(lambda made_in, task: created.append(task.name))
    try:
        app.task(name="tests.private.hook_app", shared=False, lazy=False)(noop)
        app.finalize()
        celery.shared_task(name="tests.private.hook_shared")(noop)  # created at once: finalized app
        assert [n for n in created if n.startswith("tests.private.hook")] == ["tests.private.hook_app", "tests.private.hook_shared"]
        assert "celery.chord_unlock" in created  # the built-ins, created when the app finalized
    finally:
        _celery.task_from_fun_hook(None)
    assert Celery._task_from_fun is _celery.ORIGINAL_TASK_FROM_FUN
    app.task(name="tests.private.hook_off", shared=False, lazy=False)(noop)
    assert "tests.private.hook_off" not in created


def test_decorators_can_be_replaced_where_every_lookup_finds_them() -> None:
    def replacement(*args: Any, **kwargs: Any) -> Any:
        return "replaced"

    def app_replacement(self: Any, *args: Any, **kwargs: Any) -> Any:
        return "app replaced"

    try:
        _celery.set_shared_task(replacement)
        _celery.set_app_task(app_replacement)
        from celery import shared_task  # a module imported later

        assert shared_task is replacement and celery.app.shared_task is replacement
        assert Celery("x", set_as_current=False).task() == "app replaced"
    finally:
        _celery.set_shared_task(_celery.ORIGINAL_SHARED_TASK)
        _celery.set_app_task(_celery.ORIGINAL_APP_TASK)
    assert celery.shared_task is _celery.ORIGINAL_SHARED_TASK and Celery.task is _celery.ORIGINAL_APP_TASK


def test_build_tracer_runs_a_task(app: Celery) -> None:
    def triple(x: int) -> int:
        return x * 3

    task = app.task(name="tests.private.traced", shared=False, lazy=False)(triple)
    outcome = _celery.build_tracer(task, "coda@test")("id-1", [2], {}, {"id": "id-1"})
    assert outcome.retval == 6 and outcome.info is None
