"""Run Celery's own suites stock and with Coda swapped in; compare them test by test.

    python -m conformance.run [--integration | --all] [--json PATH] [--cache DIR]

- ``unit``: ``t/unit/tasks`` of the sdist of the installed Celery version, stock and with
  ``coda.compat.install()`` (``conformance.swap``), the two runs side by side.
- ``integration``: ``t/integration/test_canvas.py`` on Redis (broker and backend in a Redis db of
  its own), stock and with a ``coda supervisor -Q celery`` as the only consumer
  (``conformance.supervisor``), one after the other.

A swapped run is compared with the stock run of the same invocation, per test (never with a
fixed count: the stock suites have flakes): ``N/M of stock-passing tests pass`` and the
regressions, i.e. the tests that pass stock and do not pass swapped. Exit status 1 when there
is a regression, 2 when a run could not be made.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("CODA_CONFORMANCE_CACHE", Path.home() / ".cache" / "coda-conformance"))
REDIS = os.environ.get("CODA_CONFORMANCE_REDIS", "redis://127.0.0.1:6379")
LOCK_KEY = "coda-conformance:lock"


class ConformanceError(Exception):
    """A run could not be made (download, extraction, a pytest that did not record)."""


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    target: str
    swap_plugins: tuple[str, ...]
    timeout: int
    parallel: bool
    args: tuple[str, ...] = ()


SUITES = {
    "unit": Suite("unit", "t/unit/tasks", ("conformance.swap",), timeout=120, parallel=True),
    "integration": Suite(
        "integration", "t/integration/test_canvas.py", ("conformance.supervisor",), timeout=300, parallel=False,
        # Celery's fixtures (celery_parameters, ...) that its CI gets from the pytest-celery package.
        args=("-p", "celery.contrib.pytest"),
    ),
}


@dataclasses.dataclass
class Comparison:
    suite: str
    stock_passing: int
    swapped_passing: int
    regressions: dict[str, str]  # test id -> what the swapped run said
    only_swapped: list[str]  # pass swapped, not stock (flakes of the stock run, usually)
    counts: dict[str, dict[str, int]]
    seconds: dict[str, float]

    def summary(self) -> str:
        return f"{self.suite}: {self.swapped_passing}/{self.stock_passing} of stock-passing tests pass"

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare(suite: str, stock: dict[str, Any], swapped: dict[str, Any], seconds: dict[str, float]) -> Comparison:
    """Per test: which of the tests that passed stock also passed swapped."""
    passing = sorted(k for k, v in stock.items() if v["outcome"] == "passed")
    regressions = {
        k: (swapped[k]["detail"] or swapped[k]["outcome"]) if k in swapped else "not run"
        for k in passing
        if swapped.get(k, {}).get("outcome") != "passed"
    }
    only = sorted(k for k, v in swapped.items() if v["outcome"] == "passed" and stock.get(k, {}).get("outcome") != "passed")

    def count(record: dict[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in record.values():
            out[v["outcome"]] = out.get(v["outcome"], 0) + 1
        return out

    return Comparison(
        suite, len(passing), len(passing) - len(regressions), regressions, only,
        {"stock": count(stock), "swapped": count(swapped)}, seconds,
    )


def celery_tests(version: str, cache: Path) -> Path:
    """``t/`` and ``pyproject.toml`` of Celery ``version``'s sdist, extracted once into ``cache``.
    Only those: run from there, the tests import the installed Celery, not the sdist's."""
    tree = cache / f"celery-{version}"
    if (tree / "t" / "__init__.py").exists():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"celery-{version}.tar.gz"
    if not sdist.exists():
        print(f"conformance: downloading the sdist of celery {version}", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", f"celery=={version}", "-d", str(cache)],
            capture_output=True, text=True,
        )
        if done.returncode != 0 or not sdist.exists():
            raise ConformanceError(f"pip download of celery=={version} failed:\n{done.stdout}{done.stderr}")
    staging = Path(tempfile.mkdtemp(prefix=f"celery-{version}-", dir=cache))
    prefix = f"celery-{version}/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix + "t/") or m.name == prefix + "pyproject.toml"]
        archive.extractall(staging, members=members, filter="data")
    os.replace(staging / f"celery-{version}", tree)  # atomic: a concurrent run sees all or nothing
    shutil.rmtree(staging, ignore_errors=True)
    return tree


