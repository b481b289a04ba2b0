"""Coda's log records: every event name is dotted under ``coda.``, its details are ``extra``
fields that do not collide with LogRecord's own attributes, and the formatter shows them."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import coda
from coda.logs import EventFormatter

_LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
_NOT_YET: set[str] = set()
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _log_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(Path(coda.__file__).parent.rglob("*.py")):
        if _NOT_YET & set(path.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _LEVELS:
                target = node.func.value
                # logger.x(...) and the `log = logger.info if ... else logger.warning` alias
                if isinstance(target, ast.Name) and target.id in ("logger", "log"):
                    calls.append((f"{path.name}:{node.lineno}", node))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "log":
                calls.append((f"{path.name}:{node.lineno}", node))
    return calls


CALLS = _log_calls()


def test_the_scan_finds_the_log_calls() -> None:
    assert len(CALLS) > 40


@pytest.mark.parametrize(("where", "call"), CALLS, ids=[where for where, _ in CALLS])
def test_log_calls_name_a_dotted_event_and_pass_details_as_extra(where: str, call: ast.Call) -> None:
    event = call.args[0]
    assert isinstance(event, ast.Constant) and isinstance(event.value, str), f"{where}: the event is not a literal"
    assert event.value.startswith("coda.") and " " not in event.value and ":" not in event.value, where
    assert len(call.args) == 1, f"{where}: details go in extra={{...}}, not %-arguments"
    for keyword in call.keywords:
        if keyword.arg == "extra":
            assert isinstance(keyword.value, ast.Dict), where
            keys = [k.value for k in keyword.value.keys if isinstance(k, ast.Constant)]
            assert not set(keys) & _RESERVED, f"{where}: extra keys {set(keys) & _RESERVED} collide with LogRecord"


def test_the_formatter_renders_extra_fields_after_the_event() -> None:
    record = logging.LogRecord("coda.x", logging.WARNING, __file__, 1, "coda.x.happened", (), None)
    record.peer = 3
    record.reason = "frame of 9 bytes is over the limit"
    record.queue = "events"
    line = EventFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING coda.x.happened peer=3 reason='frame of 9 bytes is over the limit' queue=events"
    plain = logging.LogRecord("coda.x", logging.INFO, __file__, 1, "coda.x.quiet", (), None)
    assert EventFormatter("%(message)s").format(plain) == "coda.x.quiet"
