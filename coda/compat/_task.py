"""``coda.compat.task``: a Celery task, unchanged for Celery, that is also a Coda task.

``@task(...)`` hands every option to ``celery.shared_task`` (lazily, as Celery does) and wraps
the result in a ``wrapt`` proxy; ``task(existing)`` wraps a task Celery already registered.
Either way a :class:`CompatTask` joins Coda's registry, so ``spawn_task`` runs it on a Coda
worker, and the task Celery registers gets :class:`CodaTaskMixin` mixed into its class (when
Celery creates it, in every app), so ``app.tasks[name]`` — which canvas, ``send_task`` and
workers use — routes and retries the same as the proxy.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import celery
import celery.local
import wrapt
from celery import _state as celery_state

from coda.compat import _request, _rollout
from coda.data import check_data
from coda.errors import CompatError, DataError, RegistrationError
from coda.registry import REGISTRY, ExecInfo, Task

__all__ = ["CodaTaskMixin", "CompatTask", "CompatTaskProxy", "task"]

logger = logging.getLogger(__name__)

# Options Celery reads that are not attributes of ``celery.Task`` (``_task_from_fun``'s own
# parameters, autoretry, routing). Anything else must be an attribute of the base class.
_CELERY_OPTIONS = frozenset(
    {
        "autoretry_for", "base", "bind", "dont_autoretry_for", "exchange", "exchange_type", "name",
        "pydantic", "pydantic_context", "pydantic_dump_kwargs", "pydantic_strict", "queue",
        "retry_backoff", "retry_backoff_max", "retry_jitter", "retry_kwargs", "routing_key",
    }
)
_CODA_OPTIONS = frozenset({"cache_key", "rollout"})


class CompatTask(Task[..., Any]):
    """The Coda side of a ``coda.compat`` task: it runs the registered Celery task through
    Celery's tracer (see ``coda.compat._request``) and lets Celery's retry policy decide."""

    # Its Celery task id derives from the supervisor's execution id, which must stay the same
    # across retries: always placed by the supervisor.
    local_start = False

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        resolve: Callable[[], Any],
        bind: bool,
        cache_key: Callable[..., Any] | None,
        rollout: float,
        timeout: float | None,
    ) -> None:
        super().__init__(fn, name=name, timeout=timeout)
        self.is_async = False  # Celery task bodies are plain functions: run them on the pool
        self.bind = bind
        self.cache_key = cache_key
        self.rollout = rollout
        self._resolve = resolve
        params = list(self._signature.parameters.values())
        self._call_signature = self._signature.replace(parameters=params[1:]) if bind else self._signature
        self._tracer: tuple[Any, Any] | None = None
        self._tracer_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<coda.compat.task {self.name}>"

    def celery_task(self) -> Any:
        """The task Celery registered (in the current app), with the Coda mixin."""
        found = self._resolve()
        _inject(found)
        return found

    def check_args(self, args: dict[str, Any]) -> None:
        try:
            self._call_signature.bind(**args)
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None

    def default_cache_key(self, args: dict[str, Any]) -> list[Any] | None:
        if self.cache_key is None:
            return None
        try:
            key = self.cache_key(**args)
        except Exception as exc:
            raise CompatError(f"task {self.name!r}: its cache_key callable raised {exc!r}") from exc
        if type(key) is not list:
            raise DataError(f"task {self.name!r}: its cache_key callable must return a list, not {type(key).__name__}")
        check_data(key, f"the cache_key of task {self.name!r}")
        return key

    def _tracer_for(self, found: Any) -> Any:
        with self._tracer_lock:
            if self._tracer is None or self._tracer[0] is not found:
                self._tracer = (found, _request.build_tracer(found))
            return self._tracer[1]

    def invoke(self, args: dict[str, Any], info: ExecInfo) -> Any:
        found = self.celery_task()
        return _request.run_under_coda(self._tracer_for(found), found, args, info)

    def retry_in(self, exc: BaseException, info: ExecInfo) -> float | None:
        return exc.delay if isinstance(exc, _request.RetryScheduled) else None


class CodaTaskMixin:
    """Mixed into the class of the task Celery registers. ``apply_async`` (so ``delay`` and
    canvas too) captures ``self.retry()`` under Coda and applies the rollout switch; everything
    else, including class-level patches of ``celery.Task``, stays Celery's."""

    name: str

    @property
    def __coda_task__(self) -> CompatTask | None:
        found = REGISTRY.tasks.get(self.name)
        return found if isinstance(found, CompatTask) else None

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: Any = None,
        **options: Any,
    ) -> Any:
        if _request.capture_retry(self.name, task_id, args, kwargs, options):
            return self.AsyncResult(task_id)  # type: ignore[attr-defined]
        definition = self.__coda_task__
        if definition is not None:
            routed = _rollout.route(
                self, definition.rollout, args, kwargs, task_id, {**options, "link": link, "link_error": link_error}
            )
            if routed is not None:
                return routed
        return super().apply_async(  # type: ignore[misc]
            args, kwargs, task_id=task_id, producer=producer, link=link, link_error=link_error, shadow=shadow, **options
        )