def _pytest(
    tree: Path, suite: Suite, plugins: Sequence[str], env: dict[str, str], record: Path, log: Path
) -> tuple[dict[str, Any], float]:
    argv = [
        sys.executable, "-m", "pytest", suite.target, "-q", "-p", "no:cacheprovider", "-p", "conformance.record",
        "--timeout", str(suite.timeout), "-o", "console_output_style=classic", *suite.args,
    ]
    for plugin in plugins:
        argv += ["-p", plugin]
    if not plugins:
        argv += ["-p", "no:coda"]  # stock: Celery alone
    started = time.monotonic()
    with open(log, "w") as out:
        code = subprocess.run(argv, cwd=tree, env={**env, "CODA_CONFORMANCE_RECORD": str(record)},
                              stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    if code not in (0, 1) or not record.exists():
        tail = log.read_text()[-3000:]
        raise ConformanceError(f"pytest of {suite.target} ({' '.join(plugins) or 'stock'}) exited {code}:\n{tail}")
    return json.loads(record.read_text()), seconds


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("CI", None)  # Celery's suites read CI themselves; their stock behaviour is the reference
    env.update(extra)
    return env


class RedisDb:
    """A Redis db nobody uses (no keys), held by a lock key for the run."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis
        self.url = url
        self.db: int | None = None

    def __enter__(self) -> int:
        token = f"{os.getpid()}-{time.time()}"
        for db in range(15, 0, -1):
            client = self._redis.Redis.from_url(f"{self.url}/{db}")
            if client.dbsize() == 0 and client.set(LOCK_KEY, token, nx=True, ex=6 * 3600):
                self.db = db
                return db
        raise ConformanceError(f"no empty Redis db (1-15) on {self.url} for the integration suite")

    def __exit__(self, *exc: object) -> None:
        if self.db is not None:
            # Only this run's db, which was empty when it was taken.
            self._redis.Redis.from_url(f"{self.url}/{self.db}").flushdb()


def run_suite(suite: Suite, tree: Path, work: Path) -> Comparison:
    extra: dict[str, str] = {}
    holder: RedisDb | None = None
    if suite.name == "integration":
        holder = RedisDb(REDIS)
        db = holder.__enter__()
        extra = {"TEST_BROKER": f"{REDIS}/{db}", "TEST_BACKEND": f"{REDIS}/{db}"}
        print(f"conformance: integration suite on Redis db {db}", flush=True)
    try:
        env = _environment(extra)
        runs = {"stock": (), "swapped": suite.swap_plugins}

        def one(kind: str) -> tuple[dict[str, Any], float]:
            return _pytest(tree, suite, runs[kind], env, work / f"{suite.name}-{kind}.json", work / f"{suite.name}-{kind}.log")

        if suite.parallel:
            with ThreadPoolExecutor(2) as pool:
                futures = {kind: pool.submit(one, kind) for kind in runs}
                results = {kind: f.result() for kind, f in futures.items()}
        else:
            results = {kind: one(kind) for kind in runs}
    finally:
        if holder is not None:
            holder.__exit__()
    return compare(
        suite.name, results["stock"][0], results["swapped"][0], {k: round(v[1], 1) for k, v in results.items()}
    )


def report(result: Comparison, version: str, work: Path) -> str:
    suite = SUITES[result.suite]
    lines = [
        f"{result.summary()}  ({suite.target}, Celery {version}; stock {result.counts['stock']} in "
        f"{result.seconds['stock']:.0f} s, swapped {result.counts['swapped']} in {result.seconds['swapped']:.0f} s)"
    ]
    if result.regressions:
        lines.append(f"  regressions ({len(result.regressions)}):")
        for test, detail in result.regressions.items():
            lines.append(f"    {test}")
            lines.extend(f"        {line}" for line in detail.splitlines()[:6])
    if result.only_swapped:
        lines.append(f"  passing swapped only (failed or skipped stock): {', '.join(result.only_swapped)}")
    lines.append(f"  logs: {work}/{result.suite}-stock.log, {work}/{result.suite}-swapped.log")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/conformance.sh", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--integration", action="store_true", help="run the integration half (~20 min) instead")
    which.add_argument("--all", action="store_true", help="run both halves")
    parser.add_argument("--json", type=Path, help="also write the comparisons to this file")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"sdist cache [{DEFAULT_CACHE}]")
    parser.add_argument("--work", type=Path, help="folder for records and logs [a new temporary one]")
    args = parser.parse_args(argv)
    names = ["unit", "integration"] if args.all else ["integration"] if args.integration else ["unit"]
    version = metadata.version("celery")
    work = args.work or Path(tempfile.mkdtemp(prefix="coda-conformance-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tree = celery_tests(version, args.cache)
        results = []
        for name in names:
            result = run_suite(SUITES[name], tree, work)
            print(report(result, version, work), flush=True)
            results.append(result)
    except ConformanceError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps({"celery": version, "suites": [r.as_json() for r in results]}, indent=1))
    return 1 if any(r.regressions for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
