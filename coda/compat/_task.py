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
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import celery
import wrapt

from coda.compat import _celery, _request, _rollout
from coda.data import check_data
from coda.errors import CompatError, DataError, RegistrationError
from coda.registry import REGISTRY, ExecInfo, Task

__all__ = ["CodaTaskMixin", "CompatTask", "CompatTaskProxy", "adopt", "inject", "task"]

logger = logging.getLogger(__name__)

# Options Celery reads that are not attributes of ``celery.Task`` (``_task_from_fun``'s own
# parameters, ``app.task``'s, autoretry, routing). Celery accepts any other keyword too (it
# becomes an attribute of the task class), and so does coda.compat: an option neither of them
# knows is only worth a debug line, since a typo is then as silent as under Celery.
_CELERY_OPTIONS = frozenset(
    {
        "autoretry_for", "base", "bind", "compression", "delivery_mode", "dont_autoretry_for", "exchange",
        "exchange_type", "expires", "filter", "immediate", "lazy", "mandatory", "name", "priority", "pydantic",
        "pydantic_context", "pydantic_dump_kwargs", "pydantic_strict", "queue", "retry_backoff",
        "retry_backoff_max", "retry_jitter", "retry_kwargs", "routing_key", "shared",
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
        self._tracer: tuple[Any, Any] | None = None
        self._tracer_lock = threading.Lock()
        self._mismatch_told = False

    def __repr__(self) -> str:
        return f"<coda.compat.task {self.name}>"

    def celery_task(self) -> Any:
        """The task Celery registered (in the current app), with the Coda mixin."""
        found = self._resolve()
        if found.name != self.name and not self._mismatch_told:
            # An app whose gen_task_name differs from module + function: Coda cannot know it
            # when the shared task is declared.
            self._mismatch_told = True
            logger.warning(
                "coda.compat.name_mismatch",
                extra={"function": self.qualified_function, "task_name": self.name, "celery_name": found.name,
                       "fix": "pass name="},
            )
        inject(found)
        return found

    def made(self, found: Any) -> bool:
        """Whether Celery made ``found`` from this definition's function (a pydantic task's
        ``run`` wraps it)."""
        fn = _celery.task_function(found)[0]
        return fn is self.fn or getattr(fn, "__wrapped__", None) is self.fn

    @functools.cached_property
    def _call_signature(self) -> inspect.Signature:
        """The signature a spawn's args bind to (without ``self`` under ``bind=True``)."""
        params = list(self._signature.parameters.values())
        return self._signature.replace(parameters=params[1:]) if self.bind else self._signature

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

    def apply_async(self, *call_args: Any, **call_kwargs: Any) -> Any:
        # Whatever is not Coda's to decide goes on to Celery exactly as it came: a class-level
        # patch of ``celery.Task.apply_async`` (mock.patch.object, sentry-python) sees the call
        # the caller made, as without coda.compat.
        parts = dict(zip(_APPLY_ASYNC_PARAMETERS, call_args))
        parts.update(call_kwargs)
        args, kwargs, task_id = parts.get("args"), parts.get("kwargs"), parts.get("task_id")
        options = {k: v for k, v in parts.items() if k not in _APPLY_ASYNC_PARAMETERS}
        if _request.capture_retry(self.name, task_id, args, kwargs, options):
            return self.AsyncResult(task_id)  # type: ignore[attr-defined]
        definition = self.__coda_task__
        if definition is not None:
            options.update(link=parts.get("link"), link_error=parts.get("link_error"))
            routed = _rollout.route(self, definition.rollout, args, kwargs, task_id, options)
            if routed is not None:
                return routed
        return super().apply_async(*call_args, **call_kwargs)  # type: ignore[misc]


# ``celery.Task.apply_async``'s named parameters, in order (the rest is ``**options``).
_APPLY_ASYNC_PARAMETERS = ("args", "kwargs", "task_id", "producer", "link", "link_error", "shadow")


_mixed: dict[type, type] = {}
_mixed_lock = threading.Lock()


def inject(found: Any) -> None:
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


def _inject_into_app(app: Any) -> None:
    """Inject into every task of ``app`` that a ``coda.compat`` definition was made from."""
    for name, found in list(_celery.registered_tasks(app).items()):
        definition = REGISTRY.tasks.get(name)
        if isinstance(definition, CompatTask) and definition.made(found):
            inject(found)


def _on_finalize(app: Any) -> None:
    # Called as the app finalizes, before its pending ``@app.task``s exist: inject once it is done.
    app.on_after_finalize.connect(lambda sender, **_: _inject_into_app(sender), weak=False)


# One callback for every app and every task (not one per task: Celery calls each on every
# finalize, and test suites finalize an app per test).
_celery.on_app_finalize(_on_finalize)


def _inject_into_finalized(name: str, definition: CompatTask, apps: list[Any] | None = None) -> None:
    """Inject into the task ``name`` in every app (of ``apps``) finalized already (those finalized
    later are handled by ``_on_finalize``). Nothing here evaluates a lazy task."""
    for app in _celery.active_apps() if apps is None else apps:
        if app.finalized:
            found = _celery.registered_tasks(app).get(name)
            if found is not None and definition.made(found):
                inject(found)


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
    if not logger.isEnabledFor(logging.DEBUG):
        return
    valid = _CELERY_OPTIONS | _CODA_OPTIONS | {a for a in dir(base or celery.Task) if not a.startswith("_")}
    for key in sorted(set(options) - valid):
        close = difflib.get_close_matches(key, sorted(valid), n=1)
        # Neither Celery's nor Coda's: it becomes an attribute of the task class, as in Celery.
        logger.debug(
            "coda.compat.unknown_option",
            extra={"task_name": owner, "option": key, "did_you_mean": close[0] if close else None},
        )


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


def _timeout_of(owner: str, time_limit: Any) -> float | None:
    """Coda's hard timeout from Celery's ``time_limit`` (None or 0: no limit, as in Celery)."""
    if time_limit is None or time_limit is False or time_limit == 0:
        return None
    if type(time_limit) not in (int, float) or time_limit < 0:
        raise RegistrationError(f"{owner}: time_limit must be a number >= 0 or None, got {time_limit!r}")
    return float(time_limit)


def _decorate(fn: Callable[..., Any], options: dict[str, Any], app: Any = None) -> Any:
    """``@task(**options)`` over ``fn``: a shared task (``app`` None, as ``@shared_task``) or a
    task of ``app`` (as ``@app.task``), handed to Celery's own decorator unchanged."""
    if not inspect.isfunction(fn):
        raise RegistrationError(f"coda.compat.task decorates a function or wraps a Celery task, not {fn!r}")
    given = options.get("name")
    if app is not None:
        name = given or app.gen_task_name(fn.__name__, fn.__module__)
    elif fn.__module__ == "__main__" and not given:
        raise RegistrationError(f"coda.compat.task {fn.__qualname__}: a task defined in __main__ needs name=")
    else:
        # Celery's default name (its gen_task_name without an app: module + function name).
        name = given or f"{fn.__module__}.{fn.__name__}"
    owner = f"coda.compat.task {name!r}"
    if type(name) is not str or not name.strip():
        raise RegistrationError(f"{owner}: name must be a non-empty str")
    _check_options(owner, options)
    celery_options = {k: v for k, v in options.items() if k not in _CODA_OPTIONS}
    rollout = _check_coda_options(owner, options.get("cache_key"), options.get("rollout", 0.0))
    if options.get("bind", False):
        _check_bind(owner, fn)
    timeout = _timeout_of(owner, options.get("time_limit"))

    if app is None:
        created = _celery.ORIGINAL_SHARED_TASK(**celery_options)(fn)  # a lazy proxy
    else:
        created = _celery.ORIGINAL_APP_TASK(app, **celery_options)(fn)  # lazy until the app finalizes
    # Celery's execv mode calls (the installed) shared_task itself. By type: isinstance() on a
    # lazy proxy evaluates it, which would read the app's configuration too early.
    if issubclass(type(created), CompatTaskProxy):
        return created
    definition = CompatTask(
        fn,
        name=name,
        resolve=_resolver(created),
        bind=bool(options.get("bind", False)),
        cache_key=options.get("cache_key"),
        rollout=rollout,
        timeout=timeout,
    )
    REGISTRY.add_task(definition)
    # Celery creates a shared task in every finalized app at once, an @app.task only in its app
    # (other apps create theirs when they finalize, where _on_finalize injects).
    _inject_into_finalized(name, definition, None if app is None else [app])
    return CompatTaskProxy(created, definition)


def _resolver(created: Any) -> Callable[[], Any]:
    if _celery.is_lazy(created):
        return lambda: _celery.current_object(created)
    return lambda: created


def _wrap(existing: Any, options: dict[str, Any]) -> CompatTaskProxy:
    extra = sorted(set(options) - _CODA_OPTIONS)
    if extra:
        raise RegistrationError(
            f"coda.compat.task({existing!r}): {', '.join(extra)} cannot be applied to a task Celery already "
            "created; give them to its decorator, or decorate with @coda.compat.task(...) instead"
        )
    try:
        # Wrapping needs the task itself (its name and function); the decorator stays lazy.
        found = _celery.current_object(existing) if _celery.is_lazy(existing) else existing
    except Exception as exc:
        raise RegistrationError(f"coda.compat.task: cannot get the Celery task behind {existing!r}: {exc!r}") from exc
    definition = adopt(found, _resolver(existing), options.get("cache_key"), options.get("rollout", 0.0))
    return CompatTaskProxy(existing, definition)


def adopt(
    found: Any, resolve: Callable[[], Any] | None = None, cache_key: Any = None, rollout: Any = 0.0
) -> CompatTask:
    """Make ``found``, a task Celery created, a ``coda.compat`` task: registered with Coda and
    with the mixin."""
    fn, bound = _celery.task_function(found)
    name = found.name
    owner = f"coda.compat.task {name!r}"
    share = _check_coda_options(owner, cache_key, rollout)
    time_limit = getattr(found, "time_limit", None)
    definition = CompatTask(
        fn,
        name=name,
        resolve=resolve or (lambda: found),
        bind=bound,
        cache_key=cache_key,
        rollout=share,
        timeout=float(time_limit) if isinstance(time_limit, (int, float)) and time_limit > 0 else None,
    )
    REGISTRY.add_task(definition)
    inject(found)
    _inject_into_finalized(name, definition)
    return definition


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
    if _celery.is_lazy(target) or (not inspect.isfunction(target) and isinstance(target, celery.Task)):
        return _wrap(target, options)
    if isinstance(target, type) and issubclass(target, celery.Task):
        raise RegistrationError(
            f"coda.compat.task: {target.__qualname__} is a task class; wrap the registered task "
            "(app.tasks[name]) instead"
        )
    return _decorate(target, options)
