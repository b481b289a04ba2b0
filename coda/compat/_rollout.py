"""The rollout switch: which share of a task's ``delay()``/``apply_async()`` calls run on Coda.

A share is a number in [0, 1]. Where it comes from, first match wins:

1. a source installed with ``configure_rollout(source=callable)``: ``callable(task_name)`` returns
   a share or None, read on every call (plug in Django settings or an options store to change
   shares without a deploy);
2. ``$CODA_COMPAT_ROLLOUT``: ``"name=share,other.name=share,*=share"`` (``*`` matches any task);
3. the task's ``rollout=`` decorator argument;
4. 0: nothing changes until the user says so.

Decisions draw from one ``random.Random`` per process, seeded by ``configure_rollout(seed=)`` or
``$CODA_COMPAT_ROLLOUT_SEED`` (else unseeded), so a test can predict them.

Only plain calls are routed. Calls that Celery must carry out itself stay on Celery at any
share: ``task_always_eager``, canvas (``link``, ``link_error``, chains, groups, chords), a
``countdown``/``eta``/``expires``, a Celery ``retry()``, positional arguments that cannot be
named, and arguments that are not data (see ``coda.data``).
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

from coda.compat._result import RUN_TASK, CodaAsyncResult, sync_client
from coda.data import check_data
from coda.errors import CompatError, DataError

__all__ = ["ENV_ROLLOUT", "ENV_SEED", "check_share", "configure_rollout", "route", "share_for"]

logger = logging.getLogger(__name__)

ENV_ROLLOUT = "CODA_COMPAT_ROLLOUT"
ENV_SEED = "CODA_COMPAT_ROLLOUT_SEED"

# Options that only Celery can honour: a call carrying one stays on Celery.
_CELERY_ONLY = frozenset(
    {"chain", "chord", "group_id", "group_index", "countdown", "eta", "expires", "retries", "replaced_task_nesting"}
)

_lock = threading.Lock()
_rng: random.Random | None = None
_source: Callable[[str], float | None] | None = None
_parsed_env: tuple[str, dict[str, float]] = ("", {})


def check_share(share: Any, where: str) -> float:
    """``share`` as a float in [0, 1], or :class:`CompatError` naming ``where`` it came from."""
    if type(share) not in (int, float) or not 0 <= share <= 1:
        raise CompatError(f"{where}: a rollout share is a number from 0 to 1, got {share!r}")
    return float(share)


def configure_rollout(
    *, source: Callable[[str], float | None] | None = None, seed: int | str | None = None
) -> None:
    """Install a share ``source`` (``source(task_name) -> share | None``; None removes it) and
    reseed the decisions (``seed=None``: from ``$CODA_COMPAT_ROLLOUT_SEED``, else unseeded)."""
    global _rng, _source
    if source is not None and not callable(source):
        raise CompatError(f"configure_rollout(source=...) takes a callable, not {source!r}")
    with _lock:
        _source = source
        _rng = random.Random(seed) if seed is not None else None


def _env_shares() -> dict[str, float]:
    global _parsed_env
    raw = os.environ.get(ENV_ROLLOUT, "")
    if raw == _parsed_env[0]:
        return _parsed_env[1]
    shares: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, value = item.rpartition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or not name.strip():
            raise CompatError(f"${ENV_ROLLOUT}: {item!r} is not name=share")
        shares[name.strip()] = check_share(share, f"${ENV_ROLLOUT} entry {item!r}")
    _parsed_env = (raw, shares)
    return shares


def share_for(name: str, default: float) -> float:
    """The share of ``name``'s calls to route to Coda now."""
    source = _source
    if source is not None:
        share = source(name)
        if share is not None:
            return check_share(share, f"rollout source for task {name!r}")
    env = _env_shares()
    if name in env:
        return env[name]
    if "*" in env:
        return env["*"]
    return default


def _chosen(share: float) -> bool:
    global _rng
    if share <= 0:
        return False
    if share >= 1:
        return True
    with _lock:
        if _rng is None:
            seed = os.environ.get(ENV_SEED)
            _rng = random.Random(seed) if seed is not None else random.Random()
        return _rng.random() < share


def _as_kwargs(task: Any, args: Any, kwargs: Any) -> dict[str, Any] | None:
    """The call as keyword arguments of the task's function, or None when it cannot be."""
    try:
        bound = inspect.signature(task.run).bind(*(args or ()), **(kwargs or {}))
    except (TypeError, ValueError):
        return None  # Celery raises its own TypeError for a bad call
    named: dict[str, Any] = {}
    for param_name, value in bound.arguments.items():
        kind = bound.signature.parameters[param_name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind is inspect.Parameter.POSITIONAL_ONLY:
            return None
        else:
            named[param_name] = value
    return named


def route(
    task: Any, default_share: float, args: Any, kwargs: Any, task_id: str | None, options: dict[str, Any]
) -> CodaAsyncResult | None:
    """Start ``task`` on Coda when the switch says so and the call allows; else None (Celery)."""
    if task.app.conf.task_always_eager or _CELERY_ONLY.intersection(options):
        return None
    if options.get("link") or options.get("link_error"):
        return None
    if not _chosen(share_for(task.name, default_share)):
        return None
    named = _as_kwargs(task, args, kwargs)
    if named is None:
        logger.info("coda.compat.rollout.not_routable", extra={"task_name": task.name, "reason": "its arguments cannot be named"})
        return None
    try:
        check_data(named, "kwargs")
    except DataError as exc:
        logger.info("coda.compat.rollout.not_routable", extra={"task_name": task.name, "reason": str(exc)})
        return None
    run_id = task_id or str(uuid.uuid4())
    client = sync_client()
    handle = client.start(RUN_TASK, {"task": task.name, "kwargs": named}, run_id=run_id)
    logger.debug("coda.compat.rollout.routed", extra={"task_name": task.name, "run_id": handle.run_id})
    return CodaAsyncResult(handle.run_id, task.name, task.app, client)
