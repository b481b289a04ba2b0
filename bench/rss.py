"""Resident memory of a process and of its process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os

__all__ = ["descendants", "rss_bytes", "tree_rss_bytes"]


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` in bytes; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name sits in parentheses and may contain spaces; the ppid follows it.
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return sorted(found)


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """Summed RSS of ``pid`` and all its descendants, and how many processes that is."""
    pids = [pid, *descendants(pid)]
    return sum(rss_bytes(p) for p in pids), len(pids)
