from __future__ import annotations

from typing import Any

import pytest

from coda.keys import memo_key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (["ab", "c"], ["a", "bc"]),  # no concatenation ambiguity
        ([1], [1.0]),
        ([1], [True]),
        ([1], ["1"]),
        ([b"x"], ["x"]),
        ([None], []),
        ([["a", "b"]], ["a", "b"]),
        ([{"a": 1}], [[["a", 1]]]),  # a dict is not its list of pairs
        ([["l", ["x"]]], [["x"]]),  # nor is a list confusable with the container tag
    ],
)
def test_different_keys_differ(a: list[Any], b: list[Any]) -> None:
    assert memo_key("run", "task", a) != memo_key("run", "task", b)


def test_dict_order_does_not_matter() -> None:
    assert memo_key("r", "t", [{"a": 1, "b": [{"y": 2, "x": 1}]}]) == memo_key("r", "t", [{"b": [{"x": 1, "y": 2}], "a": 1}])


def test_run_and_task_are_part_of_the_key() -> None:
    base = memo_key("r", "t", ["k"])
    assert base != memo_key("r2", "t", ["k"]) and base != memo_key("r", "t2", ["k"])
    assert memo_key("r", "t", ["k"]) == base  # stable
