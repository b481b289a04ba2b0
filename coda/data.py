"""What counts as data: the values that may cross a process boundary as args, results and keys.

Data is ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``, ``list`` of data and
``dict`` with ``str`` keys and data values. Tuples, sets and objects are refused rather than
silently converted, so a value reads back exactly as it was written.
"""

from __future__ import annotations

from typing import Any

from coda.errors import DataError

__all__ = ["check_data"]

_SCALARS = (str, int, float, bool, bytes, type(None))
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
# Deep nesting is almost always a cycle or a mistake; msgpack's own limit is similar.
_MAX_DEPTH = 256


def check_data(value: Any, path: str) -> None:
    """Raise :class:`DataError` naming the first path under ``path`` that holds a non-data value."""
    # Fast path for the common flat dict of scalars.
    if type(value) is dict and all(
        type(k) is str and type(v) in _SCALARS and type(v) is not int for k, v in value.items()
    ):
        return
    _check(value, path, 0)


def _check(value: Any, path: str, depth: int) -> None:
    kind = type(value)
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise DataError(f"{path} is an int outside 64 bits ({value}); pass it as a str")
        return
    if kind in _SCALARS:
        return
    if depth >= _MAX_DEPTH:
        raise DataError(f"{path} is nested deeper than {_MAX_DEPTH} levels (a cycle?)")
    if kind is list:
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise DataError(f"{path} has a key {key!r} of type {type(key).__name__}; keys must be str")
            _check(item, f"{path}[{key!r}]", depth + 1)
        return
    hint = " (use a list)" if kind is tuple else ""
    raise DataError(f"{path} is a {kind.__qualname__}, which is not data{hint}: {value!r:.80}")
