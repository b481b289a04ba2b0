"""From what a user types to a store: :func:`open_store` for ``--store`` / ``CODA_STORE`` and
:func:`parse_duration` for ``--retention``.

Store URLs::

    memory  memory://                    the in-memory store (the default; nothing survives)
    sqlite:///var/lib/coda/coda.db       SQLite, absolute path (sqlite:////path works too)
    sqlite:relative/coda.db              SQLite, path relative to the working directory
    ...?synchronous=full                 SQLite: fsync at every commit (see coda.store.sqlite)
    redis://[:password@]host:6379/2      Redis database 2 (rediss:// for TLS)
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qs, urlsplit

from coda.errors import StoreError
from coda.store.base import Store
from coda.store.memory import MemoryStore

__all__ = ["DEFAULT_PREFIX", "open_store", "parse_duration", "store_from_url"]

DEFAULT_PREFIX = "coda"
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_FORMS = "a number of seconds or a number with s, m, h or d (600, 90s, 10m, 36h, 7d)"


def parse_duration(text: str | float, what: str = "--retention") -> float:
    """Seconds in ``text``: ``600``, ``90s``, ``10m``, ``36h``, ``7d`` (decimals allowed).
    Raises :class:`~coda.errors.StoreError` naming ``what`` and the accepted forms."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(str(text).lower())
        if match is None:
            raise StoreError(f"{what} {text!r} is not a duration: give {_FORMS}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise StoreError(f"{what} {text!r} is not a duration: give {_FORMS}")
    return seconds


def store_from_url(url: str, *, prefix: str = DEFAULT_PREFIX, retention: float = 600.0) -> Store:
    """The store ``url`` names, not yet opened. Bad URLs raise :class:`StoreError` naming the
    URL and what is wrong with it."""
    text = url.strip()
    scheme = text.partition(":")[0].lower() if ":" in text else text.lower()
    if scheme == "memory":
        if text.lower() not in ("memory", "memory:", "memory://"):
            raise StoreError(f"store URL {url!r}: the memory store takes no path or options (use 'memory')")
        return MemoryStore(retention=retention)
    if scheme == "sqlite":
        from coda.store.sqlite import SQLiteStore

        path, synchronous = _sqlite_parts(url, text)
        return SQLiteStore(path, synchronous=synchronous, retention=retention)
    if scheme in ("redis", "rediss", "unix"):
        from coda.store.redis import RedisStore

        _check_redis(url, text)
        return RedisStore(text, prefix=prefix, retention=retention)
    raise StoreError(f"store URL {url!r}: unknown scheme {scheme!r}; use memory, sqlite:///PATH or redis://HOST:PORT/DB")


def open_store(url: str, *, prefix: str = DEFAULT_PREFIX, retention: float = 600.0) -> Store:
    """The store ``url`` names, opened: its schema created or checked (see :meth:`Store.open`)."""
    store = store_from_url(url, prefix=prefix, retention=retention)
    try:
        store.open()
    except BaseException:
        store.close()
        raise
    return store


def _sqlite_parts(url: str, text: str) -> tuple[str, str]:
    rest = text[len("sqlite:"):]
    query = ""
    if "?" in rest:
        rest, _, query = rest.partition("?")
    if rest.startswith("//"):
        after = rest[2:]
        if not after.startswith("/"):
            raise StoreError(
                f"store URL {url!r}: a sqlite URL has no host; use sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH"
            )
        path = "/" + after.lstrip("/")
    else:
        path = rest
    if not path or path.endswith("/"):
        raise StoreError(f"store URL {url!r}: no database file named (sqlite:///var/lib/coda/coda.db)")
    if path == ":memory:" or path.startswith("file:"):
        raise StoreError(f"store URL {url!r}: use the 'memory' store for a store that is not kept; sqlite needs a file")
    options = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(options) - {"synchronous"})
    if unknown:
        raise StoreError(f"store URL {url!r}: unknown option(s) {', '.join(unknown)}; sqlite takes only synchronous=normal|full")
    synchronous = options.get("synchronous", ["normal"])[-1].lower()
    if synchronous not in ("normal", "full"):
        raise StoreError(f"store URL {url!r}: synchronous={synchronous!r}; use synchronous=normal or synchronous=full")
    return path, synchronous


def _check_redis(url: str, text: str) -> None:
    parts = urlsplit(text)
    if parts.scheme == "unix":
        if not parts.path:
            raise StoreError(f"store URL {url!r}: a unix URL needs the socket path (unix:///run/redis.sock?db=2)")
        return
    try:
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise StoreError(f"store URL {url!r}: {exc}") from None
    if not parts.hostname:
        raise StoreError(f"store URL {url!r}: no host (redis://HOST:PORT/DB)")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise StoreError(f"store URL {url!r}: the database {db!r} is not a number (redis://HOST:PORT/2)")