_mixed: dict[type, type] = {}
_mixed_lock = threading.Lock()


def _inject(found: Any) -> None:
    """Give the registered task instance a class with the Coda mixin in front. A subclass of
    whatever class Celery built (the app's ``task_cls``, the user's ``base=``) keeps all of its
    behaviour, and works as well for tasks created before ``coda.compat`` saw them."""
    cls = type(found)
    if issubclass(cls, CodaTaskMixin):
        return
    with _mixed_lock:
        mixed = _mixed.get(cls)
        if mixed is None:
            namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
            mixed = type(cls.__name__, (CodaTaskMixin, cls), namespace)
            _mixed[cls] = mixed
        if not issubclass(type(found), CodaTaskMixin):
            found.__class__ = mixed


def _inject_when_created(celery_name: Callable[[Any], str]) -> None:
    """Inject into the task in every app: finalized ones now, the others once they finalize
    (after all their tasks exist). Nothing here evaluates a lazy task."""

    def inject_into(app: Any) -> None:
        found = app._tasks.get(celery_name(app))
        if found is not None:
            _inject(found)

    def on_finalize(app: Any) -> None:
        app.on_after_finalize.connect(lambda sender, **_: inject_into(sender), weak=False)

    celery_state.connect_on_app_finalize(on_finalize)
    for app in celery_state._get_active_apps():
        if app.finalized:
            inject_into(app)


class _Forwarded:
    """A class attribute that reads ``attr`` of the proxied object (``class_value`` on the class)."""

    def __init__(self, attr: str, class_value: str | None) -> None:
        self.attr = attr
        self.class_value = class_value

    def __get__(self, proxy: Any, owner: Any = None) -> Any:
        return self.class_value if proxy is None else getattr(proxy.__wrapped__, self.attr)

    def __set__(self, proxy: Any, value: Any) -> None:
        setattr(proxy.__wrapped__, self.attr, value)


if TYPE_CHECKING:
    _ProxyBase = wrapt.LazyObjectProxy[Any]
else:  # wrapt's proxies are generic for type checkers only
    _ProxyBase = wrapt.LazyObjectProxy


class CompatTaskProxy(_ProxyBase):
    """What ``coda.compat.task`` returns: the Celery task (or Celery's own lazy proxy of it) seen
    through ``wrapt``, plus ``__coda_task__`` for ``spawn_task``. wrapt reads ``__module__`` and
    ``__doc__`` of what it wraps as soon as it has it, which would evaluate Celery's lazy task;
    a lazy wrapt proxy defers that to the first use, as Celery itself does."""

    def __new__(cls, wrapped: Any, definition: CompatTask) -> CompatTaskProxy:
        # Like LazyObjectProxy.__new__ (one class per proxy), but with __module__ and __doc__
        # read from the task on use: a class's own strings would hide the task's.
        namespace = {"__module__": _Forwarded("__module__", __name__), "__doc__": _Forwarded("__doc__", cls.__doc__)}
        return super(wrapt.AutoObjectProxy, cls).__new__(type(cls.__name__, (cls,), namespace))

    def __init__(self, wrapped: Any, definition: CompatTask) -> None:
        super().__init__(lambda: wrapped)
        self._self_definition = definition

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    @property
    def __coda_task__(self) -> CompatTask:
        return self._self_definition

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Celery pickles a task as its name; unpickling gives the registered task.
        return self.__wrapped__.__reduce_ex__(protocol)

    def __reduce__(self) -> Any:
        return self.__wrapped__.__reduce__()


def _check_options(owner: str, options: dict[str, Any]) -> None:
    base = options.get("base")
    if base is not None and not (isinstance(base, type) and issubclass(base, celery.Task)):
        raise RegistrationError(f"{owner}: base= must be a celery.Task subclass, got {base!r}")
    valid = _CELERY_OPTIONS | _CODA_OPTIONS | {a for a in dir(base or celery.Task) if not a.startswith("_")}
    for key in sorted(options):
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RegistrationError(f"{owner}: unknown option {key!r}{hint} (neither Celery nor Coda knows it)")


def _check_coda_options(owner: str, cache_key: Any, rollout: Any) -> float:
    if cache_key is not None and not callable(cache_key):
        raise RegistrationError(f"{owner}: cache_key= takes a callable(**kwargs) -> list, not {cache_key!r}")
    try:
        return _rollout.check_share(rollout, owner)
    except CompatError as exc:
        raise RegistrationError(str(exc)) from None


def _check_bind(owner: str, fn: Callable[..., Any]) -> None:
    params = list(inspect.signature(fn).parameters.values())
    first = params[0].kind if params else None
    if first not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
        raise RegistrationError(
            f"{owner}: bind=True passes the task as the first argument, but "
            f"{fn.__qualname__}{inspect.signature(fn)} has no positional parameter to take it"
        )


