"""Canonical memo keys.

A memo key is a digest of an unambiguous encoding of (run id, task name, cache key items):
msgpack is length-prefixed, so ``["ab", "c"]`` and ``["a", "bc"]`` encode differently, and
dict items are sorted so that key order does not matter.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

__all__ = ["memo_key"]


def memo_key(run_id: str, task_name: str, cache_key: list[Any]) -> bytes:
    """The memo key for ``cache_key`` of ``task_name`` within run ``run_id``."""
    # A dict becomes a list of pairs, so tag containers to keep [[k, v]] and {k: v} apart.
    encoded = msgpack.packb(
        ["coda-memo-1", run_id, task_name, [_tagged(item) for item in cache_key]],
        use_bin_type=True,
    )
    return hashlib.blake2b(encoded, digest_size=20).digest()


def _tagged(value: Any) -> Any:
    if type(value) is dict:
        return ["d", [[k, _tagged(value[k])] for k in sorted(value)]]
    if type(value) is list:
        return ["l", [_tagged(v) for v in value]]
    return value
