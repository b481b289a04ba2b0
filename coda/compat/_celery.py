"""Every private Celery name ``coda.compat`` relies on, and nothing else.

Celery has no public way to see an app's tasks without finalizing the app, to hear about apps
being finalized, or to be told when it creates a task; ``coda.compat`` needs all three, so it
reads them here, and only here. Each function says what it reads.

Checked against Celery 5.4.0, 5.5.3, 5.6.3 and 5.7.0 (``pyproject.toml`` declares >= 5.7, the floor the
bridge needs; the names read here are the same on all four):
``tests/compat/test_celery_private.py`` pins every name below, and ``scripts/celery-versions.sh``
runs that file and ``tests/compat`` against each of those versions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import celery.app
import celery.app.trace
import celery.local
from celery import _state

__all__ = [
    "ORIGINAL_APP_TASK",
    "ORIGINAL_SHARED_TASK",
    "ORIGINAL_TASK_FROM_FUN",
    "active_apps",
    "build_tracer",
    "current_object",
    "is_decorated",
    "is_lazy",
    "on_app_finalize",
    "registered_tasks",
    "set_app_task",
    "set_shared_task",
    "task_from_fun_hook",
    "task_function",
]

# The decorators and the one method every decorated task is created by, as Celery defines
# them. ``coda.compat.install()`` replaces the public three; coda.compat itself always calls
# these originals, which is what keeps an installed swap from recursing into itself.
ORIGINAL_SHARED_TASK: Callable[..., Any] = getattr(celery.app.shared_task, "__coda_original__", celery.app.shared_task)
ORIGINAL_APP_TASK: Callable[..., Any] = getattr(celery.Celery.task, "__coda_original__", celery.Celery.task)
ORIGINAL_TASK_FROM_FUN: Callable[..., Any] = getattr(
    celery.Celery._task_from_fun, "__coda_original__", celery.Celery._task_from_fun
)


def active_apps() -> list[Any]:
    """Every Celery app alive in this process (``celery._state._get_active_apps``)."""
    return list(_state._get_active_apps())


def on_app_finalize(callback: Callable[[Any], None]) -> None:
    """Call ``callback(app)`` whenever an app is finalized, before its pending ``@app.task``
    decorators are evaluated (``celery._state.connect_on_app_finalize``; Celery creates shared
    and built-in tasks the same way)."""
    _state.connect_on_app_finalize(callback)


def registered_tasks(app: Any) -> Mapping[str, Any]:
    """The tasks ``app`` holds now, without finalizing it (``app._tasks``; ``app.tasks``
    finalizes the app, which must not happen behind the user's back)."""
    tasks: Mapping[str, Any] = app._tasks
    return tasks


def is_lazy(obj: Any) -> bool:
    """Whether ``obj`` is one of Celery's lazy proxies (``shared_task``'s ``Proxy``, an unfinalized
    app's ``PromiseProxy``): checked by type, since ``isinstance`` would evaluate it."""
    return isinstance(obj, celery.local.Proxy)


def current_object(proxy: Any) -> Any:
    """The task behind one of Celery's lazy proxies (``Proxy._get_current_object``)."""
    return proxy._get_current_object()


def is_decorated(task: Any) -> bool:
    """Whether ``task`` was made from a function by ``@app.task``/``@shared_task`` (Celery marks
    those ``_decorated``), not from a ``Task`` subclass."""
    return bool(getattr(task, "_decorated", False))


def task_function(task: Any) -> tuple[Callable[..., Any], bool]:
    """The function behind ``task`` and whether it takes the task as ``self``: the decorated
    function (Celery >= 5.7 keeps it as ``_decorated_fun``; before, ``run`` is all there is, a
    staticmethod, or the plain function under ``bind=True``, and ``_orig_run`` is ``run`` before
    ``autoretry_for`` wrapped it), or a class-based task's ``run``."""
    run = getattr(task, "_orig_run", None) or task.run
    bound = inspect.ismethod(run)
    fn = getattr(task, "_decorated_fun", None) or (run.__func__ if bound else run)
    return fn, bound


def task_from_fun_hook(hook: Callable[[Any, Any], None] | None) -> None:
    """With a hook, ``Celery._task_from_fun`` (which every ``@app.task`` and ``@shared_task``
    creates its task with, in every app, whatever reference to the decorator was used) calls
    ``hook(app, task)`` after each call; with None, Celery's own method comes back."""
    if hook is None:
        celery.Celery._task_from_fun = ORIGINAL_TASK_FROM_FUN
        return

    def _task_from_fun(self: Any, fun: Any, *args: Any, **options: Any) -> Any:
        created = ORIGINAL_TASK_FROM_FUN(self, fun, *args, **options)
        hook(self, created)
        return created

    _task_from_fun.__coda_original__ = ORIGINAL_TASK_FROM_FUN  # type: ignore[attr-defined]
    _task_from_fun.__wrapped__ = ORIGINAL_TASK_FROM_FUN  # type: ignore[attr-defined]
    celery.Celery._task_from_fun = _task_from_fun


def set_shared_task(decorator: Callable[..., Any]) -> None:
    """Make ``celery.shared_task`` / ``celery.app.shared_task`` resolve to ``decorator`` for
    every later lookup (``celery`` is a lazy module whose attributes are set on first use)."""
    celery.app.shared_task = decorator
    celery.shared_task = decorator


def set_app_task(decorator: Callable[..., Any]) -> None:
    """Make ``Celery.task`` (looked up on the class at every ``@app.task``) ``decorator``."""
    celery.Celery.task = decorator


def build_tracer(task: Any, hostname: str) -> Any:
    """Celery's tracer for ``task`` (``celery.app.trace.build_tracer``, what a worker runs every
    task with), looked up at call time so instrumentation that patches it sees Coda too."""
    return celery.app.trace.build_tracer(task.name, task, hostname=hostname, eager=True, propagate=False, app=task.app)
