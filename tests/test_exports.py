"""The public surface: one explicit, sorted __all__ per package."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import coda

PUBLIC = [
    "Client", "CodaError", "RunHandle", "RunStatus", "SyncClient", "SyncRunHandle", "Task",
    "TaskFailed", "TaskTimeout", "Workflow", "WorkflowFailed", "context", "task", "workflow",
]


def test_public_names() -> None:
    assert coda.__all__ == PUBLIC
    for name in PUBLIC:
        assert hasattr(coda, name)


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(coda.__path__, "coda.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", _modules())
def test_every_module_has_a_sorted_all_of_real_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which it does not define"


def test_errors_derive_from_one_root() -> None:
    from coda import errors

    vocabulary = {"ErrorInfo", "ErrorKind", "KIND_CLASSES", "class_named", "from_wire", "refusal", "to_wire", "type_name"}
    classes = [name for name in errors.__all__ if name not in vocabulary]
    assert set(errors.__all__) - set(classes) == vocabulary
    for item in classes:
        cls = getattr(errors, item)
        assert isinstance(cls, type) and issubclass(cls, errors.CodaError), item
        assert item in (errors.__doc__ or ""), f"{item} is missing from the tree in coda.errors' docstring"
