"""``coda.compat.install()``: every ``@shared_task`` and ``@app.task`` of a codebase becomes a
``coda.compat`` task, with no decorator edited.

    # proj/celery.py (or Django settings), once, next to ``app = Celery(...)``
    import coda.compat
    coda.compat.install()          # install(app): only the tasks of that app (and shared tasks)

After it:

- ``@shared_task(...)`` and ``@app.task(...)`` return what ``@coda.compat.task(...)`` returns:
  the same Celery task seen through the ``wrapt`` proxy, registered with Coda;
- the tasks Celery created already (in every app, or in ``app``) are registered with Coda and
  get the mixin, so ``spawn_task(existing_task)`` and the rollout switch work for them; the
  objects their modules hold stay Celery's own;
- a task declared through a decorator reference taken before ``install()`` ran (``from celery
  import shared_task`` in a module imported earlier) becomes a ``coda.compat`` task when Celery
  creates it: at once in a finalized app, else when the app finalizes.

Celery's built-in tasks (``celery.chord_unlock``, ...) stay Celery's. A declaration that
``coda.compat.task`` would refuse (``bind=True`` on a function with no ``self``, a ``time_limit``
that is not a number) stays a plain Celery task, with a warning naming it: installing never
stops an application from importing.

``install()`` is safe against itself (``coda.compat`` calls Celery's own decorators, which
``coda.compat._celery`` kept, never the installed ones), idempotent (a second call changes
nothing; ``install(app)`` after ``install()`` too) and reversible: ``uninstall()`` puts Celery's
decorators back, so later declarations are plain Celery tasks; tasks swapped meanwhile stay
``coda.compat`` tasks, since their modules hold them.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from coda.compat import _celery, _task
from coda.errors import RegistrationError
from coda.registry import REGISTRY

__all__ = ["install", "installed", "uninstall"]

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_installed = False
_every_app = False
_apps: weakref.WeakSet[Any] = weakref.WeakSet()
# Functions coda.compat refused to swap: when Celery creates their tasks, they stay Celery's.
_refused: weakref.WeakSet[Any] = weakref.WeakSet()


def _in_scope(app: Any) -> bool:
    return _installed and (_every_app or app in _apps)


def _celerys_own(fn: Any) -> bool:
    module = getattr(fn, "__module__", None) or ""
    return module == "celery" or module.startswith("celery.")


def _swap(fn: Any, options: dict[str, Any], app: Any, original: Callable[[Any], Any]) -> Any:
    """What the installed decorator returns for ``fn``: a ``coda.compat`` task, or what Celery's
    own decorator (``original``) returns where coda.compat does not apply."""
    if not inspect.isfunction(fn) or _celerys_own(fn) or (app is not None and not _in_scope(app)):
        return original(fn.__wrapped__ if issubclass(type(fn), _task.CompatTaskProxy) else fn)
    try:
        return _task._decorate(fn, dict(options), app)
    except RegistrationError as exc:
        logger.warning(
            "coda.compat.install.not_swapped",
            extra={"function": f"{fn.__module__}.{fn.__qualname__}", "reason": str(exc), "stays": "a plain Celery task"},
        )
        _refused.add(fn)
        return original(fn)


def _shared_task(*args: Any, **options: Any) -> Any:
    """``celery.shared_task`` while installed."""
    if len(args) == 1 and callable(args[0]):
        return _swap(args[0], options, None, _celery.ORIGINAL_SHARED_TASK(**options))
    if args:  # Celery's own error for a bad call
        return _celery.ORIGINAL_SHARED_TASK(*args, **options)
    return lambda fn: _swap(fn, options, None, _celery.ORIGINAL_SHARED_TASK(**options))


def _app_task(self: Any, *args: Any, **options: Any) -> Any:
    """``Celery.task`` while installed."""
    if not _in_scope(self) or len(args) > 1 or (args and not callable(args[0])):
        return _celery.ORIGINAL_APP_TASK(self, *args, **options)

    def original(fn: Any) -> Any:
        return _celery.ORIGINAL_APP_TASK(self, **options)(fn)

    if args:
        return _swap(args[0], options, self, original)
    return lambda fn: _swap(fn, options, self, original)


_shared_task.__coda_original__ = _celery.ORIGINAL_SHARED_TASK  # type: ignore[attr-defined]
_shared_task.__wrapped__ = _celery.ORIGINAL_SHARED_TASK  # type: ignore[attr-defined]
_app_task.__coda_original__ = _celery.ORIGINAL_APP_TASK  # type: ignore[attr-defined]
_app_task.__wrapped__ = _celery.ORIGINAL_APP_TASK  # type: ignore[attr-defined]


def _on_created(app: Any, found: Any) -> None:
    """Celery just created (or, for a taken name, returned) ``found`` in ``app``."""
    if not _in_scope(app) or not _celery.is_decorated(found):
        return
    fn = _celery.task_function(found)[0]
    if _celerys_own(fn) or fn in _refused:
        return
    definition = REGISTRY.tasks.get(found.name)
    if isinstance(definition, _task.CompatTask) and definition.made(found):
        _task.inject(found)  # declared through an installed decorator: registered already
        return
    try:
        _task.adopt(found)
    except RegistrationError as exc:
        logger.warning(
            "coda.compat.install.not_swapped",
            extra={"task_name": found.name, "reason": str(exc), "stays": "a plain Celery task"},
        )


def install(app: Any = None) -> None:
    """Make every ``@shared_task``/``@app.task``, declared already or later, a ``coda.compat``
    task (see the module docstring). ``app``: only that app's ``@app.task`` declarations and
    tasks, and the shared ones; ``None``: every app."""
    global _installed, _every_app
    with _lock:
        if app is None:
            _every_app = True
        else:
            _apps.add(app)
        if not _installed:
            _installed = True
            _celery.set_shared_task(_shared_task)
            _celery.set_app_task(_app_task)
            _celery.task_from_fun_hook(_on_created)
        for each in _celery.active_apps():
            if _in_scope(each):
                for found in list(_celery.registered_tasks(each).values()):
                    _on_created(each, found)


def uninstall() -> None:
    """Put Celery's decorators back: later declarations are plain Celery tasks again."""
    global _installed, _every_app
    with _lock:
        if _installed:
            _celery.set_shared_task(_celery.ORIGINAL_SHARED_TASK)
            _celery.set_app_task(_celery.ORIGINAL_APP_TASK)
            _celery.task_from_fun_hook(None)
        _installed = _every_app = False
        _apps.clear()


def installed() -> bool:
    """Whether ``install()`` is in effect."""
    return _installed
