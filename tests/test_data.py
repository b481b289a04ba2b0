from __future__ import annotations

from typing import Any

import pytest

from coda.data import check_data
from coda.errors import DataError


@pytest.mark.parametrize("value", [None, True, 1, -(2**63), 2**64 - 1, 1.5, "s", b"b", [1, [2]], {"a": {"b": [None]}}, {}])
def test_data_is_accepted(value: Any) -> None:
    check_data(value, "args")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"ts": object()}, "args['ts'] is a object"),
        ({"event": {"tags": (1, 2)}}, "args['event']['tags'] is a tuple, which is not data (use a list)"),
        ([1, {2}], "args[1] is a set"),
        ({1: "x"}, "args has a key 1 of type int; keys must be str"),
        (2**64, "args is an int outside 64 bits"),
    ],
)
def test_non_data_names_its_path(value: Any, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        check_data(value, "args")


def test_data_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        check_data({"a": {1}}, "args")


def test_cycles_are_refused() -> None:
    a: list[Any] = []
    a.append(a)
    with pytest.raises(DataError, match="nested deeper"):
        check_data(a, "args")