def _decorate(fn: Callable[..., Any], options: dict[str, Any]) -> CompatTaskProxy:
    if not inspect.isfunction(fn):
        raise RegistrationError(f"coda.compat.task decorates a function or wraps a Celery task, not {fn!r}")
    if fn.__module__ == "__main__" and "name" not in options:
        raise RegistrationError(f"coda.compat.task {fn.__qualname__}: a task defined in __main__ needs name=")
    # Celery's default name (its gen_task_name without an app: module + function name).
    name = options.get("name") or f"{fn.__module__}.{fn.__name__}"
    owner = f"coda.compat.task {name!r}"
    if type(name) is not str or not name.strip():
        raise RegistrationError(f"{owner}: name must be a non-empty str")
    _check_options(owner, options)
    cache_key = options.pop("cache_key", None)
    rollout = _check_coda_options(owner, cache_key, options.pop("rollout", 0.0))
    if options.get("bind", False):
        _check_bind(owner, fn)
    time_limit = options.get("time_limit")
    if time_limit is not None and (type(time_limit) not in (int, float) or time_limit <= 0):
        raise RegistrationError(f"{owner}: time_limit must be a number > 0, got {time_limit!r}")

    lazy = celery.shared_task(**options)(fn)  # a lazy proxy: nothing is created until used
    definition = CompatTask(
        fn,
        name=name,
        resolve=lazy._get_current_object,
        bind=bool(options.get("bind", False)),
        cache_key=cache_key,
        rollout=rollout,
        timeout=None if time_limit is None else float(time_limit),
    )
    REGISTRY.add_task(definition)

    def celery_name(app: Any) -> str:
        actual: str = options.get("name") or app.gen_task_name(fn.__name__, fn.__module__)
        if actual != name:
            logger.warning("coda.compat.name_mismatch: Celery names %s %r, Coda %r; pass name=", fn.__qualname__, actual, name)
        return actual

    _inject_when_created(celery_name)
    return CompatTaskProxy(lazy, definition)


def _wrap(existing: Any, options: dict[str, Any]) -> CompatTaskProxy:
    extra = sorted(set(options) - _CODA_OPTIONS)
    if extra:
        raise RegistrationError(
            f"coda.compat.task({existing!r}): {', '.join(extra)} cannot be applied to a task Celery already "
            "created; give them to its decorator, or decorate with @coda.compat.task(...) instead"
        )
    try:
        # Wrapping needs the task itself (its name and function); the decorator stays lazy.
        found = existing._get_current_object() if isinstance(existing, celery.local.Proxy) else existing
    except Exception as exc:
        raise RegistrationError(f"coda.compat.task: cannot get the Celery task behind {existing!r}: {exc!r}") from exc
    name = found.name
    owner = f"coda.compat.task {name!r}"
    cache_key = options.get("cache_key")
    rollout = _check_coda_options(owner, cache_key, options.get("rollout", 0.0))
    run = getattr(found, "_orig_run", None) or found.run  # autoretry wraps run in a closure
    bind = inspect.ismethod(run)
    fn = getattr(found, "_decorated_fun", None) or (run.__func__ if bind else run)
    time_limit = getattr(found, "time_limit", None)
    resolve: Callable[[], Any]
    if isinstance(existing, celery.local.Proxy):
        resolve = existing._get_current_object
    else:
        resolve = lambda: existing  # noqa: E731
    definition = CompatTask(
        fn, name=name, resolve=resolve, bind=bind, cache_key=cache_key, rollout=rollout,
        timeout=float(time_limit) if time_limit else None,
    )
    REGISTRY.add_task(definition)
    _inject(found)
    _inject_when_created(lambda app: name)
    return CompatTaskProxy(existing, definition)


def task(*args: Any, **options: Any) -> Any:
    """``@task``, ``@task(**shared_task_options, cache_key=None, rollout=0.0)`` or
    ``task(existing_celery_task, cache_key=None, rollout=0.0)``.

    Every ``@shared_task`` option goes to Celery unchanged. ``cache_key=callable(**kwargs) ->
    list`` gives the memo key when ``spawn_task`` passes none; ``rollout`` is the share of
    ``delay()``/``apply_async()`` calls routed to Coda (see ``coda.compat._rollout``)."""
    if len(args) > 1:
        raise RegistrationError(f"coda.compat.task takes one function or Celery task, got {len(args)} arguments")
    if not args:
        return lambda fn: task(fn, **options)
    target = args[0]
    if isinstance(target, CompatTaskProxy):
        if options:
            raise RegistrationError(f"coda.compat.task: {target!r} is already a coda.compat task")
        return target
    # Checked by type first: isinstance() on Celery's lazy proxy would evaluate it.
    if isinstance(target, celery.local.Proxy) or (not inspect.isfunction(target) and isinstance(target, celery.Task)):
        return _wrap(target, options)
    if isinstance(target, type) and issubclass(target, celery.Task):
        raise RegistrationError(
            f"coda.compat.task: {target.__qualname__} is a task class; wrap the registered task "
            "(app.tasks[name]) instead"
        )
    return _decorate(target, options)
