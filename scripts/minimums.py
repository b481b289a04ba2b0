"""The lowest version of every dependency pyproject.toml declares, as pip constraints.

    python3 scripts/minimums.py                 # print "name==lowest" for every requirement
    python3 scripts/minimums.py --check         # exit 1 unless the installed versions are exactly those

Every requirement (runtime, every extra, the build backend) must name a lower bound
(``>=``, ``~=`` or ``==``): a bare name or an upper bound alone is an error, so that a new
dependency cannot slip in untested. ``scripts/minimums.sh`` installs these and runs the tests.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")
_LOWER = re.compile(r"(>=|~=|==)\s*([0-9][A-Za-z0-9.]*)")


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """Every requirement string the project declares, build backend included."""
    data = tomllib.loads(pyproject.read_text())
    found = list(data["build-system"]["requires"])
    found += data["project"]["dependencies"]
    for extra in data["project"].get("optional-dependencies", {}).values():
        found += extra
    return found


def lowest(requirement: str) -> tuple[str, str]:
    """``"celery[redis]>=5.4,<6"`` → ``("celery", "5.4")``; ValueError naming the requirement
    when it declares no lower bound."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name, _, spec, _ = match.groups()
    bounds = _LOWER.findall(spec)
    if not bounds:
        raise ValueError(f"{requirement!r} declares no lower bound (>=, ~= or ==): pin the lowest version you tested")
    return name.lower().replace("_", "-"), bounds[0][1]


def minimums(pyproject: Path = PYPROJECT) -> dict[str, str]:
    return dict(lowest(r) for r in requirements(pyproject))


def _release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def check(wanted: dict[str, str]) -> list[str]:
    """Each installed distribution that is not exactly its declared minimum."""
    problems = []
    for name, version in sorted(wanted.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed (declared minimum {version})")
            continue
        if _release(installed) != _release(version):
            problems.append(f"{name}: {installed} installed, declared minimum {version}")
    return problems


def main(argv: list[str]) -> int:
    try:
        wanted = minimums()
    except ValueError as exc:
        print(f"minimums: {exc}", file=sys.stderr)
        return 1
    if argv == ["--check"]:
        problems = check(wanted)
        for problem in problems:
            print(f"minimums: {problem}", file=sys.stderr)
        if not problems:
            print("minimums: installed exactly: " + ", ".join(f"{n} {v}" for n, v in sorted(wanted.items())))
        return 1 if problems else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    for name, version in sorted(wanted.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
