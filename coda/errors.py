"""Every error Coda raises, under one root.

::

    CodaError
    ├── RegistrationError (ValueError)   bad @task/@workflow: duplicate name, unknown option
    ├── DataError (TypeError)            a value that is not data; names the argument path
    ├── NotInWorkflow (RuntimeError)     coda.context used outside a running workflow
    ├── UnknownName (LookupError)        no worker registered that task or workflow name
    ├── RunNotFound (LookupError)        no such run id (never started, or evicted)
    ├── InvalidState                     e.g. rerun of a run that has not failed
    ├── ProtocolError                    oversized frame, undecodable bytes, version mismatch
    ├── AuthenticationFailed             the supervisor refused the client's token
    ├── SupervisorUnavailable            cannot reach the supervisor, or it went away
    ├── ShuttingDown                     the supervisor is draining and takes no new runs
    ├── BridgeError                      the Celery bridge cannot start or cannot publish a task
    ├── RunTimeout (TimeoutError)        Run.result(timeout=...) elapsed; the run goes on
    ├── CompatError                      coda.compat cannot map a Celery task onto Coda: its cache_key
    │                                    callable failed, a rollout setting is invalid, or the task used
    │                                    a Celery feature Coda cannot honour
    ├── TaskFailed                       a spawned task failed for good
    │   ├── TaskTimeout                  it ran past its timeout and its worker was replaced
    │   └── WorkerLost                   its worker died too many times while running it
    ├── WorkflowFailed                   a run ended failed (or cancelled)
    └── StoreError                       the run store (--store) cannot be used: bad URL, ...
        ├── StoreUnavailable             it cannot be reached or written now (retried)
        └── StoreIncompatible            it holds a newer schema, corrupt or foreign data

Control-flow signals that a user's ``except Exception`` must not swallow derive from
``BaseException`` and live where they are raised (none is public yet).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BridgeError",
    "CodaError",
    "CompatError",
    "DataError",
    "InvalidState",
    "NotInWorkflow",
    "ProtocolError",
    "RegistrationError",
    "RunNotFound",
    "RunTimeout",
    "ShuttingDown",
    "StoreError",
    "StoreIncompatible",
    "StoreUnavailable",
    "SupervisorUnavailable",
    "TaskFailed",
    "TaskTimeout",
    "UnknownName",
    "WorkerLost",
    "WorkflowFailed",
]


class CodaError(Exception):
    """Root of every error Coda raises."""


class RegistrationError(CodaError, ValueError):
    """A task or workflow definition is invalid (raised at decoration time)."""


class DataError(CodaError, TypeError):
    """A value that must be data (JSON-like, or bytes) is not; the message names its path."""


class NotInWorkflow(CodaError, RuntimeError):
    """``coda.context`` was used outside a running workflow."""


class UnknownName(CodaError, LookupError):
    """No worker registered the named task or workflow."""


class RunNotFound(CodaError, LookupError):
    """The supervisor holds no run with that id."""


class InvalidState(CodaError):
    """The request does not fit the run's state (rerun of a running run, ...)."""


class ProtocolError(CodaError):
    """Bytes on a Coda connection could not be framed or decoded."""


class AuthenticationFailed(CodaError):
    """The supervisor rejected the client's token."""


class SupervisorUnavailable(CodaError):
    """The supervisor could not be reached, or the connection to it was lost."""


class ShuttingDown(CodaError):
    """The supervisor is draining and accepts no new runs."""


class BridgeError(CodaError):
    """The Celery bridge cannot start (bad ``--celery-app``, unsupported result backend,
    unreachable broker) or could not publish a task."""


class RunTimeout(CodaError, TimeoutError):
    """Waiting for a run's result took longer than the caller allowed; the run goes on."""


class CompatError(CodaError):
    """``coda.compat`` cannot map a Celery task onto Coda; the message names the task."""


class TaskFailed(CodaError):
    """A spawned task failed after its retries; carries the remote error."""

    def __init__(self, task_name: str, exc_type: str, message: str, traceback: str = "") -> None:
        super().__init__(task_name, exc_type, message, traceback)
        self.task_name = task_name
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"task {self.task_name!r} failed: {self.exc_type}: {self.message}"


class TaskTimeout(TaskFailed):
    """The task ran past its ``timeout``; its worker process was killed and replaced."""


class WorkerLost(TaskFailed):
    """Every worker that ran the task died under it, more often than the supervisor allows."""


class WorkflowFailed(CodaError):
    """A workflow run ended failed or cancelled."""

    def __init__(self, run_id: str, exc_type: str, message: str, traceback: str = "") -> None:
        super().__init__(run_id, exc_type, message, traceback)
        self.run_id = run_id
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"workflow run {self.run_id!r} failed: {self.exc_type}: {self.message}"


class StoreError(CodaError):
    """The run store cannot be used (a bad ``--store`` URL, ...); the message names the store."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or written now (connection lost, disk full); writes are
    retried until it is back, and new runs are refused meanwhile."""


class StoreIncompatible(StoreError):
    """The store holds what this Coda must not touch: a newer schema version, a corrupt file,
    or keys under the prefix that are not a Coda store. Nothing is reset."""
