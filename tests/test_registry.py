from __future__ import annotations

import asyncio
import logging

import pytest

import coda
from coda.errors import NotInWorkflow, RegistrationError
from coda.registry import REGISTRY


def test_decorated_functions_stay_callable() -> None:
    @coda.task(name="tests.registry.double")
    def double(x: int) -> int:
        """Doubles."""
        return 2 * x

    @coda.workflow(name="tests.registry.wf")
    async def wf(x: int) -> int:
        return x

    assert double(2) == 4 and double.__doc__ == "Doubles." and double.__name__ == "double"
    assert asyncio.run(wf(3)) == 3
    assert REGISTRY.tasks["tests.registry.double"] is double


def test_default_name_is_module_and_qualname() -> None:
    @coda.task
    def named() -> None: ...

    assert named.name == f"{__name__}.test_default_name_is_module_and_qualname.<locals>.named"


REPLACED = "coda.registry.name_replaced"


def _replaced(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(REPLACED)]


def test_two_live_functions_under_one_name_warn_naming_both(caplog: pytest.LogCaptureFixture) -> None:
    @coda.task(name="tests.registry.dup")
    def first() -> str:
        return "first"

    @coda.task(name="tests.registry.dup")
    def second() -> str:
        return "second"

    # The name runs the latest definition, as Celery's register_task does; both functions are
    # still held here, so they would race in one worker: that is worth a warning naming both.
    assert REGISTRY.tasks["tests.registry.dup"] is second
    [record] = _replaced(caplog)
    assert record.levelno == logging.WARNING and record.task_name == "tests.registry.dup"  # type: ignore[attr-defined]
    assert (record.earlier, record.now) == (first.qualified_function, second.qualified_function)  # type: ignore[attr-defined]
    assert record.earlier.endswith("<locals>.first") and record.now.endswith("<locals>.second")  # type: ignore[attr-defined]
    assert first() == "first"  # each stays callable as its function


def test_redefinition_replaces_silently_when_the_earlier_is_gone_or_the_same(caplog: pytest.LogCaptureFixture) -> None:
    def declare(tag: str) -> coda.Task[[], str]:
        @coda.task(name="tests.registry.per_test")
        def body() -> str:  # one qualified function, declared anew each time (a task per test)
            return tag

        return body

    one = declare("one")
    two = declare("two")
    assert REGISTRY.tasks["tests.registry.per_test"] is two and two() == "two" and one() == "one"

    def make_gone() -> None:
        @coda.task(name="tests.registry.gone")
        def gone() -> None: ...

    make_gone()  # nothing holds it once the function returned

    @coda.task(name="tests.registry.gone")
    def successor() -> int:
        return 1

    assert REGISTRY.tasks["tests.registry.gone"] is successor
    assert _replaced(caplog) == []


def test_workflows_follow_the_same_rule(caplog: pytest.LogCaptureFixture) -> None:
    @coda.workflow(name="tests.registry.wf_dup")
    async def first() -> None: ...

    @coda.workflow(name="tests.registry.wf_dup")
    async def second() -> None: ...

    assert REGISTRY.workflows["tests.registry.wf_dup"] is second
    assert [r.kind for r in _replaced(caplog)] == ["workflow"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": 3}, "unknown option(s) retries; valid options are max_retries, name, retry_delay, retry_on, timeout"),
        ({"max_retries": -1}, "max_retries must be an int >= 0"),
        ({"retry_delay": "1s"}, "retry_delay must be a number >= 0"),
        ({"retry_on": "ValueError"}, "retry_on must hold exception classes"),
        ({"timeout": 0}, "timeout must be a number > 0"),
        ({"name": ""}, "name must be a non-empty str"),
    ],
)
def test_bad_task_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(RegistrationError) as err:
        coda.task(**options)(lambda: None)  # type: ignore[call-overload]
    assert message in str(err.value)


def test_workflow_must_be_async() -> None:
    with pytest.raises(RegistrationError, match="needs an async def"):
        @coda.workflow
        def sync_wf() -> None: ...  # type: ignore[arg-type]


def test_one_decorator_object_can_declare_two_tasks() -> None:
    deco = coda.task(max_retries=2)
    a = deco(lambda: 1)
    assert a.max_retries == 2


def test_context_outside_a_workflow() -> None:
    with pytest.raises(NotInWorkflow, match="coda.context.run_id"):
        coda.context.run_id  # noqa: B018
    with pytest.raises(NotInWorkflow, match="spawn_task"):
        coda.context.spawn_task("x", args={})
    with pytest.raises(AttributeError):
        coda.context.nope  # type: ignore[attr-defined]  # noqa: B018
