"""The error vocabulary: every Coda error that crosses the wire has one kind, each kind one
class, and an error goes to the wire and back as the same exception."""

from __future__ import annotations

import inspect

import pytest

from coda import errors
from coda.errors import ErrorInfo, ErrorKind, KIND_CLASSES, class_named, from_wire, refusal, to_wire
from coda.framing import decode_message, encode_message
from coda.protocol import ErrorReply, SpawnFailed

# Raised where they happen and never sent as such: a task raising one reports it as its own
# failure (ErrorKind.ERROR, exc_type naming the class).
LOCAL_ONLY = {
    errors.CodaError,
    errors.RegistrationError,  # at decoration time
    errors.NotInWorkflow,  # coda.context in the caller
    errors.SupervisorUnavailable,  # the client's own connection
    errors.RunTimeout,  # the client's own wait
    errors.BridgeError,  # startup, or a publish failure reported as the task's ERROR
    errors.CompatError,  # coda.compat, in the caller
}


def test_every_coda_error_either_crosses_the_wire_with_a_kind_or_is_local() -> None:
    defined = {cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.CodaError)}
    assert defined == set(KIND_CLASSES.values()) | LOCAL_ONLY
    assert not set(KIND_CLASSES.values()) & LOCAL_ONLY
    assert len(set(KIND_CLASSES.values())) == len(KIND_CLASSES) == len(ErrorKind)  # one class per kind


@pytest.mark.parametrize(("kind", "cls"), list(KIND_CLASSES.items()), ids=[k.value for k in KIND_CLASSES])
def test_kind_to_class_and_back(kind: ErrorKind, cls: type[errors.CodaError]) -> None:
    info = refusal(kind, "it went wrong")
    assert info == ErrorInfo(f"coda.errors.{cls.__qualname__}", "it went wrong", "", kind)
    # Across real frames, to the exception the receiver raises, and to the wire again.
    decoded = decode_message(encode_message(SpawnFailed(1, "t", info)))
    assert type(decoded) is SpawnFailed and decoded.error == info and decoded.error.kind is kind
    exc = from_wire(decoded.error, "what.failed")
    assert type(exc) is cls
    assert to_wire(exc).kind is kind
    if issubclass(cls, errors.TaskFailed):
        assert (exc.task_name, exc.exc_type, exc.message) == ("what.failed", info.exc_type, "it went wrong")
    elif cls is errors.WorkflowFailed:
        assert (exc.run_id, exc.message) == ("what.failed", "it went wrong")
    else:
        assert str(exc) == "it went wrong"
    assert class_named(info.exc_type) is cls


def test_user_exceptions_cross_as_error_with_their_type_and_traceback() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        info = to_wire(exc)
    assert (info.exc_type, info.message, info.kind) == ("KeyError", "'missing'", ErrorKind.ERROR)
    assert info.traceback.startswith("Traceback") and "raise KeyError" in info.traceback
    failed = from_wire(info, "t.lookup")
    assert type(failed) is errors.TaskFailed and str(failed) == "task 't.lookup' failed: KeyError: 'missing'"


def test_a_forced_kind_wins_and_a_remote_traceback_is_kept() -> None:
    remote = errors.TaskFailed("t.inner", "ValueError", "bad", "Traceback (remote)\n")
    info = to_wire(remote, ErrorKind.ERROR)
    assert info.kind is ErrorKind.ERROR and info.exc_type == "coda.errors.TaskFailed"
    assert info.traceback.endswith("Remote traceback of task 't.inner':\nTraceback (remote)\n")
    # Not raised: nothing of this process's stack to carry.
    assert to_wire(errors.UnknownName("no such task")).traceback == ""


def test_client_replies_decode_to_the_exception_of_their_kind() -> None:
    reply = decode_message(encode_message(ErrorReply(3, refusal(ErrorKind.NOT_FOUND, "no run 'x'"))))
    assert type(reply) is ErrorReply
    with pytest.raises(errors.RunNotFound, match="no run 'x'"):
        raise from_wire(reply.error)


def test_a_cancelled_spawn_is_an_invalid_state() -> None:
    assert isinstance(from_wire(refusal(ErrorKind.CANCELLED, "its run was cancelled")), errors.InvalidState)
    assert class_named("builtins.ValueError") is None and class_named("coda.errors.CodaError") is None
