from __future__ import annotations

import asyncio

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


def test_two_functions_under_one_name_fail_naming_both() -> None:
    @coda.task(name="tests.registry.dup")
    def first() -> None: ...

    with pytest.raises(RegistrationError) as err:
        @coda.task(name="tests.registry.dup")
        def second() -> None: ...

    assert "tests.registry.dup" in str(err.value)
    assert "first" in str(err.value) and "second" in str(err.value)


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
