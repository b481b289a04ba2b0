"""RedisStore: the shared durable store (``--store redis://HOST:PORT/DB``), with redis-py.

Keys, all under ``{prefix}:`` (``--store-prefix``, default ``coda``; two deployments on one
Redis use two prefixes, which must not nest: ``coda`` and ``coda:b`` would see each other)::

    {prefix}:schema          string "coda-store/<version>": the marker and schema version
    {prefix}:run:{<run_id>}  hash: r (the run record), m:<memo key hex>, s:<attempt>:<seq>
                             (steps), t:<attempt>:<seq> (timers)
    {prefix}:active          set of the ids of runs not finished
    {prefix}:idx:created     zset run id → created_at (listing, newest first)
    {prefix}:idx:expire      zset run id → when its hash expires (sweep tidies the indexes)

A batch is one ``MULTI … EXEC`` — one ``HSET`` per run however many steps, memo entries and
timers it wrote, plus the index updates of runs that start or finish — built and sent by
:meth:`RedisStore._write`, the one place that writes. A finished run's hash gets
``PEXPIREAT finished_at + retention`` in the batch that finishes it, so Redis itself drops it;
a rerun ``PERSIST``\\ s it again.

Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` a commit that
returned is on disk; with ``everysec`` (Redis's default for AOF) it survives a restart or a
SIGKILL of the server in practice, but an OS crash or power loss may lose the last ~1–2 s of
commits; with no AOF (RDB snapshots only) a restart loses everything since the last snapshot.

Redis Cluster: every per-run key carries the hash tag ``{<run_id>}``, but a batch spans runs
and the shared index keys, which a cluster puts in other slots; a cluster is not supported.

Writes after a run finished must come with its run record (``put_run``): that is what sets
the hash's expiry, and a bare step or memo write to a run whose hash expired would otherwise
leave fields with no expiry behind.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from coda.errors import StoreError, StoreIncompatible, StoreUnavailable
from coda.store import codec
from coda.store.base import (
    Batch,
    BatchResult,
    LoadedRun,
    RunQuery,
    RunRecord,
    SCHEMA_VERSION,
    StepRecord,
    Store,
    TimerRecord,
)

__all__ = ["RedisStore"]

logger = logging.getLogger(__name__)

_MARKER = "coda-store/"
_CHUNK = 200
_TRANSIENT_REPLIES = ("MISCONF", "OOM", "LOADING", "READONLY", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "NOAUTH")
_SCAN_PATTERN = re.compile(r"([\\*?\[\]])")


def _mask(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisStore(Store):
    """A store under ``prefix`` in one Redis database. ``client``: an existing redis-py client
    (tests pass a fakeredis one); by default one is made from ``url``, with a single quick
    reconnect per command (the writer does the backing off, and reports the outage)."""

    def __init__(self, url: str, *, prefix: str = "coda", retention: float = 600.0, client: Any = None) -> None:
        super().__init__(retention=retention)
        if not prefix or any(c in prefix for c in "{} \n\r\t"):
            raise StoreError(f"store prefix {prefix!r}: must be non-empty, without spaces or braces")
        self.url = url
        self.prefix = prefix
        if client is None:
            try:
                client = redis.Redis.from_url(
                    url, socket_connect_timeout=5, socket_timeout=10, retry=Retry(NoBackoff(), 1), health_check_interval=30
                )
            except ValueError as exc:
                raise StoreError(f"store URL {_mask(url)!r}: {exc}") from None
        self._client = client
        self._schema_key = f"{prefix}:schema"
        self._active_key = f"{prefix}:active"
        self._created_key = f"{prefix}:idx:created"
        self._expire_key = f"{prefix}:idx:expire"
        # Runs this store has put in the active set since it opened: their later puts skip the
        # index commands (idempotent either way: after a restart the first put sends them again).
        self._indexed: set[str] = set()
        # Set by a connection error: before the next write, check that the schema key is still
        # there — a Redis restarted without persistence comes back empty, and writing into it
        # as if nothing happened would be a silent reset.
        self._recheck = False

    def describe(self) -> str:
        return f"{_mask(self.url)} (prefix {self.prefix!r})"

    def run_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{{{run_id}}}"

    def _error(self, exc: Exception, doing: str) -> StoreError:
        where = f"{self.describe()}: {doing}: {type(exc).__name__}: {exc}"
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
            self._recheck = True
            return StoreUnavailable(where)
        if isinstance(exc, redis.ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES):
            self._recheck = True
            return StoreUnavailable(where)
        if isinstance(exc, StoreIncompatible):
            return StoreIncompatible(f"{self.describe()}: {doing}: {exc}")
        if isinstance(exc, redis.ResponseError):
            return StoreIncompatible(f"{where}; the keys under the prefix are not what Coda wrote")
        return StoreError(where)

    # -- schema --------------------------------------------------------------------------------

    def open(self) -> None:
        try:
            self._check_schema()
        except (redis.RedisError, OSError) as exc:
            raise self._error(exc, "cannot open") from None
        logger.info("coda.store.opened", extra={"store": self.describe()})

    def _check_schema(self) -> None:
        for _ in range(2):
            raw = self._client.get(self._schema_key)
            if raw is not None:
                self._check_version(raw)
                return
            foreign = self._any_key()
            if foreign is not None:
                raise StoreIncompatible(
                    f"{self.describe()}: the prefix holds keys that are not a Coda store (e.g. {foreign!r}) "
                    "and no schema key; choose another --store-prefix"
                )
            if self._client.set(self._schema_key, f"{_MARKER}{SCHEMA_VERSION}", nx=True):
                return
            # Another supervisor created it between our GET and SET: check what it wrote.
        raise StoreUnavailable(f"{self.describe()}: the schema key keeps changing under us")

    def _check_version(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        if not text.startswith(_MARKER) or not text[len(_MARKER):].isdigit():
            raise StoreIncompatible(f"{self.describe()}: key {self._schema_key!r} holds {text[:60]!r}, which is not a Coda schema")
        version = int(text[len(_MARKER):])
        if version > SCHEMA_VERSION:
            raise StoreIncompatible(
                f"{self.describe()} has schema version {version}, written by a newer Coda; this Coda "
                f"reads schema version {SCHEMA_VERSION} at most: upgrade Coda, or use another prefix"
            )
        if version < 1:
            raise StoreIncompatible(f"{self.describe()}: schema version {version} is not one Coda ever wrote")

    def _check_still_there(self) -> None:
        raw = self._client.get(self._schema_key)
        if raw is None:
            raise StoreIncompatible(
                f"{self.describe()}: the store's schema key is gone after the connection was lost: Redis came "
                "back without its data (restarted with no appendonly/RDB persistence, or flushed); nothing "
                "more is written there — restart the supervisor to start an empty store"
            )
        self._check_version(raw)
        self._recheck = False

    def _any_key(self) -> str | None:
        pattern = _SCAN_PATTERN.sub(r"\\\1", self.prefix) + ":*"
        for key in self._client.scan_iter(match=pattern, count=1000):
            return str(key.decode("utf-8", "replace") if isinstance(key, bytes) else key)
        return None

    # -- writes --------------------------------------------------------------------------------

    def commit(self, batch: Batch) -> BatchResult:
        try:
            if self._recheck:
                self._check_still_there()
            return self._write(batch)
        except (redis.RedisError, OSError) as exc:
            raise self._error(exc, f"commit of {batch!r}") from None

    def _write(self, batch: Batch) -> BatchResult:
        """The one function that writes: the whole batch as one MULTI/EXEC."""
        fields: dict[str, dict[bytes, bytes]] = {}
        dropped: dict[str, list[bytes]] = {}
        for (run_id, attempt, seq), step in batch.steps.items():
            fields.setdefault(run_id, {})[b"s:%d:%d" % (attempt, seq)] = codec.encode_step(step)
        for (run_id, memo_key), value in batch.memo.items():
            fields.setdefault(run_id, {})[b"m:" + memo_key.hex().encode()] = codec.encode_value(value)
        for (run_id, attempt, seq), timer in batch.timers.items():
            name = b"t:%d:%d" % (attempt, seq)
            if timer is None:
                dropped.setdefault(run_id, []).append(name)
            else:
                fields.setdefault(run_id, {})[name] = codec.encode_timer(timer)
        for run_id, record in batch.runs.items():
            fields.setdefault(run_id, {})[b"r"] = codec.encode_run(record)

        commands: list[tuple[Any, ...]] = []
        for run_id in batch.deletes:
            commands += [
                ("DEL", self.run_key(run_id)),
                ("SREM", self._active_key, run_id),
                ("ZREM", self._created_key, run_id),
                ("ZREM", self._expire_key, run_id),
            ]
        indexed: list[str] = []
        unindexed: list[str] = []
        for run_id in dict.fromkeys([*fields, *dropped]):
            key = self.run_key(run_id)
            if run_id in dropped:
                commands.append(("HDEL", key, *dropped[run_id]))
            if run_id in fields:
                commands.append(("HSET", key, *itertools.chain.from_iterable(fields[run_id].items())))
            run = batch.runs.get(run_id)
            if run is None:
                continue
            known = run_id in self._indexed
            if not run.finished:
                if not known:
                    commands += [
                        ("SADD", self._active_key, run_id),
                        ("ZADD", self._created_key, run.created_at, run_id),
                        ("PERSIST", key),  # a rerun of a finished run: it must not expire now
                        ("ZREM", self._expire_key, run_id),
                    ]
                    indexed.append(run_id)
                continue
            assert run.finished_at is not None, f"finished run {run_id!r} has no finished_at"
            expire_at = run.finished_at + self.retention
            if not known:
                commands.append(("ZADD", self._created_key, run.created_at, run_id))
            commands += [
                ("SREM", self._active_key, run_id),
                ("PEXPIREAT", key, max(1, int(expire_at * 1000))),
                ("ZADD", self._expire_key, expire_at, run_id),
            ]
            unindexed.append(run_id)
        if len(commands) == 1:
            # One command (the common case: one run's HSET) is atomic without MULTI/EXEC.
            self._client.execute_command(*commands[0])
        elif commands:
            pipe = self._client.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute()
        self._indexed.update(indexed)
        self._indexed.difference_update(unindexed)
        self._indexed.difference_update(batch.deletes)
        return BatchResult()

    def sweep(self, now: float) -> int:
        """Redis expires the hashes itself; this drops expired runs from the indexes (and
        deletes any hash whose expiry has passed by our clock but not yet by Redis's)."""
        removed = 0
        try:
            while True:
                ids = self._client.zrangebyscore(self._expire_key, "-inf", now, start=0, num=1000)
                if not ids:
                    return removed
                pipe = self._client.pipeline(transaction=True)
                for raw in ids:
                    run_id = raw.decode()
                    pipe.delete(self.run_key(run_id))
                    pipe.zrem(self._created_key, run_id)
                pipe.zrem(self._expire_key, *ids)
                pipe.execute()
                removed += len(ids)
        except (redis.RedisError, OSError) as exc:
            raise self._error(exc, "sweep") from None

    # -- reads ---------------------------------------------------------------------------------

    def _hashes(self, run_ids: list[str]) -> Iterable[tuple[str, dict[bytes, bytes]]]:
        for start in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[start : start + _CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for run_id in chunk:
                pipe.hgetall(self.run_key(run_id))
            yield from zip(chunk, pipe.execute())

    def _parse(self, run_id: str, raw: dict[bytes, bytes]) -> tuple[RunRecord | None, dict[bytes, Any], list[StepRecord], list[TimerRecord]]:
        run: RunRecord | None = None
        memo: dict[bytes, Any] = {}
        steps: list[StepRecord] = []
        timers: list[TimerRecord] = []
        for name, blob in raw.items():
            kind = name[:2]
            try:
                if name == b"r":
                    run = codec.decode_run(blob)
                elif kind == b"m:":
                    memo[bytes.fromhex(name[2:].decode())] = codec.decode_value(blob)
                elif kind in (b"s:", b"t:"):
                    attempt, _, seq = name[2:].partition(b":")
                    if kind == b"s:":
                        steps.append(codec.decode_step(run_id, int(attempt), int(seq), blob))
                    else:
                        timers.append(codec.decode_timer(run_id, int(attempt), int(seq), blob))
                else:
                    raise ValueError("Coda does not write it")
            except (ValueError, UnicodeDecodeError) as exc:
                raise StoreIncompatible(f"run {run_id!r} has a field {name!r} that Coda did not write ({exc})") from None
        return run, memo, steps, timers

    def _loaded(self, run_id: str, raw: dict[bytes, bytes]) -> LoadedRun | None:
        run, memo, steps, timers = self._parse(run_id, raw)
        return None if run is None else LoadedRun.assemble(run, memo, steps, timers)

    def load_active(self) -> list[LoadedRun]:
        try:
            ids = sorted(m.decode() for m in self._client.smembers(self._active_key))
            loaded = [self._loaded(run_id, raw) for run_id, raw in self._hashes(ids)]
        except (redis.RedisError, OSError, StoreIncompatible) as exc:
            raise self._error(exc, "load the active runs") from None
        runs = [r for r in loaded if r is not None and not r.run.finished]
        runs.sort(key=lambda r: (r.run.created_at, r.run.run_id))
        return runs

    def load_run(self, run_id: str) -> LoadedRun | None:
        try:
            return self._loaded(run_id, self._client.hgetall(self.run_key(run_id)))
        except (redis.RedisError, OSError, StoreIncompatible) as exc:
            raise self._error(exc, f"load run {run_id!r}") from None

    def list_runs(self, query: RunQuery) -> list[RunRecord]:
        top = "+inf" if query.until is None else f"({query.until!r}"
        bottom = "-inf" if query.since is None else repr(query.since)
        found: list[RunRecord] = []
        offset = 0
        try:
            while len(found) < query.limit:
                ids = self._client.zrevrangebyscore(self._created_key, top, bottom, start=offset, num=_CHUNK)
                if not ids:
                    break
                offset += len(ids)
                pipe = self._client.pipeline(transaction=False)
                for raw in ids:
                    pipe.hget(self.run_key(raw.decode()), "r")
                for blob in pipe.execute():
                    if blob is None:
                        continue  # expired, not yet swept from the index
                    run = codec.decode_run(blob)
                    if query.matches(run):
                        found.append(run)
        except (redis.RedisError, OSError, StoreIncompatible) as exc:
            raise self._error(exc, "list runs") from None
        return found[: query.limit]

    def steps(self, run_id: str) -> list[StepRecord]:
        try:
            _, _, steps, _ = self._parse(run_id, self._client.hgetall(self.run_key(run_id)))
        except (redis.RedisError, OSError, StoreIncompatible) as exc:
            raise self._error(exc, f"read the steps of run {run_id!r}") from None
        steps.sort(key=lambda s: (s.attempt, s.seq))
        return steps

    def close(self) -> None:
        self._client.close()

